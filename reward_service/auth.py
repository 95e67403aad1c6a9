"""The API key check: which ``Authorization`` headers carry the key, and what a request without it is told.

``Bearer <key>`` is the service's own scheme (the client, verl, TRL). HTTP Basic
with the key as the password (any user name) is accepted too, because it is the
only credential OpenRLHF's remote reward URL can carry: its aiohttp call turns
the URL's user-info (``http://openrlhf:KEY@host:8000/openrlhf``) into a Basic header.
"""
from __future__ import annotations

import base64
import binascii
import logging
import secrets
import threading
import time

from fastapi.responses import JSONResponse

__all__ = ["carries_key", "unauthorized"]

log = logging.getLogger("reward_service")

OPENRLHF_HINT = (
    "OpenRLHF sends no API key of its own: use the reward-function file "
    "(--reward.remote_url /path/to/reward_service/integrations/openrlhf_reward_func.py, with REWARD_SERVICE_URL "
    "and REWARD_SERVICE_API_KEY in the Ray workers' environment), or put the key in the URL's user-info: "
    "--reward.remote_url http://openrlhf:<key>@host:8000/openrlhf (OpenRLHF prints its arguments, key included)"
)
# OpenRLHF logs a refused reward call at INFO and trains on without the reward, so
# the service's log is where the operator learns of it; once a minute is enough.
_WARN_EVERY_S = 60.0
_last_warning = [float("-inf")]
_warning_lock = threading.Lock()


def carries_key(authorization: str, key: str) -> bool:
    """Whether an ``Authorization`` header value carries ``key`` (Bearer, or Basic with it as the password)."""
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        given = value
    elif scheme.lower() == "basic":
        try:
            given = base64.b64decode(value, validate=True).decode("utf-8").partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            return False
    else:
        return False
    return secrets.compare_digest(given.encode(), key.encode())


def unauthorized(path: str) -> JSONResponse:
    """The 401 for a request to ``path`` without the key; on OpenRLHF's route it says what to do instead."""
    detail = "missing or wrong API key (Authorization: Bearer <key>)"
    if path.rstrip("/") == "/openrlhf":
        detail = f"{detail}. {OPENRLHF_HINT}"
        now = time.monotonic()
        with _warning_lock:
            due = now - _last_warning[0] >= _WARN_EVERY_S
            if due:
                _last_warning[0] = now
        if due:
            log.warning("refused POST /openrlhf without the API key (OpenRLHF logs this only at INFO and trains on "
                        "without rewards). %s", OPENRLHF_HINT)
    return JSONResponse({"detail": detail}, 401, headers={"WWW-Authenticate": "Bearer"})
