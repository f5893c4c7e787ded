"""Every way an operation can end: one result-code enum, and the one table that says what each means to a
merchant (HTTP status, Stripe-style error type and code, message) and on the ISO 8583 side (field 39).

The enum is in precedence order: when a request meets several results, the checks run in this order and the
first one found is the answer (a key in use is answered before a missing payment, a missing payment before
an amount that is too large, the card's own checks before the vault's, anything the switch refuses before
anything the network says). Messages are the defaults: an outcome that names a value (an id, an amount)
carries its own. Network
answers map from ``switch.iso.codes.ResultCode`` (field 39) through ``for_network``. docs/errors.md lists
the table for merchants.
"""

from __future__ import annotations

from enum import StrEnum
from types import MappingProxyType
from typing import NamedTuple

from switch.iso.codes import ResultCode, field39_for


class Result(StrEnum):
    # Refused before anything was written: nothing happened, the request may be sent again.
    RATE_LIMITED = "rate_limited"
    IDEMPOTENCY_UNAVAILABLE = "idempotency_unavailable"
    DATABASE_UNAVAILABLE = "database_unavailable"
    OVERLOADED = "overloaded"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    IDEMPOTENCY_KEY_IN_USE = "idempotency_key_in_use"
    RESOURCE_MISSING = "resource_missing"
    PAYMENT_UNEXPECTED_STATE = "payment_unexpected_state"
    PAYMENT_IN_REVIEW = "payment_in_review"
    CHARGE_ALREADY_REFUNDED = "charge_already_refunded"
    AMOUNT_TOO_LARGE = "amount_too_large"
    CURRENCY_INVALID = "currency_invalid"
    INVALID_NUMBER = "invalid_number"
    INCORRECT_NUMBER = "incorrect_number"
    UNSUPPORTED_BRAND = "unsupported_brand"
    INVALID_EXPIRY_MONTH = "invalid_expiry_month"
    INVALID_EXPIRY_YEAR = "invalid_expiry_year"
    CARD_EXPIRED = "expired_card"
    INVALID_CVC = "invalid_cvc"
    TOKEN_MISSING = "token_missing"  # noqa: S105 - a result code, not a secret
    VAULT_UNAVAILABLE = "vault_unavailable"
    PARAMETER_NOT_STORABLE = "parameter_not_storable"
    TOO_MANY_METADATA_KEYS = "too_many_metadata_keys"
    # Written as failed and never sent: the fraud screen blocked it (switch.fraud).
    BLOCKED_FRAUDULENT = "blocked_fraudulent"
    # Written, then not answered: the payment failed (and is reversed when it may have reached the network).
    NETWORK_UNAVAILABLE = "network_unavailable"
    NETWORK_TIMEOUT = "network_timeout"
    ANSWER_NOT_RECORDED = "answer_not_recorded"
    NETWORK_ANSWER_INVALID = "network_answer_invalid"
    # The network declined (field 39): one per ResultCode other than an approval.
    DECLINED_PARTIALLY_APPROVED = "declined_partially_approved"   # partial approvals are not accepted
    DECLINED_DO_NOT_HONOR = "declined_do_not_honor"
    DECLINED_INSUFFICIENT_FUNDS = "declined_insufficient_funds"
    DECLINED_LOST_CARD = "declined_lost_card"
    DECLINED_STOLEN_CARD = "declined_stolen_card"
    DECLINED_EXPIRED_CARD = "declined_expired_card"
    DECLINED_INVALID_CARD = "declined_invalid_card"
    DECLINED_INVALID_AMOUNT = "declined_invalid_amount"
    DECLINED_INVALID_TRANSACTION = "declined_invalid_transaction"
    DECLINED_INCORRECT_CVC = "declined_incorrect_cvc"
    DECLINED_SUSPECTED_FRAUD = "declined_suspected_fraud"
    DECLINED_PICKUP_CARD = "declined_pickup_card"
    DECLINED_LIMIT_EXCEEDED = "declined_limit_exceeded"
    DECLINED_RESTRICTED_CARD = "declined_restricted_card"
    DECLINED_DUPLICATE_TRANSMISSION = "declined_duplicate_transmission"
    DECLINED_ISSUER_UNAVAILABLE = "declined_issuer_unavailable"
    DECLINED_PROCESSING_ERROR = "declined_processing_error"
    DECLINED_FORMAT_ERROR = "declined_format_error"
    DECLINED_SECURITY_VIOLATION = "declined_security_violation"
    DECLINED_SYSTEM_ERROR = "declined_system_error"
    # Done: the refund was asked for and failed (its object says why), or the operation did what was asked.
    REFUND_FAILED = "refund_failed"
    SUCCEEDED = "succeeded"


class Meaning(NamedTuple):
    status: int                      # HTTP
    type: str                        # the error object's type; "" for a result that answers an object
    code: str
    message: str
    field39: str                     # what an ISO 8583 front end answers
    decline_code: str | None = None
    param: str | None = None         # the field it is about, in Stripe's bracket form


NUMBER_PARAM = "payment_method[card][number]"
_INVALID_REQUEST = "invalid_request_error"
_IDEMPOTENCY = "idempotency_error"
_API = "api_error"
_CARD = "card_error"
_CARD_DECLINED = "card_declined"
_NUMBER_INVALID = "The card number is not valid."
_EXPIRY_OR_CVC_INVALID = "The card's expiry date or security code is not valid."
_DECLINED = "Your card was declined."
_PROCESSING = "An error occurred while processing your card; try again."

_SWITCH_RESULTS: dict[Result, Meaning] = {
    Result.IDEMPOTENCY_UNAVAILABLE: Meaning(
        503, _API, "idempotency_unavailable", "The idempotency store is unavailable; the request was not "
        "processed. Retry with the same Idempotency-Key.", "96"),
    Result.RATE_LIMITED: Meaning(429, _INVALID_REQUEST, "rate_limit", "Too many requests for this API key or "
                                 "address; retry after the time the Retry-After header gives.", "91"),
    Result.DATABASE_UNAVAILABLE: Meaning(
        503, _API, "database_unavailable", "The database is unavailable. Retry with the same Idempotency-Key: a "
        "request that was recorded is answered as recorded, one that was not is processed then.", "96"),
    Result.OVERLOADED: Meaning(503, _API, "overloaded", "The switch is overloaded; the request was not processed. "
                               "Retry shortly with the same Idempotency-Key.", "96"),
    Result.IDEMPOTENCY_KEY_IN_USE: Meaning(
        409, _IDEMPOTENCY, "idempotency_key_in_use", "A request with this Idempotency-Key is still being "
        "processed; retry shortly.", "09"),
    Result.IDEMPOTENCY_KEY_REUSED: Meaning(
        400, _IDEMPOTENCY, "idempotency_key_reused", "This Idempotency-Key was already used with different "
        "request parameters.", "94"),
    Result.RESOURCE_MISSING: Meaning(404, _INVALID_REQUEST, "resource_missing", "No such object.", "12",
                                     param="id"),
    Result.TOKEN_MISSING: Meaning(400, _INVALID_REQUEST, "resource_missing", "No such payment method token.", "14",
                                  param="payment_method"),
    Result.CURRENCY_INVALID: Meaning(400, _INVALID_REQUEST, "currency_invalid",
                                     "The currency is not a supported ISO 4217 code.", "12", param="currency"),
    Result.PAYMENT_UNEXPECTED_STATE: Meaning(400, _INVALID_REQUEST, "payment_unexpected_state",
                                             "This payment's status does not allow the action.", "12"),
    Result.PAYMENT_IN_REVIEW: Meaning(400, _INVALID_REQUEST, "payment_in_review", "This payment waits in the "
                                      "review queue: approve it (POST /v1/reviews/{id}/approve) to capture it.", "12"),
    Result.CHARGE_ALREADY_REFUNDED: Meaning(400, _INVALID_REQUEST, "charge_already_refunded",
                                            "This payment has already been fully refunded.", "12", param="payment"),
    Result.AMOUNT_TOO_LARGE: Meaning(400, _INVALID_REQUEST, "amount_too_large", "The amount is too large.", "13"),
    Result.INVALID_NUMBER: Meaning(402, _CARD, "invalid_number", _NUMBER_INVALID, "14", param=NUMBER_PARAM),
    Result.INCORRECT_NUMBER: Meaning(402, _CARD, "incorrect_number", _NUMBER_INVALID, "14", param=NUMBER_PARAM),
    Result.UNSUPPORTED_BRAND: Meaning(402, _CARD, "unsupported_brand", _NUMBER_INVALID, "57", param=NUMBER_PARAM),
    Result.INVALID_EXPIRY_MONTH: Meaning(402, _CARD, "invalid_expiry_month", _EXPIRY_OR_CVC_INVALID, "54",
                                         param="payment_method[card][exp_month]"),
    Result.INVALID_EXPIRY_YEAR: Meaning(402, _CARD, "invalid_expiry_year", _EXPIRY_OR_CVC_INVALID, "54",
                                        param="payment_method[card][exp_year]"),
    Result.CARD_EXPIRED: Meaning(402, _CARD, "expired_card", _EXPIRY_OR_CVC_INVALID, "54",
                                 param="payment_method[card][exp_year]"),
    Result.INVALID_CVC: Meaning(402, _CARD, "invalid_cvc", _EXPIRY_OR_CVC_INVALID, "N7",
                                param="payment_method[card][cvc]"),
    Result.VAULT_UNAVAILABLE: Meaning(503, _API, "vault_unavailable",
                                      "The card vault is unavailable; retry the request.", "96"),
    Result.PARAMETER_NOT_STORABLE: Meaning(400, _INVALID_REQUEST, "parameter_invalid", "A value in the request "
                                           "cannot be stored (it holds characters that are not allowed).", "30"),
    Result.TOO_MANY_METADATA_KEYS: Meaning(400, _INVALID_REQUEST, "parameter_invalid", "A payment holds at most 50 "
                                           "metadata keys.", "30", param="metadata"),
    Result.BLOCKED_FRAUDULENT: Meaning(402, _CARD, _CARD_DECLINED, _DECLINED, "59", "fraudulent"),
    Result.NETWORK_UNAVAILABLE: Meaning(
        503, _API, "network_unavailable", "No link to the card network could take the payment; it was not sent. "
        "Create a new payment (new Idempotency-Key) to try again.", "91"),
    # No answer within the budget: not a decline. The authorization is reversed, never left standing.
    Result.NETWORK_TIMEOUT: Meaning(
        504, _API, "network_timeout", "The card network did not answer in time. The authorization is being "
        "reversed, so the card will not be charged; create a new payment (new Idempotency-Key) to try again.", "91"),
    Result.ANSWER_NOT_RECORDED: Meaning(
        503, _API, "database_unavailable", "The card network answered, but the database could not record it in "
        "time. The authorization will be reversed, so the card will not be charged; create a new payment (new "
        "Idempotency-Key) to try again.", "96"),
    Result.NETWORK_ANSWER_INVALID: Meaning(
        502, _API, "network_answer_invalid", "The card network's answer could not be recorded. The authorization "
        "is being reversed, so the card will not be charged; create a new payment (new Idempotency-Key) to try "
        "again.", "96"),
    Result.REFUND_FAILED: Meaning(200, "", "refund_failed", "The refund failed.", "05"),
    Result.SUCCEEDED: Meaning(200, "", "succeeded", "", "00"),
}

# Network declines: (code, decline_code, message) of the Stripe-style card error each answers.
_DECLINES: dict[ResultCode, tuple[str, str, str]] = {
    ResultCode.PARTIALLY_APPROVED: (_CARD_DECLINED, "generic_decline", _DECLINED),
    ResultCode.DO_NOT_HONOR: (_CARD_DECLINED, "do_not_honor", _DECLINED),
    ResultCode.INSUFFICIENT_FUNDS: (_CARD_DECLINED, "insufficient_funds", "Your card has insufficient funds."),
    ResultCode.LOST_CARD: (_CARD_DECLINED, "lost_card", _DECLINED),
    ResultCode.STOLEN_CARD: (_CARD_DECLINED, "stolen_card", _DECLINED),
    ResultCode.PICKUP_CARD: (_CARD_DECLINED, "pickup_card", _DECLINED),
    ResultCode.EXPIRED_CARD: ("expired_card", "expired_card", "Your card has expired."),
    ResultCode.INVALID_CARD: ("incorrect_number", "invalid_account", "Your card number is incorrect."),
    ResultCode.INCORRECT_CVC: ("incorrect_cvc", "incorrect_cvc", "Your card's security code is incorrect."),
    ResultCode.SUSPECTED_FRAUD: (_CARD_DECLINED, "fraudulent", _DECLINED),
    ResultCode.LIMIT_EXCEEDED: (_CARD_DECLINED, "card_velocity_exceeded", _DECLINED),
    ResultCode.RESTRICTED_CARD: (_CARD_DECLINED, "restricted_card", _DECLINED),
    ResultCode.INVALID_AMOUNT: (_CARD_DECLINED, "invalid_amount", "The amount is not valid for this card."),
    ResultCode.INVALID_TRANSACTION: (_CARD_DECLINED, "transaction_not_allowed",
                                     "Your card does not support this type of purchase."),
    ResultCode.DUPLICATE_TRANSMISSION: (_CARD_DECLINED, "duplicate_transaction",
                                        "A transaction with identical details was submitted recently."),
    ResultCode.ISSUER_UNAVAILABLE: (_CARD_DECLINED, "issuer_not_available",
                                    "The card issuer could not be reached; the payment may be retried."),
    ResultCode.PROCESSING_ERROR: ("processing_error", "processing_error", _PROCESSING),
    ResultCode.FORMAT_ERROR: ("processing_error", "processing_error", _PROCESSING),
    ResultCode.SYSTEM_ERROR: ("processing_error", "processing_error", _PROCESSING),
    ResultCode.SECURITY_VIOLATION: ("processing_error", "processing_error", _PROCESSING),
}

MEANINGS: MappingProxyType[Result, Meaning] = MappingProxyType({
    **_SWITCH_RESULTS,
    **{Result(f"declined_{network.value}"): Meaning(402, _CARD, code, message, field39_for(network), decline_code)
       for network, (code, decline_code, message) in _DECLINES.items()},
})


def for_network(result: ResultCode) -> Result:
    """Our result for the network's (an approval is SUCCEEDED; everything else a decline)."""
    if result is ResultCode.APPROVED:
        return Result.SUCCEEDED
    return Result(f"declined_{result.value}")


def meaning(result: Result) -> Meaning:
    return MEANINGS[result]


def _check_table() -> None:
    assert set(MEANINGS) == set(Result), set(Result) - set(MEANINGS)
    for network in ResultCode:
        assert for_network(network) in MEANINGS, network


_check_table()
