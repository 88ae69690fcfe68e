"""The channel conformance kit fails each deliberately broken channel connector and passes the sound one.

The kit runs as a partner runs it: ``pytest`` in a subprocess on a module of ``channel_conformance`` classes
(loaded through the kit's ``pytest11`` entry point)."""

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
    "DeliversTwice": ("test_delivery_is_idempotent_under_six_retries", "exactly once"),
    "TimeoutIsRejected": ("test_timeouts_and_5xx_are_retryable_failures", "retryable=True"),
    "SkipsAfterAFailedPull": ("test_a_failed_pull_never_skips_an_order", "same cursor"),
    "TrustsAnyCallback": ("test_a_bad_signature_is_refused", "BadCallback"),
    "NewMessageIdEachTime": (
        "test_a_genuine_callback_parses_with_one_message_id_on_every_redelivery",
        "same message_id",
    ),
    "LogsSecretOnBadCallback": ("test_secrets_never_reach_logs_or_results_on_any_path", "'signing_secret'"),
    "BlocksTheEventLoop": ("test_calls_never_block_the_event_loop", "blocked the event loop"),
}

CLASSES = ["SoundSandbox", *EXPECTED_FAILURES]
TEST_MODULE = (
    "import pytest\n"
    "from plugins.builtin.sandbox_channel import SandboxConfig\n"
    "from plugins.testing import channel_conformance\n"
    "from tests.plugins import broken_channels as b\n"
    "from tests.plugins.sandbox_simulator import SandboxSimulator\n\n"
    + "".join(
        f"class Test{name}(channel_conformance(b.{name}(), SandboxSimulator)):\n"
        "    @pytest.fixture\n"
        "    def connector_config(self):\n"
        "        return SandboxConfig(signing_secret='kit-secret', page_size=4)\n\n\n"
        for name in CLASSES
    )
)


def run_kit(tmp_path: Path) -> dict[str, dict[str, str | None]]:
    """Run the kit on every connector; ``{class: {test: failure message or None}}``."""
    (tmp_path / "test_broken_channels.py").write_text(TEST_MODULE, encoding="utf-8")
    report = tmp_path / "report.xml"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # A connector that blocks makes every push slow: run only the loop check on it.
    select = "not BlocksTheEventLoop or event_loop"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "test_broken_channels.py",
            "-q",
            "-p",
            "no:cacheprovider",
            "-k",
            select,
            f"--junitxml={report}",
        ],
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
    return run_kit(tmp_path_factory.mktemp("channel-kit"))


def test_the_sound_connector_passes_the_whole_kit(outcomes):
    sound = outcomes["SoundSandbox"]
    assert len(sound) >= 20
    assert {t: m for t, m in sound.items() if m is not None} == {}


@pytest.mark.parametrize("broken", sorted(EXPECTED_FAILURES))
def test_the_kit_fails_each_broken_channel(outcomes, broken):
    test_name, words = EXPECTED_FAILURES[broken]
    message = outcomes[broken][test_name]
    assert message is not None, f"the kit passed {broken} on {test_name}"
    assert words in message, message
