"""WAL-G's Go duration syntax (WALG_STOP_BACKUP_TIMEOUT) and how the loader reads it."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from walg.config import load
from walg.config.parse import parse_duration
from walg.errors import EX_USAGE, ConfigError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("500ms", 0.5),
        ("0", 0.0),
        ("+0", 0.0),
        ("-0", 0.0),
        ("0s", 0.0),
        (".5s", 0.5),
        ("1.s", 1.0),
        ("2h45m30.5s", 9930.5),
        ("1us", 1e-06),
        ("1\u00b5s", 1e-06),
        ("1\u03bcs", 1e-06),
        ("3ns", 3e-09),
        ("+10s", 10.0),
        (" 10s ", 10.0),
        ("1m1m", 120.0),
    ],
)
def test_valid_durations(text: str, seconds: float) -> None:
    """Go's time.ParseDuration forms read as seconds."""
    assert parse_duration("X", text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["", "5", "1.5", "1d", "s", ".s", "1h 30m", "abc", "1e3s", "5m-3s", "++1s", "0x10s",
             "1S", "1sec"]
)
def test_invalid_durations(text: str) -> None:
    """A number without a unit (other than 0), an unknown unit or stray text is refused."""
    with pytest.raises(ConfigError, match=r"^X=.* is not a duration") as info:
        parse_duration("X", text)
    assert "30s" in info.value.hint


def test_negative_durations_are_refused() -> None:
    """A negative timeout makes no sense: refused with the variable named."""
    with pytest.raises(ConfigError, match="X='-1s' is negative"):
        parse_duration("X", "-1s")


def test_stop_backup_timeout_is_read() -> None:
    """Unset means no limit (WAL-G's default); a value is read in seconds; a bad one is exit 2."""
    assert load({}).backup.stop_backup_timeout == 0.0
    assert load({"WALG_STOP_BACKUP_TIMEOUT": "1m30s"}).backup.stop_backup_timeout == 90.0
    with pytest.raises(ConfigError, match="WALG_STOP_BACKUP_TIMEOUT='90'") as info:
        load({"WALG_STOP_BACKUP_TIMEOUT": "90"})
    assert info.value.exit_code == EX_USAGE


def test_archive_check_is_on_by_default() -> None:
    """The stop-segment check is on unless WALG_ARCHIVE_CHECK says false."""
    assert load({}).backup.archive_check is True
    assert load({"WALG_ARCHIVE_CHECK": "false"}).backup.archive_check is False


_UNITS = {"ns": 1, "us": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


@given(
    st.lists(
        st.tuples(
            st.one_of(
                st.integers(0, 10**30).map(str),
                st.decimals(0, 10**6, places=4, allow_nan=False).map(str),
            ),
            st.sampled_from(sorted(_UNITS)),
        ),
        min_size=1,
        max_size=3,
    )
)
def test_whole_numbers_read_as_decimals_read_them(parts: list[tuple[str, str]]) -> None:
    """Durations of whole numbers (read without :mod:`decimal`) and with fractions come out
    exactly as summing them as decimals does."""
    text = "".join(number + unit for number, unit in parts)
    total = sum((Decimal(number) * _UNITS[unit] for number, unit in parts), Decimal(0))
    assert parse_duration("X", text) == float(total / 10**9)
