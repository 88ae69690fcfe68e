"""The one normaliser (codes, PINs, phones) and the mask rule, without a database."""

from __future__ import annotations

import os
import uuid

import pytest

from core.catalog.rules import CodeRules, PartRule, charset_ok
from core.crypto.envelope import TenantCipher
from core.errors import ValidationFailed
from core.inventory.vault import FULL_MASK, digest_of, hint, masked, masked_code, seal, unseal
from core.members.services import normalize_phone
from core.normalize import display, typed
from core.redemption.lookup import code_candidates


def test_full_width_spaces_dashes_and_invisible_characters_are_one_canonical_form():
    assert typed("１２３４\u3000５６７８－ＡＢｃ") == "12345678ABc"
    assert typed(" 1234-5678—9012\u200b ") == "123456789012"
    assert typed("AB\u00a0CD\ufeff") == "ABCD"
    assert display("１２３４－５６７８ ") == "1234-5678"  # kept for delivery: dashes stay, spaces go
    assert typed("AbCd") == "AbCd"  # case is kept: PINs may be case-sensitive


def test_digest_and_lookup_are_on_the_normalised_value():
    cipher = TenantCipher(uuid.uuid4(), os.urandom(32))
    ascii_, wide = "880012345678", "８８００ １２３４ ５６７８"
    assert digest_of(cipher, wide) == digest_of(cipher, ascii_) == digest_of(cipher, "8800-1234-5678")
    sealed = seal(cipher, wide, "ＰＩＮ１２")
    assert sealed.digest == digest_of(cipher, ascii_)
    assert unseal(cipher, sealed.digest, sealed.secret) == ("880012345678", "PIN12")
    assert code_candidates("８８００－１２３４－５６７８")[0] == ascii_


def test_phones_written_in_full_width_are_the_same_member_phone():
    assert normalize_phone("１３８ ００１３－８０００") == normalize_phone("13800138000") == "+8613800138000"
    assert normalize_phone("＋８６ 138-0013-8000") == "+8613800138000"
    with pytest.raises(ValidationFailed):
        normalize_phone("١٣٨٠٠١٣٨٠٠٠")  # Arabic-Indic digits are not a mainland mobile number


@pytest.mark.parametrize(
    ("number", "shown"),
    [("1", ""), ("1234", ""), ("K7Q2X9Z", ""), ("AB12CD34", "34"), ("ABCDEFGHJK", "HJK"), ("Z" * 11, "ZZZ"),
     ("GIFT77778888ABCD", "ABCD"), ("8" * 64, "8888"), ("AB-12-CD-34", "34")],
)
def test_hint_reveals_at_most_a_third_and_nothing_below_eight(number: str, shown: str):
    assert hint(number) == shown
    assert len(hint(number)) <= len(typed(number)) // 3
    assert masked_code(number) == (f"•••• {shown}" if shown else FULL_MASK)
    assert masked(hint(number)) == masked_code(number)


def test_code_rules():
    assert charset_ok("0123", "digits") and not charset_ok("０１", "digits") and not charset_ok("12A", "digits")
    assert charset_ok("AB12", "alnum") and not charset_ok("AB-12", "alnum")
    assert charset_ok("7QXZ", "crockford") and not charset_ok("I0LO", "crockford")
    rule = PartRule(10, 12, "digits")
    assert rule.problem("1234 5678 90") is None
    assert rule.problem("123")[0] == "too_short" and rule.problem("1" * 13)[0] == "too_long"
    assert rule.problem("12345678901X")[0] == "bad_charset"
    assert CodeRules.of(object()) == CodeRules()  # defaults: 4–64 printable


def test_import_finds_a_code_stocked_before_normalisation_written_the_same_way():
    import datetime as dt
    from zoneinfo import ZoneInfo

    from core.inventory.importing.parsing import Columns, Record
    from core.inventory.importing.validation import Validator

    cipher = TenantCipher(uuid.uuid4(), os.urandom(32))
    legacy_held = cipher.digest(b"ABCD-1234-EFGH")  # how the vault digested it before: as written, trimmed
    v = Validator(cipher, code_format="number", tz=ZoneInfo("Asia/Shanghai"), now=dt.datetime.now(dt.UTC))
    candidates = v.check_chunk([Record(1, " ABCD-1234-EFGH ", None, None), Record(2, "WXYZ-9876-QRST", None, None)])
    kept = v.drop_existing(candidates, {legacy_held: "B-OLD"})
    assert [c.row for c in kept] == [2]
    report = v.report(Columns(0, None, None, False), "txt", "utf-8", None)
    assert report.problem_counts == {"duplicate_existing": 1}
