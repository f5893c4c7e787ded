"""Step 3: fraud screening, after the card is known and before anything is written or sent.

An empty slot for now: every payment is allowed. Rules, velocity, lists and the risk score plug in here
(their Redis counters ride the lock's pipeline), and a block answers before the write-ahead.
"""

from __future__ import annotations

from switch.payments.context import Context, Services


async def screen(ctx: Context, services: Services) -> None:
    """Allow."""
