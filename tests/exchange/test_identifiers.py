"""Identifier validation: check characters, canonical forms, and clear errors naming the field."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange.errors import IdentifierError
from exchange.identifiers import (
    CREDIT_CODE_CHARACTERS,
    PatentType,
    application_check_character,
    credit_code_check_character,
    ipc_search_keys,
    parse_application_number,
    parse_credit_code,
    parse_currency,
    parse_ipc,
    parse_ipc_prefix,
)


@pytest.mark.parametrize(
    ("text", "canonical", "kind"),
    [
        ("201310123456.2", "201310123456.2", PatentType.INVENTION),
        ("CN201310123456.2", "201310123456.2", PatentType.INVENTION),
        ("ZL2013101234562", "201310123456.2", PatentType.INVENTION),
        ("200410016920.9", "200410016920.9", PatentType.INVENTION),
        (" 202320000007.8 ", "202320000007.8", PatentType.UTILITY_MODEL),
    ],
)
def test_application_numbers_are_normalised(text: str, canonical: str, kind: PatentType) -> None:
    number = parse_application_number(text)
    assert str(number) == canonical
    assert number.type == kind


def test_check_character_follows_the_weights_and_writes_ten_as_x() -> None:
    # 2*2+0*3+2*4+3*5+2*6+0*7+0*8+0*9+0*2+0*3+0*4+7*5 = 74 = 6*11 + 8
    assert application_check_character("202320000007") == "8"
    # Ten becomes X: find a serial whose remainder is 10 and check the mapping.
    serial = next(s for s in range(100) if application_check_character(f"2023200000{s:02d}") == "X")
    digits = f"2023200000{serial:02d}"
    weights = (2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5)
    assert sum(int(d) * w for d, w in zip(digits, weights, strict=True)) % 11 == 10
    assert str(parse_application_number(f"CN{digits}.x")) == f"{digits}.X"


@given(
    st.from_regex(r"20(0[3-9]|1[0-9]|2[0-5])[12389][0-9]{7}", fullmatch=True),
    st.integers(0, 11),
    st.integers(0, 9),
)
def test_any_single_digit_change_is_caught(digits: str, position: int, replacement: int) -> None:
    valid = f"{digits}.{application_check_character(digits)}"
    parse_application_number(valid)
    changed = digits[:position] + str(replacement) + digits[position + 1 :]
    if changed != digits:
        with pytest.raises(IdentifierError):
            parse_application_number(f"{changed}.{application_check_character(digits)}")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("201310123456.3", "check character 3"),
        ("20131012345.2", "not a CN application number"),
        ("199910123456.0", "year 1999"),
        ("201340123456.5", "type digit 4"),
        ("", "not a CN application number"),
    ],
)
def test_bad_application_numbers_name_the_field(text: str, reason: str) -> None:
    if reason.startswith("year") or reason.startswith("type"):
        digits = text[:12]
        text = f"{digits}.{application_check_character(digits)}"
    with pytest.raises(IdentifierError, match=reason) as raised:
        parse_application_number(text, "offer.patent")
    assert raised.value.field == "offer.patent"


def test_utility_models_and_designs_need_an_evaluation_report() -> None:
    def number(kind: int) -> str:
        digits = f"2023{kind}0000001"
        return f"{digits}.{application_check_character(digits)}"

    assert not parse_application_number(number(1)).needs_evaluation_report
    assert parse_application_number(number(2)).needs_evaluation_report
    assert parse_application_number(number(3)).needs_evaluation_report


@pytest.mark.parametrize(
    "code",
    [
        # The worked example printed with GB 32100-2015, and two codes of listed companies.
        "91350100M000100Y43",
        "91110108551385082Q",
        "91440300708461136T",
    ],
)
def test_published_credit_codes_pass(code: str) -> None:
    assert parse_credit_code(code.lower()) == code


@given(st.text(alphabet=CREDIT_CODE_CHARACTERS, min_size=17, max_size=17), st.integers(0, 16))
def test_credit_code_single_character_changes_are_caught(body: str, position: int) -> None:
    code = body + credit_code_check_character(body)
    assert parse_credit_code(code) == code
    original = body[position]
    for replacement in CREDIT_CODE_CHARACTERS:
        if replacement != original:
            changed = body[:position] + replacement + body[position + 1 :] + code[17]
            with pytest.raises(IdentifierError):
                parse_credit_code(changed)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("91350100M000100Y4", "17 characters"),
        ("91350100M000100Y44", "check character 4"),
        ("91350100M0001OOY43", "'O'"),
    ],
)
def test_bad_credit_codes_are_refused(text: str, reason: str) -> None:
    with pytest.raises(IdentifierError, match=reason):
        parse_credit_code(text)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [("H04L 9/32", "H04L 9/32"), ("h04l9/32", "H04L 9/32"), ("A61K 31/4439", "A61K 31/4439"),
     ("G06F 16/00", "G06F 16/00"), ("B65D  85 / 804", "B65D 85/804")],
)  # fmt: skip
def test_ipc_symbols_are_normalised(text: str, canonical: str) -> None:
    assert str(parse_ipc(text)) == canonical


@pytest.mark.parametrize(
    "text", ["I04L 9/32", "H4L 9/32", "H04L 9", "H04L 9/3", "H04L 12345/00", ""]
)
def test_bad_ipc_symbols_are_refused(text: str) -> None:
    with pytest.raises(IdentifierError):
        parse_ipc(text)


@pytest.mark.parametrize(
    ("text", "prefix"),
    [("h", "H"), ("H04", "H04"), ("h04l", "H04L"), ("H04L 09", "H04L 9"), ("H04L9/", "H04L 9/"),
     ("H04L 9/3", "H04L 9/3")],
)  # fmt: skip
def test_ipc_prefixes_match_the_symbols_under_them(text: str, prefix: str) -> None:
    assert parse_ipc_prefix(text) == prefix
    assert str(parse_ipc("H04L 9/32")).startswith(prefix)


def test_currencies_come_with_their_minor_units() -> None:
    assert parse_currency("CNY").exponent == 2
    assert parse_currency("JPY").exponent == 0
    for bad in ("cny", "XYZ", "CN", "XAU"):
        with pytest.raises(IdentifierError):
            parse_currency(bad, "fee.currency")


def test_ipc_search_keys_name_every_level_of_a_symbol() -> None:
    assert ipc_search_keys("h04l 9/32") == ["H", "H04", "H04L", "H04L 9", "H04L 9/32"]
    assert ipc_search_keys("G06F 16/2455") == ["G", "G06", "G06F", "G06F 16", "G06F 16/2455"]
