"""The public tokenization endpoint: ``POST /v1/tokens``, as Stripe.js posts card data to Stripe.

A merchant's checkout page sends the card straight to the vault with the merchant's publishable key; the
merchant's server then only ever handles the token (``payment_method: "tok_..."`` on the switch). The
vault process serves it over HTTP (``switch.common.http``) next to its Unix socket when ``VAULT_HTTP_PORT``
is set, on ``VAULT_HTTP_HOST`` (127.0.0.1 by default; a TLS-terminating proxy sits in front in production).

Request: ``Authorization: Bearer pk_test_...`` and ``{"card": {"number", "exp_month", "exp_year", "cvc"}}``.
Answer: ``{"id": "tok_...", "object": "token", "card": {"brand", "last4", "exp_month", "exp_year"}}``.
Errors are Stripe-style objects. CORS allows any origin (a publishable key is public and no cookie is
involved). Each key is rate-limited by a token bucket; the map of buckets is bounded.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable

import asyncpg
import msgspec
from msgspec import Struct

from switch.common.cards import CardError, CardInput, CardNumber, SecretStr
from switch.common.errors import ApiError, ConfigError, authentication_error, invalid_request, service_unavailable
from switch.common.http import Request, Response, serve
from switch.common.validation import error_message, error_param
from switch.vault_protocol import VaultError
from vault.metrics import RequestStats
from vault.publishable_keys import PUBLISHABLE_KEY_PREFIX, PublishableKeyCache
from vault.service import Vault

log = logging.getLogger("vault.public_api")

TOKENS_PATH = "/v1/tokens"
RATE_PER_S_DEFAULT = 20.0
BURST_DEFAULT = 40
BUCKETS_MAX = 10_000
CORS_MAX_AGE_S = 600
_JSON = "application/json"

_CORS_HEADERS = [("access-control-allow-origin", "*")]
_PREFLIGHT_HEADERS = [
    ("access-control-allow-origin", "*"),
    ("access-control-allow-methods", "POST, OPTIONS"),
    ("access-control-allow-headers", "authorization, content-type"),
    ("access-control-max-age", str(CORS_MAX_AGE_S)),
]

# The param a card error points at, as Stripe names them.
_CARD_ERROR_PARAMS = {
    "invalid_number": "card[number]", "incorrect_number": "card[number]", "unsupported_brand": "card[number]",
    "invalid_expiry_month": "card[exp_month]", "expired_card": "card[exp_month]",
    "invalid_expiry_year": "card[exp_year]", "invalid_cvc": "card[cvc]",
}
_CARD_ERROR_MESSAGES = {
    "invalid_number": "The card number is not a valid card number.",
    "incorrect_number": "The card number is incorrect.",
    "unsupported_brand": "This card brand is not supported.",
    "invalid_expiry_month": "The card's expiration month is invalid.",
    "invalid_expiry_year": "The card's expiration year is invalid.",
    "expired_card": "The card has expired.",
    "invalid_cvc": "The card's security code is invalid.",
}


class TokenCreate(Struct, forbid_unknown_fields=True):
    card: CardInput


class TokenCardOut(Struct):
    brand: str
    last4: str
    exp_month: int
    exp_year: int


class TokenOut(Struct):
    id: str
    card: TokenCardOut
    object: str = "token"


_DECODER = msgspec.json.Decoder(TokenCreate)
_ENCODER = msgspec.json.Encoder()


# ----- rate limit -----------------------------------------------------------------------------------------


class RateLimiter:
    """One token bucket per key: ``burst`` requests at once, refilled at ``rate_per_s``.

    At most ``buckets_max`` buckets are kept (least recently used evicted first), so memory is bounded
    whatever the number of keys; an evicted key simply starts again with a full bucket.
    """

    def __init__(self, rate_per_s: float, burst: int, buckets_max: int = BUCKETS_MAX,
                 clock: Callable[[], float] = time.monotonic) -> None:
        assert rate_per_s > 0 and burst >= 1 and buckets_max >= 1
        self._rate_per_s = rate_per_s
        self._burst = float(burst)
        self._buckets_max = buckets_max
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str) -> float:
        """0.0 when the request may go ahead, else the seconds until one token is back."""
        now = self._clock()
        tokens, updated = self._buckets.pop(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - updated) * self._rate_per_s)
        wait_s = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait_s = (1.0 - tokens) / self._rate_per_s
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self._buckets_max:
            self._buckets.popitem(last=False)
        return wait_s


# ----- application ----------------------------------------------------------------------------------------


def _card_error(code: str) -> ApiError:
    return ApiError(402, "card_error", code, _CARD_ERROR_MESSAGES.get(code, "The card was refused."),
                    param=_CARD_ERROR_PARAMS.get(code))


class RateLimited(ApiError):
    def __init__(self, wait_s: float) -> None:
        super().__init__(429, "rate_limit_error", "rate_limit",
                         f"Too many requests with this key; retry in {wait_s:.1f}s.", retryable=True)
        self.retry_after_s = max(1, math.ceil(wait_s))


def _result(error: ApiError) -> str:
    """The metrics' result for a refused request: its card error code, else one named by its status."""
    if error.type == "card_error":
        return error.code
    return _RESULT_BY_STATUS.get(error.status, "invalid_request" if error.status < 500 else "unavailable")


_RESULT_BY_STATUS = {401: "unauthorized", 429: "rate_limited"}


class PublicTokenApi:
    """Maps HTTP requests to ``Vault.tokenize``. Every answer carries the CORS header."""

    def __init__(self, vault: Vault, keys: PublishableKeyCache, limiter: RateLimiter,
                 stats: RequestStats | None = None) -> None:
        self._vault = vault
        self._keys = keys
        self._limiter = limiter
        self._stats = stats or RequestStats()

    async def handle(self, request: Request) -> Response:
        started = time.perf_counter()
        request_id = "req_" + secrets.token_urlsafe(12)
        result = "ok"
        try:
            response = await self._dispatch(request)
        except ApiError as error:
            headers = [("retry-after", str(error.retry_after_s))] if isinstance(error, RateLimited) else []
            response = Response(error.status, error.body(request_id), headers=headers)
            result = _result(error)
        if request.method != "OPTIONS":     # a browser's CORS preflight is no tokenize
            self._stats.observe("public_tokenize", result, time.perf_counter() - started)
        response.headers.extend(_CORS_HEADERS)
        response.headers.append(("request-id", request_id))
        return response

    async def _dispatch(self, request: Request) -> Response:
        if request.path != TOKENS_PATH:
            raise ApiError(404, "invalid_request_error", "resource_missing", "Unrecognized request URL.")
        if request.method == "OPTIONS":
            return Response(204, b"", headers=list(_PREFLIGHT_HEADERS))
        if request.method != "POST":
            raise ApiError(405, "invalid_request_error", "method_not_allowed", "Use POST for /v1/tokens.")
        merchant_id, caller = await self._authenticate(request)
        body = self._decode(request.body)
        return await self._tokenize(merchant_id, caller, body.card)

    async def _authenticate(self, request: Request) -> tuple[str, str]:
        scheme, _, key = request.header("authorization").partition(" ")
        if scheme.lower() != "bearer" or not key:
            raise authentication_error("Provide your publishable key as 'Authorization: Bearer pk_test_...'.")
        if not key.startswith(PUBLISHABLE_KEY_PREFIX):
            raise authentication_error("This endpoint takes a publishable key (pk_test_...), never a secret key.")
        try:
            owner = await self._keys.owner(key)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            log.error("publishable key lookup failed: %s", type(exc).__name__)
            raise service_unavailable("vault_unavailable", "The vault is unavailable; retry shortly.") from None
        if owner is None:
            raise authentication_error("Invalid publishable key provided.")
        wait_s = self._limiter.take(owner.key_id)
        if wait_s > 0:
            raise RateLimited(wait_s)
        return owner.merchant_id, f"public:{owner.key_id}"

    @staticmethod
    def _decode(body: bytes) -> TokenCreate:
        if not body:
            raise invalid_request("missing_body", "The request body must be a JSON object.")
        try:
            return _DECODER.decode(body)
        except msgspec.ValidationError as error:
            raise invalid_request("parameter_invalid", error_message(error), error_param(error)) from None
        except msgspec.DecodeError:
            raise invalid_request("invalid_json", "The request body is not valid JSON.") from None

    async def _tokenize(self, merchant_id: str, caller: str, card: CardInput) -> Response:
        try:
            number = CardNumber(card.number)
            record = await self._vault.tokenize(merchant_id, number, card.exp_month, card.exp_year,
                                                None if card.cvc is None else SecretStr(card.cvc), caller=caller)
        except CardError as error:
            raise _card_error(error.code) from None
        except VaultError as error:
            if error.code in _CARD_ERROR_PARAMS:
                raise _card_error(error.code) from None
            if error.code == "invalid_request":
                raise invalid_request("parameter_invalid", "The request is invalid.") from None
            raise service_unavailable("vault_unavailable", "The vault is unavailable; retry shortly.") from None
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            log.error("public tokenize failed: %s", type(exc).__name__)
            raise service_unavailable("vault_unavailable", "The vault is unavailable; retry shortly.") from None
        if record.created:
            self._stats.tokens_written += 1
        out = TokenOut(id=record.token, card=TokenCardOut(brand=record.brand, last4=record.last4,
                                                          exp_month=record.exp_month, exp_year=record.exp_year))
        return Response(200, _ENCODER.encode(out), _JSON, headers=[("cache-control", "no-store")])


# ----- life cycle -----------------------------------------------------------------------------------------


def _env_number(environ: dict[str, str], name: str, default: float, minimum: float) -> float:
    raw = environ.get(name, "")
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise ConfigError(f"{name} must be a number") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum:g}")
    return value


async def start_public_api(vault: Vault, pool: asyncpg.Pool, environ: dict[str, str] | None = None, *,
                           stats: RequestStats | None = None) -> asyncio.Server | None:
    """Serve ``POST /v1/tokens`` when VAULT_HTTP_PORT is set (VAULT_HTTP_HOST, VAULT_HTTP_RATE_PER_S,
    VAULT_HTTP_BURST optional); None otherwise."""
    env = dict(os.environ if environ is None else environ)
    if not env.get("VAULT_HTTP_PORT"):
        return None
    port = int(_env_number(env, "VAULT_HTTP_PORT", 0, 0))
    rate_per_s = _env_number(env, "VAULT_HTTP_RATE_PER_S", RATE_PER_S_DEFAULT, 0.001)
    burst = int(_env_number(env, "VAULT_HTTP_BURST", BURST_DEFAULT, 1))
    host = env.get("VAULT_HTTP_HOST") or "127.0.0.1"
    api = PublicTokenApi(vault, PublishableKeyCache(pool), RateLimiter(rate_per_s, burst), stats)
    server = await serve(api.handle, host, port, reuse_port=False)
    bound_port = server.sockets[0].getsockname()[1]
    print(f"VAULT HTTP READY url=http://{host}:{bound_port}", flush=True)
    log.info("public tokenization endpoint on http://%s:%d%s", host, bound_port, TOKENS_PATH)
    return server
