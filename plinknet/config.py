"""Config dataclasses checked by type and range, wherever the values come from.

Options reach a config from the command line, from a YAML file (``--config``) or from a
notebook's ``parameters`` cell. YAML is loose: PyYAML reads ``lr: 1e-3`` as the string
"1e-3" (YAML 1.1 wants a dot in a float) and ``epochs: "ten"`` as a string. Every config
therefore passes through :func:`coerce_fields`, which turns each value into its field's type
or raises one :class:`ConfigError` line naming the option, before any work starts.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """An option has the wrong type or an out-of-range value; the message names it."""


def option_name(field: str) -> str:
    """``"samples_per_tile"`` -> ``"samples_per_tile (--samples-per-tile)"``: both spellings."""
    return f"{field} (--{field.replace('_', '-')})"


def _coerce(value: Any, hint: Any, name: str) -> Any:
    """``value`` as type ``hint`` (int, float, bool, str, X | None, tuple[int, ...])."""
    args = typing.get_args(hint)
    if type(None) in args:  # Optional[X]
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "")):
            return None
        (hint,) = [a for a in args if a is not type(None)]
        args = typing.get_args(hint)
    elif isinstance(hint, types.UnionType):
        raise TypeError(f"unsupported field type {hint} for {name}")
    origin = typing.get_origin(hint)
    if origin is tuple:
        if isinstance(value, (int, str)) and not isinstance(value, bool):
            value = [value]  # `pyramid_bins: 6` in YAML, a single number
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{option_name(name)}: expected a list of numbers, got {value!r}")
        item = args[0]
        return tuple(_coerce(v, item, name) for v in value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.strip().lower() in ("true", "yes", "on", "1")
        raise ConfigError(f"{option_name(name)}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool):
            raise ConfigError(f"{option_name(name)}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise ConfigError(f"{option_name(name)}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, bool):
            raise ConfigError(f"{option_name(name)}: expected a number, got {value!r}")
        try:
            number = float(value.strip() if isinstance(value, str) else value)
        except (TypeError, ValueError):
            raise ConfigError(f"{option_name(name)}: expected a number, got {value!r}") from None
        if not math.isfinite(number):
            raise ConfigError(f"{option_name(name)}: expected a finite number, got {value!r}")
        return number
    if hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{option_name(name)}: expected text, got {value!r}")
    raise TypeError(f"unsupported field type {hint} for {name}")


def coerce_fields(config: Any) -> None:
    """Convert every field of the dataclass instance ``config`` to its annotated type, in place.

    Raises:
        ConfigError: a value that cannot be read as its field's type; the message names the
            option as in YAML and on the command line.
    """
    hints = typing.get_type_hints(type(config))
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        setattr(config, field.name, _coerce(value, hints[field.name], field.name))


def check(condition: bool, field: str, requirement: str, value: Any) -> None:
    """Raise a :class:`ConfigError` naming ``field`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(f"{option_name(field)} must be {requirement}, got {value!r}")


def read_yaml_mapping(path: str | Path) -> dict:
    """The mapping of options in a YAML file; clear errors for a missing file, bad YAML or a non-mapping.

    Raises:
        FileNotFoundError: no such file.
        ConfigError: invalid YAML (with the line) or a top level that is not ``option: value``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise ConfigError(f"config file {path} is not valid YAML{where}: {problem}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a mapping of `option: value` lines, "
                          f"not a {type(values).__name__}")  # fmt: skip
    return values


def from_mapping(cls, values: dict) -> Any:
    """Build the dataclass ``cls`` from a mapping; unknown keys are one error naming them all."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown}; known: {sorted(names)}")
    return cls(**values)
