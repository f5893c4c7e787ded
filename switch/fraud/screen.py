"""The fraud screen a payment goes through once its card is known: signals, velocity counters (one Redis
command on the worker's pipeline), the risk score, the merchant's rules, and the verdict.

Fail-open by default: when the counters do not answer within the screen's budget (a few ms) or Redis is
away, the payment is screened on what is known without them, `reasons` says so, and a metric counts it; a
merchant that chose fail-closed gets a block instead. A merchant's policy (rules and lists) is cached per
worker for a few seconds, so a change applies within POLICY_TTL_S.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from typing import NamedTuple

import asyncpg
import msgspec
from redis.exceptions import RedisError

from switch.common.futures import time_out
from switch.common.ttlcache import Recent, TtlLru
from switch.fraud import metrics
from switch.fraud.policy import TEST_CARD_SCORES, Policy, RuleSpec, decide, default_policy, level_of, policy, risk_score
from switch.fraud.rules import Action, Value
from switch.fraud.signals import SMALL_AMOUNT_USD, ScreenSignals, amount_usd, blank_signals, issuer_of, pack_signals
from switch.fraud.velocity import Subjects, Velocity, read
from switch.idempotency.lock import Rider
from switch.idempotency.pipeline import RedisPipeliner
from switch.store import fraud as fraud_store
from switch.store.records import FraudRecord

POLICY_TTL_S = 5.0
POLICY_RETRY_S = 1.0
POLICIES_MAX = 10_000
SCREEN_BUDGET_S = 0.025
IDENTITIES_MAX = 100_000                   # tokens whose card this worker knows (two generations of half)

log = logging.getLogger(__name__)


class PolicyUnavailable(OSError):
    """The merchant's policy could not be loaded lately, and this worker has no copy of it."""


class Payment(msgspec.Struct, gc=False):
    """What the screen needs of a payment; `number` is the clear PAN, in memory only. A Struct, as the
    screen's other per-payment records are: its __init__ is C, where a NamedTuple's __new__ is Python (0.06
    µs where this one's ten fields took 0.3), and it holds only text and numbers, so the collector need not
    track it."""

    merchant_id: str
    merchant_country: str
    amount: int
    currency: str
    capture_method: str
    brand: str
    number: str
    ip_address: str | None = None
    email: str | None = None
    token: str = ""


class CardIdentity(NamedTuple):
    """What the screen derives from a card number at a merchant, once: never the number itself."""

    card_hash: str                     # its counters' name (switch-wide)
    fingerprint: str                   # as its merchant sees it
    bin: str
    country: str | None
    funding: str | None
    subjects: Subjects                 # its counters and the merchant's: a payment's without an address or email


class Early(msgspec.Struct):
    """A payment whose card is known before the vault answers (raw card data, or a token this worker has
    seen): its counters ride the idempotency lock's command, and `answer` is theirs once it is taken."""

    identity: CardIdentity
    subjects: Subjects
    usd: float | None
    answer: list[int] | None = None


class Screened(msgspec.Struct, gc=False):
    """Held by the payment's context for its whole flight; text, bytes and untracked records only, so the
    collector need not track it."""

    record: FraudRecord                # the verdict, as the payment carries it
    fingerprint: str                   # the card's fingerprint for this merchant
    subjects: Subjects
    # What the screen saw, packed as the payment's row stores it (not in `record`). Packed at once: the
    # 33-attribute dictionary is let go when the verdict is made, not held for the payment's whole flight.
    signals: bytes


class Screener:
    def __init__(self, pool: asyncpg.Pool, commands: RedisPipeliner, key: bytes,
                 budget_s: float = SCREEN_BUDGET_S, rides_lock: bool = False) -> None:
        self.pool = pool
        self.velocity = Velocity(commands, key)
        # Keyed BLAKE2b, the key set up once and the state copied per card.
        self.fingerprints = hashlib.blake2b(key=hashlib.sha256(b"card fingerprints\0" + key).digest()[:32],
                                            digest_size=8)
        self.budget_s = budget_s
        self.rides_lock = rides_lock       # the counters' Redis is the idempotency lock's
        self.policies: TtlLru[str, Policy] = TtlLru(POLICY_TTL_S, POLICIES_MAX)
        self.last_policies: OrderedDict[str, Policy] = OrderedDict()
        self.loading: dict[str, asyncio.Future[Policy]] = {}       # one load per merchant at a time
        self.generations: dict[str, int] = {}                       # bumped when a merchant's rules change here
        self.must_load: set[str] = set()                            # changed here: no stale copy is answered
        self.retry_at: dict[str, float] = {}                        # a failed load is not retried before this
        self.identities: Recent[tuple[str, str], CardIdentity] = Recent(IDENTITIES_MAX // 2)

    def identity(self, merchant_id: str, number: str) -> CardIdentity:
        country, funding = issuer_of(number)
        keyed = self.fingerprints.copy()
        keyed.update(f"{merchant_id}\0{number}".encode())
        fingerprint = keyed.hexdigest()
        card_hash = self.velocity.card_hash(number)
        return CardIdentity(card_hash, fingerprint, number[:6], country, funding,
                            self.velocity.subjects(merchant_id, card_hash, None, None))

    def _subjects(self, merchant_id: str, identity: CardIdentity, ip: str | None, email: str | None) -> Subjects:
        """A payment's counters: the card's own, made with it, unless the payment has an address or email."""
        if not ip and not email:
            return identity.subjects
        return self.velocity.subjects(merchant_id, identity.card_hash, ip, email)

    def forget(self, merchant_id: str) -> None:
        """Drop this worker's copy of the merchant's policy (it changed): the next screen loads it."""
        self.policies.store(merchant_id, None)
        self.generations[merchant_id] = self.generations.get(merchant_id, 0) + 1
        self.loading.pop(merchant_id, None)        # a load begun before the change must not be the answer
        self.must_load.add(merchant_id)

    async def policy_for(self, merchant_id: str) -> Policy:
        """The merchant's policy, cached for POLICY_TTL_S. Past that, the copy this worker has is answered
        while one load refreshes it in the background: a screen waits for Postgres only for a merchant
        it has no copy of (or one whose rules changed here), and then one load serves every screen
        waiting for it, not one load each. While Postgres cannot be read, the last copy, however old."""
        found, cached = self.policies.lookup(merchant_id)
        if found and cached is not None:
            return cached
        last = self.last_policies.get(merchant_id)
        failed_lately = merchant_id not in self.loading and time.monotonic() < self.retry_at.get(merchant_id, 0.0)
        if last is not None and (merchant_id not in self.must_load or failed_lately):
            if not failed_lately:
                self._loading(merchant_id)
            return last
        if failed_lately:
            raise PolicyUnavailable(f"the policy load failed less than {POLICY_RETRY_S} s ago")
        try:
            return await asyncio.shield(self._loading(merchant_id))
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            if last is None:
                raise
            return last

    def _loading(self, merchant_id: str) -> asyncio.Future[Policy]:
        """The merchant's policy load in flight, started if none is."""
        task = self.loading.get(merchant_id)
        if task is None:
            task = self.loading[merchant_id] = asyncio.get_running_loop().create_task(self._load(merchant_id))
            task.add_done_callback(_ignore_failure)  # a refresh nobody waits for must not warn "never retrieved"
        return task

    async def _load(self, merchant_id: str) -> Policy:
        generation = self.generations.get(merchant_id, 0)
        try:
            loaded = await load_policy(self.pool, merchant_id)
        except BaseException:
            self.retry_at[merchant_id] = time.monotonic() + POLICY_RETRY_S
            raise
        finally:
            if self.generations.get(merchant_id, 0) == generation:
                self.loading.pop(merchant_id, None)
        if self.generations.get(merchant_id, 0) != generation:
            return loaded                          # the rules changed meanwhile: the next screen loads again
        self.policies.store(merchant_id, loaded)
        self.must_load.discard(merchant_id)
        self.retry_at.pop(merchant_id, None)
        if len(self.last_policies) >= POLICIES_MAX and merchant_id not in self.last_policies:
            self.last_policies.popitem(last=False)
        self.last_policies[merchant_id] = loaded
        return loaded

    def early(self, merchant_id: str, amount: int, currency: str, number: str | None, token: str | None,
              ip: str | None, email: str | None) -> tuple[Early, Rider] | None:
        """The payment's counters as a rider of its idempotency lock, when its card is known already (the
        token is keyed with the merchant: another merchant's token never names a card here)."""
        if not self.rides_lock:
            return None
        if number is not None:
            identity = self.identity(merchant_id, number)
        else:
            cached = self.identities.get((merchant_id, token or ""))
            if cached is None:
                return None
            identity = cached
        usd = amount_usd(amount, currency)
        cents, small = (int(usd * 100), usd < SMALL_AMOUNT_USD) if usd is not None else (0, False)
        subjects = self._subjects(merchant_id, identity, ip, email)
        return Early(identity, subjects, usd), self.velocity.rider(subjects, cents, small)

    async def screen(self, payment: Payment, early: Early | None = None) -> Screened:
        started = time.perf_counter()
        reasons: list[str] = []
        found, policy_ = self.policies.lookup(payment.merchant_id)
        if not found or policy_ is None:
            policy_ = await self._policy_or_defaults(payment.merchant_id, reasons)
        if early is not None and early.answer is not None:      # the counters rode the lock: all known now
            signals = self.signals(payment, early.identity, early.usd)
            return self._screened(payment, policy_, signals, early.subjects, early.answer, reasons, started,
                                  early.identity.fingerprint)
        identity = early.identity if early is not None else self.identity(payment.merchant_id, payment.number)
        if payment.token:
            # A token seen once (a saved card, or the one raw card data just became): its next payment's
            # counters ride the lock.
            self.identities.store((payment.merchant_id, payment.token), identity)
        signals = self.signals(payment, identity, early.usd if early is not None else
                               amount_usd(payment.amount, payment.currency))
        subjects = self._subjects(payment.merchant_id, identity, payment.ip_address, payment.email)
        answer = await self._within_budget(self._count(signals, subjects))
        return self._screened(payment, policy_, signals, subjects, answer, reasons, started, identity.fingerprint)

    async def _policy_or_defaults(self, merchant_id: str, reasons: list[str]) -> Policy:
        try:
            return await self.policy_for(merchant_id)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            reasons.append("policy_unavailable")
            return default_policy({})

    def _screened(self, payment: Payment, policy_: Policy, signals: ScreenSignals, subjects: Subjects,
                  answer: list[int] | None, reasons: list[str], started: float, fingerprint: str) -> Screened:
        if answer is None:
            metrics.unavailable.inc()
            reasons.append("velocity_unavailable")
            if policy_.fail_closed:
                record = FraudRecord(decision=Action.BLOCK, risk_score=99, risk_level="highest",
                                     rule="fail_closed", reasons=tuple(reasons), policy_version=policy_.version)
                metrics.observe(record, started)
                return Screened(record, fingerprint, subjects, pack_signals(signals))
        else:
            testing, started_testing = read(subjects, answer, signals)
            signals["card_testing"] = testing
            if started_testing:
                metrics.card_testing_started.inc()
                log.warning("card testing suspected at merchant %s: screening tightened", payment.merchant_id)
        record = self._verdict(policy_, signals, payment.number, reasons)
        metrics.observe(record, started)
        return Screened(record, fingerprint, subjects, pack_signals(signals))

    def _count(self, signals: dict[str, Value], subjects: Subjects) -> asyncio.Future[object] | None:
        usd = signals.get("amount_usd")
        try:
            return self.velocity.attempt(subjects, int(usd * 100) if isinstance(usd, float) else 0,
                                         isinstance(usd, float) and usd < SMALL_AMOUNT_USD)
        except RedisError:
            return None

    async def _within_budget(self, counted: asyncio.Future[object] | None) -> list[int] | None:
        """The counters' answer, or None when Redis failed or did not answer within the budget. A timer
        handle, not asyncio.timeout: it is the cheaper of the two on this path."""
        if counted is None:
            return None
        timer = asyncio.get_running_loop().call_later(self.budget_s, time_out, counted)
        try:
            answer = await counted
        except (RedisError, OSError, TimeoutError):   # the request's own cancellation goes on up
            return None
        finally:
            timer.cancel()
        return answer if isinstance(answer, list) else None

    @staticmethod
    def signals(payment: Payment, identity: CardIdentity, usd: float | None) -> ScreenSignals:
        """The payment's own attributes; one it does not have stays None (a rule reads it as missing)."""
        country = identity.country
        signals = blank_signals()
        signals["amount"], signals["amount_usd"], signals["currency"] = payment.amount, usd, payment.currency
        signals["capture_method"], signals["card_brand"] = payment.capture_method, payment.brand
        signals["card_bin"], signals["card_fingerprint"] = identity.bin, identity.fingerprint
        signals["merchant_country"] = payment.merchant_country
        signals["is_cross_border"] = country is not None and country != payment.merchant_country
        if country is not None:
            signals["card_country"], signals["card_funding"] = country, identity.funding
        if payment.ip_address:
            signals["ip_address"] = payment.ip_address
        if payment.email:
            signals["email"] = payment.email
            signals["email_domain"] = payment.email.rpartition("@")[2]
        return signals

    @staticmethod
    def _verdict(policy_: Policy, signals: dict[str, Value], number: str, reasons: list[str]) -> FraudRecord:
        score, score_reasons = risk_score(signals, TEST_CARD_SCORES.get(number))
        level = level_of(score)
        signals["risk_score"], signals["risk_level"] = score, level
        verdict = decide(policy_, signals, policy_.lists)
        if verdict.rule_index is not None:
            metrics.rule_matched(policy_.version == 0, verdict.rule_index, False)
        if verdict.shadow_matches:
            for rule, index in zip(verdict.shadow_matches, verdict.shadow_indexes, strict=True):
                metrics.shadow_matches.inc()
                metrics.rule_matched(policy_.version == 0, index, True)
                reasons.append(f"shadow: {rule}")
        if reasons:
            score_reasons += reasons
        return FraudRecord(decision=_DECISIONS[verdict.action], risk_score=score, risk_level=level,
                           rule=verdict.rule, reasons=tuple(score_reasons), shadow_rules=verdict.shadow_matches,
                           policy_version=policy_.version)


_DECISIONS = {action: action.value for action in Action}   # an enum's `.value` is a property: 4 times dearer


def _ignore_failure(task: asyncio.Future[Policy]) -> None:
    """A background refresh that failed: the copy in hand goes on serving, and a later screen retries."""
    if not task.cancelled():
        task.exception()


async def load_policy(pool: asyncpg.Pool | asyncpg.Connection, merchant_id: str) -> Policy:
    """The merchant's rule set in force (the defaults when it has none) with its lists."""
    row = await fraud_store.get_rule_set(pool, merchant_id)
    lists = {name: frozenset(values) for name, values in (await fraud_store.get_lists(pool, merchant_id)).items()}
    if row is None:
        return default_policy(lists)
    specs = msgspec.convert(row["rules"], list[RuleSpec])
    return policy(row["version"], specs, row["fail_closed"], lists)
