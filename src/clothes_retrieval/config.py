"""Typed, frozen configuration objects and their validation from YAML.

Every stage has one frozen pydantic model. YAML is validated into it; an unknown or
malformed key raises :class:`ConfigError` whose message names the key path (for example
``sample.consumer.max_items: Input should be less than or equal to 3``) and the file.
Defaults live on the models, in one place.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = [
    "ConfigError",
    "FrozenConfig",
    "deep_merge",
    "dump_config",
    "load_config",
    "load_yaml",
    "with_overrides",
    "validate_config",
]


class ConfigError(ValueError):
    """A configuration file or mapping does not validate; the message names each bad key."""


class FrozenConfig(BaseModel):
    """Base of every stage config: immutable, and unknown keys are errors, not ignored."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


C = TypeVar("C", bound=BaseModel)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path} (check the path or the --config option)")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _format_errors(exc: ValidationError, prefix: str) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "<root>"
        if prefix:
            key = f"{prefix}.{key}" if key != "<root>" else prefix
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (misspelt? remove it or check the documented keys)"
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


def validate_config(model: type[C], data: Any, *, source: str = "<mapping>", prefix: str = "") -> C:
    """Validate ``data`` into ``model``, raising :class:`ConfigError` that names the bad keys."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid config in {source}:\n{_format_errors(exc, prefix)}") from None


def load_config(model: type[C], path: str | Path, *, section: str | None = None) -> C:
    """Load ``path`` (optionally one top-level ``section`` of it) into ``model``."""
    data = load_yaml(path)
    if section is not None:
        if section not in data:
            raise ConfigError(f"{path}: missing section '{section}'")
        data = data[section]
    return validate_config(model, data, source=str(path), prefix=section or "")


def dump_config(config: BaseModel) -> dict[str, Any]:
    """The fully resolved config as plain data (for writing beside outputs and to the tracker)."""
    return config.model_dump(mode="json")


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` merged in: mappings merge key by key, anything else replaces.

    A mapping of ``over`` holding ``_delete_: true`` replaces the base mapping instead of
    merging into it (mmdetection's convention), e.g. a profile's own ``data.sources``.
    """
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and value.get("_delete_"):
            out[key] = {k: v for k, v in value.items() if k != "_delete_"}
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def with_overrides(config: C, overrides: dict[str, Any], *, source: str = "overrides") -> C:
    """A copy of ``config`` with ``overrides`` deep-merged in and validated again."""
    if not overrides:
        return config
    merged = deep_merge(config.model_dump(mode="json"), overrides)
    return validate_config(type(config), merged, source=source)


def config_digest(*parts: Any) -> str:
    """A short, stable digest of configs (models, mappings, plain values): the code version
    of a step that runs with them, so changing one key changes the digest."""

    def plain(obj: Any) -> Any:
        return dump_config(obj) if isinstance(obj, BaseModel) else obj

    text = json.dumps([plain(p) for p in parts], sort_keys=True, default=str)
    return hashlib.md5(text.encode()).hexdigest()[:12]
