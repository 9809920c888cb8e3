"""Configuration comes from OMNIPOST_* variables and .env; logs go to stderr, redacted."""

import logging
from pathlib import Path

import pytest

from omnipost.config import Settings
from omnipost.logging import RedactSecrets, configure


def test_settings_read_dotenv_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(f"OMNIPOST_DATA_DIR={tmp_path / 'd'}\nOMNIPOST_API_KEY=op_test_from_dotenv\n", encoding="utf-8")
    monkeypatch.setenv("OMNIPOST_LOG_LEVEL", "DEBUG")
    s = Settings(_env_file=env_file)  # type: ignore[call-arg]  # pydantic-settings keyword
    assert s.data_dir == tmp_path / "d"
    assert s.log_level == "DEBUG"
    assert s.api_key is not None and s.api_key.get_secret_value() == "op_test_from_dotenv"
    assert "op_test_from_dotenv" not in repr(s)


def test_log_lines_never_carry_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    configure("INFO")
    log = logging.getLogger("omnipost.test")
    log.info("calling upstream with Authorization: Bearer eyJsecret.token and api_key=op_live_abc123 password=hunter2")
    captured = capsys.readouterr()
    assert captured.out == ""  # stdout is the MCP wire
    assert "eyJsecret" not in captured.err and "op_live_abc123" not in captured.err and "hunter2" not in captured.err
    assert "[redacted]" in captured.err


def test_redaction_filter_leaves_ordinary_messages_alone() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "published %d posts", (3,), None)
    assert RedactSecrets().filter(record) and record.getMessage() == "published 3 posts"
