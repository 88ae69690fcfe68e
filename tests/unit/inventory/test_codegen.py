"""The code generator: the check symbol catches every single error and adjacent swap; no duplicates."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.inventory.codegen import (
    ALPHABET,
    PatternError,
    check_symbol,
    generate,
    generate_unique,
    is_valid,
    normalize,
)

payloads = st.text(alphabet=ALPHABET, min_size=2, max_size=30)


@given(payloads, st.data())
def test_check_symbol_catches_every_single_character_error(payload, data):
    code = payload + check_symbol(payload)
    pos = data.draw(st.integers(0, len(code) - 1))
    pool = ALPHABET if pos < len(code) - 1 else ALPHABET + "*~$=U"
    wrong = data.draw(st.sampled_from([c for c in pool if c != code[pos]]))
    assert not is_valid(code[:pos] + wrong + code[pos + 1:])


@given(payloads, st.data())
def test_check_symbol_catches_every_adjacent_transposition(payload, data):
    code = payload + check_symbol(payload)
    pos = data.draw(st.integers(0, len(code) - 2))
    if code[pos] == code[pos + 1]:
        return  # swapping equal symbols changes nothing
    swapped = code[:pos] + code[pos + 1] + code[pos] + code[pos + 2:]
    assert not is_valid(swapped)


def test_generated_codes_validate_and_read_back_through_aliases():
    code = generate("KQ-####-####-####-####")
    assert code.startswith("KQ-") and is_valid(code)
    assert len(normalize(code)) == 2 + 16 + 1
    assert is_valid(code.lower().replace("0", "o"))  # people type o for 0


def test_patterns_with_less_than_80_bits_or_bad_letters_are_refused():
    with pytest.raises(PatternError):
        generate("####-####")
    with pytest.raises(PatternError):
        generate("U###-####-####-####-#")


def test_a_million_generated_codes_have_no_duplicate():
    codes = list(generate_unique(1_000_000))
    assert len(codes) == 1_000_000
    assert len({normalize(c) for c in codes}) == 1_000_000
