"""The official `stripe` SDK, unchanged, against the real stack through the Stripe-compatible API: the
lifecycle per brand, declines as stripe.CardError, idempotent replays and mismatches, the SDK's own retries,
pagination with auto_paging_iter, metadata, expand, unconfirmed PaymentIntents, customers and saved cards,
Stripe's events and a webhook verified with stripe.Webhook, and Stripe's error objects."""

from __future__ import annotations

import asyncio
import http.server
import secrets
import threading
import time
from collections.abc import Iterator

import asyncpg
import pytest
import stripe

from switch.dev.devstack import Stack, free_port
from tests.conftest import simulator

pytestmark = pytest.mark.integration


@pytest.fixture
def client(stack: Stack) -> Iterator[stripe.StripeClient]:
    api_key = stack.seed_merchant(f"stripe-{secrets.token_hex(4)}", fraud_rules="lists")
    yield stripe.StripeClient(api_key, base_addresses={"api": stack.switch_url + "/stripe"}, max_network_retries=2)


@pytest.mark.parametrize("method,brand", [("pm_card_visa", "visa"), ("pm_card_mastercard", "mastercard"),
                                          ("pm_card_amex", "amex")])
def test_a_payment_intent_is_confirmed_captured_in_part_and_refunded(client: stripe.StripeClient, method: str,
                                                                     brand: str) -> None:
    intent = client.v1.payment_intents.create(params={
        "amount": 2000, "currency": "usd", "payment_method": method, "confirm": True, "capture_method": "manual",
        "metadata": {"order": "A-17"}, "description": "two shirts"})
    assert isinstance(intent, stripe.PaymentIntent)
    assert (intent.status, intent.amount_capturable, intent.metadata["order"]) == ("requires_capture", 2000, "A-17")
    assert intent.id.startswith("pi_") and intent.latest_charge.startswith("ch_")

    captured = client.v1.payment_intents.capture(intent.id, params={"amount_to_capture": 1500})
    assert (captured.status, captured.amount_received, captured.amount_capturable) == ("succeeded", 1500, 0)

    refund = client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 500, "reason":
                                              "requested_by_customer"})
    assert isinstance(refund, stripe.Refund)
    assert (refund.status, refund.amount, refund.payment_intent, refund.charge) == (
        "succeeded", 500, intent.id, intent.latest_charge)

    again = client.v1.payment_intents.retrieve(intent.id, params={"expand": ["latest_charge"]})
    charge = again.latest_charge
    assert isinstance(charge, stripe.Charge)
    assert (charge.amount_captured, charge.amount_refunded, charge.captured) == (1500, 500, True)
    assert charge.payment_method_details.card.brand == brand
    assert client.v1.charges.retrieve(intent.latest_charge).payment_intent == intent.id
    assert [r.id for r in client.v1.refunds.list(params={"payment_intent": intent.id})] == [refund.id]
    assert client.v1.refunds.retrieve(refund.id).amount == 500


def test_an_automatic_capture_with_card_data_succeeds_and_its_payment_method_pays_again(
        client: stripe.StripeClient) -> None:
    intent = client.v1.payment_intents.create(params={
        "amount": 1234, "currency": "eur", "confirm": True, "payment_method_data": {
            "type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2031, "cvc": "123"}},
        "expand": ["payment_method"]})
    assert (intent.status, intent.amount_received, intent.currency) == ("succeeded", 1234, "eur")
    method = intent.payment_method
    assert isinstance(method, stripe.PaymentMethod)
    assert (method.card.last4, method.card.brand) == ("4242", "visa") and method.id.startswith("pm_")
    assert "4242424242424242" not in str(intent)

    second = client.v1.payment_intents.create(params={"amount": 99, "currency": "eur", "confirm": True,
                                                      "payment_method": method.id})
    assert second.status == "succeeded" and second.payment_method == method.id


@pytest.mark.parametrize("method,decline_code", [("pm_card_chargeDeclined", "do_not_honor"),
                                                 ("pm_card_chargeDeclinedInsufficientFunds", "insufficient_funds"),
                                                 ("tok_chargeDeclinedStolenCard", "stolen_card")])
def test_a_decline_is_a_card_error_with_its_payment_intent(client: stripe.StripeClient, method: str,
                                                            decline_code: str) -> None:
    with pytest.raises(stripe.CardError) as raised:
        client.v1.payment_intents.create(params={"amount": 700, "currency": "usd", "payment_method": method,
                                                 "confirm": True})
    error = raised.value
    assert (error.http_status, error.code, error.error.decline_code) == (402, "card_declined", decline_code)
    failed = error.error.payment_intent
    assert failed is not None and failed.status == "requires_payment_method"
    assert failed.last_payment_error.decline_code == decline_code
    assert client.v1.payment_intents.retrieve(failed.id).status == "requires_payment_method"
    assert error.request_id and error.request_id.startswith("req_")


def test_a_replay_answers_the_first_payment_and_a_changed_request_is_an_idempotency_error(
        client: stripe.StripeClient) -> None:
    key = secrets.token_hex(8)
    params: stripe.PaymentIntentCreateParams = {"amount": 500, "currency": "usd", "payment_method": "pm_card_visa",
                                                "confirm": True}
    first = client.v1.payment_intents.create(params=params, options={"idempotency_key": key})
    replay = client.v1.payment_intents.create(params=params, options={"idempotency_key": key})
    assert replay.id == first.id
    assert replay.last_response.headers["idempotent-replayed"] == "true"
    assert replay.last_response.body == first.last_response.body        # byte for byte
    assert first.last_response.headers["stripe-version"]
    with pytest.raises(stripe.IdempotencyError):
        client.v1.payment_intents.create(params={**params, "amount": 501}, options={"idempotency_key": key})


def test_auto_paging_iter_walks_every_payment_intent_newest_first(client: stripe.StripeClient) -> None:
    made = [client.v1.payment_intents.create(params={"amount": 100 + i, "currency": "usd", "confirm": True,
                                                     "payment_method": "pm_card_visa"}).id for i in range(5)]
    listed = [intent.id for intent in client.v1.payment_intents.list(params={"limit": 2}).auto_paging_iter()]
    assert listed == made[::-1]


def test_cancel_update_and_errors_in_stripes_shape(client: stripe.StripeClient) -> None:
    intent = client.v1.payment_intents.create(params={"amount": 800, "currency": "usd", "confirm": True,
                                                      "capture_method": "manual", "payment_method": "pm_card_visa",
                                                      "metadata": {"keep": "1", "drop": "x"}})
    updated = client.v1.payment_intents.update(intent.id, params={"metadata": {"drop": "", "new": "2"},
                                                                  "description": "changed"})
    assert (updated.metadata.to_dict(), updated.description) == ({"keep": "1", "new": "2"}, "changed")
    canceled = client.v1.payment_intents.cancel(intent.id, params={"cancellation_reason": "requested_by_customer"})
    assert canceled.status == "canceled"
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.payment_intents.capture(intent.id)
    assert raised.value.code == "payment_intent_unexpected_state"

    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.payment_intents.retrieve("pi_" + "0" * 22)
    assert (missing.value.http_status, missing.value.code) == (404, "resource_missing")
    with pytest.raises(stripe.InvalidRequestError) as no_amount:
        client.v1.payment_intents.create(params={"currency": "usd", "confirm": True,  # type: ignore[typeddict-item]
                                                 "payment_method": "pm_card_visa"})
    assert (no_amount.value.code, no_amount.value.param) == ("parameter_missing", "amount")
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        client.v1.payment_intents.create(params={"amount": 5, "currency": "usd", "confirm": True,
                                                 "payment_method": "pm_card_visa", "shipping_rate": "x"})  # type: ignore[typeddict-unknown-key]
    assert (unknown.value.code, unknown.value.param) == ("parameter_unknown", "shipping_rate")
    with pytest.raises(stripe.CardError) as luhn:
        client.v1.payment_intents.create(params={"amount": 5, "currency": "usd", "confirm": True,
                                                 "payment_method_data": {"type": "card", "card": {
                                                     "number": "4242424242424241", "exp_month": 1,
                                                     "exp_year": 2031}}})
    assert (luhn.value.code, luhn.value.param) == ("incorrect_number", "payment_method_data[card][number]")
    with pytest.raises(stripe.AuthenticationError):
        stripe.StripeClient("sk_wrong", base_addresses={"api": client._requestor._options.base_addresses["api"]}
                            ).v1.payment_intents.list()


def test_a_payment_intent_created_unconfirmed_is_confirmed_later_once(client: stripe.StripeClient) -> None:
    draft = client.v1.payment_intents.create(params={"amount": 1800, "currency": "usd", "metadata": {"cart": "9"}})
    assert (draft.status, draft.latest_charge, draft.amount_received) == ("requires_payment_method", None, 0)
    assert client.v1.payment_intents.retrieve(draft.id).status == "requires_payment_method"

    confirmed = client.v1.payment_intents.confirm(draft.id, params={"payment_method": "pm_card_mastercard"})
    assert (confirmed.id, confirmed.status, confirmed.amount_received) == (draft.id, "succeeded", 1800)
    assert confirmed.metadata["cart"] == "9" and confirmed.latest_charge.startswith("ch_")
    again = client.v1.payment_intents.confirm(draft.id, params={"payment_method": "pm_card_mastercard"})
    assert again.last_response.headers["idempotent-replayed"] == "true" and again.id == draft.id
    assert client.v1.payment_intents.retrieve(draft.id).status == "succeeded"


def test_an_unconfirmed_payment_intent_can_be_canceled_and_then_not_confirmed(client: stripe.StripeClient) -> None:
    draft = client.v1.payment_intents.create(params={"amount": 300, "currency": "usd", "payment_method": "pm_card_visa",
                                                     "capture_method": "manual"})
    assert draft.status == "requires_confirmation"
    assert client.v1.payment_intents.cancel(draft.id).status == "canceled"
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.payment_intents.confirm(draft.id)
    assert raised.value.code == "payment_intent_unexpected_state"
    with pytest.raises(stripe.InvalidRequestError) as card_data:
        client.v1.payment_intents.create(params={"amount": 300, "currency": "usd", "payment_method_data": {
            "type": "card", "card": {"number": "4242424242424242", "exp_month": 1, "exp_year": 2031}}})
    assert card_data.value.param == "payment_method_data" and "4242424242424242" not in str(card_data.value)


def test_the_sdks_own_retries_after_a_timeout_make_one_payment(stack: Stack) -> None:
    """The first attempt times out in the SDK while the network answers slowly; the SDK retries with the
    same Idempotency-Key (409 while it is in flight, then the replay): one payment, the first one's."""
    api_key = stack.seed_merchant(f"stripe-retry-{secrets.token_hex(4)}", fraud_rules="lists")
    base = {"api": stack.switch_url + "/stripe"}
    patient = stripe.StripeClient(api_key, base_addresses=base)
    hasty = stripe.StripeClient(api_key, base_addresses=base, max_network_retries=6,
                                http_client=stripe.RequestsClient(timeout=0.15))
    simulator(stack, "/behaviour", {"network": "visa", "latency_ms": 400})
    try:
        intent = hasty.v1.payment_intents.create(params={"amount": 4321, "currency": "usd", "confirm": True,
                                                         "payment_method": "pm_card_visa"})
    finally:
        simulator(stack, "/behaviour", {"network": "visa", "latency_ms": 0})
    assert intent.status == "succeeded"
    assert intent.last_response.headers["idempotent-replayed"] == "true"      # it was a retry
    assert [listed.id for listed in patient.v1.payment_intents.list()] == [intent.id]


def test_a_card_saved_to_a_customer_pays_again_and_only_for_that_customer(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create(params={"email": "Jane@Example.com", "name": "Jane",
                                                  "metadata": {"tier": "gold"}})
    assert (customer.email, customer.metadata["tier"]) == ("jane@example.com", "gold")
    method = client.v1.payment_methods.create(params={"type": "card", "card": {
        "number": "5555555555554444", "exp_month": 11, "exp_year": 2032, "cvc": "314"}})
    assert (method.card.brand, method.card.last4, method.customer) == ("mastercard", "4444", None)
    attached = client.v1.payment_methods.attach(method.id, params={"customer": customer.id})
    assert attached.customer == customer.id
    assert client.v1.payment_methods.retrieve(method.id).customer == customer.id
    assert [m.id for m in client.v1.customers.payment_methods.list(customer.id)] == [method.id]

    intent = client.v1.payment_intents.create(params={"amount": 990, "currency": "usd", "confirm": True,
                                                      "customer": customer.id, "payment_method": method.id})
    assert intent.status == "succeeded" and intent.payment_method == method.id

    stranger = client.v1.customers.create(params={"email": "someone@example.com"})
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.payment_intents.create(params={"amount": 990, "currency": "usd", "confirm": True,
                                                 "customer": stranger.id, "payment_method": method.id})
    assert raised.value.code == "payment_method_not_attached"
    assert client.v1.payment_methods.detach(method.id).customer is None
    assert list(client.v1.customers.payment_methods.list(customer.id)) == []


def test_a_customer_made_with_a_test_payment_method_and_a_replayed_create(client: stripe.StripeClient) -> None:
    key = secrets.token_hex(8)
    customer = client.v1.customers.create(params={"name": "Ann", "payment_method": "pm_card_visa"},
                                          options={"idempotency_key": key})
    again = client.v1.customers.create(params={"name": "Ann", "payment_method": "pm_card_visa"},
                                       options={"idempotency_key": key})
    assert again.id == customer.id
    with pytest.raises(stripe.IdempotencyError):
        client.v1.customers.create(params={"name": "Bob"}, options={"idempotency_key": key})
    (saved,) = client.v1.customers.payment_methods.list(customer.id)
    assert (saved.card.last4, saved.customer) == ("4242", customer.id)
    with pytest.raises(stripe.CardError) as bad_card:
        client.v1.payment_methods.create(params={"type": "card", "card": {
            "number": "4242424242424241", "exp_month": 1, "exp_year": 2031}})
    assert (bad_card.value.code, bad_card.value.param) == ("incorrect_number", "card[number]")
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.customers.retrieve("cus_" + "0" * 22)
    assert missing.value.http_status == 404


class _Hooks(http.server.BaseHTTPRequestHandler):
    """A webhook receiver on loopback: keeps what it is sent, answers 200."""

    received: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:  # noqa: N802 - the standard library's name
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        self.received.append(({name.lower(): value for name, value in self.headers.items()}, body))
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
        pass


def test_stripe_shaped_events_and_a_stripe_signed_webhook(client: stripe.StripeClient) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _Hooks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Hooks.received = []
    try:
        endpoint = client.v1.webhook_endpoints.create(params={
            "url": f"http://127.0.0.1:{server.server_address[1]}/stripe", "enabled_events": [
                "payment_intent.succeeded", "refund.created"]})
        assert endpoint.secret.startswith("whsec_") and endpoint.enabled_events == [
            "payment_intent.succeeded", "refund.created"]
        intent = client.v1.payment_intents.create(params={"amount": 2500, "currency": "usd", "confirm": True,
                                                          "payment_method": "pm_card_visa"})
        deadline = time.monotonic() + 15
        while not _Hooks.received and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _Hooks.received, "no webhook arrived"
        headers, body = _Hooks.received[0]
        event = stripe.Webhook.construct_event(body.decode(), headers["stripe-signature"], endpoint.secret)
        assert (event.type, event.data.object.id, event.data.object.object) == (
            "payment_intent.succeeded", intent.id, "payment_intent")
        with pytest.raises(stripe.SignatureVerificationError):
            stripe.Webhook.construct_event(body.decode(), headers["stripe-signature"], "whsec_wrong")
        assert "4242424242424242" not in body.decode()

        listed = client.v1.events.list(params={"type": "payment_intent.succeeded", "limit": 1})
        assert [e.data.object.id for e in listed] == [intent.id]
        assert client.v1.events.retrieve(event.id).type == "payment_intent.succeeded"
        assert client.v1.webhook_endpoints.retrieve(endpoint.id).url == endpoint.url
        assert client.v1.webhook_endpoints.delete(endpoint.id).deleted is True
    finally:
        server.shutdown()


def _sql(stack: Stack, statement: str, *args: object) -> None:
    async def run() -> None:
        connection = await asyncpg.connect(stack.database_url)
        try:
            await connection.execute(statement, *args)
        finally:
            await connection.close()

    asyncio.run(run())


def test_a_cancel_waits_out_a_confirmation_in_flight(client: stripe.StripeClient, stack: Stack) -> None:
    """A cancel that came while a confirmation was writing its payment once answered canceled, and the
    payment went on to be authorized. The confirmation claims its draft first; the claim is made here as a
    confirmation in flight makes it."""
    draft = client.v1.payment_intents.create(params={"amount": 300, "currency": "usd", "payment_method": "pm_card_visa",
                                                     "capture_method": "manual"})
    _sql(stack, "UPDATE payment_intent_drafts SET confirming_at = now() WHERE id = $1", "pay_" + draft.id[3:])
    with pytest.raises(stripe.InvalidRequestError) as waiting:
        client.v1.payment_intents.cancel(draft.id)
    assert waiting.value.code == "payment_intent_unexpected_state"
    assert client.v1.payment_intents.confirm(draft.id).status == "requires_capture"
    assert client.v1.payment_intents.cancel(draft.id).status == "canceled"      # the authorization itself


def test_a_confirmation_that_made_no_payment_gives_its_claim_back(client: stripe.StripeClient) -> None:
    draft = client.v1.payment_intents.create(params={"amount": 300, "currency": "usd", "payment_method": "pm_card_visa",
                                                     "capture_method": "manual"})
    with pytest.raises(stripe.StripeError):
        client.v1.payment_intents.confirm(draft.id, params={"payment_method": "pm_card_no_such_card"})
    assert client.v1.payment_intents.cancel(draft.id).status == "canceled"
