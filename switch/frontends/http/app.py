"""The merchant HTTP API: routing, authentication, idempotent POSTs and a bare /healthz.

Every POST needs ``Authorization: Bearer <api key>`` and an ``Idempotency-Key``; its body is decoded into a
command (switch.payments.commands) and run by the payments engine, whose outcome is rendered here. A replay
answers the stored outcome, rendered byte for byte as the first answer, with ``Idempotent-Replayed: true``.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Callable

from switch.common import errors, metrics
from switch.common.http import Request, Response
from switch.common.ids import OBJECT_ID
from switch.frontends import openapi
from switch.frontends.http import fraud_api, render, schema
from switch.frontends.http.balance_api import BalanceApi
from switch.frontends.http.events_api import EventsApi
from switch.frontends.http.fraud_api import FraudApi
from switch.frontends.http.webhooks_api import WebhooksApi
from switch.frontends.stripe import api as stripe_api
from switch.frontends.stripe.api import StripeApi
from switch.idempotency.ratelimit import Buckets, RateLimiter
from switch.merchants import ApiKeyCache, Merchant, hash_key
from switch.payments.commands import ApproveReview, Caller, GetPayment, GetRefund, Mutation, RejectReview
from switch.payments.engine import Payments
from switch.payments.outcome import Outcome
from switch.payments.results import Result
from switch.store import pool as store_pool

log = logging.getLogger(__name__)

READINESS_TIMEOUT_S = 1.0
_PAYMENT_ACTION = re.compile(rf"^/v1/payments/({OBJECT_ID})/(capture|cancel)$")
_PAYMENT = re.compile(rf"^/v1/payments/({OBJECT_ID})$")
_REFUND = re.compile(rf"^/v1/refunds/({OBJECT_ID})$")
# POSTs that are not payment commands: they take their rate-limit token on their own (side writes).
_SIDE_WRITES = ("/v1/fraud/", "/v1/webhook_endpoints", "/v1/payouts")
_REVIEW_ACTION = re.compile(r"^/v1/reviews/prv_([0-9A-Za-z]{10,40})/(approve|reject)$")


def new_request_id() -> str:
    return "req_" + secrets.token_urlsafe(12)


class App:
    def __init__(self, payments: Payments, api_keys: ApiKeyCache, fingerprint: Callable[[str, str, bytes], bytes],
                 limiter: RateLimiter, fraud: FraudApi, balance: BalanceApi, events: EventsApi,
                 webhooks: WebhooksApi, stripe: StripeApi) -> None:
        self.payments = payments
        self.webhooks = webhooks
        self.fraud = fraud
        self.balance = balance
        self.events = events
        self.api_keys = api_keys
        self.fingerprint = fingerprint
        self.limiter = limiter
        self.stripe = stripe
        self.openapi = openapi.encoded()

    async def handle(self, request: Request) -> Response:
        started = time.perf_counter()
        request_id = new_request_id()
        route = "unknown"
        try:
            route, response = await self._dispatch(request, request_id)
        except errors.ApiError as error:
            response = Response(error.status, error.body(request_id))
        except store_pool.UNAVAILABLE as error:
            store_pool.POSTGRES.failed(error)
            response = self._rendered(Outcome(Result.DATABASE_UNAVAILABLE, request_id))
        except Exception as error:  # noqa: BLE001 - every 500 is answered, counted and logged with its id
            response = self._internal_error(request, request_id, route, error)
        response.headers.append(("request-id", request_id))
        if stripe_api.stripe_path(request) is not None:          # every Stripe route comes from such a path
            stripe_api.versioned(request, response)
        metrics.observe_request(request.method, route, response.status, time.perf_counter() - started)
        return response

    async def _dispatch(self, request: Request, request_id: str) -> tuple[str, Response]:
        path, method = request.path, request.method
        if path == "/healthz":                  # bare liveness for load balancers; /readyz and /metrics are
            return "healthz", Response(200, b'{"status":"ok"}')   # on the operations port only (ops.py)
        if path == "/openapi.json" and method == "GET":       # public, as Stripe's description is
            return "openapi", Response(200, self.openapi)
        if not path.startswith(("/v1/", stripe_api.PREFIX + "/v1/")):
            raise errors.invalid_request("not_found", f"Unrecognized request URL ({method} {path[:100]}).",
                                         status=404)
        merchant, buckets = await self.authenticate(request)
        try:
            return await self._authenticated(request, request_id, merchant, buckets)
        finally:
            buckets.release()                   # a request refused before its take leaves no lease pending

    async def _authenticated(self, request: Request, request_id: str, merchant: Merchant | None,
                             buckets: Buckets) -> tuple[str, Response]:
        path, method = request.path, request.method
        stripe_path = stripe_api.stripe_path(request)
        if stripe_path is not None:
            return await self._stripe(request, stripe_path, request_id, merchant, buckets)
        if method == "POST" and merchant is not None and not path.startswith(_SIDE_WRITES):
            # A payment command: its rate-limit take rides the idempotency lock's command.
            route, build = self._post_route(path)
            key = self._idempotency_key(request)
            return route, await self.idempotent(request, merchant, request_id, key, build(request.body), buckets)
        if wait_ms := await self.limiter.admit(buckets).wait_ms():
            return "rate_limited", self._rendered(Outcome(Result.RATE_LIMITED, request_id, retry_after_ms=wait_ms))
        if merchant is None:                    # a wrong key still takes from its address's bucket
            raise errors.authentication_error("Invalid API key provided.")
        if method == "POST" or method == "DELETE" and path.startswith("/v1/webhook_endpoints"):
            answered = await self._side_write(merchant, request)
            if answered is None:
                raise errors.invalid_request("not_found", f"Unrecognized request URL ({method} {path[:100]}).",
                                             status=404)
            return answered
        if method == "GET":
            return await self._side_read(merchant, request) or await self._get(
                path, Caller(merchant, request_id), request.query)
        raise errors.invalid_request("method_not_allowed", f"{method} is not allowed on {path[:100]}.", status=405)

    async def _stripe(self, request: Request, path: str, request_id: str, merchant: Merchant | None,
                      buckets: Buckets) -> tuple[str, Response]:
        async def admit() -> Response | None:
            if wait_ms := await self.limiter.admit(buckets).wait_ms():
                return self._rendered(Outcome(Result.RATE_LIMITED, request_id, retry_after_ms=wait_ms))
            return None

        if merchant is not None and request.method == "POST":
            return await self.stripe.post(request, path, merchant, request_id, buckets, admit)
        if refused := await admit():
            return "rate_limited", refused
        if merchant is None:
            raise errors.authentication_error("Invalid API key provided.")
        if request.method == "DELETE":
            return await self.stripe.delete(request, path, merchant)
        if request.method != "GET":
            raise errors.invalid_request("method_not_allowed", f"{request.method} is not allowed on "
                                         f"{request.path[:100]}.", status=405)
        return await self.stripe.get(request, path, merchant, request_id)

    async def _side_write(self, merchant: Merchant, request: Request) -> tuple[str, Response] | None:
        """The writes that are not payment commands: fraud rules and lists, webhook endpoints, payouts."""
        path = request.path
        if request.method == "DELETE":
            return await self.webhooks.delete(merchant, path)
        if path.startswith("/v1/fraud/"):
            return await self.fraud.post(merchant, path, request.body)
        if path.startswith("/v1/webhook_endpoints"):
            return await self.webhooks.post(merchant, path, request.body)
        if path == "/v1/payouts":
            return "payouts.create", await self.balance.create_payout(
                merchant, request.body, self._idempotency_key(request),
                self.fingerprint(request.method, path, request.body))
        return None

    async def _side_read(self, merchant: Merchant, request: Request) -> tuple[str, Response] | None:
        path, query = request.path, request.query
        if path.startswith("/v1/fraud/"):
            return await self.fraud.get(merchant, path)
        if path.startswith(("/v1/balance", "/v1/payouts")):
            return await self.balance.get(merchant, path, query)
        if path.startswith("/v1/events") and (answered := await self.events.get(merchant, path, query)):
            return answered
        if path.startswith(("/v1/webhook_endpoints", "/v1/events/")):
            return await self.webhooks.get(merchant, path, query)
        return None

    @staticmethod
    def _internal_error(request: Request, request_id: str, route: str, error: Exception) -> Response:
        # The exception's class and where it was raised, never its message: it may quote a request's values.
        frame = error.__traceback__
        while frame is not None and frame.tb_next is not None:
            frame = frame.tb_next
        where = f"{frame.tb_frame.f_code.co_filename}:{frame.tb_lineno}" if frame else "?"
        log.error("500 %s on %s %s: %s at %s", request_id, request.method, route, error.__class__.__name__, where)
        body = errors.ApiError(500, "api_error", "internal_error", "An internal error occurred; the request was not "
                               "completed and may be retried with the same Idempotency-Key.").body(request_id)
        return Response(500, body)

    def _post_route(self, path: str) -> tuple[str, Callable[[bytes], Mutation]]:
        if path == "/v1/payments":
            return "payments.create", lambda body: schema.decode(schema.authorize_decoder, body)
        if path == "/v1/refunds":
            return "refunds.create", lambda body: schema.decode(schema.refund_decoder, body)
        review = _REVIEW_ACTION.match(path)
        if review:
            payment_id = "pay_" + review.group(1)
            command = ApproveReview if review.group(2) == "approve" else RejectReview
            return f"reviews.{review.group(2)}", lambda body: schema.empty(body, command(payment_id=payment_id))
        match = _PAYMENT_ACTION.match(path)
        if match and match.group(2) == "capture":
            return "payments.capture", lambda body: schema.capture(match.group(1), body)
        if match:
            return "payments.cancel", lambda body: schema.cancel(match.group(1), body)
        raise errors.invalid_request("not_found", f"Unrecognized request URL (POST {path[:100]}).", status=404)

    async def _get(self, path: str, caller: Caller, query: str) -> tuple[str, Response]:
        if path == "/v1/payments":
            page = await self.payments.list_payments(caller, schema.list_query(schema.query_params(query)))
            return "payments.list", Response(200, render.listing(page))
        if path == "/v1/reviews":
            page = await self.payments.list_reviews(caller, schema.list_query(schema.query_params(query)).limit)
            return "reviews.list", Response(200, fraud_api.reviews(page))
        if match := _PAYMENT.match(path):
            return "payments.get", self._rendered(await self.payments.get_payment(caller, GetPayment(match.group(1))))
        if match := _REFUND.match(path):
            return "refunds.get", self._rendered(await self.payments.get_refund(caller, GetRefund(match.group(1))))
        raise errors.invalid_request("not_found", f"Unrecognized request URL (GET {path[:100]}).", status=404)

    @staticmethod
    def _rendered(outcome: Outcome, headers: list[tuple[str, str]] | None = None) -> Response:
        status, body = render.answer(outcome)
        response = Response(status, body, headers=headers or [])
        if outcome.retry_after_ms:
            response.headers.append(("retry-after", str(-(-outcome.retry_after_ms // 1000))))   # whole seconds
        return response

    async def authenticate(self, request: Request) -> tuple[Merchant | None, Buckets]:
        """The merchant of the request's API key (None for a key no merchant holds), and the rate-limit
        buckets the request takes from: the key's and the address's, or the address's alone."""
        header = request.header("authorization")
        if not header:
            raise errors.authentication_error("You did not provide an API key. Send it as 'Authorization: Bearer "
                                              "<api key>'.")
        scheme, _, api_key = header.partition(" ")
        api_key = api_key.strip()
        if scheme.lower() != "bearer" or not api_key:
            raise errors.authentication_error("The Authorization header must be 'Bearer <api key>'.")
        digest = hash_key(api_key)
        merchant = await self.api_keys.merchant_for_digest(digest)
        if merchant is None:
            return None, self.limiter.buckets(None, request.remote)
        return merchant, self.limiter.buckets(digest, request.remote, merchant.rate_limit_per_s,
                                              merchant.rate_limit_burst)

    @staticmethod
    def _idempotency_key(request: Request) -> str:
        key = request.header("idempotency-key").strip()
        if not key:
            raise errors.invalid_request("idempotency_key_missing", "Every POST needs an Idempotency-Key header.",
                                         "Idempotency-Key")
        return schema.checked_idempotency_key(key, "Idempotency-Key")

    async def idempotent(self, request: Request, merchant: Merchant, request_id: str, key: str,
                         command: Mutation, buckets: Buckets) -> Response:
        # The command's fingerprint, not the body's bytes: the same request over TCP (or with other JSON
        # spacing) is the same request.
        caller = Caller(merchant, request_id, key,
                        self.fingerprint(request.method, request.path, schema.canonical(command)), buckets)
        outcome, replayed = await self.payments.execute(caller, command)
        if not replayed:
            return self._rendered(outcome)
        metrics.idempotent_replays.inc()
        return self._rendered(outcome, [("idempotent-replayed", "true")])
