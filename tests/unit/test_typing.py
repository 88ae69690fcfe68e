"""The type checker's escape hatches stay narrow and explained in ``core``, ``tenants`` and ``plugins``.

CI runs ``mypy core tenants plugins`` (configured in pyproject.toml). These tests keep what mypy is told
to overlook honest:

- every ``# type: ignore`` names its error code(s) and says why after it
  (``# type: ignore[empty-body]  # a hookspec; pluggy never runs it``);
- no file switches checking off with an inline ``# mypy:`` setting;
- the mypy configuration checks these packages strictly and silences none of them.
"""

from __future__ import annotations

import io
import re
import tokenize
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECKED = ("core", "tenants", "plugins")

TYPE_IGNORE = re.compile(r"#\s*type:\s*ignore\b")
# ``# type: ignore[code, other-code]``, then ``#`` and a reason (a few words, not one)
EXPLAINED = re.compile(r"#\s*type:\s*ignore\[[a-z][a-z0-9-]*(?:,\s*[a-z][a-z0-9-]*)*\]\s+#\s*\S.{7,}")
INLINE_CONFIG = re.compile(r"#\s*mypy:")


def _comments() -> Iterator[tuple[str, int, str]]:
    """(path, line, comment) of every comment in the checked packages (strings are not comments)."""
    for package in CHECKED:
        for path in sorted((ROOT / package).rglob("*.py")):
            source = path.read_text(encoding="utf-8")
            for token in tokenize.generate_tokens(io.StringIO(source).readline):
                if token.type == tokenize.COMMENT:
                    yield str(path.relative_to(ROOT)), token.start[0], token.string


def test_every_type_ignore_names_its_code_and_reason() -> None:
    bare = [
        f"{path}:{line}: {comment}"
        for path, line, comment in _comments()
        if TYPE_IGNORE.search(comment) and not EXPLAINED.search(comment)
    ]
    assert not bare, "a `# type: ignore` needs [error-code] and a reason after it:\n" + "\n".join(bare)


def test_no_file_turns_checking_off_inline() -> None:
    inline = [
        f"{path}:{line}: {comment}" for path, line, comment in _comments() if INLINE_CONFIG.search(comment)
    ]
    assert not inline, "configure mypy in pyproject.toml, not per file:\n" + "\n".join(inline)


@pytest.fixture(scope="module")
def mypy_config() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mypy"]


def test_mypy_checks_the_packages_strictly(mypy_config: dict[str, Any]) -> None:
    assert set(CHECKED) <= set(mypy_config["files"])
    for option in (
        "check_untyped_defs",
        "disallow_untyped_defs",
        "warn_unused_ignores",
        "warn_redundant_casts",
    ):
        assert mypy_config.get(option) is True, option
    assert not mypy_config.get("ignore_missing_imports"), "ignore missing imports per third-party module"


def test_no_override_silences_a_checked_package(mypy_config: dict[str, Any]) -> None:
    for override in mypy_config.get("overrides", []):
        modules = override["module"] if isinstance(override["module"], list) else [override["module"]]
        ours = [m for m in modules if m.split(".")[0] in CHECKED]
        if not ours:
            continue
        assert not override.get("ignore_errors"), ours
        assert override.get("follow_imports", "normal") == "normal", ours
        assert not override.get("disable_error_code"), ours
        for option in ("check_untyped_defs", "disallow_untyped_defs", "warn_unused_ignores"):
            assert override.get(option, True) is True, (ours, option)
