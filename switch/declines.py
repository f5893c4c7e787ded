"""Network results as merchants see them: one table from our result code to the Stripe-style error.

A decline answers HTTP 402 with type ``card_error``, a ``code`` and a ``decline_code``. The list is
documented in docs/errors.md.
"""

from __future__ import annotations

from typing import NamedTuple

from switch.iso.codes import ResultCode


class Decline(NamedTuple):
    code: str
    decline_code: str
    message: str


_CARD_DECLINED = "card_declined"

DECLINES: dict[ResultCode, Decline] = {
    ResultCode.DO_NOT_HONOR: Decline(_CARD_DECLINED, "do_not_honor", "Your card was declined."),
    ResultCode.INSUFFICIENT_FUNDS: Decline(_CARD_DECLINED, "insufficient_funds", "Your card has insufficient funds."),
    ResultCode.LOST_CARD: Decline(_CARD_DECLINED, "lost_card", "Your card was declined."),
    ResultCode.STOLEN_CARD: Decline(_CARD_DECLINED, "stolen_card", "Your card was declined."),
    ResultCode.PICKUP_CARD: Decline(_CARD_DECLINED, "pickup_card", "Your card was declined."),
    ResultCode.EXPIRED_CARD: Decline("expired_card", "expired_card", "Your card has expired."),
    ResultCode.INVALID_CARD: Decline("incorrect_number", "invalid_account", "Your card number is incorrect."),
    ResultCode.INCORRECT_CVC: Decline("incorrect_cvc", "incorrect_cvc", "Your card's security code is incorrect."),
    ResultCode.SUSPECTED_FRAUD: Decline(_CARD_DECLINED, "fraudulent", "Your card was declined."),
    ResultCode.LIMIT_EXCEEDED: Decline(_CARD_DECLINED, "card_velocity_exceeded", "Your card was declined."),
    ResultCode.RESTRICTED_CARD: Decline(_CARD_DECLINED, "restricted_card", "Your card was declined."),
    ResultCode.INVALID_AMOUNT: Decline(_CARD_DECLINED, "invalid_amount", "The amount is not valid for this card."),
    ResultCode.INVALID_TRANSACTION: Decline(_CARD_DECLINED, "transaction_not_allowed", "Your card does not support "
                                            "this type of purchase."),
    ResultCode.DUPLICATE_TRANSMISSION: Decline(_CARD_DECLINED, "duplicate_transaction", "A transaction with "
                                               "identical details was submitted recently."),
    ResultCode.ISSUER_UNAVAILABLE: Decline(_CARD_DECLINED, "issuer_not_available", "The card issuer could not be "
                                           "reached; the payment may be retried."),
    ResultCode.PROCESSING_ERROR: Decline("processing_error", "processing_error", "An error occurred while "
                                         "processing your card; try again."),
    ResultCode.FORMAT_ERROR: Decline("processing_error", "processing_error", "An error occurred while processing "
                                     "your card; try again."),
    ResultCode.SYSTEM_ERROR: Decline("processing_error", "processing_error", "An error occurred while processing "
                                     "your card; try again."),
    ResultCode.SECURITY_VIOLATION: Decline("processing_error", "processing_error", "An error occurred while "
                                           "processing your card; try again."),
}

GENERIC_DECLINE = Decline(_CARD_DECLINED, "generic_decline", "Your card was declined.")


def decline_for(result: ResultCode) -> Decline:
    return DECLINES.get(result, GENERIC_DECLINE)
