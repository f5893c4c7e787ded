"""A card saved without a payment (a Stripe PaymentMethod): validated and tokenized by the vault, as a
payment's raw card data is. Only the token and what may be shown of the card come back."""

from __future__ import annotations

from switch.common.cards import CardError, CardInput, CardNumber, validate_expiry
from switch.payments.commands import Caller
from switch.payments.context import Services
from switch.payments.outcome import Outcome
from switch.payments.results import Result
from switch.payments.steps.card import vault_result
from switch.vault_client import TokenInfo
from switch.vault_protocol import VaultError


async def tokenize(services: Services, caller: Caller, card: CardInput) -> TokenInfo | Outcome:
    """The card's token and display details, or the outcome saying why it cannot be saved."""
    try:
        number = CardNumber(card.number)
        validate_expiry(card.exp_month, card.exp_year)
        return await services.vault.tokenize(caller.merchant.id, number, card.exp_month, card.exp_year, None)
    except CardError as error:
        return Outcome(Result(error.code), caller.request_id, message=error.message)
    except VaultError as error:
        return Outcome(vault_result(error), caller.request_id)
