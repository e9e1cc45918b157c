"""Statements to fuzz with: those a target holds, fresh ones, and how to mutate and re-sign them.

Made once per test module (:func:`statement_corpus`): a Hypothesis strategy
must draw the same way each time it replays an example, so the seeds'
nonces and timestamps cannot be made afresh inside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from exchange.rules import REGISTER
from exchange.statements import sign
from kaifang.exchange.v1 import statements_pb2 as pb
from tests.exchange import story
from tests.hostile.harness import ORIGIN, Target
from tests.hostile.mutations import mutated_bytes, mutated_message


@dataclass(frozen=True)
class StatementCorpus:
    """Seed statements and every key that signed them, by signer name."""

    statements: list[pb.SignedStatement]
    keys: dict[str, Any]


def _keys(t: Target) -> dict[str, Any]:
    keys: dict[str, Any] = {p.party_id: p.key for p in [*t.market.parties, t.market.newcomer]}
    keys[REGISTER] = t.register
    keys[f"operator:{ORIGIN}"] = t.operator
    return keys


def fresh_statements(t: Target) -> list[pb.SignedStatement]:
    """Statements not yet admitted, each admissible as it is (until the state moves)."""
    m = t.market
    spare, pledged = m.spare.application_number, m.pledged.application_number
    far = story.today().replace(year=story.today().year + 2)
    return [
        story.registration(m.newcomer),
        story.offer(spare, [m.owner]),
        story.withdrawal(m.offer_id, [m.owner]),
        story.acceptance(m.offer_id, m.bank),
        story.transfer(spare, [m.owner], [m.co_owner]),
        story.grant(pledged, [m.owner], m.licensee, pb.LICENSE_TYPE_ORDINARY, far, m.bank),
        story.pledge(spare, [m.owner], m.bank),
        story.status_change(spare, pb.STATUS_CHANGE_SUSPENDED_COURT_PRESERVATION, t.register),
        story.role(m.bank, pb.ROLE_MEDIATOR, t.operator, ORIGIN),
        story.record(m.unrecorded, [m.owner], t.register),
        story.signed(
            pb.Statement(pledge_released=pb.PledgeReleased(pledge_id=m.pledge_id, reason="repaid")),
            (m.bank.party_id, m.bank),
        ),
        story.signed(
            pb.Statement(
                credit_event_repaired=pb.CreditEventRepaired(
                    event_id=m.credit_event_id, supervisor=m.supervisor.party_id, summary="paid"
                )
            ),
            (m.supervisor.party_id, m.supervisor),
        ),
    ]


def statement_corpus(t: Target) -> StatementCorpus:
    """What ``t`` holds and fresh statements, with the keys that signed them."""
    return StatementCorpus([*t.market.admitted, *fresh_statements(t)], _keys(t))


@st.composite
def _resigned(draw: Any, corpus: StatementCorpus) -> pb.SignedStatement:
    """A seed with fields of the statement itself mutated, signed again by the seed's signers."""
    seed = draw(st.sampled_from(corpus.statements))
    statement = draw(mutated_message(pb.Statement.FromString(seed.statement)))
    data = statement.SerializeToString()
    signatures = [sign(data, s.signer, corpus.keys[s.signer]) for s in seed.signatures]
    return pb.SignedStatement(statement=data, signatures=signatures)


def signed_statements(corpus: StatementCorpus) -> st.SearchStrategy[pb.SignedStatement]:
    """A seed as it is, re-signed after a mutation of the statement, or with a broken envelope."""
    seeds = st.sampled_from(corpus.statements)
    return st.one_of(
        seeds,
        _resigned(corpus),
        seeds.flatmap(mutated_message),
        seeds.flatmap(
            lambda s: mutated_bytes(s.statement).map(
                lambda b: pb.SignedStatement(statement=b, signatures=s.signatures)
            )
        ),
    )
