"""A synthetic, reproducible sample of the network's data: parties, patents, offers.

Everything is derived from a seed, so a test, a benchmark and ``make run``
see the same data for the same seed. Identifiers are valid (check characters
computed as the standards say), IPC symbols are real ones from the WIPO IPC,
regions are real GB/T 2260 division codes, and dates are plausible: grants
one to four years after filing, terms of 20 years (inventions), 10 (utility
models) or 15 (designs filed from 2021-06-01, 10 before).

:func:`sample_statements` turns a sample into the signed statements that
bring it onto a ledger, in an order admission accepts: each party registers
itself, the register authority records the patents, and owners publish
open-licence offers on some of the patents in force.

Pure: no I/O; keys are Ed25519 keys derived from the seed, which makes them
useless for anything but samples.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from exchange.admission import LEGAL_TIME_ZONE
from exchange.identifiers import (
    CREDIT_CODE_CHARACTERS,
    PatentType,
    application_check_character,
    credit_code_check_character,
    parse_application_number,
)
from exchange.register import sign_patents
from exchange.statements import party_id_for, sign
from kaifang.exchange.v1 import statements_pb2 as pb
from ledger.note import Signer

# Real IPC symbols (WIPO IPC 2024.01), with a few words for titles in each area.
IPC_AREAS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("A61K 31/4439", ("药物组合物", "缓释制剂", "抗肿瘤化合物")),
    ("A01B 33/02", ("旋耕机", "农业耕作装置")),
    ("B25J 9/16", ("工业机器人", "机械臂控制方法")),
    ("B65D 85/804", ("食品包装容器", "咖啡胶囊")),
    ("C02F 1/44", ("膜法水处理系统", "反渗透净水装置")),
    ("C08L 67/02", ("可降解聚酯材料", "改性塑料组合物")),
    ("D06F 39/00", ("洗衣机", "智能洗涤控制方法")),
    ("E04B 1/98", ("装配式建筑构件", "抗震结构")),
    ("F03D 7/02", ("风力发电机组", "变桨控制方法")),
    ("F24S 10/70", ("太阳能集热器", "光热转换装置")),
    ("G01N 21/64", ("荧光检测装置", "生物样本分析方法")),
    ("G06F 16/00", ("数据检索方法", "分布式存储系统")),
    ("G06N 3/08", ("神经网络训练方法", "图像识别模型")),
    ("H01M 10/0525", ("锂离子电池", "电池正极材料")),
    ("H02J 7/00", ("充电电路", "电池管理系统")),
    ("H04L 9/32", ("身份认证方法", "数字签名装置")),
    ("H04W 72/04", ("无线资源分配方法", "基站调度装置")),
)

# GB/T 2260 division codes of cities with active patent markets.
REGIONS = (
    "110108",  # Beijing, Haidian
    "310115",  # Shanghai, Pudong
    "440300",  # Shenzhen
    "330100",  # Hangzhou
    "320500",  # Suzhou
    "510100",  # Chengdu
    "420100",  # Wuhan
    "610100",  # Xi'an
    "370200",  # Qingdao
    "350100",  # Fuzhou
)

_NAME_PARTS = ("华", "科", "创", "新", "智", "达", "远", "恒", "联", "腾", "嘉", "泰")
_NAME_KINDS = ("科技有限公司", "技术股份有限公司", "新材料有限公司", "智能装备有限公司")


@dataclass(frozen=True)
class SampleParty:
    """A sample party, its registration statement body and its key."""

    key: Ed25519PrivateKey
    registration: pb.PartyRegistered

    @property
    def party_id(self) -> str:
        """The party's id."""
        return self.registration.party_id


@dataclass(frozen=True)
class Sample:
    """A sample network: parties, and patents owned by them."""

    parties: tuple[SampleParty, ...]
    patents: tuple[pb.PatentRecorded, ...]


def sample_key(seed: int, index: int) -> Ed25519PrivateKey:
    """The ``index``-th sample key for ``seed`` (deterministic; for samples only)."""
    material = hashlib.sha256(f"kaifang sample key {seed} {index}".encode()).digest()
    return Ed25519PrivateKey.from_private_bytes(material)


def credit_code(rng: random.Random, region: str) -> str:
    """A valid GB 32100 code: a registered enterprise (9, 1) in ``region``."""
    body = "91" + region + "".join(rng.choice(CREDIT_CODE_CHARACTERS) for _ in range(9))
    return body + credit_code_check_character(body)


def application_number(rng: random.Random, year: int, kind: PatentType) -> str:
    """A valid CN application number of ``year`` and ``kind``."""
    digits = f"{year:04d}{int(kind)}{rng.randrange(10**7):07d}"
    return f"{digits}.{application_check_character(digits)}"


def _date(day: dt.date) -> pb.Date:
    return pb.Date(year=day.year, month=day.month, day=day.day)


def _term_years(kind: PatentType, filed: dt.date) -> int:
    if kind in (PatentType.INVENTION, PatentType.PCT_INVENTION):
        return 20
    if kind == PatentType.DESIGN and filed >= dt.date(2021, 6, 1):
        return 15
    return 10


def _add_years(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


def generate(seed: int, *, parties: int = 20, patents: int = 100) -> Sample:
    """Return a reproducible sample of ``parties`` enterprises owning ``patents`` patents."""
    rng = random.Random(seed)  # noqa: S311 - reproducible sample data, not secrets
    people: list[SampleParty] = []
    for i in range(parties):
        key = sample_key(seed, i)
        public = key.public_key().public_bytes_raw()
        region = rng.choice(REGIONS)
        name = "".join(rng.sample(_NAME_PARTS, 2)) + rng.choice(_NAME_KINDS)
        people.append(
            SampleParty(
                key,
                pb.PartyRegistered(
                    party_id=party_id_for(public),
                    name=name,
                    kind=pb.PARTY_KIND_ENTERPRISE,
                    identity_code=credit_code(rng, region),
                    public_key=public,
                    region=region,
                ),
            )
        )
    seen: set[str] = set()
    records: list[pb.PatentRecorded] = []
    while len(records) < patents:
        kind = rng.choices(
            (PatentType.INVENTION, PatentType.UTILITY_MODEL, PatentType.DESIGN), (6, 3, 1)
        )[0]
        filed = dt.date(2008, 1, 1) + dt.timedelta(days=rng.randrange(16 * 365))
        number = application_number(rng, filed.year, kind)
        if number in seen:
            continue
        seen.add(number)
        ipc, words = rng.choice(IPC_AREAS)
        owners = rng.sample(people, 2 if rng.random() < 0.1 else 1)
        granted = filed + dt.timedelta(days=rng.randrange(365, 4 * 365))
        expiry = _add_years(filed, _term_years(kind, filed))
        paid = _add_years(granted, rng.randrange(1, 6))
        records.append(
            pb.PatentRecorded(
                application_number=number,
                title=f"一种{rng.choice(words)}",
                ipc=[ipc],
                owners=[o.party_id for o in owners],
                filing_date=_date(filed),
                grant_date=_date(granted),
                expiry_date=_date(expiry),
                status=pb.PATENT_STATUS_IN_FORCE,
                fees_paid_until=_date(min(paid, expiry)),
                region=owners[0].registration.region,
            )
        )
    return Sample(tuple(people), tuple(records))


def _sample_nonce(now: dt.datetime, index: int) -> bytes:
    # Deterministic, so that the function stays pure; distinct per statement
    # and per load time, so that no two sample statements share bytes.
    return hashlib.sha256(f"kaifang sample nonce {now.isoformat()} {index}".encode()).digest()[:16]


def _offer_terms(index: int) -> pb.RoyaltyTerms:
    """Royalty terms of the ``index``-th sample offer: each payment method in turn."""
    cny = "CNY"
    match index % 4:
        case 0:
            return pb.RoyaltyTerms(
                lump_sum=pb.Money(amount_minor=(index + 1) * 500_000_00, currency=cny)
            )
        case 1:
            running = pb.RunningRoyalty(basis=pb.ROYALTY_BASIS_SALES, rate_basis_points=300)
            return pb.RoyaltyTerms(running=running)
        case 2:
            both = pb.EntryFeeAndRoyalty(
                entry_fee=pb.Money(amount_minor=100_000_00, currency=cny),
                royalty=pb.RunningRoyalty(basis=pb.ROYALTY_BASIS_PROFIT, rate_basis_points=500),
            )
            return pb.RoyaltyTerms(entry_fee_and_royalty=both)
        case _:
            return pb.RoyaltyTerms(free=pb.Free())


def in_force_on(patent: pb.PatentRecorded, today: dt.date) -> bool:
    """Whether an open licence may be declared on ``patent`` on ``today``.

    In force, within its term and with its annual fees paid (the rules'
    ``PATENT_EXPIRED`` and ``FEES_UNPAID`` refusals otherwise).
    """
    if patent.status != pb.PATENT_STATUS_IN_FORCE or not patent.HasField("fees_paid_until"):
        return False
    expiry = dt.date(patent.expiry_date.year, patent.expiry_date.month, patent.expiry_date.day)
    paid = patent.fees_paid_until
    return today <= expiry and today <= dt.date(paid.year, paid.month, paid.day)


def sample_statements(
    sample: Sample, register: Signer, now: dt.datetime, *, offer_every: int = 2
) -> list[pb.SignedStatement]:
    """The signed statements that bring ``sample`` onto a ledger, in admission order.

    Every party registers itself (signed with its own key); the register
    authority records every patent (signed with ``register``, the key the
    node checks the feed with); the owners of every ``offer_every``-th patent
    in force on ``now``'s legal date publish an open-licence offer, signed by
    every owner. Each statement is created at ``now``, so a node must admit
    them within its replay window of ``now``.
    """
    keys = {party.party_id: party.key for party in sample.parties}
    count = 0

    def next_statement(**body: object) -> pb.Statement:
        nonlocal count
        statement = pb.Statement(nonce=_sample_nonce(now, count), **body)  # type: ignore[arg-type]
        statement.created_at.FromDatetime(now)
        count += 1
        return statement

    signed: list[pb.SignedStatement] = []
    for party in sample.parties:
        data = next_statement(party_registered=party.registration).SerializeToString()
        signed.append(
            pb.SignedStatement(statement=data, signatures=[sign(data, party.party_id, party.key)])
        )

    def nonce() -> bytes:
        nonlocal count
        count += 1
        return _sample_nonce(now, count - 1)

    signed += sign_patents(sample.patents, register, now, nonce)
    today = now.astimezone(LEGAL_TIME_ZONE).date()
    in_force = [p for p in sample.patents if in_force_on(p, today)]
    for i, patent in enumerate(in_force[::offer_every]):
        number = parse_application_number(patent.application_number)
        offer = pb.OfferPublished(
            application_number=patent.application_number,
            terms=_offer_terms(i),
            licence_term_months=12 * (1 + i % 5),
            evaluation_report=f"EVAL-{today.year}-{i + 1:04d}"
            if number.needs_evaluation_report
            else "",
            description=f"{patent.title}: 开放许可，条件对所有被许可人相同。",
        )
        data = next_statement(offer_published=offer).SerializeToString()
        signatures = [sign(data, owner, keys[owner]) for owner in patent.owners]
        signed.append(pb.SignedStatement(statement=data, signatures=signatures))
    return signed
