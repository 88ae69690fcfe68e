"""Settings: the base URL follows the host and port unless set; logs: JSON lines keep Chinese as UTF-8."""

from __future__ import annotations

import json
import sys
from typing import Any

import structlog
from click.testing import CliRunner

from core.logging import configure_logging
from core.settings import derived_base_url, load_settings


def test_base_url_follows_the_port_and_host_when_not_set() -> None:
    assert load_settings(env={}).base_url == "http://127.0.0.1:8000"
    assert load_settings(env={"KAQUAN_PORT": "8123"}).base_url == "http://127.0.0.1:8123"
    s = load_settings(env={"KAQUAN_HOST": "kaquan.lan", "KAQUAN_PORT": "9000"})
    assert s.base_url == "http://kaquan.lan:9000"
    # a wildcard bind address is not something a browser can open
    assert load_settings(env={"KAQUAN_HOST": "0.0.0.0", "KAQUAN_PORT": "8123"}).base_url == "http://127.0.0.1:8123"
    assert derived_base_url("::1", 8000) == "http://[::1]:8000"


def test_an_explicit_base_url_wins_over_the_port() -> None:
    env = {"KAQUAN_PORT": "8123", "KAQUAN_BASE_URL": "https://cards.example.com"}
    assert load_settings(env=env).base_url == "https://cards.example.com"
    assert load_settings(env={"KAQUAN_PORT": "8123"}, base_url="https://x.example").base_url == "https://x.example"


def test_serve_port_option_reaches_the_app_settings(monkeypatch: Any) -> None:
    """``kaquan serve --port 8123``: the app factory (which reads the environment) derives :8123 URLs."""
    import uvicorn

    from core.cli import main

    seen: dict[str, Any] = {}

    def fake_run(app: str, **kwargs: Any) -> None:
        seen.update(kwargs, base_url=load_settings().base_url)

    monkeypatch.setattr(uvicorn, "run", fake_run)
    for name in ("KAQUAN_PORT", "KAQUAN_HOST", "KAQUAN_BASE_URL", "KAQUAN_CONFIG"):
        monkeypatch.setenv(name, "")  # recorded, so the test restores whatever was there
        monkeypatch.delenv(name)
    result = CliRunner().invoke(main, ["serve", "--port", "8123"])
    assert result.exit_code == 0, result.output
    assert seen["port"] == 8123 and seen["host"] == "127.0.0.1"
    assert seen["base_url"] == "http://127.0.0.1:8123"


def test_json_logs_write_chinese_as_utf8(capsys: Any) -> None:
    configure_logging("INFO", json=True)
    try:
        structlog.get_logger("kaquan.test").info("product_created", name="星巴克中杯卡券")
        line = capsys.readouterr().err.strip().splitlines()[-1]
    finally:
        configure_logging("WARNING", json=False)
    assert "星巴克中杯卡券" in line and "\\u" not in line
    assert json.loads(line)["name"] == "星巴克中杯卡券"


def test_logs_switch_a_non_utf8_stderr_to_utf8(monkeypatch: Any) -> None:
    """Under ``LANG=C`` stderr may be ASCII: a Chinese log line must still be written, as UTF-8."""
    import io

    raw = io.BytesIO()
    ascii_err = io.TextIOWrapper(raw, encoding="ascii", line_buffering=True)
    monkeypatch.setattr(sys, "stderr", ascii_err)
    configure_logging("INFO", json=True)
    try:
        structlog.get_logger("kaquan.test").info("redeemed", store="上海店")
        ascii_err.flush()
    finally:
        monkeypatch.undo()
        configure_logging("WARNING", json=False)
    assert "上海店" in raw.getvalue().decode("utf-8")
