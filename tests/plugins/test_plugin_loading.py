"""Plugin load failures name the plugin and its switch; unknown kinds are refused; every plugin is listed.

Broken plugins are real installed distributions: a ``*.dist-info`` with a ``kaquan`` entry point is
written to a temporary directory on ``sys.path``, exactly as ``pip install`` would leave it.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner

from core.cli import main
from core.plugin_host import PluginError, inspect_plugins, load_plugins
from plugins import ConnectorInfo, DeliveryResult, hookimpl
from plugins.builtin.log_notifier import LogNotifierConfig

ROOT = Path(__file__).resolve().parents[2]

RAISES_ON_IMPORT = 'raise ImportError("No module named \'acme_sdk\'")\n'

UNKNOWN_KIND = '''
import msgspec
from plugins import ConnectorInfo, DeliveryResult, hookimpl


class Config(msgspec.Struct):
    """This connector takes no settings."""


class Courier:
    info = ConnectorInfo(id="courier", kind="carrier_pigeon", display_name="Courier", config=Config)

    async def send(self, ctx, message):
        return DeliveryResult(status="sent")


@hookimpl
def kaquan_connectors():
    return [Courier()]
'''

HOOK_RAISES = '''
from plugins import hookimpl


@hookimpl
def kaquan_connectors():
    raise RuntimeError("missing ACME_REGION")
'''


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str, str], Path]]:
    """Install a one-module plugin distribution (entry point ``name``) into a directory on ``sys.path``."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    modules: list[str] = []

    def install(name: str, source: str) -> Path:
        module = f"kq_test_{name}"
        (site / f"{module}.py").write_text(source, encoding="utf-8")
        info = site / f"kaquan_test_{name}-1.2.3.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: kaquan-test-{name}\nVersion: 1.2.3\n", encoding="utf-8"
        )
        (info / "entry_points.txt").write_text(f"[kaquan]\n{name} = {module}\n", encoding="utf-8")
        modules.append(module)
        importlib.invalidate_caches()
        return site

    yield install
    for module in modules:
        sys.modules.pop(module, None)


def test_a_plugin_that_fails_to_import_stops_the_load_naming_it_and_its_switch(installed):
    installed("acme_broken", RAISES_ON_IMPORT)
    with pytest.raises(PluginError) as caught:
        load_plugins()
    message = str(caught.value)
    assert "'acme_broken'" in message and "kaquan-test-acme_broken 1.2.3" in message
    assert "ImportError: No module named 'acme_sdk'" in message
    assert "KAQUAN_DISABLED_PLUGINS=acme_broken" in message


def test_the_switch_named_in_the_message_lets_kaquan_start(installed):
    installed("acme_broken", RAISES_ON_IMPORT)
    host = load_plugins({"acme_broken"})
    assert "log_notifier" in host.connectors()
    (row,) = [r for r in host.report() if r.name == "acme_broken"]
    assert (row.enabled, row.reason, row.distribution, row.version) == (False, "blocklisted", "kaquan-test-acme_broken", "1.2.3")


def test_an_unknown_connector_kind_is_refused_at_load(installed):
    installed("courier", UNKNOWN_KIND)
    with pytest.raises(PluginError) as caught:
        load_plugins()
    message = str(caught.value)
    assert "'courier'" in message and "unknown kind 'carrier_pigeon'" in message
    assert "notifier, sales_channel, supplier" in message and "KAQUAN_DISABLED_PLUGINS=courier" in message


def test_a_hook_that_raises_is_reported_with_its_plugin(installed):
    installed("needs_region", HOOK_RAISES)
    with pytest.raises(PluginError, match=r"'needs_region' failed in kaquan_connectors\(\): RuntimeError: missing"):
        load_plugins()


class _Clone:
    info = ConnectorInfo(id="log_notifier", kind="notifier", display_name="Clone", config=LogNotifierConfig)

    async def send(self, ctx: object, message: object) -> DeliveryResult:
        return DeliveryResult(status="sent")


class _ClonePlugin:
    @hookimpl
    def kaquan_connectors(self) -> list[object]:
        return [_Clone()]


def test_a_duplicate_connector_id_names_both_plugins():
    with pytest.raises(PluginError) as caught:
        load_plugins(extra=[("clone", _ClonePlugin())])
    assert "'clone'" in str(caught.value) and "'log_notifier'" in str(caught.value)
    assert "KAQUAN_DISABLED_PLUGINS=clone" in str(caught.value)


def test_inspection_lists_every_plugin_with_its_state_and_never_raises(installed):
    installed("acme_broken", RAISES_ON_IMPORT)
    installed("courier", UNKNOWN_KIND)
    rows = {r.name: r for r in inspect_plugins({"smtp_notifier", "acme_sms"})}
    assert rows["acme_broken"].reason == "failed" and "ImportError" in rows["acme_broken"].detail
    assert rows["courier"].reason == "failed" and "unknown kind" in rows["courier"].detail
    assert rows["smtp_notifier"].reason == "blocklisted" and rows["smtp_notifier"].version
    assert rows["log_notifier"].enabled and [c.id for c in rows["log_notifier"].connectors] == ["log_notifier"]
    (acme,) = rows["acme_notifier"].connectors
    assert rows["acme_notifier"].enabled and (acme.enabled, acme.reason, acme.kind) == (False, "blocklisted", "notifier")
    assert acme.detail == "KAQUAN_DISABLED_PLUGINS=acme_sms"


def _cli(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, args, env={"COLUMNS": "200", **(env or {})})
    return result.exit_code, result.output


def test_cli_plugins_list_shows_connectors_kind_version_and_state():
    code, out = _cli(["plugins", "list"], {"KAQUAN_DISABLED_PLUGINS": "smtp_notifier,acme_sms", "LANG": "C"})
    assert code == 0, out
    lines = {line.split("│")[1].strip(): line for line in out.splitlines() if line.startswith("│")}
    assert "sms_gateway" in lines["sms_gateway_notifier"] and "notifier" in lines["sms_gateway_notifier"]
    assert "0.1.0" in lines["log_notifier"] and "enabled" in lines["log_notifier"]
    assert "disabled: blocklisted by KAQUAN_DISABLED_PLUGINS=smtp_notifier" in lines["smtp_notifier"]
    assert "acme_sms" in lines["acme_notifier"] and "KAQUAN_DISABLED_PLUGINS=acme_sms" in lines["acme_notifier"]


def test_cli_plugins_list_json_and_chinese():
    code, out = _cli(["plugins", "list", "--json"])
    assert code == 0
    rows = msgspec.json.decode(out)
    assert {r["name"] for r in rows} >= {"log_notifier", "smtp_notifier", "sms_gateway_notifier", "acme_notifier"}
    code, out = _cli(["plugins", "list"], {"KAQUAN_DISABLED_PLUGINS": "smtp_notifier", "LANG": "zh_CN.UTF-8"})
    assert code == 0 and "已停用" in out and "已启用" in out


def test_cli_plugins_list_reports_a_broken_plugin_and_exits_1(installed):
    installed("acme_broken", RAISES_ON_IMPORT)
    code, out = _cli(["plugins", "list"], {"LANG": "C"})
    assert code == 1
    assert "failed to load" in out and "ImportError: No module named 'acme_sdk'" in out
    assert "kaquan will not start until these plugins are fixed or disabled: KAQUAN_DISABLED_PLUGINS=acme_broken" in out


def test_serve_refuses_to_start_with_a_broken_plugin_and_says_how_to_disable_it(installed, tmp_path):
    site = installed("acme_broken", RAISES_ON_IMPORT)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]),
        "KAQUAN_DATA_DIR": str(tmp_path / "data"),
        "KAQUAN_DATABASE_URL": "",
        "KAQUAN_REDIS_URL": "",
        "KAQUAN_PORT": "1",  # never reached: start-up stops before binding
    }
    proc = subprocess.run(
        [sys.executable, "-m", "core.cli", "serve"], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 1, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("kaquan cannot start: plugin 'acme_broken'"), proc.stderr
    assert "KAQUAN_DISABLED_PLUGINS=acme_broken" in last
    assert "Traceback" not in proc.stderr


def test_worker_refuses_to_start_with_a_broken_plugin_in_one_line(installed, tmp_path):
    site = installed("acme_broken", RAISES_ON_IMPORT)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]),
        "KAQUAN_DATA_DIR": str(tmp_path / "data"),
        "KAQUAN_DATABASE_URL": "",
        "KAQUAN_REDIS_URL": "redis://127.0.0.1:1/0",  # never reached: start-up stops at the plugins
        "KAQUAN_MASTER_KEY": "mk-test:" + "a" * 43,
    }
    proc = subprocess.run(
        [sys.executable, "-m", "core.cli", "worker"], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 1, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("kaquan worker cannot start: plugin 'acme_broken'"), proc.stderr
    assert "KAQUAN_DISABLED_PLUGINS=acme_broken" in last
    assert "Traceback" not in proc.stderr


class _HalfChannel:
    """Declares delivery and callbacks but implements neither."""

    info = ConnectorInfo(
        id="half_channel",
        kind="sales_channel",
        display_name="Half",
        config=LogNotifierConfig,
        capabilities=frozenset({"delivery", "callbacks"}),
    )

    async def check(self, ctx: object) -> object:
        return None


class _HalfChannelPlugin:
    @hookimpl
    def kaquan_connectors(self) -> list[object]:
        return [_HalfChannel()]


def test_a_sales_channel_without_the_methods_of_its_capabilities_is_refused():
    with pytest.raises(PluginError) as caught:
        load_plugins(extra=[("half", _HalfChannelPlugin())])
    message = str(caught.value)
    assert "'half_channel'" in message and "callback_reply, deliver_codes, parse_callback" in message
    assert "KAQUAN_DISABLED_PLUGINS=half" in message
