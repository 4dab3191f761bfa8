"""WAL-G's ``backup-fetch --restore-spec FILE`` read into walg's tablespace mapping, and
every malformed spec refused with exit 2 (issue 17)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from walg.commands.backup_fetch import restore_spec_remap
from walg.errors import ConfigError


def spec_file(tmp_path: Path, doc: object) -> str:
    path = tmp_path / "spec.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return str(path)


def test_spec_maps_each_tablespace(tmp_path: Path) -> None:
    """WAL-G's shape (a sentinel's Spec with new locations) gives OID -> new location."""
    target = tmp_path / "data"
    doc = {"base_prefix": f"{target}/", "tablespaces": ["16384", "16390"],
           "16384": {"loc": "/new/one/", "link": "pg_tblspc/16384"},
           "16390": {"loc": "/new/two", "link": "pg_tblspc/16390"}}  # fmt: skip
    assert restore_spec_remap(spec_file(tmp_path, doc), str(target)) == {
        "16384": "/new/one/", "16390": "/new/two",
    }  # fmt: skip
    empty = {"base_prefix": str(target)}
    assert restore_spec_remap(spec_file(tmp_path, empty), str(target)) == {}


@pytest.mark.parametrize(
    ("doc", "words"),
    [
        ("{not json", "not JSON"),
        ([], "base_prefix"),
        ({"tablespaces": []}, "base_prefix"),
        ({"base_prefix": "DATA", "tablespaces": "16384"}, "not a list"),
        ({"base_prefix": "DATA", "tablespaces": ["16384"]}, "no entry"),
        ({"base_prefix": "DATA", "tablespaces": ["1"], "1": {"link": "pg_tblspc/1"}}, "no entry"),
        ({"base_prefix": "DATA", "tablespaces": ["1"], "1": {"loc": "rel"}}, "absolute"),
        ({"base_prefix": "DATA", "tablespaces": ["1"], "1": {"loc": "/a", "link": "x/1"}},
         "link"),
    ],
)  # fmt: skip
def test_bad_spec_is_a_usage_error(tmp_path: Path, doc: object, words: str) -> None:
    """Unreadable JSON, a missing base_prefix, a tablespace without its entry,
    a relative location or a link outside pg_tblspc: ConfigError (exit 2) saying which."""
    target = tmp_path / "data"
    if isinstance(doc, dict) and doc.get("base_prefix") == "DATA":
        doc = {**doc, "base_prefix": str(target)}
    with pytest.raises(ConfigError, match=words) as caught:
        restore_spec_remap(spec_file(tmp_path, doc), str(target))
    assert caught.value.exit_code == 2


def test_foreign_base_prefix_restores_into_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                              ) -> None:
    """WAL-G restores into the DIR argument whatever base_prefix says (base_prefix only
    places its links): the spec still maps each tablespace, with one warning naming both."""
    import sys

    from walg import logs

    logs.configure("INFO", stream=sys.stderr, json=True)
    target = tmp_path / "data"
    doc = {"base_prefix": "/var/lib/postgresql/16/main", "tablespaces": ["16384"],
           "16384": {"loc": "/new/one", "link": "pg_tblspc/16384"}}  # fmt: skip
    assert restore_spec_remap(spec_file(tmp_path, doc), str(target)) == {"16384": "/new/one"}
    err = capsys.readouterr().err
    warned = [line for line in err.splitlines() if "base_prefix" in line]
    assert len(warned) == 1 and "/var/lib/postgresql/16/main" in warned[0]
    assert f"restoring into {target}" in warned[0]
    same = {"base_prefix": f"{target}/", "tablespaces": []}
    restore_spec_remap(spec_file(tmp_path, same), str(target))
    assert "base_prefix" not in capsys.readouterr().err


def test_missing_file(tmp_path: Path) -> None:
    """A spec file that cannot be read is a usage error naming it."""
    with pytest.raises(ConfigError, match="cannot read"):
        restore_spec_remap(str(tmp_path / "nope.json"), str(tmp_path / "data"))
