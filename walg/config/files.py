"""Config files as WAL-G reads them (through viper): JSON, YAML or TOML by extension.

- ``--config FILE`` (anywhere on the command line), else WALG_CONFIG_PATH, else the first of
  ``$HOME/.walg.json``, ``.walg.toml``, ``.walg.yaml``, ``.walg.yml`` that exists (viper's
  order; its other extensions, ``.properties`` ... ``.ini``, are looked for too and refused
  below).
- The format is the extension's, compared without case: ``.json``, ``.yaml``/``.yml``
  (PyYAML), ``.toml`` (the standard library's tomllib). The module is imported only when
  such a file is read, so ``wal-push`` without a config file imports none of them.
- Keys are the setting names, in any case (viper lower-cases them). Values may be strings,
  numbers or booleans and become the text viper's GetString gives (``true`` -> "true",
  ``1500.0`` -> "1500"); a null is unset. A nested table becomes dotted names (viper's
  ``s3.prefix``), which no setting has: they are warned about as unknown.
- Where WAL-G only warns and goes on without the file (it cannot be parsed, or its
  extension is not one viper reads), walg stops with a ConfigError: the settings in the
  file would otherwise be dropped without notice. The environment wins over the file
  (viper's AutomaticEnv), name by name; that merge is :mod:`walg.config.loader`'s.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from walg.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["DEFAULT_NAMES", "find_default_config_file", "read_config_file"]

#: The extensions viper looks for after ``$HOME/.walg``, in its order (SupportedExts).
VIPER_EXTENSIONS = (
    "json", "toml", "yaml", "yml", "properties", "props", "prop", "hcl", "tfvars", "dotenv",
    "env", "ini",
)  # fmt: skip
DEFAULT_NAMES = tuple(".walg." + ext for ext in VIPER_EXTENSIONS)
_FORMATS = {"json": "JSON", "yaml": "YAML", "yml": "YAML", "toml": "TOML"}
#: What each format calls a mapping and a list.
_NOUNS = {"JSON": ("object", "array"), "YAML": ("mapping", "list"), "TOML": ("table", "array")}
_EXAMPLES = {
    "JSON": '{"WALG_S3_PREFIX": "s3://bucket/path"}',
    "YAML": "WALG_S3_PREFIX: s3://bucket/path",
    "TOML": 'WALG_S3_PREFIX = "s3://bucket/path"',
}


def find_default_config_file(environ: Mapping[str, str]) -> str | None:
    """The config file when ``--config`` is not given, as WAL-G finds it: WALG_CONFIG_PATH
    if set (it must then exist), else the first ``$HOME/.walg.<ext>`` that is a file in
    viper's order of extensions, else None."""
    named = environ.get("WALG_CONFIG_PATH", "").strip()
    if named:
        return named
    home = environ.get("HOME")
    if not home:
        return None
    for name in DEFAULT_NAMES:
        path = os.path.join(home, name)
        if os.path.isfile(path):
            return path
    return None


def read_config_file(path: str) -> dict[str, str]:
    """The settings in config file ``path``: names upper-cased, values as viper's strings."""
    kind = _format(path)
    text = _read(path)
    data = _parse(path, kind, text)
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} holds {_type(data, kind)}, not a {kind} {_NOUNS[kind][0]}",
            hint=_hint(kind),
        )
    values: dict[str, str] = {}
    _flatten(path, kind, "", data, values)
    return values


def _format(path: str) -> str:
    extension = os.path.splitext(path)[1][1:].lower()
    kind = _FORMATS.get(extension)
    if kind is not None:
        return kind
    if extension in VIPER_EXTENSIONS:
        what = f"a .{extension} file, which walg does not read"
    else:
        what = f"an unknown extension {extension!r}" if extension else "no extension"
    raise ConfigError(
        f"config file {path} has {what}: walg reads .json, .yaml, .yml and .toml files",
        hint="convert or rename it (WAL-G, too, chooses the format by the extension, and "
        "without one it ignores the file)",
    )


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as file:
            return file.read()
    except FileNotFoundError:
        raise ConfigError(
            f"config file {path} does not exist",
            hint="check the path given to --config (or in WALG_CONFIG_PATH)",
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text", hint=_hint("JSON")) from None
    except OSError as exc:
        raise ConfigError(
            f"cannot read config file {path}: {exc.strerror or exc}",
            hint="check the path given to --config (or in WALG_CONFIG_PATH) and its permissions",
        ) from None


def _hint(kind: str) -> str:
    return f"the file must hold one {kind} {_NOUNS[kind][0]} of settings, e.g. {_EXAMPLES[kind]}"


def _parse(path: str, kind: str, text: str) -> object:
    """The file's document, its modules imported only now (not on every wal-push)."""
    if kind == "JSON":
        import json

        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            where = f"line {exc.lineno}, column {exc.colno}"
            raise _invalid(path, kind, f"{exc.msg} ({where})") from None
    if kind == "TOML":
        import tomllib

        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise _invalid(path, kind, str(exc)) from None
    return _parse_yaml(path, text)


def _invalid(path: str, kind: str, why: str) -> ConfigError:
    return ConfigError(f"config file {path} is not valid {kind}: {why}", hint=_hint(kind))


def _parse_yaml(path: str, text: str) -> object:
    """YAML as WAL-G's yaml.v3 reads it (YAML 1.2's core schema): ``yes``/``on`` and dates
    stay text, numbers are numbers, a plain ``null``/``~``/nothing is unset. PyYAML's
    resolvers are YAML 1.1's, so scalars are composed as nodes and typed here."""
    import yaml  # type: ignore[import-untyped]  # PyYAML ships no type hints

    try:
        node = yaml.compose(text, Loader=yaml.BaseLoader)
    except yaml.YAMLError as exc:
        raise _invalid(path, "YAML", " ".join(str(exc).split())) from None
    return {} if node is None else _yaml_value(node)


def _yaml_value(node: object) -> object:
    import yaml

    if isinstance(node, yaml.MappingNode):
        return {str(_yaml_value(key)): _yaml_value(value) for key, value in node.value}
    if isinstance(node, yaml.SequenceNode):
        return [_yaml_value(item) for item in node.value]
    assert isinstance(node, yaml.ScalarNode)
    value: str = node.value
    if node.style is not None:  # quoted or a block: always text
        return value
    if value in ("", "~", "null", "Null", "NULL"):
        return None
    if value in ("true", "True", "TRUE", "false", "False", "FALSE"):
        return value.lower() == "true"
    return _core_number(value)


def _core_number(value: str) -> object:
    """A YAML 1.2 core-schema int or float as a number, anything else as the text."""
    import re  # PyYAML has loaded it already

    if re.fullmatch(r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+", value):
        return int(value, 8 if value.startswith("0o") else 16 if value.startswith("0x") else 10)
    if re.fullmatch(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?", value):
        return float(value)
    return value


def _flatten(path: str, kind: str, prefix: str, data: dict[object, object],
             into: dict[str, str]) -> None:
    """``data``'s values into ``into`` as viper's keys (nested tables dotted, upper-cased)."""
    for key, value in data.items():
        name = prefix + str(key).upper()
        if isinstance(value, dict):
            _flatten(path, kind, name + ".", value, into)
        elif value is not None:
            into[name] = _text(path, kind, name, value)


def _text(path: str, kind: str, name: str, value: object) -> str:
    """The text viper's GetString gives for a scalar (Go's cast.ToString)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 1e3 or 1500.0 means 1500
    if isinstance(value, str | int | float):
        return str(value)
    example = {"JSON": f'"{name}": "value"', "YAML": f'{name}: "value"'}.get(
        kind, f'{name} = "value"'
    )
    raise ConfigError(
        f"config file {path}: the value of {name} is {_type(value, kind)}",
        hint=f"use a string, number or boolean, e.g. {example}",
    )


def _type(value: object, kind: str) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict | list):
        noun = _NOUNS[kind][0 if isinstance(value, dict) else 1]
        return ("an " if noun[0] in "aeiou" else "a ") + noun
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str | int | float):
        return "a string" if isinstance(value, str) else "a number"
    return f"a {type(value).__name__}"  # TOML dates and times
