"""The Quick start of docs/partners.md works exactly as printed.

Its files are extracted from the guide into a temporary directory, its commands run there, unchanged, in
a throw-away virtualenv that sees the test virtualenv's packages (kaquan and its dependencies) through a
``.pth`` file, so nothing is downloaded and the test virtualenv is left untouched. ``pip`` runs with
``PIP_NO_INDEX`` (no network) and without build isolation (setuptools comes from the test virtualenv).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from plugins.testing import NotifierConformance

DOC = Path(__file__).resolve().parents[2] / "docs" / "partners.md"

FENCE = re.compile(r"^```(?P<lang>[a-z]*)\n(?P<body>.*?)^```\n", re.MULTILINE | re.DOTALL)


class QuickStart:
    """The Quick start as printed: the file tree, each file's text and the commands."""

    def __init__(self, doc: str, heading: str = "## Quick start") -> None:
        start = doc.index(heading + "\n")
        end = doc.index("\n## ", start + 1)
        self.section = doc[start:end]
        self.tree: list[str] = []
        self.files: dict[str, str] = {}
        self.commands: list[str] = []
        for m in FENCE.finditer(self.section):
            caption = self.section[: m.start()].rstrip().rpartition("\n\n")[2]
            if m["lang"] == "":
                self.tree = _tree_paths(m["body"])
            elif m["lang"] in ("bash", "sh"):
                self.commands += [line for line in m["body"].splitlines() if line.strip()]
            else:
                path = re.match(r"`([^`]+)`", caption)
                assert path, f"no `path` introduces the {m['lang']} block: {caption!r}"
                self.files[path[1]] = m["body"]


def _tree_paths(tree: str) -> list[str]:
    """``root/`` then indented files -> the files' paths relative to the root."""
    lines = [line for line in tree.splitlines() if line.strip()]
    return sorted(line.strip() for line in lines[1:])


@pytest.fixture(scope="module")
def quick_start() -> QuickStart:
    return QuickStart(DOC.read_text(encoding="utf-8"))


def test_the_quick_start_prints_every_file_of_its_tree(quick_start):
    assert quick_start.tree == ["pyproject.toml", "src/beacon_sms/__init__.py", "tests/test_conformance.py"]
    assert sorted(quick_start.files) == quick_start.tree
    assert quick_start.commands == ["pip install -e .", "pytest"]
    assert 'version = "0.1.0"' in quick_start.files["pyproject.toml"]


def throwaway_venv(where: Path) -> Path:
    """A virtualenv without pip that sees the running interpreter's packages after its own."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, timeout=120)
    purelib = subprocess.run(
        [str(where / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout.strip()
    test_site = sysconfig.get_paths()["purelib"]
    Path(purelib, "zz_kaquan_test_venv.pth").write_text(
        f"import site; site.addsitedir({test_site!r})\n", encoding="utf-8"
    )
    for tool in ("pip", "pytest"):  # the commands as a partner types them, run by this venv's python
        script = where / "bin" / tool
        script.write_text(f'#!/bin/sh\nexec "{where}/bin/python" -m {tool} "$@"\n', encoding="utf-8")
        script.chmod(0o755)
    return where


def test_the_quick_start_package_installs_and_passes_the_whole_kit(quick_start, tmp_path):
    package = tmp_path / "beacon-sms"
    for path, text in quick_start.files.items():
        target = package / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    venv = throwaway_venv(tmp_path / "venv")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PYTEST", "PIP_", "VIRTUAL_ENV"))}
    env |= {
        "PATH": f"{venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}",
        "VIRTUAL_ENV": str(venv),
        "PIP_NO_INDEX": "1",
        "PIP_NO_BUILD_ISOLATION": "0",  # pip reads this as "--no-build-isolation"
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    outputs = []
    for command in quick_start.commands:
        proc = subprocess.run(
            ["bash", "-c", command], cwd=package, env=env, capture_output=True, text=True, timeout=600
        )
        outputs.append(proc.stdout + proc.stderr)
        assert proc.returncode == 0, f"`{command}` failed:\n{outputs[-1]}"
    summary = proc.stdout.strip().splitlines()[-1]  # pytest's "== 16 passed in 5.1s ==" line
    kit_tests = [n for n in dir(NotifierConformance) if n.startswith("test_")]
    assert re.search(rf"\b{len(kit_tests)} passed\b", summary), outputs[-1]
    assert not re.search(r"failed|error|skipped", summary), outputs[-1]
    # The package was installed in the throw-away venv only, from the extracted files.
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import beacon_sms; print(beacon_sms.__file__)"],
        capture_output=True, text=True, timeout=60, env=env,
    ).stdout.strip()
    assert where == str(package / "src" / "beacon_sms" / "__init__.py")
