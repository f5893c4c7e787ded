"""Step 5: the write-ahead. The idempotency row, the payment (`processing`) and its event are written,
group-committed with the other payments of the same moment, before anything leaves for the network."""

from __future__ import annotations

from switch.common.failpoints import failpoint
from switch.payments.context import Context, Services
from switch.payments.steps.idempotency import replay_claimed


async def write_ahead(ctx: Context, services: Services) -> None:
    assert ctx.payment is not None
    caller = ctx.caller
    if not await services.writer.begin(ctx.payment, caller.idempotency_key, caller.fingerprint):
        await replay_claimed(ctx, services)
        return
    ctx.claimed = True
    failpoint("payment.after_write_ahead")
