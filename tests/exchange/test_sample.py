"""The synthetic sample: reproducible, and every statement in it well formed."""

from __future__ import annotations

from exchange.identifiers import parse_application_number, parse_credit_code, parse_ipc
from exchange.sample import generate
from exchange.statements import check_structure, party_id_for
from kaifang.exchange.v1 import statements_pb2 as pb


def _statement(**body: object) -> pb.Statement:
    statement = pb.Statement(nonce=b"n" * 16, **body)  # type: ignore[arg-type]
    statement.created_at.GetCurrentTime()
    return statement


def test_the_same_seed_gives_the_same_sample_and_another_seed_another() -> None:
    a, b, c = generate(7, patents=50), generate(7, patents=50), generate(8, patents=50)
    assert [p.SerializeToString() for p in a.patents] == [p.SerializeToString() for p in b.patents]
    assert [p.registration.public_key for p in a.parties] == [
        p.registration.public_key for p in b.parties
    ]
    assert [p.application_number for p in a.patents] != [p.application_number for p in c.patents]


def test_every_sample_statement_passes_the_structural_checks() -> None:
    sample = generate(1, parties=30, patents=500)
    ids = {p.party_id for p in sample.parties}
    for party in sample.parties:
        check_structure(_statement(party_registered=party.registration))
        assert party.party_id == party_id_for(party.key.public_key().public_bytes_raw())
        parse_credit_code(party.registration.identity_code)
    numbers = set()
    for patent in sample.patents:
        check_structure(_statement(patent_recorded=patent))
        assert str(parse_application_number(patent.application_number)) == patent.application_number
        assert str(parse_ipc(patent.ipc[0])) == patent.ipc[0]
        assert set(patent.owners) <= ids
        numbers.add(patent.application_number)
    assert len(numbers) == 500
    sections = {patent.ipc[0][0] for patent in sample.patents}
    assert len(sections) >= 6
