"""The sales-channel walkthrough of docs/partners.md works exactly as printed, and is examples/partner_channel.

Its files are extracted from the guide, installed in a throw-away virtualenv (as the Quick start is, see
``test_quickstart``) and tested there with the command the guide prints: the channel kit must pass.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from plugins.testing import ChannelConformance
from tests.plugins.test_quickstart import DOC, QuickStart, throwaway_venv

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "partner_channel"
HEADING = "## A sales channel, start to finish"
#: Kit tests for capabilities the Pebble Mall does not declare (third-party codes, redemption sync, statements).
NOT_DECLARED = 3


@pytest.fixture(scope="module")
def walkthrough() -> QuickStart:
    return QuickStart(DOC.read_text(encoding="utf-8"), HEADING)


def test_the_walkthrough_prints_every_file_and_they_are_the_example_package(walkthrough):
    assert walkthrough.tree == ["pyproject.toml", "src/pebble_mall/__init__.py", "tests/test_conformance.py"]
    assert sorted(walkthrough.files) == walkthrough.tree
    assert walkthrough.commands == ["pip install -e .", "pytest"]
    for path, text in walkthrough.files.items():
        assert (EXAMPLE / path).read_text(encoding="utf-8") == text, (
            f"{path} differs from examples/partner_channel"
        )


def test_the_walkthrough_package_installs_and_passes_the_channel_kit(walkthrough, tmp_path):
    package = tmp_path / "pebble-mall"
    for path, text in walkthrough.files.items():
        target = package / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    venv = throwaway_venv(tmp_path / "venv")
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PYTEST", "PIP_", "VIRTUAL_ENV"))
    }
    env |= {
        "PATH": f"{venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}",
        "VIRTUAL_ENV": str(venv),
        "PIP_NO_INDEX": "1",
        "PIP_NO_BUILD_ISOLATION": "0",  # pip reads this as "--no-build-isolation"
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    output = ""
    for command in walkthrough.commands:
        proc = subprocess.run(
            ["bash", "-c", command], cwd=package, env=env, capture_output=True, text=True, timeout=600
        )
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"`{command}` failed:\n{output}"
    summary = proc.stdout.strip().splitlines()[-1]
    kit_tests = [n for n in dir(ChannelConformance) if n.startswith("test_")]
    assert re.search(rf"\b{len(kit_tests) - NOT_DECLARED} passed\b", summary), output
    assert re.search(rf"\b{NOT_DECLARED} skipped\b", summary), output
    assert not re.search(r"failed|error", summary), output
