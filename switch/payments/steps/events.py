"""The events slot, last of every operation: the payment_events rows are written today inside the
statements of the steps that change state (same transaction); merchant events and webhooks plug in here
by adding their rows to those same statements, with no round trip of their own."""

from __future__ import annotations

from switch.payments.context import Context, Services


async def publish(ctx: Context, services: Services) -> None:
    """Nothing beyond the payment_events rows already written."""
