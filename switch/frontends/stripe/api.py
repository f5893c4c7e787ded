"""The Stripe-compatible API on the merchant port, for the official `stripe` SDKs unchanged
(docs/stripe-compatibility.md). It lives under `/stripe/v1/...`; the paths only Stripe has
(`/v1/payment_intents`, `/v1/charges`, `/v1/customers`, `/v1/payment_methods`) are also served at the
root, and so is a request to a path both APIs have (`/v1/refunds`) when it carries `Stripe-Version`, as
the SDKs' requests do.

The same commands and pipeline as the native API: a PaymentIntent created with `confirm=true` is an
Authorize; capture, cancel and refunds are the native commands; their outcomes are rendered as Stripe's
objects. `Idempotency-Key` has Stripe's meaning (the SDKs send one with every POST); a POST without one
gets a key of its own, so it is never replayed. `Stripe-Version` is accepted and echoed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import asyncpg
import msgspec

from switch.common import currency as currencies
from switch.common import errors
from switch.common.http import Request, Response
from switch.common.ids import new_id
from switch.frontends.http import schema
from switch.frontends.http.webhooks_api import WebhooksApi
from switch.frontends.stripe import events as stripe_events
from switch.frontends.stripe import params, render
from switch.idempotency.ratelimit import Buckets
from switch.merchants import Merchant
from switch.payments.commands import Caller, ConfirmDraft, GetPayment, GetRefund, ListRefunds, Mutation, UpdatePayment
from switch.payments.engine import Payments
from switch.payments.outcome import Outcome
from switch.payments.results import meaning
from switch.store import customers, drafts
from switch.store import events as event_store
from switch.store import webhooks as webhook_store

API_VERSION = stripe_events.API_VERSION
log = logging.getLogger(__name__)
PREFIX = "/stripe"
_ID = "[0-9A-Za-z]{10,40}"
_INTENT = re.compile(rf"^/v1/payment_intents/(pi_{_ID})$")
_INTENT_ACTION = re.compile(rf"^/v1/payment_intents/(pi_{_ID})/(capture|cancel|confirm)$")
_CHARGE = re.compile(rf"^/v1/charges/(ch_{_ID})$")
_REFUND = re.compile(rf"^/v1/refunds/(re_{_ID})$")
_CUSTOMER = re.compile(rf"^/v1/customers/(cus_{_ID})$")
_CUSTOMER_METHODS = re.compile(rf"^/v1/customers/(cus_{_ID})/payment_methods$")
_METHOD = re.compile(rf"^/v1/payment_methods/(pm_{_ID})$")
_METHOD_ACTION = re.compile(r"^/v1/payment_methods/(pm_[0-9A-Za-z_]{4,60})/(attach|detach)$")
_STRIPE_ONLY = ("/v1/payment_intents", "/v1/charges", "/v1/customers", "/v1/payment_methods")
_SHARED = ("/v1/refunds", "/v1/webhook_endpoints", "/v1/events")
_ENDPOINT = re.compile(rf"^/v1/webhook_endpoints/(we_{_ID})$")
_EVENT = re.compile(r"^/v1/events/(evt_[0-9]{16})$")

Fingerprint = Callable[[str, str, bytes], bytes]


def stripe_path(request: Request) -> str | None:
    """The request's path in the Stripe API (``/v1/...``), or None when it is not for the Stripe API."""
    path = request.path
    if path.startswith(PREFIX + "/v1/"):
        return path[len(PREFIX):]
    if path.startswith(_STRIPE_ONLY) or path.startswith(_SHARED) and request.header("stripe-version"):
        return path
    return None


Admit = Callable[[], Awaitable["Response | None"]]


class StripeApi:
    def __init__(self, payments: Payments, fingerprint: Fingerprint, pool: asyncpg.Pool,
                 webhooks: WebhooksApi) -> None:
        self.payments = payments
        self.fingerprint = fingerprint
        self.pool = pool
        self.webhooks = webhooks

    async def post(self, request: Request, path: str, merchant: Merchant, request_id: str, buckets: Buckets,
                   admit: Admit) -> tuple[str, Response]:
        """A POST: a payment command runs under its idempotency key, its rate-limit take riding the lock;
        anything else takes its token through `admit` first (which answers a rate-limited request)."""
        content_type = request.header("content-type")
        key = _idempotency_key(request, request_id)
        caller = Caller(merchant, request_id, key, self.fingerprint("POST", "stripe:" + path, request.body), buckets)
        if path == "/v1/payment_intents":
            create = params.decode(request.body, content_type, params.CreateIntent)
            if create.customer is not None:
                await self._check_customer(caller, create.customer, create.payment_method)
            if create.confirm:
                return "stripe.payment_intents.create", await self._execute(
                    caller, params.authorize(create, create), _expand(create.expand))
            return "stripe.payment_intents.create", await admit() or await self._draft(caller, create)
        if path == "/v1/refunds":
            body = params.decode(request.body, content_type, params.CreateRefund)
            return "stripe.refunds.create", await self._execute(caller, params.refund(body), _expand(body.expand))
        if path == "/v1/webhook_endpoints":
            endpoint = params.decode(request.body, content_type, params.CreateWebhookEndpoint)
            return "stripe.webhook_endpoints.create", await admit() or await self._endpoint(merchant, endpoint)
        if path == "/v1/customers":
            asked = params.decode(request.body, content_type, params.CreateCustomer)
            return "stripe.customers.create", await admit() or await self._customer(caller, asked)
        if path == "/v1/payment_methods":
            card = params.decode(request.body, content_type, params.CreatePaymentMethod)
            return "stripe.payment_methods.create", await admit() or await self._save_card(caller, card)
        if match := _METHOD_ACTION.match(path):
            method, action = match.groups()
            attach = params.decode(request.body, content_type, params.AttachPaymentMethod if action == "attach"
                                   else params.Expanding)
            return f"stripe.payment_methods.{action}", await admit() or await self._attach(
                caller, method, getattr(attach, "customer", None))
        if match := _INTENT_ACTION.match(path):
            intent, action = match.groups()
            return f"stripe.payment_intents.{action}", await self._action(request, caller, intent, action, admit)
        if match := _INTENT.match(path):
            return "stripe.payment_intents.update", await admit() or await self._update(request, caller,
                                                                                          match.group(1))
        raise _unrecognized(request)

    async def _action(self, request: Request, caller: Caller, intent: str, action: str, admit: Admit) -> Response:
        content_type = request.header("content-type")
        if action == "capture":
            capture = params.decode(request.body, content_type, params.CaptureIntent)
            return await self._execute(caller, params.capture(intent, capture), _expand(capture.expand))
        if action == "cancel":
            cancel = params.decode(request.body, content_type, params.CancelIntent)
            refused = await admit()                   # a draft's cancel is no payment command: its own take
            if refused is not None:
                return refused
            draft = await drafts.cancel_draft(self.pool, caller.merchant.id, params.payment_id(intent))
            if draft is not None and not await self._payment_exists(caller, draft.id):
                if not draft.canceled:      # a confirmation claimed it and may be writing its payment now
                    raise errors.invalid_request("payment_intent_unexpected_state", "This PaymentIntent is being "
                                                 "confirmed; cancel it once the confirmation has answered.")
                return Response(200, render.encoder.encode(render.draft_intent(draft)))
            return await self._execute(caller, params.cancel(intent, cancel), _expand(cancel.expand))
        confirm = params.decode(request.body, content_type, params.ConfirmIntent)
        return await self._confirm(caller, intent, confirm)

    async def _confirm(self, caller: Caller, intent: str, body: params.ConfirmIntent) -> Response:
        """The draft's Authorize under the draft's own id and an idempotency key of the PaymentIntent's: a
        second confirmation (a retry, or a new key) answers the first one's outcome."""
        payment_id = params.payment_id(intent)
        # Claimed before it is read, so a cancel from now on waits for this confirmation (drafts.CLAIM_S): read
        # first, a cancel between the read and the payment's write would answer canceled for a payment made.
        draft = await drafts.claim_draft(self.pool, caller.merchant.id, payment_id)
        if draft is None:
            raise errors.invalid_request("resource_missing", f"No such payment_intent: '{intent}'", status=404)
        if draft.canceled and not await self._payment_exists(caller, payment_id):
            raise errors.invalid_request("payment_intent_unexpected_state", "This PaymentIntent was canceled; it "
                                         "cannot be confirmed.")
        try:
            authorize = params.authorize(body, msgspec.msgpack.decode(draft.params, type=params.CreateIntent))
            command = ConfirmDraft(**msgspec.structs.asdict(authorize), payment_id=payment_id)
            fingerprint = self.fingerprint("POST", "stripe:confirm", intent.encode())
            confirming = msgspec.structs.replace(caller, idempotency_key=f"confirm:{intent}", fingerprint=fingerprint)
            return await self._execute(confirming, command, _expand(body.expand))
        finally:
            if not draft.canceled and draft.confirming_at is not None:
                await self._release_unless_paid(caller, payment_id, draft.confirming_at)

    async def _release_unless_paid(self, caller: Caller, payment_id: str, claimed_at: datetime) -> None:
        """A confirmation that made no payment (refused before its write) gives its claim back, so a cancel
        need not wait it out. Best effort: a claim left behind ends by itself."""
        try:
            await drafts.release_draft(self.pool, caller.merchant.id, payment_id, claimed_at)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as error:
            log.warning("a PaymentIntent's confirmation claim was not given back: %s", error.__class__.__name__)

    async def _draft(self, caller: Caller, create: params.CreateIntent) -> Response:
        """A PaymentIntent created without confirm=true: kept until its confirmation, never card data."""
        data = create.payment_method_data
        if data is not None and data.card is not None:
            data.card.refuse_token_with_data("payment_method_data[card]")
        if data is not None and data.card is not None and data.card.token is None:
            raise errors.invalid_request("parameter_invalid", "Card data is taken with confirm=true only; create "
                                         "the PaymentIntent with confirm=true, or give a payment_method.",
                                         "payment_method_data")
        if currencies.lookup(create.currency.lower()) is None:
            raise errors.invalid_request("currency_invalid", f"Unsupported currency: '{create.currency}'.",
                                         "currency")
        method = create.payment_method or (data.card.token if data is not None and data.card is not None else None)
        if method is not None:
            params.payment_method_of(method, None)          # an unknown one is refused now, not at confirm
        made = await drafts.insert_draft(self.pool, drafts.DraftRecord(
            id=new_id("pay"), merchant_id=caller.merchant.id, amount=create.amount, currency=create.currency.lower(),
            payment_method=method, params=msgspec.msgpack.encode(create), canceled=False,
            fingerprint=caller.fingerprint, created_at=datetime.now(UTC)), caller.idempotency_key)
        if made.fingerprint != caller.fingerprint:
            raise _key_reused()
        return Response(200, render.encoder.encode(render.draft_intent(made)))

    async def _endpoint(self, merchant: Merchant, body: params.CreateWebhookEndpoint) -> Response:
        """An endpoint that gets Stripe's events signed with Stripe-Signature; its secret is shown once."""
        try:
            types = stripe_events.ours(body.enabled_events)
        except ValueError as unknown:
            raise errors.invalid_request("parameter_invalid", f"Unknown event type {str(unknown)[:60]!r} (the "
                                         "types sent: docs/stripe-compatibility.md).", "enabled_events") from None
        row = await self.webhooks.create(merchant, body.url, types, body.description, "stripe")
        return Response(200, render.encoder.encode(_endpoint_object(row, with_secret=True)))

    async def delete(self, request: Request, path: str, merchant: Merchant) -> tuple[str, Response]:
        match = _ENDPOINT.match(path)
        if match is None:
            raise _unrecognized(request)
        if not await webhook_store.delete_endpoint(self.pool, merchant.id, match.group(1)):
            raise _no_endpoint(match.group(1))
        return "stripe.webhook_endpoints.delete", Response(200, render.encoder.encode(
            render.DeletedEndpoint(match.group(1))))

    async def _customer(self, caller: Caller, body: params.CreateCustomer) -> Response:
        """A customer, made once per idempotency key; a `payment_method` given is saved and attached."""
        made, made_by = await customers.insert_customer(self.pool, customers.CustomerRecord(
            id=new_id("cus"), merchant_id=caller.merchant.id, email=body.email.lower() if body.email else None,
            name=body.name, description=body.description, metadata=body.metadata or {},
            created_at=datetime.now(UTC)), caller.idempotency_key, caller.fingerprint)
        if made_by != caller.fingerprint:
            raise _key_reused()
        if body.payment_method is not None:
            attached = await self._attach(caller, body.payment_method, made.id)
            if attached.status != 200:
                return attached
        return Response(200, render.encoder.encode(render.customer(made)))

    async def _save_card(self, caller: Caller, body: params.CreatePaymentMethod,
                         customer_id: str | None = None) -> Response:
        method = params.payment_method_of(None, params.PaymentMethodData("card", body.card), at="card")
        assert not isinstance(method, str)
        info = await self.payments.tokenize(caller, method.card)
        if isinstance(info, Outcome):
            param = info.param or meaning(info.result).param
            info.param = param.replace("payment_method[card]", "card", 1) if param else None
            return self._rendered(info, frozenset())
        saved = await customers.save_card(self.pool, customers.SavedCard(
            token=info.token, merchant_id=caller.merchant.id, customer_id=customer_id, brand=info.brand,
            last4=info.last4, exp_month=info.exp_month, exp_year=info.exp_year, fingerprint=None,
            created_at=datetime.now(UTC)))
        return Response(200, render.encoder.encode(render.saved_method(saved)))

    async def _attach(self, caller: Caller, method: str, customer_id: str | None) -> Response:
        """Attach a saved card (or one of Stripe's test payment methods, saved now) to a customer; detach
        it with None."""
        if customer_id is not None and await customers.get_customer(self.pool, caller.merchant.id,
                                                                   customer_id) is None:
            raise errors.invalid_request("resource_missing", f"No such customer: '{customer_id[:60]}'", "customer",
                                         status=404)
        test_card = params.test_card(method)
        if test_card is not None and customer_id is not None:
            return await self._save_card(caller, params.CreatePaymentMethod("card", params.CardData(
                number=test_card.card.number, exp_month=test_card.card.exp_month,
                exp_year=test_card.card.exp_year)), customer_id)
        saved = await customers.set_customer(self.pool, caller.merchant.id, "tok_" + method.removeprefix("pm_"),
                                             customer_id)
        if saved is None:
            raise errors.invalid_request("resource_missing", f"No such PaymentMethod: '{method[:60]}'",
                                         "payment_method", status=404)
        return Response(200, render.encoder.encode(render.saved_method(saved)))

    async def _check_customer(self, caller: Caller, customer_id: str, method: str | None) -> None:
        """A PaymentIntent's customer exists, and a saved card it pays with is that customer's."""
        if await customers.get_customer(self.pool, caller.merchant.id, customer_id) is None:
            raise errors.invalid_request("resource_missing", f"No such customer: '{customer_id[:60]}'", "customer",
                                         status=404)
        if method is None or params.test_card(method) is not None:
            return
        saved = await customers.get_card(self.pool, caller.merchant.id, "tok_" + method.removeprefix("pm_"))
        if saved is None or saved.customer_id != customer_id:
            raise errors.invalid_request("payment_method_not_attached", "The PaymentMethod is not attached to "
                                         "this customer.", "payment_method")

    async def _update(self, request: Request, caller: Caller, intent: str) -> Response:
        body = params.decode(request.body, request.header("content-type"), params.UpdateIntent)
        outcome = await self.payments.update_payment(caller, UpdatePayment(
            params.payment_id(intent), body.description, body.metadata))
        if outcome.payment is None and await drafts.get_draft(self.pool, caller.merchant.id,
                                                              params.payment_id(intent)):
            raise errors.invalid_request("payment_intent_unexpected_state", "A PaymentIntent is updated here once it "
                                         "is confirmed (docs/stripe-compatibility.md).")
        return self._rendered(outcome, _expand(body.expand))

    async def _execute(self, caller: Caller, command: Mutation, expand: frozenset[str]) -> Response:
        outcome, replayed = await self.payments.execute(caller, command)
        response = self._rendered(outcome, expand)
        if replayed:
            response.headers.append(("idempotent-replayed", "true"))
        return response

    async def _payment_exists(self, caller: Caller, payment_id: str) -> bool:
        return (await self.payments.get_payment(caller, GetPayment(payment_id))).payment is not None

    async def get(self, request: Request, path: str, merchant: Merchant, request_id: str) -> tuple[str, Response]:
        caller = Caller(merchant, request_id)
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
        if path == "/v1/webhook_endpoints":
            return "stripe.webhook_endpoints.list", lambda expand: self._endpoints(caller, query)
        if match := _ENDPOINT.match(path):
            endpoint_id = match.group(1)
            return "stripe.webhook_endpoints.get", lambda expand: self._read_endpoint(caller, endpoint_id)
        if path == "/v1/events":
            return "stripe.events.list", lambda expand: self._events(caller, query)
        if match := _EVENT.match(path):
            event = int(match.group(1)[4:])
            return "stripe.events.get", lambda expand: self._event(caller, event, match.group(1))
        if match := _CUSTOMER.match(path):
            customer_id = match.group(1)
            return "stripe.customers.get", lambda expand: self._read_customer(caller, customer_id)
        if match := _CUSTOMER_METHODS.match(path):
            owner = match.group(1)
            return "stripe.customers.payment_methods", lambda expand: self._customer_cards(caller, owner, query)
        if match := _METHOD.match(path):
            token = "tok_" + match.group(1).removeprefix("pm_")
            return "stripe.payment_methods.get", lambda expand: self._read_card(caller, token)
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
        elif outcome.payment is None and (draft := await drafts.get_draft(self.pool, caller.merchant.id, payment_id)):
            return Response(200, render.encoder.encode(render.draft_intent(draft)))
        return self._rendered(outcome, expand)

    async def _refund(self, caller: Caller, refund_id: str, expand: frozenset[str]) -> Response:
        outcome = await self.payments.get_refund(caller, GetRefund(refund_id))
        if outcome.refund is not None and expand & {"charge", "payment_intent"}:
            outcome.payment = (await self.payments.get_payment(caller, GetPayment(outcome.refund.payment_id))).payment
        return self._rendered(outcome, expand)

    async def _endpoints(self, caller: Caller, query: dict[str, object]) -> Response:
        limit = params.convert({"limit": query.get("limit", "10")}, params.Limit).limit
        rows = await webhook_store.list_endpoints(self.pool, caller.merchant.id, limit + 1)
        listed = render.StripeList([_endpoint_object(row) for row in rows[:limit] if row["format"] == "stripe"],
                                   len(rows) > limit, "/v1/webhook_endpoints")
        return Response(200, render.encoder.encode(listed))

    async def _read_endpoint(self, caller: Caller, endpoint_id: str) -> Response:
        row = await webhook_store.get_endpoint(self.pool, caller.merchant.id, endpoint_id)
        if row is None or row["format"] != "stripe":
            raise _no_endpoint(endpoint_id)
        return Response(200, render.encoder.encode(_endpoint_object(row)))

    async def _events(self, caller: Caller, query: dict[str, object]) -> Response:
        """Newest first; `type` is one of Stripe's types, `starting_after` / `ending_before` event ids."""
        asked = params.convert({name: query.get(name) for name in ("limit", "type", "starting_after",
                                                                  "ending_before") if name in query},
                               params.EventQuery)
        ours = stripe_events.OURS.get(asked.type) if asked.type else None
        if asked.type and ours is None:
            raise errors.invalid_request("parameter_invalid", "type is not an event type sent here.", "type")
        before = int(asked.starting_after[4:]) if asked.starting_after else None
        after = int(asked.ending_before[4:]) if asked.ending_before else None
        rows = await event_store.list_events(self.pool, caller.merchant.id, before, after, ours, None, None,
                                             asked.limit + 1)
        has_more = len(rows) > asked.limit
        rows = rows[:asked.limit]
        if after is not None:
            rows.reverse()
        listed = render.StripeList(await stripe_events.stripe_events(self.pool, rows), has_more, "/v1/events")
        return Response(200, render.encoder.encode(listed))

    async def _event(self, caller: Caller, event: int, event_id: str) -> Response:
        row = await event_store.get(self.pool, caller.merchant.id, event)
        shown = await stripe_events.stripe_events(self.pool, [row]) if row is not None else []
        if not shown:
            raise errors.invalid_request("resource_missing", f"No such event: '{event_id}'", "id", status=404)
        return Response(200, stripe_events.encode(shown[0]))

    async def _read_customer(self, caller: Caller, customer_id: str) -> Response:
        found = await customers.get_customer(self.pool, caller.merchant.id, customer_id)
        if found is None:
            raise errors.invalid_request("resource_missing", f"No such customer: '{customer_id}'", "id", status=404)
        return Response(200, render.encoder.encode(render.customer(found)))

    async def _read_card(self, caller: Caller, token: str) -> Response:
        saved = await customers.get_card(self.pool, caller.merchant.id, token)
        if saved is None:
            raise errors.invalid_request("resource_missing", f"No such PaymentMethod: '{render.method_id(token)}'",
                                         "id", status=404)
        return Response(200, render.encoder.encode(render.saved_method(saved)))

    async def _customer_cards(self, caller: Caller, customer_id: str, query: dict[str, object]) -> Response:
        limit = params.convert({"limit": query.get("limit", "10")}, params.Limit).limit
        if await customers.get_customer(self.pool, caller.merchant.id, customer_id) is None:
            raise errors.invalid_request("resource_missing", f"No such customer: '{customer_id}'", "id", status=404)
        cards, has_more = await customers.list_cards(self.pool, caller.merchant.id, customer_id, limit)
        listed = render.StripeList([render.saved_method(card) for card in cards], has_more,
                                   f"/v1/customers/{customer_id}/payment_methods")
        return Response(200, render.encoder.encode(listed))

    async def _list_intents(self, caller: Caller, query: dict[str, object], expand: frozenset[str]) -> Response:
        page = await self.payments.list_payments(caller, params.list_query(query))
        listed = render.StripeList([render.intent(p, _inner(expand)) for p in page.payments], page.has_more,
                                   "/v1/payment_intents")
        return Response(200, render.encoder.encode(listed))

    async def _list_refunds(self, caller: Caller, query: dict[str, object], expand: frozenset[str]) -> Response:
        target = params.payment_of(query.pop("payment_intent", None), query.pop("charge", None))
        listing = params.list_query(query, params.REFUND_ID)
        refunds, has_more = await self.payments.list_refunds(caller, ListRefunds(
            limit=listing.limit, payment_id=target,
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


def _endpoint_object(row: asyncpg.Record, with_secret: bool = False) -> render.WebhookEndpoint:
    return render.WebhookEndpoint(row["id"], row["url"], stripe_events.theirs(list(row["enabled_events"])),
                                  row["description"], row["status"], int(row["created_at"].timestamp()),
                                  stripe_events.API_VERSION, row["secret"] if with_secret else None)


def _no_endpoint(endpoint_id: str) -> errors.ApiError:
    return errors.invalid_request("resource_missing", f"No such webhook endpoint: '{endpoint_id}'", "id",
                                  status=404)


def _key_reused() -> errors.ApiError:
    return errors.ApiError(400, "idempotency_error", "idempotency_key_reused", "Keys for idempotent requests can "
                           "only be used with the same parameters they were first used with.")


def _idempotency_key(request: Request, request_id: str) -> str:
    """The request's Idempotency-Key; a POST without one gets a key of its own (it is never replayed)."""
    given = request.headers.get("idempotency-key")
    return schema.checked_idempotency_key(given.strip() if given is not None else f"stripe-auto-{request_id}",
                                          "Idempotency-Key")


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
