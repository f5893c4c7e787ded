"""Authorize (manual capture, 0100) or sell (automatic capture, 0200): the hot path."""

from __future__ import annotations

from switch.payments.pipeline import Operation
from switch.payments.steps import card, events, fraud, idempotency, record, route, send, write_ahead

AUTHORIZE = Operation(
    "authorize",
    steps=(idempotency.lock, card.check_currency, card.card, fraud.screen, route.route, write_ahead.write_ahead,
           fraud.block, send.authorization_message, send.send, record.record),
    closing=(events.publish, idempotency.close),
)
