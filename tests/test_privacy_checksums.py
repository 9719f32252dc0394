"""Check digits for the PII recognizers: the GB 11643 resident ID (the standard's own
example; 2,000 random bodies against the same sum computed by Horner's rule), the legacy
15-digit form, and Luhn (the card networks' published test numbers)."""

import datetime as dt
import random

import pytest

from lmforge.privacy.checksums import (
    id_check_char,
    luhn_check_digit,
    luhn_valid,
    upgrade_id15,
    valid_bank_card,
    valid_id15,
    valid_id18,
)

TODAY = dt.date(2026, 12, 6)


def test_the_standards_example_and_a_wrong_digit():
    assert valid_id18("11010519491231002X", TODAY)   # GB 11643-1999's example
    assert valid_id18("11010519491231002x", TODAY)   # lower-case x accepted
    assert not valid_id18("110105194912310021", TODAY)
    assert not valid_id18("11010519491331002X", TODAY)  # month 13
    assert not valid_id18("99010519491231002X", TODAY)  # no province 99
    assert not valid_id18("11010520991231002X", TODAY)  # born in the future


def test_check_character_against_an_independent_formula():
    rng = random.Random(0)
    for _ in range(2000):
        first17 = "".join(rng.choice("0123456789") for _ in range(17))
        # Σ a_i W_i with W_i = 2^(17-i) mod 11 is the same as Horner's rule with 2
        s = 0
        for ch in first17:
            s = (s * 2 + int(ch)) % 11
        s = (s * 2) % 11
        assert id_check_char(first17) == "10X98765432"[s]


def test_legacy_15_digit_ids():
    assert upgrade_id15("110105491231002") == "11010519491231002X"
    assert valid_id15("110105491231002", TODAY)
    assert not valid_id15("110105491331002", TODAY)


@pytest.mark.parametrize("card, ok", [
    ("4111111111111111", True), ("5500005555555559", True), ("6011000990139424", True),
    ("4111111111111112", False), ("411111111111111", False), ("62212611111111111", None),
])
def test_luhn_and_bank_cards(card, ok):
    if ok is None:  # a 19-digit UnionPay-style number completed with its check digit
        card = card + "1" + luhn_check_digit(card + "1")
        assert valid_bank_card(card) and len(card) == 19
        wrong = card[:-1] + str((int(card[-1]) + 1) % 10)
        assert not valid_bank_card(wrong)
        return
    assert valid_bank_card(card) is ok
    if len(card) >= 16:
        assert luhn_valid(card[:-1] + luhn_check_digit(card[:-1]))
        assert (luhn_check_digit(card[:-1]) == card[-1]) is ok
