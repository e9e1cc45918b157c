"""The register feed: CSV in and out, signed statements that admission accepts."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path

import pytest

from clients.cli import main
from exchange.errors import InvalidFieldError
from exchange.register import COLUMNS, patents_from_csv, patents_to_csv, sign_patents
from exchange.rules import REGISTER
from exchange.sample import generate
from exchange.statements import parse_statement, verify
from kaifang.exchange.v1 import statements_pb2 as pb
from ledger.note import Signer

NOW = dt.datetime(2026, 11, 27, tzinfo=dt.UTC)


def test_csv_round_trips_the_sample() -> None:
    patents = generate(3, patents=40).patents
    again = patents_from_csv(patents_to_csv(patents))
    assert [p.SerializeToString() for p in again] == [p.SerializeToString() for p in patents]


def test_signed_statements_verify_under_the_register_key() -> None:
    key = Signer.generate(REGISTER)
    patents = generate(3, patents=5).patents
    for signed, patent in zip(sign_patents(patents, key, NOW), patents, strict=True):
        (signature,) = signed.signatures
        assert signature.signer == REGISTER
        verify(signed.statement, signature, key.public_key)
        assert parse_statement(signed.statement).patent_recorded == patent


def test_bad_rows_are_named() -> None:
    text = patents_to_csv(generate(3, patents=2).patents)
    header, first, second = text.splitlines()
    with pytest.raises(InvalidFieldError, match="row 3: filing_date"):
        patents_from_csv("\n".join([header, first, second.replace("-", "/", 1)]))
    with pytest.raises(InvalidFieldError, match="header"):
        patents_from_csv("\n".join(["a,b", first]))
    broken = patents_from_csv("\n".join([header, first.replace(".", "", 1)]))
    with pytest.raises(InvalidFieldError, match="application_number"):
        sign_patents(broken, Signer.generate(REGISTER), NOW)
    assert len(COLUMNS) == 10


def test_register_commands_sign_a_sample_csv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "register.key"
    assert main(["register", "keygen", "--key-file", str(key)]) == 0
    public = bytes.fromhex(capsys.readouterr().out.strip())
    assert main(["sample", "--seed", "5", "--patents", "7"]) == 0
    csv_file = tmp_path / "patents.csv"
    csv_file.write_text(capsys.readouterr().out, encoding="utf-8")
    assert main(["register", "sign", "--key-file", str(key), str(csv_file)]) == 0
    lines = capsys.readouterr().out.split()
    assert len(lines) == 7
    for line in lines:
        signed = pb.SignedStatement.FromString(base64.b64decode(line))
        verify(signed.statement, signed.signatures[0], public)
