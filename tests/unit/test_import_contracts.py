"""The layering is checked, not left to goodwill: every import contract in ``pyproject.toml`` holds.

The contracts (``[tool.importlinter]``): consoles and H5 pages import no ``sqlalchemy`` and no API
controller module; domain packages import no presentation package; the partner SDK (``plugins``) imports
nothing of ``core`` or ``tenants``; ``core.db`` imports only kernel modules; the audit chain imports no
business domain; and no two sibling packages or modules import each other, directly or round a loop.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_import_contract_is_kept() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint), "--no-logo", "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "broken" not in result.stdout.lower().split("contracts:")[-1].replace("0 broken", "")
