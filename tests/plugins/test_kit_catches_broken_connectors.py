"""The conformance kit fails each deliberately broken connector, and passes the correct control.

The kit runs as a partner runs it: ``pytest`` in a subprocess on a test module of one-line
``notifier_conformance`` classes (the kit is loaded through its ``pytest11`` entry point).
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: broken connector -> the kit test that must fail, and words its failure message must contain.
EXPECTED_FAILURES: dict[str, tuple[str, str]] = {
    "ReportsServerErrorAsDelivered": (
        "test_server_errors_and_network_failures_are_retryable_failures",
        "reported as delivered",
    ),
    "ServerErrorIsPermanent": ("test_server_errors_and_network_failures_are_retryable_failures", "retryable=True"),
    "DropsIdempotencyKey": ("test_retry_sends_the_same_idempotency_key", "message.reference"),
    "BlocksTheEventLoop": ("test_send_never_blocks_the_event_loop", "blocked the event loop"),
    "LogsApiKeyOnError": ("test_secrets_never_reach_logs_or_results_on_any_path", "'api_key'"),
    "LogsApiKeyWithStdlibLogging": ("test_secrets_never_reach_logs_or_results_on_any_path", "'api_key'"),
}

TEST_MODULE = "from plugins.testing import notifier_conformance\nfrom tests.plugins import broken_connectors as b\n\n" + "".join(
    f"Test{name} = notifier_conformance(b.{name}())\n" for name in ["GoodSms", *EXPECTED_FAILURES]
)


def run_kit(tmp_path: Path) -> dict[str, dict[str, str | None]]:
    """Run the kit on every broken connector; ``{class: {test: failure message or None}}``."""
    (tmp_path / "test_broken.py").write_text(TEST_MODULE, encoding="utf-8")
    report = tmp_path / "report.xml"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # A connector that blocks makes every send slow: run only the loop check on it.
    select = "not BlocksTheEventLoop or event_loop"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "test_broken.py", "-q", "-p", "no:cacheprovider",
         "-k", select, f"--junitxml={report}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert report.exists(), proc.stdout + proc.stderr
    outcomes: dict[str, dict[str, str | None]] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        cls = case.get("classname", "").rpartition(".")[2].removeprefix("Test")
        failure = case.find("failure")
        if case.find("error") is not None:
            failure = case.find("error")
        outcomes.setdefault(cls, {})[case.get("name", "")] = (
            None if failure is None else (failure.get("message", "") + (failure.text or ""))
        )
    return outcomes


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str | None]]:
    return run_kit(tmp_path_factory.mktemp("kit"))


def test_the_correct_connector_passes_the_whole_kit(outcomes):
    good = outcomes["GoodSms"]
    assert len(good) >= 14
    assert {t: m for t, m in good.items() if m is not None} == {}


@pytest.mark.parametrize("broken", sorted(EXPECTED_FAILURES))
def test_the_kit_fails_each_broken_connector(outcomes, broken):
    test_name, words = EXPECTED_FAILURES[broken]
    message = outcomes[broken][test_name]
    assert message is not None, f"the kit passed {broken} on {test_name}"
    assert words in message, message
