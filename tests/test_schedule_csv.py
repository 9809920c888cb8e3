"""`omnipost schedule --csv FILE` (issue 14): one post per row through schedule_posts; a bad row is reported at its line
and the good rows are kept (unless --atomic); run in-process against a data directory with a sandbox account."""

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from omnipost.__main__ import main
from omnipost.app import build_server
from omnipost.config import Settings

HEADER = "scheduledAt,accounts,text,campaign,thread,skipDuplicateCheck\n"


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OMNIPOST_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("OMNIPOST_LOG_LEVEL", "WARNING")
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    return tmp_path / "data"


def settings(data: Path) -> Settings:
    return Settings(data_dir=data, scheduler_enabled=False, _env_file=None)  # type: ignore[call-arg]


def connect(data: Path) -> str:
    async def run() -> str:
        async with Client(build_server(settings(data))) as client:
            result = await client.call_tool("connect_account", {"platform": "sandbox", "emulates": "bluesky", "handle": "csv"})
            return str(result.structured_content["id"])  # type: ignore[index]
    return anyio.run(run)


def count(data: Path) -> int:
    async def run() -> int:
        async with Client(build_server(settings(data))) as client:
            result = await client.call_tool("list_posts", {"limit": 200})
            return len(result.structured_content["posts"])  # type: ignore[index]
    return anyio.run(run)


def schedule(tmp: Path, text: str, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, Any, str]:
    (tmp / "week.csv").write_text(text, encoding="utf-8")
    with pytest.raises(SystemExit) as done:
        main(["schedule", "--csv", str(tmp / "week.csv"), "--json", *args])
    out = capsys.readouterr()
    return int(done.value.code or 0), json.loads(out.out) if out.out.strip() else None, out.err


def rows(account: str) -> str:
    return (HEADER
            + f"2030-01-07T09:00:00Z,{account},Monday post,week-2,,\n"
            + f'2030-01-08T09:00:00Z,{account},"Tuesday post,\nover two lines",week-2,"part two || part three",no\n'
            + f"2030-01-09T09:00:00Z,{account},Wednesday post,week-2,,maybe\n"  # line 5: a bad true/false
            + f"2030-01-10T09:00:00Z,acc_nobody,Thursday post,week-2,,\n"  # line 6: the server refuses it
            + f"2030-01-11T09:00:00Z,{account},Friday post,,,\n")


def test_a_csv_with_a_malformed_row_keeps_the_good_rows_and_names_the_bad_lines(
        tmp_path: Path, data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    account = connect(data)
    code, out, _ = schedule(tmp_path, rows(account), "--campaign", "default-camp", capsys=capsys)
    assert code == 1 and out["stored"] is True
    by_line = {r["line"]: r for r in out["rows"]}
    assert sorted(by_line) == [2, 3, 5, 6, 7]  # the quoted cell of line 3 spans line 4
    assert [by_line[n]["status"] for n in (2, 3, 7)] == ["queued"] * 3
    assert by_line[5]["status"] == "invalid" and "skipDuplicateCheck" in by_line[5]["error"]["message"]
    assert (by_line[6]["error"]["code"], by_line[6]["at"]) == ("not_found", "line 6: targets[0].accountId")
    assert by_line[5]["at"] == "line 5"
    assert count(data) == 3


def test_atomic_stores_nothing_when_a_row_is_bad_and_a_clean_file_stores_everything(
        tmp_path: Path, data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    account = connect(data)
    code, out, _ = schedule(tmp_path, rows(account), "--atomic", capsys=capsys)
    assert code == 1 and out["stored"] is False and {r["line"] for r in out["rows"] if r["status"] == "invalid"} == {5, 6}
    assert count(data) == 0
    clean = HEADER + f"2030-01-07T09:00:00Z,{account},Only post,,,\n"
    code, out, _ = schedule(tmp_path, clean, "--atomic", "--idempotency-key", "csv-1", capsys=capsys)
    assert code == 0 and out["rows"][0]["status"] == "queued"
    code, again, _ = schedule(tmp_path, clean, "--atomic", "--idempotency-key", "csv-1", capsys=capsys)
    assert code == 0 and again["rows"][0]["batchId"] == out["rows"][0]["batchId"] and count(data) == 1


def test_a_file_that_is_not_a_post_list_is_one_line_and_exit_code_2(tmp_path: Path, data: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = schedule(tmp_path, "when,who\n1,2\n", capsys=capsys)
    assert code == 2 and out is None and "line 1: unknown column 'when'" in err and err.count("\n") == 1
    code, out, err = schedule(tmp_path, "text\nhello\n", capsys=capsys)
    assert code == 2 and "scheduledAt is required" in err
