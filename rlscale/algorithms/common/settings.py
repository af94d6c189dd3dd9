"""Settings dataclasses from config dicts: what a config key such as ``planner_settings`` holds.

Modules keep their knobs in frozen dataclasses that check their own values; a config carries a
plain dict (YAML, ``--set``, a sweep) of the fields it changes.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

Settings = TypeVar("Settings")


def settings_from(settings_class: type[Settings], values: dict[str, Any], key: str) -> Settings:
    """``settings_class(**values)``; an unknown field is a ValueError naming ``key`` and the
    valid fields. Lists become tuples (settings dataclasses hold sequences as tuples)."""
    fields = {field.name for field in dataclasses.fields(settings_class)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ValueError(
            f"{key} has no key {', '.join(map(repr, unknown))} "
            f"({settings_class.__name__}); valid keys: {', '.join(sorted(fields))}"
        )
    converted = {
        name: tuple(value) if isinstance(value, list) else value for name, value in values.items()
    }
    return settings_class(**converted)
