"""A real Ray head on 127.0.0.1 (`ray start --head --block`) with token auth, on free ports.

It runs in its own process group, which ``stop`` ends; never `ray stop`, which would end every
Ray on the machine.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import REPO_ROOT

OBJECT_STORE_BYTES = 200 * 1024**2
"""By default a node takes 30% of RAM in /dev/shm; several nodes on one host do not fit."""
AUTH_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any Ray address or auth settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in AUTH_VARS}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def _own_ports() -> list[str]:
    """Free ports for the per-node services, whose defaults clash between nodes on one host."""
    names = (
        "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "node-manager-port",
        "object-manager-port", "metrics-export-port", "runtime-env-agent-port",
    )
    return [f"--{name}={free_port()}" for name in names]


def _stop_group(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@dataclass
class RayHead:
    process: subprocess.Popen
    token: str
    gcs_address: str
    dashboard_url: str
    temp_dir: Path
    env: dict[str, str]
    workers: list[subprocess.Popen] = field(default_factory=list)

    def add_worker(self, num_cpus: int = 1) -> None:
        """Another node (`ray start --address`) on 127.0.0.1, in a process group of its own."""
        command = [
            str(Path(sys.executable).with_name("ray")), "start", "--block",
            f"--address={self.gcs_address}", "--node-ip-address=127.0.0.1",
            f"--num-cpus={num_cpus}", *_own_ports(),
            # Nodes on one host share the session folder: each needs sockets of its own.
            f"--raylet-socket-name={self.temp_dir}/raylet_{len(self.workers)}",
            f"--plasma-store-socket-name={self.temp_dir}/plasma_{len(self.workers)}",
            f"--object-store-memory={OBJECT_STORE_BYTES}", "--disable-usage-stats",
        ]
        self.workers.append(subprocess.Popen(
            command, env=self.env, cwd=REPO_ROOT, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))

    def stop(self) -> None:
        for worker in self.workers:
            _stop_group(worker)
        _stop_group(self.process)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def start_head(num_cpus: int = 1, home: Path | None = None, timeout_s: float = 120) -> RayHead:
    token = secrets.token_hex(16)
    port, dashboard_port = free_port(), free_port()
    temp_dir = Path(tempfile.mkdtemp(prefix="rlscale-head-", dir="/tmp"))
    env = clean_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    if home is not None:
        env["HOME"] = str(home)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    command = [
        str(Path(sys.executable).with_name("ray")), "start", "--head", "--block",
        "--node-ip-address=127.0.0.1", f"--port={port}", f"--num-cpus={num_cpus}",
        "--include-dashboard=true", "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard_port}", f"--ray-client-server-port={free_port()}",
        *_own_ports(), f"--temp-dir={temp_dir}",
        f"--object-store-memory={OBJECT_STORE_BYTES}", "--disable-usage-stats",
    ]
    process = subprocess.Popen(
        command, env=env, cwd=REPO_ROOT, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    head = RayHead(
        process=process,
        token=token,
        gcs_address=f"127.0.0.1:{port}",
        dashboard_url=f"http://127.0.0.1:{dashboard_port}",
        temp_dir=temp_dir,
        env=env,
    )
    try:
        _wait_for_jobs_api(head, timeout_s)
    except BaseException:
        head.stop()
        raise
    return head


def _wait_for_jobs_api(head: RayHead, timeout_s: float) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    request = urllib.request.Request(
        f"{head.dashboard_url}/api/version", headers={"Authorization": f"Bearer {head.token}"}
    )
    while time.monotonic() < deadline:
        if head.process.poll() is not None:
            raise RuntimeError(f"`ray start --head` exited with {head.process.returncode}")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise TimeoutError(f"the head's Jobs API did not answer within {timeout_s:.0f}s")
