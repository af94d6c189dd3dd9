"""The import rules of docs/design.md, checked on the source of every module in the package.

Imports run one way: ``cli`` -> ``platform`` -> ``algorithms`` -> ``modules``, ``policies``,
``datasets``, ``envs``. A lower layer gets what it needs from the runtime as an argument, never by
importing upwards. ``modules`` holds plain torch building blocks and RLModules: it may use RLlib's
RLModule API, never its training loop (Algorithm, Learner, Tune). Imports inside functions and
under ``TYPE_CHECKING`` count too: a lazy upward import is still an upward dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "rlscale"

# Layer of each top-level part of the package; a module may import its own layer and lower ones.
LAYERS = {
    "cli": 3,
    "platform": 2,
    "algorithms": 1,
    "modules": 0,
    "policies": 0,
    "datasets": 0,
    "envs": 0,
}
LOWER_PART_MAY_IMPORT = {
    "modules": set(),
    "envs": set(),
    "policies": {"envs"},
    "datasets": {"envs", "policies"},
}
"""Within the lowest layer: modules and envs stand alone; experts may build envs; datasets may
build envs and roll experts out."""
SHARED_BASE = {"errors"}
"""Imported by every layer; imports nothing of rlscale."""

TRAINING_LOOP_PREFIXES = (
    "ray.tune",
    "ray.rllib.core.learner",
    "ray.rllib.algorithms",
    "ray.rllib.offline",
    "ray.rllib.env",
    "ray.rllib.connectors",
)
"""What ``modules`` may not import: RLlib's training loop and Tune."""
RL_MODULE_EXCEPTION = "rl_module"
"""RLlib keeps some RLModule classes under ``ray.rllib.algorithms`` (e.g. DQN's default
module); a module path naming ``rl_module`` is RLModule API, not the training loop."""


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, module_name: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, at any depth."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name.split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            if module == "rlscale":
                # `from rlscale import platform` names a sub-package, not an attribute.
                found.extend((node.lineno, f"{module}.{alias.name}") for alias in node.names)
    return sorted(found)


def _part(module: str) -> str | None:
    """The top-level part of rlscale that ``module`` belongs to, or None outside rlscale."""
    parts = module.split(".")
    if parts[0] != "rlscale" or len(parts) < 2:
        return None
    return parts[1]


def _source_files() -> list[Path]:
    return sorted(PACKAGE_ROOT.rglob("*.py"))


def _violations(path: Path, module_name: str) -> list[str]:
    importer = _part(module_name)
    problems = []
    for line, module in _imports(path, module_name):
        imported = _part(module)
        where = f"{module_name} (line {line}) imports {module}"
        if importer in SHARED_BASE and imported is not None:
            problems.append(f"{where}: {importer} must import nothing of rlscale")
        if importer in LAYERS and imported in LAYERS:
            if LAYERS[imported] > LAYERS[importer]:
                problems.append(f"{where}: {importer} may not import the layer above it")
            elif (
                LAYERS[importer] == 0
                and imported != importer
                and imported not in LOWER_PART_MAY_IMPORT[importer]
            ):
                problems.append(f"{where}: {importer} may not import {imported}")
        if (
            importer == "modules"
            and module.startswith(TRAINING_LOOP_PREFIXES)
            and RL_MODULE_EXCEPTION not in module
        ):
            problems.append(f"{where}: modules may not import RLlib's training loop")
    return problems


@pytest.mark.parametrize(
    "path", _source_files(), ids=lambda p: str(p.relative_to(PACKAGE_ROOT.parent))
)
def test_imports_follow_the_layers(path: Path) -> None:
    assert _violations(path, _module_name(path)) == []


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    """The rule must be able to fail: a file that imports upwards is reported."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "def f():\n    from ...platform.runner import train\n"
        "from ray.rllib.core.learner.learner import Learner\n"
        "from rlscale.datasets import store\n"
    )
    problems = _violations(probe, "rlscale.modules.networks.probe")
    assert len(problems) == 3, problems
    assert "layer above" in problems[0]
    assert "training loop" in problems[1]
    assert "modules may not import datasets" in problems[2]
