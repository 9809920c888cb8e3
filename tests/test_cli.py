"""The command line never shows a traceback (issue 11 item 6, in part): bad input is one line on stderr and exit
code 2, `--version` answers, and a reader that closes the pipe ends the command quietly."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from omnipost import __version__


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
    (["rules", "--platform", "mastodon"], "", "validation_failed: Unknown platform 'mastodon'."),
    (["keys", "revoke"], "", "keys revoke needs the key id"),
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
