"""Fixtures every test gets."""
from __future__ import annotations

import os

import pytest

try:  # tests/ as a package or as a plain directory on sys.path
    from tests.live_service import SERVICE_KEY, running_service
except ImportError:
    from live_service import SERVICE_KEY, running_service

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


@pytest.fixture(scope="module")
def open_url():
    """A live service without an API key, one per test module."""
    with running_service() as url:
        yield url


@pytest.fixture(scope="module")
def keyed_url():
    """A live service that wants ``SERVICE_KEY``, one per test module."""
    with running_service(api_key=SERVICE_KEY) as url:
        yield url
