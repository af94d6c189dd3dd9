"""``rlscale submit``: run a command on a Ray cluster through the Ray Jobs API.

The client sends the cluster's token (``--token``, else ``RAY_AUTH_TOKEN``, else the file named
by ``RAY_AUTH_TOKEN_PATH``, else ``~/.ray/auth_token``) as a bearer token, streams the job's logs
and returns the job's final status. Unreachable addresses and missing or wrong tokens fail with
one message each, within seconds.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from rlscale.errors import RayConnectionError, RlscaleError
from rlscale.platform.runtime import probe_address

DEFAULT_DASHBOARD_PORT = 8265
TOKEN_ENV = "RAY_AUTH_TOKEN"
TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"
DEFAULT_TOKEN_FILE = Path("~/.ray/auth_token")
TERMINAL_STATES = ("SUCCEEDED", "FAILED", "STOPPED")


class JobSubmissionError(RlscaleError):
    """The job could not be submitted, or the cluster refused the client."""


@dataclass
class JobResult:
    job_id: str
    status: str
    message: str | None

    @property
    def succeeded(self) -> bool:
        return self.status == "SUCCEEDED"


def dashboard_url(address: str) -> str:
    """``HOST[:PORT]`` or ``http(s)://HOST[:PORT]`` -> ``http(s)://HOST:PORT``."""
    parsed = urlparse(address if "://" in address else f"http://{address}")
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise RayConnectionError(
            f"'{address}' is not a Ray dashboard address; use http://HEAD:8265 (the Jobs API "
            "listens on the dashboard's port, not on the GCS port 6379)."
        )
    try:
        port = parsed.port or DEFAULT_DASHBOARD_PORT
    except ValueError:
        raise RayConnectionError(f"'{address}' has an invalid port.") from None
    return f"{parsed.scheme}://{parsed.hostname}:{port}"


def find_token(explicit: str | None = None) -> str | None:
    """The cluster token from the flag, the environment or the default token file."""
    if explicit:
        return explicit.strip()
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV].strip()
    for candidate in (os.environ.get(TOKEN_PATH_ENV), DEFAULT_TOKEN_FILE):
        if candidate and Path(candidate).expanduser().is_file():
            return Path(candidate).expanduser().read_text().strip() or None
    return None


def connect(address: str, token: str | None):
    """A JobSubmissionClient for ``address`` that authenticates with ``token``."""
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    url = dashboard_url(address)
    parsed = urlparse(url)
    probe_address(parsed.hostname, parsed.port)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        return JobSubmissionClient(url, headers=headers)
    except AuthenticationError as exc:
        raise _auth_error(url, token, exc) from None
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise RayConnectionError(
            f"the Ray Jobs API at {url} did not answer: {_first_line(exc)}. Check that the "
            "address is the head's dashboard (port 8265 by default)."
        ) from None


def submit(
    address: str,
    command: list[str],
    working_dir: Path | None = None,
    token: str | None = None,
    on_log: Callable[[str], None] | None = None,
    wait: bool = True,
) -> JobResult:
    """Submit ``command`` as a job; stream its logs to ``on_log`` until it ends."""
    from ray.exceptions import AuthenticationError

    if not command:
        raise JobSubmissionError(
            "no command to run: put it after `--`, e.g. rlscale submit --address "
            "http://HEAD:8265 -- rlscale train ppo --env CartPole-v1"
        )
    runtime_env = {}
    if working_dir is not None:
        if not working_dir.is_dir():
            raise JobSubmissionError(f"--working-dir {working_dir} is not a directory.")
        runtime_env["working_dir"] = str(working_dir)
    token = find_token(token)
    client = connect(address, token)
    try:
        job_id = client.submit_job(
            entrypoint=shlex.join(command), runtime_env=runtime_env or None
        )
        if not wait:
            return JobResult(job_id=job_id, status="PENDING", message=None)
        _stream_logs(client, job_id, on_log or (lambda text: print(text, end="", flush=True)))
        info = _wait_for_end(client, job_id)
    except AuthenticationError as exc:
        raise _auth_error(dashboard_url(address), token, exc) from None
    return JobResult(job_id=job_id, status=str(info.status), message=info.message)


def _stream_logs(client, job_id: str, on_log: Callable[[str], None]) -> None:
    async def tail() -> None:
        async for lines in client.tail_job_logs(job_id):
            on_log(lines)

    asyncio.run(tail())


def _wait_for_end(client, job_id: str, timeout_s: float = 60.0):
    """The log stream ends with the job; its status may lag a moment behind."""
    deadline = time.monotonic() + timeout_s
    while True:
        info = client.get_job_info(job_id)
        if str(info.status) in TERMINAL_STATES or time.monotonic() > deadline:
            return info
        time.sleep(0.5)


def _auth_error(url: str, token: str | None, exc: Exception) -> JobSubmissionError:
    if token is None or "Authentication required" in str(exc):
        return JobSubmissionError(
            f"the Ray cluster at {url} requires a token and none was given. Pass --token, or "
            f"set {TOKEN_ENV}; print the cluster's token on the head with `ray get-auth-token`."
        )
    return JobSubmissionError(
        f"the Ray cluster at {url} rejected the token. Use the head's token "
        f"(`ray get-auth-token` on the head) in --token or {TOKEN_ENV}."
    )


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
