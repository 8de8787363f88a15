"""Reading the file: TOML, validation, one message line per problem naming file and key; and the config
as data safe to log."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    Secret,
    SecretBytes,
    SecretStr,
    ValidationError,
)
from pydantic_core import ErrorDetails

from edge.config.fields import MASK, STATE_DIRECTORY, _join, _key_path
from edge.config.root import CrossCheckError, GatewayConfig
from edge.errors import ConfigError

# --- loading -----------------------------------------------------------------------------------------------


def load_config(path: Path) -> GatewayConfig:
    """Read, parse and validate the config file. Raises ConfigError listing every problem, one per line.

    `gateway.data_dir` comes back absolute. Precedence: $STATE_DIRECTORY (its first entry if systemd gives
    several, colon-separated), then `data_dir` from the file (relative to the file's directory), then the
    default /var/lib/menwei.
    """
    data = _read_toml(path)
    try:
        config = GatewayConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError("\n".join(f"{path}: {line}" for line in _problems(err, data))) from None
    data_dir = _data_dir(config.gateway.data_dir, path)
    return config.model_copy(update={"gateway": config.gateway.model_copy(update={"data_dir": data_dir})})


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config file: {err.strerror or type(err).__name__}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (bad byte at offset {err.start})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: {_toml_error(str(err))}") from None


_TOML_AT = re.compile(r"(?P<msg>.*) \(at line (?P<line>\d+), column (?P<col>\d+)\)", re.DOTALL)


def _toml_error(message: str) -> str:
    if m := _TOML_AT.fullmatch(message):
        return f"line {m['line']}, column {m['col']}: invalid TOML: {m['msg']}"
    return f"invalid TOML: {message.replace('(at end of document)', 'at end of file')}"


def _data_dir(configured: Path, config_path: Path) -> Path:
    state = os.environ.get(STATE_DIRECTORY, "").split(":", 1)[0]
    if state:
        return Path(state).absolute()
    if configured.is_absolute():
        return configured
    return (config_path.parent / configured).resolve()


def _problems(err: ValidationError, data: object) -> list[str]:
    lines: list[str] = []
    for detail in err.errors(include_url=False):
        cross = detail.get("ctx", {}).get("error")
        if isinstance(cross, CrossCheckError):
            lines.extend(f"{_key_path(loc)}: {msg}" for loc, msg in cross.problems)
            continue
        key, msg = _describe(detail, data)
        lines.append(f"{key}: {msg}" if key else msg)
    return lines


def _describe(detail: ErrorDetails, data: object) -> tuple[str, str]:
    """Turn one pydantic error into (dotted key, message) in the file's own terms."""
    loc = detail["loc"]
    key = _key_path(loc, data)
    ctx = detail.get("ctx", {})
    match detail["type"]:
        case "extra_forbidden":
            return key, "unknown key"
        case "missing":
            return key, "missing required key"
        case "union_tag_invalid":
            return _join(key, "type"), f"unknown type {ctx['tag']!r}; expected one of: {ctx['expected_tags']}"
        case "union_tag_not_found" if isinstance(detail["input"], Mapping):
            return _join(key, "type"), "missing required key"
        case "model_type" | "model_attributes_type" | "dict_type" | "union_tag_not_found":
            return key, "should be a table"
        case "path_type":
            return key, "should be a path (a string)"
        case "list_type" if len(loc) == 1:
            return key, f"should be an array of tables, written [[{key}]]"
    return key, detail["msg"].removeprefix("Value error, ")


# --- logging the config ------------------------------------------------------------------------------------


def redacted_dict(model: BaseModel) -> dict[str, Any]:
    """The model as JSON-able data, safe to log: every SecretStr / SecretBytes / Secret value is masked.

    It walks the fields itself rather than trusting serializers, so a custom serializer cannot reveal one.
    """
    return {name: _redact(getattr(model, name)) for name in type(model).model_fields}


def _redact(value: object) -> Any:
    if isinstance(value, SecretStr | SecretBytes | Secret):
        return MASK
    if isinstance(value, BaseModel):
        return redacted_dict(value)
    if isinstance(value, Enum):
        return _redact(value.value)
    if isinstance(value, Mapping):
        return {str(k): _redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
