"""Fixtures every test gets."""
from __future__ import annotations

import os

import pytest

BACKEND_ENV = "REWARD_SERVICE_SANDBOX_BACKEND"


@pytest.fixture(autouse=True)
def sandbox_backend_stays_put():
    """An in-process app's start-up writes its sandbox backend into os.environ (for its worker
    processes); without this, one test's `unsafe` app made every later in-process code item of
    the run go unsandboxed, adversary suites included."""
    before = os.environ.get(BACKEND_ENV)
    yield
    if before is None:
        os.environ.pop(BACKEND_ENV, None)
    else:
        os.environ[BACKEND_ENV] = before
