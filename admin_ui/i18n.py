"""Console translations: Babel ``.po`` catalogs, compiled in memory when first used.

No compiled ``.mo`` files live in git: :func:`translations` reads ``locale/<lang>/LC_MESSAGES/messages.po``
with ``babel.messages.pofile.read_po`` and turns it into ``gettext.GNUTranslations`` through
``babel.messages.mofile.write_mo``. Message ids are English; the ``en`` catalog leaves them untranslated.

Updating the catalogs after changing console strings::

    .venv/bin/pybabel extract -F admin_ui/babel.cfg --no-location --sort-output -o /tmp/console.pot .
    .venv/bin/pybabel update -i /tmp/console.pot -d admin_ui/locale --ignore-obsolete --no-fuzzy-matching

then translate the new ``zh_CN`` entries; a test fails on any message without a Chinese translation.
"""

from __future__ import annotations

import gettext
import io
from functools import lru_cache
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
DEFAULT_LOCALE = "zh-CN"
LOCALES: dict[str, str] = {"zh-CN": "zh_CN", "en": "en"}
"""Console locale (as in the ``lang`` cookie) → catalog directory name."""
LANGUAGE_NAMES: dict[str, str] = {"zh-CN": "中文", "en": "English"}


def N_(message: str) -> str:
    """Mark a string for extraction; it is translated where it is shown."""
    return message


def catalog_path(locale: str) -> Path:
    return LOCALE_DIR / LOCALES[locale] / "LC_MESSAGES" / "messages.po"


@lru_cache(maxsize=len(LOCALES))
def translations(locale: str) -> gettext.GNUTranslations:
    """The compiled catalog of ``locale`` (``zh-CN`` or ``en``)."""
    with catalog_path(locale).open("rb") as f:
        catalog = read_po(f, locale=LOCALES[locale])
    buf = io.BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return gettext.GNUTranslations(buf)


def normalize_locale(value: str | None) -> str:
    return value if value in LOCALES else DEFAULT_LOCALE
