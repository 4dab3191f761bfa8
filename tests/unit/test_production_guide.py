"""README's "Running walg in production" cannot rot: every `wal-g ...` line in it parses with
walg's own grammar, every WALG_/AWS_/GOOGLE_ name is a setting walg reads, its example config
file loads cleanly, its IAM policy allows every S3 call walg makes, and its extras exist."""

from __future__ import annotations

import configparser
import json
import re
import shlex
from contextlib import redirect_stderr, redirect_stdout
from io import StringIO
from pathlib import Path

import pytest
from botocore import xform_name
from botocore.session import get_session

from walg.cli_parser import COMMANDS, build_parser
from walg.config import load
from walg.config.registry import KNOWN_NAMES
from walg.config.unsupported import OUTSIDE_REGISTRY

ROOT = Path(__file__).resolve().parents[2]
#: Read by boto3 itself from the environment, not by walg's settings (the guide says so).
READ_BY_BOTO3 = {"AWS_CA_BUNDLE"}
#: The IAM action each boto3 call of walg/storage/s3*.py needs.
S3_ACTIONS = {
    "put_object": "s3:PutObject", "create_multipart_upload": "s3:PutObject",
    "upload_part": "s3:PutObject", "complete_multipart_upload": "s3:PutObject",
    "abort_multipart_upload": "s3:AbortMultipartUpload", "get_object": "s3:GetObject",
    "head_object": "s3:GetObject", "list_objects_v2": "s3:ListBucket",
    "delete_objects": "s3:DeleteObject", "get_bucket_location": "s3:GetBucketLocation",
    "list_object_versions": "s3:ListBucketVersions", "delete_object": "s3:DeleteObjectVersion",
}  # fmt: skip


def section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"<!-- production:start -->(.*?)<!-- production:end -->", text, re.S)
    assert found, "README.md has no production section between its markers"
    return found.group(1)


def code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of each fenced block."""
    return re.findall(r"^ *```(\w*)\n(.*?)^ *```", text, re.S | re.M)


RUNS_WALG = re.compile(r"(?:^|[\s'\"=/(])wal-g\s")


def command_lines() -> list[str]:
    """Every place the section runs walg, each as ``wal-g ARGS...``: code-block lines and
    inline code holding ``wal-g`` (every one of them in a line), and inline code starting
    with a command name and more words. A quoted ``'... wal-g ARGS'`` (archive_command)
    ends at its closing quote."""
    text = section()
    sources = [line for _lang, body in code_blocks(text)
               for line in body.replace("\\\n", " ").splitlines()]  # fmt: skip
    prose = re.sub(r"^ *```.*?^ *```", "", text, flags=re.S | re.M)
    spans = [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", prose)]
    names = {command.name for command in COMMANDS}
    sources += spans
    sources += [f"wal-g {span}" for span in spans if span.split()[0] in names and " " in span]
    found = []
    for line in sources:
        if line.startswith("ln "):
            continue  # the symlink to wal-g, not a run
        for run in RUNS_WALG.finditer(line):
            rest = line[run.end() :]
            if re.search(r"'[^'\s]*$", line[: run.start() + 1]):
                rest = rest.split("'")[0]
            found.append(f"wal-g {rest}".strip())
    return found


def walg_words(line: str) -> list[str]:
    """The arguments of a ``wal-g ...`` line, to the first pipe, redirection, `&&` or `)`."""
    lexer = shlex.shlex(line.removeprefix("wal-g"), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    words: list[str] = []
    for word in lexer:
        if word and set(word) <= set("|&;<>()"):
            break
        words.append(word)
    return words


def test_the_section_is_there_and_runs_walg() -> None:
    """The section exists and names walg commands (the extraction found them)."""
    lines = command_lines()
    assert len(lines) >= 20, lines
    runs = [walg_words(line) for line in lines]
    assert any(words[-2:] == ["wal-push", "%p"] for words in runs)  # archive_command
    assert any(words[-3:] == ["wal-fetch", "%f", "%p"] for words in runs)  # restore_command


@pytest.mark.parametrize("line", command_lines())
def test_command_line_parses(line: str) -> None:
    """Each `wal-g ...` of the guide is accepted by walg's parser (--help/--version exit 0)."""
    words = walg_words(line)
    if words in ([], ["$@"]):
        return  # `wal-g` named in prose, or the wrapper's exec "$@"
    out, err = StringIO(), StringIO()
    try:
        with redirect_stdout(out), redirect_stderr(err):
            build_parser().parse_args(words)
    except SystemExit as done:
        assert done.code == 0, f"{words}: {err.getvalue()}"


def test_setting_names_are_real() -> None:
    """Every WALG_/WALE_/AWS_/GOOGLE_ name in the guide is one walg reads."""
    names = set(re.findall(r"\b(?:WALG|WALE|AWS|GOOGLE)_[A-Z0-9_]*[A-Z0-9]\b", section()))
    assert names
    assert names - KNOWN_NAMES - OUTSIDE_REGISTRY - READ_BY_BOTO3 == set()


def test_example_config_file_loads(tmp_path: Path) -> None:
    """The example walg.json loads with no unknown name and selects S3 storage."""
    configs = [body for lang, body in code_blocks(section())
               if lang == "json" and '"WALG_' in body]  # fmt: skip
    assert len(configs) == 1
    path = tmp_path / "walg.json"
    path.write_text(configs[0], encoding="utf-8")
    settings = load({}, str(path))
    assert settings.unknown == ()
    assert settings.require_storage().kind == "s3"


def test_iam_policy_allows_every_s3_call() -> None:
    """The policy (or the sentence on versioned buckets) names the action of every boto3
    call in walg/storage/s3*.py; a new call must be mapped here and added to the guide."""
    operations = {xform_name(op) for op in get_session().get_service_model("s3").operation_names}
    calls = set()
    for path in (ROOT / "walg" / "storage").glob("s3*.py"):
        source = path.read_text(encoding="utf-8")
        named = set(re.findall(r"\.([a-z0-9_]+)\(", source))
        named |= set(re.findall(r"get_paginator\(\"([a-z0-9_]+)\"\)", source))
        calls |= named & operations
    assert calls, "no boto3 call found: has walg/storage/s3.py moved?"
    assert calls <= set(S3_ACTIONS), f"map these calls to IAM actions: {calls - set(S3_ACTIONS)}"
    policies = [json.loads(body) for lang, body in code_blocks(section())
                if lang == "json" and '"Statement"' in body]  # fmt: skip
    assert len(policies) == 1
    allowed = {a for st in policies[0]["Statement"] for a in st["Action"]}
    text = section()
    for call in calls:
        action = S3_ACTIONS[call]
        assert action in allowed or f"`{action}`" in text, f"{call} needs {action}"


def test_extras_named_exist() -> None:
    """Each `walg[EXTRA]` the guide names is an extra of setup.cfg."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    named = set(re.findall(r"walg\[(\w+)\]", section()))
    assert {"s3", "gcs", "all"} <= named
    assert named <= set(cfg["options.extras_require"])
