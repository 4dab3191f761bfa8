"""Pure parsers for setting values: no I/O, no environment, only strings in and values out.

Every parser takes the name of the variable the value came from, so that its
:class:`~walg.errors.ConfigError` can name the variable, quote the bad value and give a
hint with an example of a good one. Secrets are never passed through these parsers, so
quoting the value is safe.

Byte sizes follow WAL-G (which uses viper's ``GetSizeInBytes``): every unit is a power
of 1024, whatever its spelling, so ``K``, ``KB`` and ``KiB`` all mean 1024 bytes.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

from walg.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "MAX_BYTES",
    "format_size",
    "parse_bool",
    "parse_choice",
    "parse_duration",
    "parse_file_prefix",
    "parse_int",
    "parse_json_or_text",
    "parse_log_level",
    "parse_rate",
    "parse_size",
    "parse_url_prefix",
]

MAX_BYTES: Final = 2**63 - 1  # what fits a signed 64-bit integer, as in WAL-G

_TRUE: Final = frozenset({"true", "t", "1", "yes", "on"})
_FALSE: Final = frozenset({"false", "f", "0", "no", "off"})

_UNITS: Final[dict[str, int]] = {
    "": 1,
    "b": 1,
    **{f"{p}{s}": 1024 ** (i + 1) for i, p in enumerate("kmgtp") for s in ("", "b", "ib")},
}
_FORMAT_UNITS: Final = (("PiB", 1024**5), ("TiB", 1024**4), ("GiB", 1024**3),
                        ("MiB", 1024**2), ("KiB", 1024))
_SIZE_RE: Final = re.compile(r"(?P<num>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>[A-Za-z]*)")
_INT_RE: Final = re.compile(r"[+-]?\d+")
_DURATION_UNITS: Final[dict[str, int]] = {  # nanoseconds, as Go's time.ParseDuration
    "ns": 1, "us": 1_000, "\u00b5s": 1_000, "\u03bcs": 1_000, "ms": 1_000_000,
    "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9,
}
_DURATION_PART_RE: Final = re.compile(r"(\d+\.?\d*|\.\d+)([^\d.]*)")
DURATION_HINT: Final = (
    "use a Go duration: a number with a unit (ns, us, ms, s, m, h), e.g. 30s, 5m, 1h30m, "
    "1.5h or 500ms; 0 means no limit"
)
_BUCKET_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_SCHEME_RE: Final = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*):(?P<rest>.*)", re.DOTALL)

SIZE_HINT: Final = (
    "use a byte count or a number with a unit (K, M, G, T; KB = KiB = 1024 bytes), "
    "e.g. 1073741823, 512K, 64MB, 1GiB or 1.5G"
)
LOG_LEVELS: Final[dict[str, str]] = {
    "NORMAL": "INFO",
    "DEVEL": "DEBUG",
    "ERROR": "ERROR",
    "DEBUG": "DEBUG",
    "INFO": "INFO",
    "WARNING": "WARNING",
    "WARN": "WARNING",
}


def _bad(name: str, value: str, what: str, hint: str) -> ConfigError:
    return ConfigError(f"{name}={value!r} is not {what}", hint=hint)


def parse_bool(name: str, value: str) -> bool:
    """``true/false``, ``1/0``, ``yes/no``, ``on/off`` (and Go's ``t/f``), any case."""
    word = value.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise _bad(name, value, "a boolean", f"use true or false, e.g. {name}=true")


def parse_int(
    name: str, value: str, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """A decimal integer, optionally bounded (bounds inclusive)."""
    text = value.strip()
    if not _INT_RE.fullmatch(text):
        example = minimum if minimum is not None and minimum > 0 else 16
        raise _bad(name, value, "an integer", f"use a whole number, e.g. {name}={example}")
    number = int(text)
    if minimum is not None and number < minimum:
        raise ConfigError(
            f"{name}={value!r} is too small: it must be at least {minimum}",
            hint=f"e.g. {name}={max(minimum, 1)}",
        )
    if maximum is not None and number > maximum:
        raise ConfigError(
            f"{name}={value!r} is too large: it must be at most {maximum}",
            hint=f"e.g. {name}={maximum}",
        )
    return number


def parse_size(name: str, value: str) -> int:
    """A byte count: ``1048576``, ``512K``, ``64MB``, ``1GiB``, ``1.5G`` (1024 multiples).

    A fractional result is rounded down to whole bytes.
    """
    match = _SIZE_RE.fullmatch(value.strip())
    multiplier = _UNITS.get(match.group("unit").lower()) if match else None
    if match is None or multiplier is None:
        raise _bad(name, value, "a size", SIZE_HINT)
    number = match.group("num")
    if multiplier == 1 and "." in number:
        raise _bad(name, value, "a whole number of bytes", SIZE_HINT)
    if "." in number:
        from decimal import Decimal  # only for fractions: not on every wal-push

        size = int(Decimal(number) * multiplier)
    else:
        size = int(number) * multiplier
    if size > MAX_BYTES:
        raise ConfigError(f"{name}={value!r} is too large", hint=SIZE_HINT)
    return size


def parse_rate(name: str, value: str) -> int:
    """A positive rate in bytes per second; a size, optionally followed by ``/s``."""
    text = value.strip()
    if text.lower().endswith("/s"):
        text = text[:-2]
    hint = "use bytes per second, e.g. 104857600, 100MB or 100MB/s; unset it for no limit"
    try:
        rate = parse_size(name, text)
    except ConfigError:
        raise _bad(name, value, "a rate", hint) from None
    if rate < 1:
        raise ConfigError(f"{name}={value!r} would stop all transfers", hint=hint)
    return rate


def parse_duration(name: str, value: str) -> float:
    """A Go duration (``time.ParseDuration``, as WAL-G reads it) in seconds: ``30s``, ``5m``,
    ``1h30m``, ``1.5h``, ``500ms``; a bare ``0`` is zero. Every other number needs a unit.
    Negative durations are refused: walg's durations are timeouts and intervals."""
    text = value.strip()
    sign, body = (text[0], text[1:]) if text[:1] in ("+", "-") else ("", text)
    if body == "0":
        return 0.0
    parts, position = [], 0
    for match in _DURATION_PART_RE.finditer(body):
        unit = _DURATION_UNITS.get(match.group(2))
        if match.start() != position or unit is None:
            break
        parts.append((match.group(1), unit))
        position = match.end()
    if not body or position != len(body):
        raise _bad(name, value, "a duration", DURATION_HINT)
    if sign == "-" and any(number.strip("0.") for number, _ in parts):
        raise ConfigError(f"{name}={value!r} is negative", hint=DURATION_HINT)
    return _seconds(parts)


def _seconds(parts: list[tuple[str, int]]) -> float:
    """The seconds in ``(number, nanoseconds per unit)`` parts, exactly as decimals add
    them; whole numbers (almost every setting) without loading :mod:`decimal`."""
    if not any("." in number for number, _ in parts):
        nanoseconds = sum(int(number) * unit for number, unit in parts)
        if nanoseconds < 10**28:  # a decimal context's 28 digits hold it exactly
            return nanoseconds / 10**9
    from decimal import Decimal

    total = sum((Decimal(number) * unit for number, unit in parts), Decimal(0))
    return float(total / 10**9)


def format_size(size: int) -> str:
    """The shortest exact spelling of ``size`` that :func:`parse_size` reads back."""
    if size < 0:
        raise ValueError(f"a size cannot be negative: {size}")
    for suffix, multiplier in _FORMAT_UNITS:
        if size >= multiplier and size % multiplier == 0:
            return f"{size // multiplier}{suffix}"
    return str(size)


def parse_choice(name: str, value: str, choices: Sequence[str]) -> str:
    """One of ``choices``, compared case-insensitively; returns the spelling in ``choices``."""
    wanted = value.strip().lower()
    for choice in choices:
        if choice.lower() == wanted:
            return choice
    listed = ", ".join(choices)
    raise ConfigError(
        f"{name}={value!r} is not supported",
        hint=f"use one of: {listed} (e.g. {name}={choices[0]})",
    )


def parse_log_level(name: str, value: str) -> str:
    """WAL-G's NORMAL, DEVEL, ERROR or a stdlib name; returns the stdlib level name."""
    try:
        return LOG_LEVELS[value.strip().upper()]
    except KeyError:
        listed = ", ".join(LOG_LEVELS)
        raise ConfigError(
            f"{name}={value!r} is not a log level",
            hint=f"use one of: {listed} (e.g. {name}=DEVEL for debug output with tracebacks)",
        ) from None


def parse_json_or_text(value: str) -> object:
    """The JSON value ``value`` spells, or ``value`` itself when it is not JSON."""
    import json  # only for WALG_SENTINEL_USER_DATA: not on every wal-push

    try:
        parsed: object = json.loads(value)
    except ValueError:
        return value
    return parsed


def parse_url_prefix(name: str, value: str, scheme: str) -> tuple[str, str]:
    """Split ``scheme://bucket/path`` into ``(bucket, path)``; the path has no outer slashes."""
    example = f"{scheme}://my-bucket/walg"
    hint = f"use the form {scheme}://bucket/path, e.g. {name}={example}"
    text = value.strip()
    if any(c.isspace() or c in "?#" for c in text):
        raise _bad(name, value, f"a {scheme}:// URL (no spaces, '?' or '#')", hint)
    match = _SCHEME_RE.fullmatch(text)
    if match is None or match.group("scheme").lower() != scheme:
        got = f"'{match.group('scheme')}:'" if match else "no scheme"
        raise ConfigError(
            f"{name}={value!r} must start with {scheme}:// (found {got})", hint=hint
        )
    rest = match.group("rest")
    if not rest.startswith("//"):
        raise _bad(name, value, f"a {scheme}:// URL: two slashes must follow '{scheme}:'", hint)
    bucket, _, path = rest[2:].partition("/")
    if not bucket:
        raise _bad(name, value, f"a {scheme}:// URL: the bucket name is missing", hint)
    if not _BUCKET_RE.fullmatch(bucket):
        raise ConfigError(
            f"{name}={value!r} has an invalid bucket name {bucket!r}",
            hint=hint + "; put a custom endpoint in AWS_ENDPOINT, not in the prefix",
        )
    return bucket, path.strip("/")


def parse_file_prefix(name: str, value: str) -> str:
    """An absolute local directory; WAL-E's ``file://localhost/path`` form is accepted too.

    A relative path (``backups``, ``./x``, ``~/x``: ``~`` is not expanded, as in WAL-G) is
    refused: it would be resolved against the current directory, which for archive_command
    is PGDATA, so the archive would land inside the data directory it is meant to protect.
    """
    text = value.strip()
    hint = f"use a directory path, e.g. {name}=/var/backups/walg"
    if text.startswith("file://localhost/"):
        text = text[len("file://localhost") :]
    elif "://" in text:
        raise _bad(name, value, "a local directory path", hint)
    if not text.startswith("/"):
        raise ConfigError(
            f"{name}={value!r} is not an absolute path: it would be resolved against the "
            "current directory (PGDATA, for archive_command)",
            hint=f"use an absolute directory path, e.g. {name}=/var/backups/walg"
            + ("; '~' is not expanded: write the home directory out" if "~" in text else ""),
        )
    if len(text) > 1:
        text = text.rstrip("/") or "/"
    return text
