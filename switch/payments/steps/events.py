"""The events slot, last of every operation. The payment_events rows (the internal history) and the
merchant events (`events`, docs/events.md) are both written inside the statements of the steps that
change state, in the same transaction, with no round trip of their own; webhook delivery will read the
merchant events from there."""

from __future__ import annotations

from switch.payments.context import Context, Services


async def publish(ctx: Context, services: Services) -> None:
    """Nothing beyond the rows the state change's own statement wrote."""
