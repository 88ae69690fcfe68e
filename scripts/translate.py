"""Refresh the console catalogs and fill new zh_CN entries from a JSON file of {msgid: translation}.

    .venv/bin/python scripts/translate.py [translations.json]

Runs ``pybabel extract`` and ``pybabel update`` (see admin_ui/i18n.py), then writes the given translations
into ``zh_CN`` and lists the msgids still untranslated (the i18n test fails on them).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def main() -> int:
    pot = Path("/tmp/kaquan-console.pot")
    subprocess.run(
        [
            str(BIN / "pybabel"),
            "extract",
            "-F",
            "admin_ui/babel.cfg",
            "--no-location",
            "--sort-output",
            "--width",
            "100",
            "-o",
            str(pot),
            ".",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            str(BIN / "pybabel"),
            "update",
            "-i",
            str(pot),
            "-d",
            "admin_ui/locale",
            "--no-fuzzy-matching",
            "--width",
            "100",
            "--ignore-obsolete",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    given: dict[str, str] = json.loads(Path(sys.argv[1]).read_text("utf-8")) if len(sys.argv) > 1 else {}
    path = ROOT / "admin_ui/locale/zh_CN/LC_MESSAGES/messages.po"
    with path.open("rb") as f:
        catalog = read_po(f, locale="zh_CN")
    missing = []
    for message in catalog:
        if not message.id:
            continue
        key = message.id[0] if isinstance(message.id, tuple) else message.id
        translated = message.string if isinstance(message.string, str) else all(message.string)
        if key in given and translated and "fuzzy" not in message.flags:
            current = message.string if isinstance(message.string, str) else message.string[0]
            if current != given[key]:
                # Shared msgids keep their translation: other pages rely on it. Use a distinct msgid instead.
                print(f"kept existing translation of {key!r}: {current!r} (not {given[key]!r})")
        elif key in given:
            message.string = given[key] if not isinstance(message.id, tuple) else (given[key],)
            message.flags.discard("fuzzy")
        elif (
            not (message.string if isinstance(message.string, str) else all(message.string))
            or "fuzzy" in message.flags
        ):
            missing.append(key)
    with path.open("wb") as f:
        write_po(
            f, catalog, width=100, no_location=True, omit_header=False, sort_output=True, ignore_obsolete=True
        )
    for key in missing:
        print(f"untranslated: {key!r}")
    return 1 if missing else 0


if __name__ == "__main__":
    raise SystemExit(main())
