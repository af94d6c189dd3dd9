"""``rlscale cluster up|down|status CONFIG``: Ray's cluster launcher, with the config checked first.

A config must keep Ray's token authentication on (every ``ray start`` runs with
``RAY_AUTH_MODE=token``) and keep the dashboard, which accepts jobs, off the public interface
(``--dashboard-host=127.0.0.1``; reach it with ``ray dashboard CONFIG``, an SSH tunnel). The
shipped examples live next to this module in ``configs/``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from rlscale.errors import RlscaleError

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
REQUIRED_KEYS = ("cluster_name", "provider", "head_start_ray_commands")
PROVIDERS = ("aws", "gcp", "azure", "local", "kuberay")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost")
ACTIONS = ("up", "down", "status")


class ClusterConfigError(RlscaleError):
    """A cluster launcher config is missing, malformed or unsafe."""


def shipped_configs() -> list[Path]:
    """The example `ray up` configs that ship with rlscale."""
    return sorted(CONFIG_DIR.glob("*.yaml"))


def resolve_config(name_or_path: str | Path) -> Path:
    """A path, or the name of a shipped config (``aws``, ``gcp``, ``local``)."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    shipped = CONFIG_DIR / f"{name_or_path}.yaml"
    if shipped.is_file():
        return shipped
    names = ", ".join(p.stem for p in shipped_configs())
    raise ClusterConfigError(
        f"cluster config {name_or_path} does not exist. Pass a `ray up` YAML file, or one of "
        f"the shipped examples by name: {names} (in {CONFIG_DIR})."
    )


def load_cluster_config(name_or_path: str | Path) -> dict[str, Any]:
    """Read and check a `ray up` config; raise a ClusterConfigError naming each problem."""
    path = resolve_config(name_or_path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ClusterConfigError(f"{path} is not valid YAML{where}.") from None
    if not isinstance(data, dict):
        raise ClusterConfigError(f"{path} must be a mapping (cluster_name:, provider:, ...).")
    problems = config_problems(data)
    if problems:
        raise ClusterConfigError(
            "\n".join([f"{path} cannot be launched safely:", *(f"  - {p}" for p in problems)])
        )
    return data


def config_problems(data: dict[str, Any]) -> list[str]:
    problems = [f"missing key '{key}'." for key in REQUIRED_KEYS if key not in data]
    provider = data.get("provider")
    if "provider" in data and not (isinstance(provider, dict) and provider.get("type")):
        problems.append("'provider' needs a 'type' (aws, gcp, local, ...).")
    elif isinstance(provider, dict) and provider.get("type") not in PROVIDERS:
        problems.append(
            f"unknown provider type '{provider.get('type')}'; use one of {', '.join(PROVIDERS)}."
        )
    head = _commands(data.get("head_start_ray_commands"))
    workers = _commands(data.get("worker_start_ray_commands"))
    sections = (("head_start_ray_commands", head), ("worker_start_ray_commands", workers))
    for where, commands in sections:
        for command in commands:
            if "ray start" in command and not _token_auth_on(command):
                problems.append(
                    f"{where}: `{command}` starts Ray without token authentication; prefix it "
                    "with RAY_AUTH_MODE=token (never disable auth)."
                )
    for command in head:
        if "ray start" in command and "--head" in command:
            host = _dashboard_host(command)
            if host not in LOOPBACK_HOSTS:
                problems.append(
                    f"head_start_ray_commands: `{command}` puts the dashboard (and the Jobs API) "
                    f"on {host or 'the default interface'}; add --dashboard-host=127.0.0.1 and "
                    "reach it through `ray dashboard CONFIG`."
                )
    if head and not any("ray start" in c and "--head" in c for c in head):
        problems.append("head_start_ray_commands has no `ray start --head`.")
    return problems


def _commands(value: Any) -> list[str]:
    return [str(c) for c in value] if isinstance(value, list) else []


def _token_auth_on(command: str) -> bool:
    return re.search(r"RAY_AUTH_MODE=token\b", command) is not None


def _dashboard_host(command: str) -> str | None:
    match = re.search(r"--dashboard-host[= ]+(\S+)", command)
    return match.group(1).strip("'\"") if match else None


def ray_executable() -> str:
    return str(Path(sys.executable).with_name("ray"))


def launcher_command(action: str, config: Path) -> list[str]:
    ray = ray_executable()
    if action == "up":
        return [ray, "up", str(config), "--yes"]
    if action == "down":
        return [ray, "down", str(config), "--yes"]
    if action == "status":
        return [ray, "exec", str(config), "RAY_AUTH_MODE=token ray status"]
    raise ClusterConfigError(f"unknown action '{action}'; use one of {', '.join(ACTIONS)}.")


def run_launcher(action: str, name_or_path: str | Path) -> int:
    """Check the config, then hand over to Ray's launcher; returns its exit status."""
    if action not in ACTIONS:
        raise ClusterConfigError(f"unknown action '{action}'; use one of {', '.join(ACTIONS)}.")
    config = resolve_config(name_or_path)
    load_cluster_config(config)
    try:
        return subprocess.call(launcher_command(action, config))
    except FileNotFoundError:
        raise ClusterConfigError(
            f"Ray's `ray` command is not installed next to {sys.executable}; "
            "install rlscale (it brings ray[default])."
        ) from None
