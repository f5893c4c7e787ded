"""The payments engine: typed commands in, outcomes out. Front ends build the commands and render the
outcomes; the engine never sees a front end's bytes and never picks an HTTP status."""

from __future__ import annotations

from switch.common.cards import CardInput
from switch.payments import metrics
from switch.payments.commands import (
    ApproveReview,
    Authorize,
    Caller,
    Cancel,
    Capture,
    ConfirmDraft,
    GetPayment,
    GetRefund,
    ListPayments,
    ListRefunds,
    Mutation,
    Refund,
    RejectReview,
    UpdatePayment,
)
from switch.payments.context import Context, Services
from switch.payments.operations import cards, reads
from switch.payments.operations.authorize import AUTHORIZE
from switch.payments.operations.capture import CANCEL, CAPTURE
from switch.payments.operations.recover import recover_in_flight
from switch.payments.operations.refund import REFUND
from switch.payments.operations.review import APPROVE, REJECT
from switch.payments.outcome import Listing, Outcome
from switch.payments.pipeline import Operation, run
from switch.store.records import RefundRecord
from switch.vault_client import TokenInfo

OPERATIONS: dict[type, Operation] = {Authorize: AUTHORIZE, ConfirmDraft: AUTHORIZE, Capture: CAPTURE, Cancel: CANCEL,
                                     Refund: REFUND, ApproveReview: APPROVE, RejectReview: REJECT}


class Payments:
    def __init__(self, services: Services, recovery_grace_s: float = 2.0) -> None:
        self.services = services
        self.recovery_grace_s = recovery_grace_s

    async def execute(self, caller: Caller, command: Mutation) -> tuple[Outcome, bool]:
        """Run a mutating command under its idempotency key: (outcome, whether it is a replay)."""
        ctx = Context(caller, command)
        try:
            await run(OPERATIONS[type(command)], ctx, self.services)
        except Exception:
            # An unexpected failure: drop our lock so a retry with the same key goes through at once
            # (Postgres still answers it if anything was written).
            if ctx.lock_held:
                await self.services.idempotency.release(ctx.lock_name)
            raise
        assert ctx.outcome is not None
        if not ctx.replayed:
            metrics.observe(command, ctx.outcome, ctx.payment)
        return ctx.outcome, ctx.replayed

    async def get_payment(self, caller: Caller, command: GetPayment) -> Outcome:
        return await reads.get_payment(self.services, caller, command)

    async def list_payments(self, caller: Caller, command: ListPayments) -> Listing:
        return await reads.list_payments(self.services, caller, command)

    async def get_refund(self, caller: Caller, command: GetRefund) -> Outcome:
        return await reads.get_refund(self.services, caller, command)

    async def list_refunds(self, caller: Caller, command: ListRefunds) -> tuple[list[RefundRecord], bool]:
        return await reads.list_refunds(self.services, caller, command)

    async def update_payment(self, caller: Caller, command: UpdatePayment) -> Outcome:
        return await reads.update_payment(self.services, caller, command)

    async def tokenize(self, caller: Caller, card: CardInput) -> TokenInfo | Outcome:
        """Save a card without paying: its token and display details, or the outcome saying why not."""
        return await cards.tokenize(self.services, caller, card)

    async def list_reviews(self, caller: Caller, limit: int) -> Listing:
        """The merchant's payments waiting in the review queue, newest first."""
        return await reads.list_reviews(self.services, caller, limit)

    async def recover(self) -> int:
        return await recover_in_flight(self.services.pool, grace_s=self.recovery_grace_s)
