"""The Stripe-compatible API on the merchant port, for the official `stripe` SDKs unchanged
(docs/stripe-compatibility.md). It lives under `/stripe/v1/...`; the paths only Stripe has
(`/v1/payment_intents`, `/v1/charges`) are also served at the root, and so is a request
to a path both APIs have (`/v1/refunds`) when it carries `Stripe-Version`, as the SDKs' requests do.

The same commands and pipeline as the native API: a PaymentIntent created with `confirm=true` is an
Authorize; capture, cancel and refunds are the native commands; their outcomes are rendered as Stripe's
objects. `Idempotency-Key` has Stripe's meaning (the SDKs send one with every POST); a POST without one
gets a key of its own, so it is never replayed. `Stripe-Version` is accepted and echoed.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from switch.common import errors
from switch.common.http import Request, Response
from switch.frontends.stripe import params, render
from switch.idempotency.ratelimit import Buckets
from switch.merchants import Merchant
from switch.payments.commands import Caller, GetPayment, GetRefund, ListRefunds, Mutation, UpdatePayment
from switch.payments.engine import Payments
from switch.payments.outcome import Outcome

API_VERSION = "2025-09-30.clover"
PREFIX = "/stripe"
_ID = "[0-9A-Za-z]{10,40}"
_INTENT = re.compile(rf"^/v1/payment_intents/(pi_{_ID})$")
_INTENT_ACTION = re.compile(rf"^/v1/payment_intents/(pi_{_ID})/(capture|cancel|confirm)$")
_CHARGE = re.compile(rf"^/v1/charges/(ch_{_ID})$")
_REFUND = re.compile(rf"^/v1/refunds/(re_{_ID})$")
_STRIPE_ONLY = ("/v1/payment_intents", "/v1/charges")
_SHARED = ("/v1/refunds",)
IDEMPOTENCY_KEY_LENGTH_MAX = 255

Fingerprint = Callable[[str, str, bytes], bytes]


def stripe_path(request: Request) -> str | None:
    """The request's path in the Stripe API (``/v1/...``), or None when it is not for the Stripe API."""
    path = request.path
    if path.startswith(PREFIX + "/v1/"):
        return path[len(PREFIX):]
    if path.startswith(_STRIPE_ONLY) or path.startswith(_SHARED) and request.header("stripe-version"):
        return path
    return None


class StripeApi:
    def __init__(self, payments: Payments, fingerprint: Fingerprint) -> None:
        self.payments = payments
        self.fingerprint = fingerprint

    @staticmethod
    def is_mutation(request: Request, path: str) -> bool:
        """A payment command: its rate-limit take rides the idempotency lock."""
        return request.method == "POST" and (path in ("/v1/payment_intents", "/v1/refunds")
                                             or _INTENT_ACTION.match(path) is not None)

    async def mutate(self, request: Request, path: str, merchant: Merchant, request_id: str,
                     buckets: Buckets) -> tuple[str, Response]:
        route, command, expand = self._command(request, path)
        key = request.header("idempotency-key").strip() or f"stripe-auto-{request_id}"
        if len(key) > IDEMPOTENCY_KEY_LENGTH_MAX or not key.isprintable():
            raise errors.invalid_request("idempotency_key_invalid", "The Idempotency-Key must be 1 to "
                                         f"{IDEMPOTENCY_KEY_LENGTH_MAX} printable characters.", "Idempotency-Key")
        caller = Caller(merchant, request_id, key, self.fingerprint("POST", "stripe:" + path, request.body), buckets)
        outcome, replayed = await self.payments.execute(caller, command)
        response = self._rendered(outcome, expand)
        if replayed:
            response.headers.append(("idempotent-replayed", "true"))
        return route, response

    def _command(self, request: Request, path: str) -> tuple[str, Mutation, frozenset[str]]:
        content_type = request.header("content-type")
        if path == "/v1/payment_intents":
            create = params.decode(request.body, content_type, params.CreateIntent)
            if not create.confirm:
                raise errors.invalid_request(
                    "parameter_invalid", "PaymentIntents are confirmed as they are created here: send "
                    "confirm=true with the payment method (docs/stripe-compatibility.md).", "confirm")
            return "stripe.payment_intents.create", params.authorize(create, create), _expand(create.expand)
        if path == "/v1/refunds":
            body = params.decode(request.body, content_type, params.CreateRefund)
            return "stripe.refunds.create", params.refund(body), _expand(body.expand)
        match = _INTENT_ACTION.match(path)
        assert match is not None
        intent, action = match.groups()
        if action == "capture":
            capture = params.decode(request.body, content_type, params.CaptureIntent)
            return "stripe.payment_intents.capture", params.capture(intent, capture), _expand(capture.expand)
        if action == "cancel":
            cancel = params.decode(request.body, content_type, params.CancelIntent)
            return "stripe.payment_intents.cancel", params.cancel(intent, cancel), _expand(cancel.expand)
        raise errors.invalid_request("payment_intent_unexpected_state", "This PaymentIntent was confirmed when it "
                                     "was created; it cannot be confirmed again.", status=400)

    async def other(self, request: Request, path: str, merchant: Merchant, request_id: str) -> tuple[str, Response]:
        """Reads, and the writes that are not payment commands (a PaymentIntent's metadata)."""
        caller = Caller(merchant, request_id)
        if request.method == "POST" and (match := _INTENT.match(path)):
            body = params.decode(request.body, request.header("content-type"), params.UpdateIntent)
            outcome = await self.payments.update_payment(caller, UpdatePayment(
                params.payment_id(match.group(1)), body.description, body.metadata))
            return "stripe.payment_intents.update", self._rendered(outcome, _expand(body.expand))
        if request.method != "GET":
            raise _unrecognized(request)
        query = params.query(request.query)
        expand = _expand(params.convert({"expand": query.pop("expand", None)}, params.Expanding).expand)
        read = self._reads(path, caller, query)
        if read is None:
            raise _unrecognized(request)
        route, answer = read
        return route, await answer(expand)

    def _reads(self, path: str, caller: Caller, query: dict[str, object]
               ) -> tuple[str, Callable[[frozenset[str]], Awaitable[Response]]] | None:
        if path == "/v1/payment_intents":
            return "stripe.payment_intents.list", lambda expand: self._list_intents(caller, query, expand)
        if path == "/v1/refunds":
            return "stripe.refunds.list", lambda expand: self._list_refunds(caller, query, expand)
        if match := _INTENT.match(path) or _CHARGE.match(path):
            payment_id = params.payment_id(match.group(1))
            as_charge = path.startswith("/v1/charges/")
            return ("stripe.charges.get" if as_charge else "stripe.payment_intents.get",
                    lambda expand: self._payment(caller, payment_id, as_charge, expand))
        if match := _REFUND.match(path):
            refund_id = match.group(1)
            return "stripe.refunds.get", lambda expand: self._refund(caller, refund_id, expand)
        return None

    async def _payment(self, caller: Caller, payment_id: str, as_charge: bool, expand: frozenset[str]) -> Response:
        outcome = await self.payments.get_payment(caller, GetPayment(payment_id))
        if as_charge and outcome.payment is not None:
            return Response(200, render.encoder.encode(render.charge(outcome.payment, expand)))
        if as_charge:
            outcome.message = f"No such charge: '{render.charge_id(payment_id)}'"
        return self._rendered(outcome, expand)

    async def _refund(self, caller: Caller, refund_id: str, expand: frozenset[str]) -> Response:
        outcome = await self.payments.get_refund(caller, GetRefund(refund_id))
        if outcome.refund is not None and expand & {"charge", "payment_intent"}:
            outcome.payment = (await self.payments.get_payment(caller, GetPayment(outcome.refund.payment_id))).payment
        return self._rendered(outcome, expand)

    async def _list_intents(self, caller: Caller, query: dict[str, object], expand: frozenset[str]) -> Response:
        page = await self.payments.list_payments(caller, params.list_query(query))
        listed = render.StripeList([render.intent(p, _inner(expand)) for p in page.payments], page.has_more,
                                   "/v1/payment_intents")
        return Response(200, render.encoder.encode(listed))

    async def _list_refunds(self, caller: Caller, query: dict[str, object], expand: frozenset[str]) -> Response:
        target = query.pop("payment_intent", None) or query.pop("charge", None)
        listing = params.list_query(query)
        refunds, has_more = await self.payments.list_refunds(caller, ListRefunds(
            limit=listing.limit, payment_id=params.payment_id(target) if isinstance(target, str) else None,
            starting_after=listing.starting_after, ending_before=listing.ending_before))
        listed = render.StripeList([render.refund(r) for r in refunds], has_more, "/v1/refunds")
        return Response(200, render.encoder.encode(listed))

    @staticmethod
    def _rendered(outcome: Outcome, expand: frozenset[str]) -> Response:
        status, body = render.answer(outcome, expand)
        response = Response(status, body)
        if outcome.retry_after_ms:
            response.headers.append(("retry-after", str(-(-outcome.retry_after_ms // 1000))))
        return response


def versioned(request: Request, response: Response) -> Response:
    """Stripe-Version echoed (ours when the request named none); an error in Stripe's shape."""
    response.headers.append(("stripe-version", request.header("stripe-version")[:40] or API_VERSION))
    return response


def _expand(expand: list[str] | None) -> frozenset[str]:
    if not expand:
        return frozenset()
    unknown = [name for name in expand if name.removeprefix("data.") not in render.EXPANDABLE]
    if unknown:
        raise errors.invalid_request("parameter_invalid", f"This property cannot be expanded ({unknown[0][:60]}).",
                                     "expand")
    return frozenset(expand)


def _inner(expand: frozenset[str]) -> frozenset[str]:
    """A list's `expand[]=data.latest_charge` applies to each item."""
    return frozenset(name.removeprefix("data.") for name in expand)


def _unrecognized(request: Request) -> errors.ApiError:
    return errors.invalid_request("resource_missing", f"Unrecognized request URL ({request.method}: "
                                  f"{request.path[:100]}).", status=404)
