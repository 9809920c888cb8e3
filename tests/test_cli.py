"""The command line never shows a traceback (issue 11 item 6, in part): bad input is one line on stderr and exit
code 2, `--version` answers, and a reader that closes the pipe ends the command quietly."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from omnipost import __version__

ROOT = Path(__file__).resolve().parents[1]


def omnipost(*args: str, stdin: str = "", tmp: Path) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"OMNIPOST_DATA_DIR": str(tmp / "data")}
    return subprocess.run([sys.executable, "-m", "omnipost", *args], input=stdin, capture_output=True, text=True,
                          timeout=60, env=env, cwd=tmp)


def test_version(tmp_path: Path) -> None:
    done = omnipost("--version", tmp=tmp_path)
    assert (done.returncode, done.stdout.strip()) == (0, f"omnipost {__version__}")


@pytest.mark.parametrize("args, stdin, says", [
    (["validate", "-"], "", "stdin is empty"),
    (["validate", "-"], "{bad", "stdin is not JSON"),
    (["validate", "-"], "[1, 2]", "a post request is a JSON object, not a list"),
    (["validate", "missing.json"], "", "cannot read missing.json"),
    (["rules", "--platform", "myspace"], "", "validation_failed: Unknown platform 'myspace'."),
    (["keys", "revoke"], "", "keys revoke needs the key id"),
    (["keys", "revoke", "key_nope"], "", "not_found: no API key 'key_nope'"),
    (["keys", "create", "--profile", "nobody"], "", "not_found: no profile 'nobody'"),
])
def test_bad_input_is_one_line_and_exit_code_2(tmp_path: Path, args: list[str], stdin: str, says: str) -> None:
    done = omnipost(*args, stdin=stdin, tmp=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and says in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    env = os.environ | {"OMNIPOST_DATA_DIR": str(tmp_path / "data")}
    process = subprocess.Popen([sys.executable, "-m", "omnipost", "rules"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=env, cwd=tmp_path)
    assert process.stdout is not None and process.stderr is not None
    first = process.stdout.readline()  # `omnipost rules | head -1`
    process.stdout.close()
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == 0 and first and "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr


def test_validate_and_rules_work_offline_and_create_nothing(tmp_path: Path) -> None:
    """With no database in the data directory, `validate` checks against an in-memory store and `rules` reads the
    catalogue: neither creates the data directory, a database, a key or the sandbox's store."""
    request = json.dumps({"text": "hello", "targets": [{"platform": "bluesky"}, {"platform": "twitter", "text": "x" * 281}]})
    valid = omnipost("validate", "-", stdin=json.dumps({"text": "hello", "targets": [{"platform": "bluesky"}]}), tmp=tmp_path)
    invalid = omnipost("validate", "-", stdin=request, tmp=tmp_path)
    rules = omnipost("rules", "--platform", "bluesky", tmp=tmp_path)
    assert (valid.returncode, invalid.returncode, rules.returncode) == (0, 1, 0), (valid.stderr, invalid.stderr, rules.stderr)
    assert json.loads(valid.stdout)["valid"] is True
    assert [r["valid"] for r in json.loads(invalid.stdout)["results"]] == [True, False]
    assert "bluesky.text.max_graphemes" in rules.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # not even the data directory


def test_validate_uses_the_accounts_of_an_existing_data_directory(tmp_path: Path) -> None:
    """Once the data directory has a database, validate sees its accounts (an unknown id is refused with not_found)."""
    assert omnipost("keys", "create", tmp=tmp_path).returncode == 0  # creates the database
    done = omnipost("validate", "-", stdin=json.dumps({"text": "hi", "targets": [{"accountId": "acc_nope"}]}), tmp=tmp_path)
    assert done.returncode in (1, 2) and "Traceback" not in done.stderr
    assert "acc_nope" in done.stdout


def _json_of(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_every_command_that_prints_data_has_json(tmp_path: Path) -> None:
    rules = _json_of(omnipost("rules", "--json", "--platform", "twitter", tmp=tmp_path))
    ids = {r["id"] for r in rules}
    assert "twitter.first_comment.non_empty" in ids and not any(i.startswith("bluesky.") for i in ids), ids
    created = _json_of(omnipost("keys", "create", "--json", "--mode", "test", "--name", "ci", tmp=tmp_path))
    assert created["key"].startswith("op_test_") and created["name"] == "ci" and created["profileName"] == "default"
    listed = _json_of(omnipost("keys", "list", "--json", tmp=tmp_path))
    assert [k["id"] for k in listed] == [created["id"]] and created["key"] not in json.dumps(listed)
    revoked = _json_of(omnipost("keys", "revoke", created["id"], "--json", tmp=tmp_path))
    assert revoked["id"] == created["id"] and revoked["revoked"] is True
    posts = _json_of(omnipost("sandbox", "posts", "--json", tmp=tmp_path))
    assert posts == {"count": 0, "posts": []}
    manifest = _json_of(omnipost("manifest", "--check", "--json", "--path", str(ROOT / "manifest.json"), tmp=tmp_path))
    assert manifest == {"matches": True, "drift": []}


def test_the_demo_publishes_to_three_sandbox_accounts_and_can_run_again(tmp_path: Path) -> None:
    """`omnipost demo` (what scripts/demo.sh runs): validate, publish to three sandbox accounts, report as JSON."""
    for run in (1, 2):
        report = _json_of(omnipost("demo", "--json", tmp=tmp_path))
        assert [r["valid"] for r in report["validation"]["results"]] == [True, True, True]
        assert report["batch"]["status"] == "published" and len(report["batch"]["results"]) == 3
        assert report["sandboxReceived"] == 6 * run  # each post and its first comment
