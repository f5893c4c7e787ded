"""Step 2: the card from the vault (token -> card data, in memory only for the network call). Raw card data
is validated and tokenized at once, so only the token is ever written."""

from __future__ import annotations

from switch.common.cards import CardData, CardError, CardNumber, SecretStr, validate_expiry
from switch.common.currency import lookup as lookup_currency
from switch.common.failpoints import failpoint
from switch.payments.commands import Authorize
from switch.payments.context import Context, Services
from switch.payments.results import Result
from switch.vault_protocol import VaultError

_VAULT_CARD_ERRORS = frozenset({"invalid_number", "incorrect_number", "unsupported_brand", "invalid_expiry_month",
                                "invalid_expiry_year", "expired_card", "invalid_cvc"})


def vault_result(error: VaultError) -> Result:
    """What a vault error means for the request: a card error, a missing token, or a retryable outage."""
    if error.code == "not_found":
        return Result.TOKEN_MISSING
    if error.code in _VAULT_CARD_ERRORS:
        return Result(error.code)
    return Result.VAULT_UNAVAILABLE


async def check_currency(ctx: Context, services: Services) -> None:
    failpoint("payment.after_lock")
    command: Authorize = ctx.command
    if lookup_currency(command.currency) is None:
        ctx.answer(Result.CURRENCY_INVALID)


async def card(ctx: Context, services: Services) -> None:
    command: Authorize = ctx.command
    merchant_id = ctx.caller.merchant.id
    method = command.payment_method
    try:
        if isinstance(method, str):
            ctx.card, ctx.token = await services.vault.detokenize(merchant_id, method), method
            return
        raw = method.card
        number = CardNumber(raw.number)
        cvc = SecretStr(raw.cvc) if raw.cvc else None
        validate_expiry(raw.exp_month, raw.exp_year)
        info = await services.vault.tokenize(merchant_id, number, raw.exp_month, raw.exp_year, None)
    except CardError as error:
        ctx.answer(Result(error.code), message=error.message)
        return
    except VaultError as error:
        ctx.answer(vault_result(error))
        return
    ctx.card = CardData(number=number, exp_month=raw.exp_month, exp_year=raw.exp_year, brand=info.brand,
                        last4=info.last4, cvc=cvc)
    ctx.token = info.token
