"""WALG_DAEMON_WAL_UPLOAD_TIMEOUT (WAL-G: a limit on each wal-push its daemon serves) is
accepted with a note saying what walg does not do; WAL-G's default value is silent."""

from __future__ import annotations

from walg.config import load
from walg.config.unsupported import warnings


def test_a_limit_other_than_wal_g_default_is_noted() -> None:
    """30s is noted with the feature walg lacks; 60s (WAL-G's default) changes nothing."""
    noted = load({"WALG_DAEMON_WAL_UPLOAD_TIMEOUT": "30s"}).noted
    assert noted == ("WALG_DAEMON_WAL_UPLOAD_TIMEOUT",)
    assert any("time limit on each wal-push" in line for line in warnings((), noted))
    assert load({"WALG_DAEMON_WAL_UPLOAD_TIMEOUT": "60s"}).noted == ()
