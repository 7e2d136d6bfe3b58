"""Settings: defaults < YAML file (``CYNODE_CONFIG``) < environment.

Each setting is a dataclass field with metadata naming its parser, its
upstream environment aliases (names the reference implementation, CyNodeAI, reads)
and its dotted YAML aliases (the node start-up YAML,
docs/wire_contract.md#node-startup-config, e.g. ``orchestrator.url``).
``CYNODE_<FIELD>`` always wins over an upstream alias. Bad values fail at
start with a message naming the key, never silently fall back.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from cynode_core.logs import parse_log_format


class ConfigError(ValueError):
    """A setting is missing, unknown or malformed; the message names the key."""


_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: Any) -> float:
    """Seconds from a number or a Go duration string (``15m``, ``168h``, ``1m30s``)."""
    if isinstance(value, bool):
        raise ValueError("expected a duration")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip()
        try:
            seconds = float(text)
        except ValueError:
            parts = _DURATION_RE.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise ValueError(f"not a duration: {text!r} (use seconds or e.g. 15m, 1h30m)") from None
            seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


def parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"not a boolean: {value!r} (use true or false)")


def parse_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected an integer")
    return int(str(value).strip())


def parse_positive_int(value: Any) -> int:
    number = parse_int(value)
    if number < 1:
        raise ValueError("must be at least 1")
    return number


def parse_str(value: Any) -> str:
    if isinstance(value, (dict, list)):
        raise ValueError("expected a string")
    return str(value)


def parse_optional_str(value: Any) -> str | None:
    text = parse_str(value).strip()
    return text or None


def parse_path(value: Any) -> Path:
    return Path(parse_str(value)).expanduser()


def parse_optional_path(value: Any) -> Path | None:
    text = parse_optional_str(value)
    return Path(text).expanduser() if text else None


def parse_list(value: Any) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [v.strip() for v in str(value).split(",") if v.strip()]


def parse_listen(value: Any) -> str:
    """``host:port``; a bare ``:port`` listens on every address (docs/wire_contract.md#services)."""
    text = parse_str(value).strip()
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not a listen address: {text!r} (use host:port)")
    return f"{host or '0.0.0.0'}:{int(port)}"


def parse_megabytes(value: Any) -> int:
    return parse_positive_int(value) * 1024 * 1024


def setting(
    default: Any = dataclasses.MISSING,
    *,
    parse: Callable[[Any], Any] = parse_str,
    env: tuple[str, ...] = (),
    yaml_keys: tuple[str, ...] = (),
    alias_parse: Callable[[Any], Any] | None = None,
    secret: bool = False,
    help: str = "",
) -> Any:
    """A settings field: ``env`` are upstream aliases (``alias_parse`` when their unit differs)."""
    meta = {
        "parse": parse,
        "env": env,
        "yaml_keys": yaml_keys,
        "alias_parse": alias_parse,
        "secret": secret,
        "help": help,
    }
    if callable(default):
        return dataclasses.field(default_factory=default, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


# Fields that both the orchestrator's and the node's settings have, defined once.


def home_setting(help: str) -> Any:
    """``home``, the state directory: ``~/.local/share/cynode`` unless set."""
    return setting(default_home, parse=parse_path, help=help)


def secret_setting(*, env: tuple[str, ...] = (), help: str) -> Any:
    """An optional secret (key, password, URL with credentials): ``None`` when unset, never shown."""
    return setting(None, parse=parse_optional_str, env=env, secret=True, help=help)


def log_level_setting(*, yaml_keys: tuple[str, ...] = ()) -> Any:
    return setting("INFO", yaml_keys=yaml_keys, help="logging level")


def log_format_setting(*, yaml_keys: tuple[str, ...] = ()) -> Any:
    return setting("text", parse=parse_log_format, yaml_keys=yaml_keys, help="log lines as text or JSON (text, json)")


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def read_yaml_file(path: Path) -> dict[str, Any]:
    """The flattened mapping of a YAML settings file."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, Mapping):
        raise ConfigError(f"config file {path} must hold a mapping of settings")
    return _flatten(data)


T = TypeVar("T")

# Keys a YAML file may hold for the other settings class (one file serves both).
_SHARED_FILE_KEYS: set[str] = set()


def load_settings(
    cls: type[T],
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    config_file: Path | None = None,
) -> T:
    """Build ``cls`` from defaults, the YAML file, the environment, then ``overrides``.

    Unknown YAML keys (for neither the orchestrator nor the node) are an error.
    """
    environ = os.environ if environ is None else environ
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}

    file_path = config_file or (Path(environ["CYNODE_CONFIG"]) if environ.get("CYNODE_CONFIG") else None)
    if file_path is not None:
        flat = read_yaml_file(file_path)
        # The node start-up YAML (docs/wire_contract.md#node-startup-config)
        # carries a required top-level ``version`` (the file format, 1); it is no setting.
        file_version = flat.pop("version", 1)
        if file_version != 1 or isinstance(file_version, bool):
            raise ConfigError(f"unsupported 'version' {file_version!r} in {file_path} (expected 1)")
        by_yaml_key = {}
        for f in fields.values():
            by_yaml_key[f.name] = f.name
            for alias in f.metadata.get("yaml_keys", ()):
                by_yaml_key[alias] = f.name
        known_elsewhere = _all_yaml_keys()
        for key, raw in flat.items():
            name = by_yaml_key.get(key)
            if name is None:
                if key in known_elsewhere or key.startswith(IGNORED_YAML_PREFIXES):
                    continue
                raise ConfigError(f"unknown setting {key!r} in {file_path}")
            values[name] = raw
            sources[name] = f"{file_path}: {key}"

    for f in fields.values():
        own = f"CYNODE_{f.name.upper()}"
        if environ.get(own, "") != "":
            values[f.name] = environ[own]
            sources[f.name] = own
            continue
        for alias in f.metadata.get("env", ()):
            if environ.get(alias, "") != "":
                alias_parse = f.metadata.get("alias_parse")
                raw = environ[alias]
                values[f.name] = _AliasValue(raw, alias_parse) if alias_parse else raw
                sources[f.name] = alias
                break

    for name, raw in (overrides or {}).items():
        if name not in fields:
            raise ConfigError(f"unknown setting {name!r}")
        values[name] = raw
        sources[name] = "override"

    parsed: dict[str, Any] = {}
    for name, raw in values.items():
        f = fields[name]
        parse = f.metadata.get("parse", parse_str)
        try:
            if isinstance(raw, _AliasValue):
                parsed[name] = raw.parse()
            elif raw is None:
                parsed[name] = None
            else:
                parsed[name] = parse(raw)
        except (TypeError, ValueError) as exc:
            shown = "<hidden>" if f.metadata.get("secret") else repr(raw)
            raise ConfigError(f"bad value for {sources[name]} = {shown}: {exc}") from exc
    try:
        settings = cls(**parsed)
    except TypeError as exc:
        raise ConfigError(str(exc)) from exc
    validate = getattr(settings, "validate", None)
    if validate is not None:
        validate()
    return settings


class _AliasValue:
    def __init__(self, raw: str, parse: Callable[[Any], Any]):
        self.raw = raw
        self._parse = parse

    def parse(self) -> Any:
        return self._parse(self.raw)


_SETTINGS_CLASSES: list[type] = []
# Settings classes of this installation, found by entry point so that one
# YAML file can configure every process without the node importing the
# orchestrator (or the other way round).
SETTINGS_ENTRY_POINTS = "cynode.settings"


def register_settings_class(cls: type[T]) -> type[T]:
    """Note a settings class so one YAML file may hold keys of each."""
    if cls not in _SETTINGS_CLASSES:
        _SETTINGS_CLASSES.append(cls)
    return cls


def _load_registered_classes() -> None:
    for _name, cls in settings_classes():
        register_settings_class(cls)


# Sections of the node start-up YAML (docs/wire_contract.md#node-startup-config)
# that configure later phases; accepted so such a file loads, and not used.
IGNORED_YAML_PREFIXES = ("updates.",)


def settings_classes() -> list[tuple[str, type]]:
    """``(entry point name, class)`` of every settings class installed, in entry-point order."""
    from importlib.metadata import entry_points

    found = []
    for entry in entry_points(group=SETTINGS_ENTRY_POINTS):
        try:
            found.append((entry.name, entry.load()))
        except ImportError:
            continue
    return found


def _all_yaml_keys() -> set[str]:
    _load_registered_classes()
    keys: set[str] = set()
    for cls in _SETTINGS_CLASSES:
        for f in dataclasses.fields(cls):
            keys.add(f.name)
            keys.update(f.metadata.get("yaml_keys", ()))
    return keys


def default_home() -> Path:
    return Path("~/.local/share/cynode").expanduser()


def describe(cls: type) -> list[tuple[str, str, Any, str]]:
    """``(env name, aliases, default, help)`` rows for docs and ``cynode config``."""
    rows = []
    for f in dataclasses.fields(cls):
        default: Any
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            produced = f.default_factory()  # type: ignore[misc]
            default = produced if isinstance(produced, dict) else "(computed)"
        else:
            default = "(required)"
        rows.append(
            (f"CYNODE_{f.name.upper()}", ", ".join(f.metadata.get("env", ())), default, f.metadata.get("help", ""))
        )
    return rows


def markdown_reference(classes: list[tuple[str, type]]) -> str:
    """The configuration tables of the README, generated from the settings classes."""
    out: list[str] = []
    for title, cls in classes:
        out += [f"### {title}", "", "| variable | upstream alias | default | meaning |", "|---|---|---|---|"]
        for env, aliases, default, text in describe(cls):
            alias = ", ".join(f"`{a}`" for a in aliases.split(", ")) if aliases else ""
            if env == "CYNODE_HOME":
                shown = "`~/.local/share/cynode`"
            elif default is None or default == "(computed)":
                shown = "unset" if default is None else "see meaning"
            elif isinstance(default, dict):
                shown = "`" + ",".join(f"{k}={v}" for k, v in default.items()) + "`"
            else:
                shown = f"`{default}`"
            out.append(f"| `{env}` | {alias} | {shown} | {text} |")
        out.append("")
    return "\n".join(out)
