"""Step 5: the write-ahead. The idempotency row, the payment (`processing`) and its event are written,
group-committed with the other payments of the same moment, before anything leaves for the network."""

from __future__ import annotations

from switch.common.batch import BatchQueueFull
from switch.common.failpoints import failpoint
from switch.payments.context import Context, Services
from switch.payments.results import Result
from switch.payments.steps.idempotency import replay_claimed
from switch.store.pool import UNAVAILABLE, is_bad_value


def write_failure(error: Exception) -> Result | None:
    """What a failed batched write means for its request, or None for an error nobody expects."""
    if isinstance(error, BatchQueueFull):
        return Result.OVERLOADED
    if is_bad_value(error):
        return Result.PARAMETER_NOT_STORABLE
    if isinstance(error, UNAVAILABLE):
        return Result.DATABASE_UNAVAILABLE
    return None


async def write_ahead(ctx: Context, services: Services) -> None:
    assert ctx.payment is not None
    caller = ctx.caller
    try:
        begun = await services.writer.begin(ctx.payment, caller.idempotency_key, caller.fingerprint,
                                            ctx.screened.signals if ctx.screened else None)
    except Exception as error:
        result = write_failure(error)
        if result is None:
            raise
        # A refused row wrote nothing; an outage may have committed the row before the answer was lost,
        # in which case the key answers from Postgres once recovery has failed the unsent payment.
        ctx.answer(result)
        return
    if not begun:
        await replay_claimed(ctx, services)
        return
    ctx.claimed = True
    failpoint("payment.after_write_ahead")
