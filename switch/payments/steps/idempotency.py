"""Step 1 and the closing step of every mutating operation: the idempotency lock, taken before anything
else and, at the end, either kept as the stored outcome (Redis replay cache) or released."""

from __future__ import annotations

from switch.common.failpoints import failpoint
from switch.idempotency.lock import Lock, Refusal, Rider
from switch.payments import outcome as outcomes
from switch.payments.commands import Authorize
from switch.payments.context import Context, Services
from switch.payments.results import Result
from switch.store import idempotency as key_store

REFUSALS = {
    Refusal.UNAVAILABLE: Result.IDEMPOTENCY_UNAVAILABLE,
    Refusal.IN_USE: Result.IDEMPOTENCY_KEY_IN_USE,
    Refusal.REUSED: Result.IDEMPOTENCY_KEY_REUSED,
}


def _answer(ctx: Context, got: Lock) -> None:
    if got.replay is not None:
        ctx.outcome = outcomes.decode(got.replay)
        ctx.replayed = True
    elif got.refusal is not None:
        ctx.answer(REFUSALS[got.refusal])


def _rider(ctx: Context, services: Services) -> Rider | None:
    """A payment whose card is known already (raw card data, or a token seen before) counts its fraud
    velocity in the lock's own command (switch.fraud.screen.Early)."""
    command = ctx.command
    if not isinstance(command, Authorize):
        return None
    method, customer = command.payment_method, command.customer_details
    number, token = (None, method) if isinstance(method, str) else (method.card.number, None)
    early = services.fraud.early(ctx.caller.merchant.id, command.amount, command.currency, number, token,
                                 customer.ip_address if customer else None, customer.email if customer else None)
    if early is None:
        return None
    ctx.early, rider = early
    return rider


async def lock(ctx: Context, services: Services) -> None:
    caller = ctx.caller
    ctx.lock_name = services.idempotency.redis_key(caller.merchant.id, caller.idempotency_key)
    got = await services.idempotency.acquire(caller.merchant.id, caller.idempotency_key, caller.fingerprint,
                                             ctx.lock_name, caller.rate, _rider(ctx, services))
    if got.wait_ms:                                 # over its rate limit: no lock was taken
        ctx.answer(Result.RATE_LIMITED, retry_after_ms=got.wait_ms)
        return
    if ctx.early is not None and isinstance(got.rider_answer, list):
        ctx.early.answer = got.rider_answer
    if got.replay is not None and not outcomes.readable(got.replay):
        # A replay cache entry this release cannot read (written by an older one): Postgres has the answer.
        got = await services.idempotency.replay_from_database(caller.merchant.id, caller.idempotency_key,
                                                              caller.fingerprint, ctx.lock_name)
    ctx.lock_held = got.taken
    _answer(ctx, got)


async def replay_claimed(ctx: Context, services: Services) -> None:
    """The key already has its Postgres row although Redis had no lock (Redis lost it): answer that
    request's outcome, or refuse while it is in flight. The Redis value is left to that request."""
    caller = ctx.caller
    got = await services.idempotency.replay_from_database(caller.merchant.id, caller.idempotency_key,
                                                          caller.fingerprint, ctx.lock_name)
    ctx.lock_held = False
    _answer(ctx, got)
    if ctx.outcome is None:
        ctx.answer(Result.IDEMPOTENCY_KEY_IN_USE)


async def answer_stored(ctx: Context, services: Services) -> None:
    """Another path finished this request first (recovery: we outlived the deadline); its answer stands."""
    record = await key_store.get_key(services.pool, ctx.caller.merchant.id, ctx.caller.idempotency_key)
    assert record is not None and record.outcome is not None
    ctx.outcome = outcomes.decode(record.outcome)
    ctx.outcome_bytes = record.outcome


async def close(ctx: Context, services: Services) -> None:
    """Remember a stored outcome in the replay cache, or drop the lock of a request that wrote nothing."""
    caller = ctx.caller
    if ctx.claimed:
        failpoint("api.after_record")
        assert ctx.outcome is not None
        data = ctx.outcome_bytes or outcomes.encode(ctx.outcome)
        await services.idempotency.remember(ctx.lock_name, caller.fingerprint, data)
    elif ctx.lock_held:
        await services.idempotency.release(ctx.lock_name)
