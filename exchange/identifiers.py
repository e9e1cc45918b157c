"""Identifiers, validated where they enter: application numbers, credit codes, IPC, currencies.

Pure functions from text to a normalised value, raising
:class:`~exchange.errors.IdentifierError` (naming the field) otherwise:

- **CN patent application numbers** (CNIPA, since 2003): ``YYYY`` year, one
  type digit (1 invention, 2 utility model, 3 design, 8 PCT invention and
  9 PCT utility model entering the national phase), a 7-digit serial, and a
  check character over the 12 digits with weights 2,3,4,5,6,7,8,9,2,3,4,5,
  modulo 11, 10 written ``X``. Canonical form ``202310123456.X``; a ``CN`` or
  ``ZL`` prefix and a missing dot are accepted on input.
- **Unified social credit codes** (GB 32100-2015): 18 characters from
  ``0-9A-Y`` less ``I O S V Z``; the last is a check character with weights
  3^i mod 31 and value ``31 - (sum mod 31)`` (31 meaning 0).
- **IPC symbols** (WIPO IPC Guide): section ``A``-``H``, two-digit class,
  subclass letter, main group of 1-4 digits, ``/``, subgroup of 2-6 digits;
  canonical form ``H04L 9/32``. Search prefixes may stop after the section,
  class, subclass or main group.
- **Currencies**: active ISO 4217 alphabetic codes with minor units (the
  ``iso4217`` package carries the ISO list), since money is kept in minor units.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum

from iso4217 import Currency

from exchange.errors import IdentifierError


class PatentType(IntEnum):
    """The type digit of a CN application number."""

    INVENTION = 1
    UTILITY_MODEL = 2
    DESIGN = 3
    PCT_INVENTION = 8
    PCT_UTILITY_MODEL = 9


_APPLICATION_WEIGHTS = (2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5)
_APPLICATION = re.compile(r"(?:CN|ZL)?\s*([0-9]{12})\.?([0-9X])", re.IGNORECASE)
# The 12-digit form with a check character was introduced in 2003.
FIRST_APPLICATION_YEAR = 2003


def application_check_character(digits: str) -> str:
    """Return the check character of the 12 digits of a CN application number.

    Requires ``digits`` to be 12 ASCII digits.
    """
    total = sum(int(d) * w for d, w in zip(digits, _APPLICATION_WEIGHTS, strict=True))
    remainder = total % 11
    return "X" if remainder == 10 else str(remainder)


@dataclass(frozen=True)
class ApplicationNumber:
    """A CN patent application number."""

    year: int
    type: PatentType
    serial: int

    @property
    def digits(self) -> str:
        """The 12 digits before the check character."""
        return f"{self.year:04d}{int(self.type)}{self.serial:07d}"

    @property
    def check(self) -> str:
        """The check character."""
        return application_check_character(self.digits)

    def __str__(self) -> str:
        """The canonical form, e.g. ``202310123456.X``."""
        return f"{self.digits}.{self.check}"

    @property
    def needs_evaluation_report(self) -> bool:
        """Utility models and designs need a patent evaluation report for an open licence."""
        return self.type in (
            PatentType.UTILITY_MODEL,
            PatentType.PCT_UTILITY_MODEL,
            PatentType.DESIGN,
        )


def parse_application_number(
    text: str, field: str = "application_number", *, latest_year: int = 9999
) -> ApplicationNumber:
    """Parse and check a CN application number; raise :class:`IdentifierError` if invalid.

    ``latest_year`` bounds the year from above (callers pass the current year + 1).
    """
    match = _APPLICATION.fullmatch(text.strip())
    if match is None:
        raise IdentifierError(
            field, f"{text!r} is not a CN application number (12 digits, '.', check character)"
        )
    digits, check = match.group(1), match.group(2).upper()
    expected = application_check_character(digits)
    if check != expected:
        raise IdentifierError(
            field, f"{text!r} has check character {check}, but its digits give {expected}"
        )
    year = int(digits[:4])
    if not FIRST_APPLICATION_YEAR <= year <= latest_year:
        raise IdentifierError(
            field, f"{text!r} has year {year}, outside {FIRST_APPLICATION_YEAR}-{latest_year}"
        )
    try:
        kind = PatentType(int(digits[4]))
    except ValueError as e:
        raise IdentifierError(field, f"{text!r} has unknown type digit {digits[4]}") from e
    return ApplicationNumber(year, kind, int(digits[5:]))


# GB 32100-2015 character set: digits and capitals without I, O, S, V, Z.
CREDIT_CODE_CHARACTERS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_CREDIT_VALUE = {c: i for i, c in enumerate(CREDIT_CODE_CHARACTERS)}
_CREDIT_WEIGHTS = tuple(pow(3, i, 31) for i in range(17))


def credit_code_check_character(body: str) -> str:
    """Return the GB 32100 check character of the first 17 characters of a credit code.

    Requires ``body`` to be 17 characters of :data:`CREDIT_CODE_CHARACTERS`.
    """
    total = sum(_CREDIT_VALUE[c] * w for c, w in zip(body, _CREDIT_WEIGHTS, strict=True))
    return CREDIT_CODE_CHARACTERS[(31 - total % 31) % 31]


def parse_credit_code(text: str, field: str = "identity_code") -> str:
    """Check a unified social credit code; return it in capitals.

    Raises :class:`IdentifierError` for a wrong length, character or check character.
    """
    code = text.strip().upper()
    if len(code) != 18:
        raise IdentifierError(field, f"{text!r} is {len(code)} characters; a credit code has 18")
    bad = sorted({c for c in code if c not in _CREDIT_VALUE})
    if bad:
        raise IdentifierError(
            field, f"{text!r} contains {''.join(bad)!r}, not used in credit codes"
        )
    expected = credit_code_check_character(code[:17])
    if code[17] != expected:
        raise IdentifierError(
            field, f"{text!r} has check character {code[17]}, but its body gives {expected}"
        )
    return code


_IPC = re.compile(r"([A-H])([0-9]{2})([A-Z])\s*([0-9]{1,4})\s*/\s*([0-9]{2,6})")
_IPC_PREFIX = re.compile(
    r"([A-H])(?:([0-9]{2})(?:([A-Z])(?:\s*([0-9]{1,4})(?:\s*/\s*([0-9]{0,6}))?)?)?)?"
)


@dataclass(frozen=True)
class IpcSymbol:
    """An IPC symbol down to the group, e.g. ``H04L 9/32``."""

    section: str
    ipc_class: int
    subclass: str
    main_group: int
    subgroup: str

    def __str__(self) -> str:
        """The canonical form: ``H04L 9/32``."""
        return (
            f"{self.section}{self.ipc_class:02d}{self.subclass} {self.main_group}/{self.subgroup}"
        )


def parse_ipc(text: str, field: str = "ipc") -> IpcSymbol:
    """Parse an IPC symbol such as ``H04L 9/32``; raise :class:`IdentifierError` if malformed."""
    match = _IPC.fullmatch(text.strip().upper())
    if match is None:
        raise IdentifierError(field, f"{text!r} is not an IPC symbol like 'H04L 9/32'")
    section, klass, subclass, main, sub = match.groups()
    return IpcSymbol(section, int(klass), subclass, int(main), sub)


def parse_ipc_prefix(text: str, field: str = "ipc_prefix") -> str:
    """Normalise a search prefix (``H``, ``H04``, ``H04L``, ``H04L 9``, ``H04L 9/3``).

    Returns the canonical spelling, so that ``str(symbol).startswith(prefix)``
    matches the symbols under it.
    """
    match = _IPC_PREFIX.fullmatch(text.strip().upper())
    if match is None:
        raise IdentifierError(field, f"{text!r} is not an IPC prefix like 'H04L' or 'H04L 9/'")
    section, klass, subclass, main, sub = match.groups()
    out = section + (klass or "") + (subclass or "")
    if main is not None:
        out += f" {int(main)}"
        if sub is not None:
            out += "/" + sub
    return out


def ipc_search_keys(symbol: str) -> list[str]:
    """Every search prefix a symbol answers to, from section to the whole symbol.

    ``H04L 9/32`` gives ``H``, ``H04``, ``H04L``, ``H04L 9`` and ``H04L 9/32``:
    kept as rows, they let a prefix search be an indexed equality on any
    database, whatever its collation does with spaces and slashes.
    """
    parsed = parse_ipc(symbol)
    subclass = f"{parsed.section}{parsed.ipc_class:02d}{parsed.subclass}"
    return [
        parsed.section,
        subclass[:3],
        subclass,
        f"{subclass} {parsed.main_group}",
        str(parsed),
    ]


def parse_currency(text: str, field: str = "currency") -> Currency:
    """Return the ISO 4217 currency with code ``text``; it must have minor units.

    Raises :class:`IdentifierError` for an unknown code, or one (gold, SDR, …)
    that money in minor units cannot be kept in.
    """
    code = text.strip()
    if not re.fullmatch(r"[A-Z]{3}", code):
        raise IdentifierError(field, f"{text!r} is not a three-letter ISO 4217 code")
    try:
        currency = Currency(code)
    except ValueError as e:
        raise IdentifierError(field, f"{code} is not an ISO 4217 currency") from e
    if currency.exponent is None:
        raise IdentifierError(field, f"{code} has no minor unit, so no amount can be kept in it")
    return currency
