"""The Stripe-compatible API's parameters: form bodies (or JSON) decoded into typed structs, with Stripe's
error codes (`parameter_missing`, `parameter_unknown`, `parameter_invalid_integer`, ...) and its bracket
names in `param`; then the engine's commands built from them.

Stripe's documented test payment methods and tokens (`pm_card_visa`, `tok_chargeDeclined`, ...) name the
simulator's test cards; `pm_...` is a vault token (`tok_...`) under the name Stripe gives a saved card.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Literal, TypeVar

import msgspec
from msgspec import Meta, Struct

from switch.common import errors
from switch.common.cards import CardInput
from switch.common.validation import STATEMENT_TEXT, STORABLE_TEXT, error_message, error_param
from switch.frontends.http.schema import TIME_MAX, repeats_a_key
from switch.frontends.stripe import form
from switch.payments.commands import (
    EMAIL,
    Amount,
    Authorize,
    Cancel,
    Capture,
    CardMethod,
    CustomerDetails,
    ListPayments,
    MetadataKey,
    MetadataValue,
    Refund,
)

Metadata = Annotated[dict[MetadataKey, MetadataValue], Meta(max_length=50)]
Expand = Annotated[list[Annotated[str, Meta(max_length=100)]], Meta(max_length=10)]
Currency = Annotated[str, Meta(pattern=r"^[A-Za-z]{3}(?!\n)$")]
Description = Annotated[str, Meta(max_length=1000, pattern=STORABLE_TEXT)]
Descriptor = Annotated[str, Meta(min_length=1, max_length=22, pattern=STATEMENT_TEXT)]
ObjectRef = Annotated[str, Meta(min_length=3, max_length=100, pattern=r"^[A-Za-z0-9_]+(?!\n)$")]


class CardData(Struct, forbid_unknown_fields=True):
    # Bounded here; their format is checked as CardInput's (switch.common.cards), which names the error.
    number: Annotated[str, Meta(max_length=64)] | None = None
    exp_month: int | None = None
    exp_year: int | None = None
    cvc: Annotated[str, Meta(max_length=16)] | None = None
    token: ObjectRef | None = None            # a test token (tok_visa, ...) in place of the card's data

    def refuse_token_with_data(self, at: str) -> None:
        """A token with card data beside it: which one was meant is unknown, and the data would be kept
        with a PaymentIntent that is not confirmed yet."""
        if self.token is not None and (self.number, self.exp_month, self.exp_year, self.cvc) != (None,) * 4:
            raise errors.invalid_request("parameter_invalid", "Give a card token or the card's data, not both.",
                                         at)


class BillingDetails(Struct, forbid_unknown_fields=True):
    email: Annotated[str, Meta(min_length=3, max_length=254, pattern=EMAIL)] | None = None
    name: Annotated[str, Meta(max_length=200, pattern=STORABLE_TEXT)] | None = None


class PaymentMethodData(Struct, forbid_unknown_fields=True):
    type: Literal["card"]
    card: CardData | None = None
    billing_details: BillingDetails | None = None


class AutomaticPaymentMethods(Struct, forbid_unknown_fields=True):
    enabled: bool
    allow_redirects: Literal["always", "never"] | None = None


class CreateIntent(Struct, forbid_unknown_fields=True):
    amount: Amount
    currency: Currency
    capture_method: Literal["automatic", "automatic_async", "manual"] = "automatic"
    confirm: bool = False
    payment_method: ObjectRef | None = None
    payment_method_data: PaymentMethodData | None = None
    payment_method_types: Annotated[list[Literal["card"]], Meta(max_length=1)] | None = None
    automatic_payment_methods: AutomaticPaymentMethods | None = None
    confirmation_method: Literal["automatic", "manual"] | None = None
    description: Description | None = None
    statement_descriptor: Descriptor | None = None
    metadata: Metadata | None = None
    receipt_email: Annotated[str, Meta(min_length=3, max_length=254, pattern=EMAIL)] | None = None
    return_url: Annotated[str, Meta(max_length=2048)] | None = None
    customer: ObjectRef | None = None
    expand: Expand | None = None


class ConfirmIntent(Struct, forbid_unknown_fields=True):
    payment_method: ObjectRef | None = None
    payment_method_data: PaymentMethodData | None = None
    receipt_email: Annotated[str, Meta(min_length=3, max_length=254, pattern=EMAIL)] | None = None
    return_url: Annotated[str, Meta(max_length=2048)] | None = None
    capture_method: Literal["automatic", "automatic_async", "manual"] | None = None
    expand: Expand | None = None


class CaptureIntent(Struct, forbid_unknown_fields=True):
    amount_to_capture: Amount | None = None
    expand: Expand | None = None


class CancelIntent(Struct, forbid_unknown_fields=True):
    cancellation_reason: Literal["duplicate", "fraudulent", "requested_by_customer", "abandoned"] | None = None
    expand: Expand | None = None


class UpdateIntent(Struct, forbid_unknown_fields=True):
    description: Description | None = None
    metadata: Annotated[dict[MetadataKey, Annotated[str, Meta(max_length=500, pattern=STORABLE_TEXT)]],
                        Meta(max_length=50)] | None = None
    expand: Expand | None = None


class CreateRefund(Struct, forbid_unknown_fields=True):
    payment_intent: ObjectRef | None = None
    charge: ObjectRef | None = None
    amount: Amount | None = None
    reason: Literal["duplicate", "fraudulent", "requested_by_customer"] | None = None
    metadata: Annotated[dict[MetadataKey, MetadataValue], Meta(max_length=0)] | None = None
    expand: Expand | None = None


Email = Annotated[str, Meta(min_length=3, max_length=254, pattern=EMAIL)]
Name = Annotated[str, Meta(max_length=200, pattern=STORABLE_TEXT)]


class CreateCustomer(Struct, forbid_unknown_fields=True):
    email: Email | None = None
    name: Name | None = None
    description: Description | None = None
    metadata: Metadata | None = None
    payment_method: ObjectRef | None = None        # saved and attached as the customer is made
    expand: Expand | None = None


class CreatePaymentMethod(Struct, forbid_unknown_fields=True):
    type: Literal["card"]
    card: CardData
    billing_details: BillingDetails | None = None
    expand: Expand | None = None


class AttachPaymentMethod(Struct, forbid_unknown_fields=True):
    customer: ObjectRef
    expand: Expand | None = None


class CreateWebhookEndpoint(Struct, forbid_unknown_fields=True):
    url: Annotated[str, Meta(min_length=8, max_length=2048)]
    enabled_events: Annotated[list[Annotated[str, Meta(max_length=60)]], Meta(min_length=1, max_length=20)]
    description: Annotated[str, Meta(max_length=500, pattern=r"^[^\x00]*$")] | None = None
    api_version: Annotated[str, Meta(max_length=40)] | None = None
    expand: Expand | None = None


EventId = Annotated[str, Meta(pattern=r"^evt_[0-9]{16}(?!\n)$")]


class EventQuery(Struct, forbid_unknown_fields=True):
    limit: Annotated[int, Meta(ge=1, le=100)] = 10
    type: Annotated[str, Meta(max_length=60)] | None = None
    starting_after: EventId | None = None
    ending_before: EventId | None = None


class Limit(Struct):
    limit: Annotated[int, Meta(ge=1, le=100)] = 10


class Expanding(Struct):
    """A GET's own parameters: only `expand`."""

    expand: Expand | None = None


S = TypeVar("S")


def decode(body: bytes, content_type: str, kind: type[S]) -> S:
    """A POST body (form-encoded, or JSON when its content type says so) as `kind`."""
    if "json" in content_type:
        try:
            raw = msgspec.json.decode(body or b"{}")
            repeated = repeats_a_key(body or b"{}", raw)
        except (msgspec.DecodeError, RecursionError):        # nested past the interpreter's depth too
            raise errors.invalid_request("invalid_json", "The request body is not valid JSON.") from None
        if repeated:     # as the native API: JSON parsers disagree on which of two equal keys wins
            raise errors.invalid_request("duplicate_key", "An object in the request body repeats a key.")
    else:
        raw = form.parse(body)
    return convert(raw, kind)


def convert(raw: object, kind: type[S]) -> S:
    try:
        converted = msgspec.convert(raw, kind, strict=False)
    except msgspec.ValidationError as error:
        raise parameter_error(error) from None
    _whole_numbers(raw, converted, "")
    return converted


_INTEGER = re.compile(r"-?[0-9]+")


def _whole_numbers(raw: object, value: object, at: str) -> None:
    """Refuse an integer parameter sent as a decimal or an exponent ("10.00", "1e3", or 10.0 in JSON):
    msgspec's lax mode takes those as 10 and 1000, and a merchant who meant $10.00 would be charged $0.10.
    Stripe answers parameter_invalid_integer. Walks the converted value beside what was sent."""
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        if isinstance(raw, float) or (isinstance(raw, str) and not _INTEGER.fullmatch(raw)):
            raise errors.invalid_request("parameter_invalid_integer", f"Invalid integer for {at}.", at)
    elif isinstance(value, Struct) and isinstance(raw, dict):
        kind = type(value)           # its field names as attributes: msgspec.structs.fields() reads annotations
        for name, sent_as in zip(kind.__struct_fields__, kind.__struct_encode_fields__, strict=True):
            if sent_as in raw:
                _whole_numbers(raw[sent_as], getattr(value, name), _inside(at, sent_as))
    elif isinstance(value, list | tuple) and isinstance(raw, list):
        for index, (sent, item) in enumerate(zip(raw, value, strict=False)):
            _whole_numbers(sent, item, _inside(at, str(index)))


def _inside(at: str, name: str) -> str:
    return f"{at}[{name}]" if at else name


_MISSING = re.compile(r"^Object missing required field `")
_UNKNOWN = re.compile(r"^Object contains unknown field `")
_EXPECTED_NUMBER = re.compile(r"^Expected `(int|float)`(?:, got|$| -)")


def parameter_error(error: msgspec.ValidationError) -> errors.ApiError:
    """Stripe's code for a validation error; the message never quotes the value (it may be card data)."""
    text, param = str(error), error_param(error) or ""
    if _MISSING.match(text):
        return errors.invalid_request("parameter_missing", f"Missing required param: {param}.", param)
    if _UNKNOWN.match(text):
        return errors.invalid_request("parameter_unknown", f"Received unknown parameter: {param}", param)
    if _EXPECTED_NUMBER.match(text):
        return errors.invalid_request("parameter_invalid_integer", f"Invalid integer for {param}.", param)
    if text.startswith("Expected `bool`"):
        return errors.invalid_request("parameter_invalid_boolean", f"Invalid boolean for {param}.", param)
    return errors.invalid_request("parameter_invalid", f"Invalid {param}: {error_message(error)}", param)


def query(text: str) -> form.Form:
    return form.parse(text)


# Stripe's test payment methods and tokens -> the simulator's test cards (acquirer_sim.issuer.TEST_CARDS and
# the Radar test cards of switch.fraud.policy).
TEST_CARDS: dict[str, str] = {
    "visa": "4242424242424242", "visa_debit": "4000056655665556", "mastercard": "5555555555554444",
    "amex": "378282246310005", "discover": "6011111111111117", "diners": "36227206271667",
    "jcb": "3566002020360505", "unionpay": "6200000000000005",
    "chargeDeclined": "4000000000000002", "chargeDeclinedInsufficientFunds": "4000000000009995",
    "chargeDeclinedLostCard": "4000000000009987", "chargeDeclinedStolenCard": "4000000000009979",
    "chargeDeclinedExpiredCard": "4000000000000069", "chargeDeclinedIncorrectCvc": "4000000000000127",
    "chargeDeclinedProcessingError": "4000000000000119", "radarBlock": "4100000000000019",
    "riskLevelHighest": "4000000000004954", "riskLevelElevated": "4000000000009235",
}
_INTENT_ID = re.compile(r"^pi_[0-9A-Za-z]{10,40}$")
_CHARGE_ID = re.compile(r"^ch_[0-9A-Za-z]{10,40}$")
REFUND_ID = re.compile(r"^re_[0-9A-Za-z]{10,40}$")
_TEST_NAME = re.compile(r"^(?:pm_card_|tok_)([A-Za-z_]+)$")
_SAVED = re.compile(r"^pm_([0-9A-Za-z]{10,40})$")


def test_card(name: str) -> CardMethod | None:
    """The card a Stripe test payment method or token names, expiring in three years."""
    match = _TEST_NAME.match(name)
    number = TEST_CARDS.get(match.group(1)) if match else None
    if number is None:
        return None
    return CardMethod(card=CardInput(number=number, exp_month=12, exp_year=datetime.now(UTC).year + 3))


def payment_method_of(payment_method: str | None, data: PaymentMethodData | None,
                      at: str = "payment_method_data[card]") -> str | CardMethod:
    """A vault token or card data for Authorize, from `payment_method` or `payment_method_data` (whose
    errors name `at`, its place in the request)."""
    if payment_method is not None and data is not None:
        raise errors.invalid_request("parameter_invalid", "Give payment_method or payment_method_data, not both.",
                                     "payment_method_data")
    if payment_method is not None:
        if (named := test_card(payment_method)) is not None:
            return named
        if saved := _SAVED.match(payment_method):
            return "tok_" + saved.group(1)
        raise errors.invalid_request("resource_missing", f"No such PaymentMethod: '{payment_method[:100]}'",
                                     "payment_method", status=404)
    if data is None or data.card is None:
        raise errors.invalid_request("parameter_missing", "Missing required param: payment_method.",
                                     "payment_method")
    card = data.card
    card.refuse_token_with_data(at)
    if card.token is not None:
        if (method := test_card(card.token)) is None:
            raise errors.invalid_request("resource_missing", f"No such token: '{card.token}'", f"{at}[token]",
                                         status=404)
        return method
    fields = {name: value for name, value in (("number", card.number), ("exp_month", card.exp_month),
                                              ("exp_year", card.exp_year), ("cvc", card.cvc)) if value is not None}
    try:
        return CardMethod(card=convert({"payment_method_data": {"card": fields}}, _Named).payment_method_data.card)
    except errors.ApiError as error:
        if error.param:
            error.param = error.param.replace("payment_method_data[card]", at, 1)
        raise


class _CardOnly(Struct):
    card: CardInput


class _Named(Struct):
    """Card data validated under its Stripe name, so an error's param is payment_method_data[card][...]."""

    payment_method_data: _CardOnly


def authorize(body: CreateIntent | ConfirmIntent, base: CreateIntent) -> Authorize:
    """The Authorize of a confirmation: the create's parameters, with the confirmation's over them."""
    method = body.payment_method if body.payment_method is not None or body.payment_method_data is not None \
        else base.payment_method
    data = body.payment_method_data if body.payment_method is not None or body.payment_method_data is not None \
        else base.payment_method_data
    capture = body.capture_method or base.capture_method
    email = body.receipt_email or base.receipt_email or (
        data.billing_details.email if data is not None and data.billing_details else None)
    return Authorize(
        amount=base.amount, currency=base.currency.lower(), payment_method=payment_method_of(method, data),
        capture_method="manual" if capture == "manual" else "automatic", description=base.description,
        statement_descriptor=base.statement_descriptor, metadata=base.metadata,
        customer_details=CustomerDetails(email=email.lower()) if email else None)


def payment_id(intent_or_charge: str) -> str:
    """pi_X and ch_X name the payment pay_X."""
    for prefix in ("pi_", "ch_"):
        if intent_or_charge.startswith(prefix):
            return "pay_" + intent_or_charge[len(prefix):]
    return intent_or_charge


def capture(intent: str, body: CaptureIntent) -> Capture:
    return Capture(payment_id=payment_id(intent), amount_to_capture=body.amount_to_capture)


def cancel(intent: str, body: CancelIntent) -> Cancel:
    return Cancel(payment_id=payment_id(intent), cancellation_reason=body.cancellation_reason)


def refund(body: CreateRefund) -> Refund:
    target = body.payment_intent or body.charge
    if target is None:
        raise errors.invalid_request("parameter_missing", "Missing required param: payment_intent.",
                                     "payment_intent")
    if body.payment_intent is not None and body.charge is not None:
        raise errors.invalid_request("parameter_invalid", "Give payment_intent or charge, not both.", "charge")
    return Refund(payment=payment_id(target), amount=body.amount, reason=body.reason)


def list_query(params: form.Form, cursor: re.Pattern[str] = _INTENT_ID) -> ListPayments:
    """limit, starting_after, ending_before (ids matching `cursor`), created[gte|gt|lte|lt] (or created=<t>)."""
    created = params.get("created")
    bounds: dict[str, object] = created if isinstance(created, dict) else {"gte": created, "lte": created} \
        if created is not None else {}
    return convert({
        "limit": params.get("limit", "10"),
        "starting_after": _payment_ref(params.get("starting_after"), "starting_after", cursor),
        "ending_before": _payment_ref(params.get("ending_before"), "ending_before", cursor),
        "created_gte": _time(bounds.get("gte"), bounds.get("gt"), 1),
        "created_lte": _time(bounds.get("lte"), bounds.get("lt"), -1)}, _ListQuery).command()


class _ListQuery(Struct, forbid_unknown_fields=True):
    limit: Annotated[int, Meta(ge=1, le=100)] = 10
    starting_after: str | None = None
    ending_before: str | None = None
    created_gte: datetime | None = None
    created_lte: datetime | None = None

    def command(self) -> ListPayments:
        return ListPayments(limit=self.limit, starting_after=self.starting_after, ending_before=self.ending_before,
                            created_gte=self.created_gte, created_lte=self.created_lte)


def _payment_ref(value: object, name: str, pattern: re.Pattern[str] = _INTENT_ID) -> object:
    if value is None:
        return None
    if not isinstance(value, str) or not pattern.match(value):
        raise errors.invalid_request("parameter_invalid", f"{name} is not an id of this list.", name)
    return payment_id(value)


def payment_of(intent: object, charge: object) -> str | None:
    """The payment a `payment_intent=pi_X` or `charge=ch_X` filter names (None without one)."""
    if intent is not None:
        return _payment_ref(intent, "payment_intent")  # type: ignore[return-value]
    return _payment_ref(charge, "charge", _CHARGE_ID)  # type: ignore[return-value]


def _time(inclusive: object, exclusive: object, step: int) -> datetime | None:
    value, shift = (inclusive, 0) if inclusive is not None else (exclusive, step)
    if value is None:
        return None
    if not isinstance(value, str) or not (value.isascii() and value.isdigit()) or len(value) > 12 \
            or not 0 <= int(value) + shift <= TIME_MAX:
        raise errors.invalid_request("parameter_invalid_integer", f"created must be a Unix timestamp up to "
                                     f"{TIME_MAX}.", "created")
    return datetime.fromtimestamp(int(value) + shift, UTC)
