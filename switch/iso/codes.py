"""Field 39 response codes: one table between ISO 8583 and our result enum.

Unknown codes map conservatively: a code we do not recognise is never an approval. Codes in the
"issuer or network trouble" family map to retryable results; everything else unknown is a decline.
"""

from __future__ import annotations

from enum import StrEnum
from types import MappingProxyType


class ResultCode(StrEnum):
    APPROVED = "approved"
    PARTIALLY_APPROVED = "partially_approved"
    DO_NOT_HONOR = "do_not_honor"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    LOST_CARD = "lost_card"
    STOLEN_CARD = "stolen_card"
    EXPIRED_CARD = "expired_card"
    INVALID_CARD = "invalid_card"
    INVALID_AMOUNT = "invalid_amount"
    INVALID_TRANSACTION = "invalid_transaction"
    INCORRECT_CVC = "incorrect_cvc"
    SUSPECTED_FRAUD = "suspected_fraud"
    PICKUP_CARD = "pickup_card"
    LIMIT_EXCEEDED = "limit_exceeded"
    RESTRICTED_CARD = "restricted_card"
    DUPLICATE_TRANSMISSION = "duplicate_transmission"
    ISSUER_UNAVAILABLE = "issuer_unavailable"
    PROCESSING_ERROR = "processing_error"
    FORMAT_ERROR = "format_error"
    SECURITY_VIOLATION = "security_violation"  # The far end could not verify our MAC (field 64 / 128).
    SYSTEM_ERROR = "system_error"


# The one table. The first code listed for a result is what `field39_for` returns.
_FIELD39_TABLE: tuple[tuple[str, ResultCode], ...] = (
    ("00", ResultCode.APPROVED),
    ("08", ResultCode.APPROVED),  # Honour with identification.
    ("10", ResultCode.PARTIALLY_APPROVED),
    ("05", ResultCode.DO_NOT_HONOR),
    ("01", ResultCode.DO_NOT_HONOR),  # Refer to card issuer: we cannot do voice referrals.
    ("51", ResultCode.INSUFFICIENT_FUNDS),
    ("41", ResultCode.LOST_CARD),
    ("43", ResultCode.STOLEN_CARD),
    ("54", ResultCode.EXPIRED_CARD),
    ("33", ResultCode.EXPIRED_CARD),
    ("14", ResultCode.INVALID_CARD),
    ("15", ResultCode.INVALID_CARD),  # No such issuer.
    ("13", ResultCode.INVALID_AMOUNT),
    ("12", ResultCode.INVALID_TRANSACTION),
    ("57", ResultCode.INVALID_TRANSACTION),
    ("58", ResultCode.INVALID_TRANSACTION),
    ("N7", ResultCode.INCORRECT_CVC),
    ("82", ResultCode.INCORRECT_CVC),
    ("59", ResultCode.SUSPECTED_FRAUD),
    ("34", ResultCode.SUSPECTED_FRAUD),
    ("04", ResultCode.PICKUP_CARD),
    ("07", ResultCode.PICKUP_CARD),
    ("61", ResultCode.LIMIT_EXCEEDED),
    ("65", ResultCode.LIMIT_EXCEEDED),
    ("62", ResultCode.RESTRICTED_CARD),
    ("94", ResultCode.DUPLICATE_TRANSMISSION),
    ("91", ResultCode.ISSUER_UNAVAILABLE),
    ("92", ResultCode.ISSUER_UNAVAILABLE),
    ("96", ResultCode.PROCESSING_ERROR),
    ("30", ResultCode.FORMAT_ERROR),
    ("63", ResultCode.SECURITY_VIOLATION),
)

FIELD39_TO_RESULT: MappingProxyType[str, ResultCode] = MappingProxyType(dict(_FIELD39_TABLE))

RESULT_TO_FIELD39: MappingProxyType[ResultCode, str] = MappingProxyType(
    {result: code for code, result in reversed(_FIELD39_TABLE)}
)

# Unrecognised codes in these families are trouble on the far side rather than a decision.
_TROUBLE_PREFIXES = ("9",)


def result_for_field39(code: str | None) -> ResultCode:
    """Map a field 39 value to a result; unknown codes never approve."""
    if code is None:
        return ResultCode.PROCESSING_ERROR
    code = code.strip().upper()
    result = FIELD39_TO_RESULT.get(code)
    if result is not None:
        return result
    if code.startswith(_TROUBLE_PREFIXES):
        return ResultCode.PROCESSING_ERROR
    return ResultCode.DO_NOT_HONOR


def field39_for(result: ResultCode) -> str:
    """Map a result back to a field 39 value (the simulator's side of the table)."""
    try:
        return RESULT_TO_FIELD39[result]
    except KeyError:
        # SYSTEM_ERROR has no issuer-side code; a network would send "system malfunction".
        return "96"


def _check_table() -> None:
    codes = [code for code, _ in _FIELD39_TABLE]
    assert len(codes) == len(set(codes)), "duplicate field 39 code in table"
    assert all(len(code) == 2 for code in codes), "field 39 is 2 characters"
    for code, result in _FIELD39_TABLE:
        assert result_for_field39(field39_for(result)) is result, (code, result)


_check_table()
