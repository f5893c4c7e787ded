"""The same card tokenized again by the same merchant gets the same token; other merchants get their own."""

from __future__ import annotations

import asyncio

from switch.common.cards import CardNumber
from tests.vault.conftest import make_pan


async def test_same_card_same_merchant_returns_the_same_token_and_updates_expiry(vault_client):
    pan = make_pan("601111")
    first = await vault_client.tokenize("m_dedupe", CardNumber(pan), 1, 2030, None)
    second = await vault_client.tokenize("m_dedupe", CardNumber(pan), 2, 2035, None)
    assert second.token == first.token
    assert second.fingerprint_hex == first.fingerprint_hex
    assert (second.exp_month, second.exp_year) == (2, 2035)
    card = await vault_client.detokenize("m_dedupe", first.token)
    assert (card.exp_month, card.exp_year) == (2, 2035)
    assert card.brand == "discover"


async def test_same_card_other_merchant_gets_another_token(vault_client):
    pan = make_pan("353011")
    first = await vault_client.tokenize("m_dedupe_a", CardNumber(pan), 1, 2030, None)
    second = await vault_client.tokenize("m_dedupe_b", CardNumber(pan), 1, 2030, None)
    assert first.token != second.token
    assert first.fingerprint_hex == second.fingerprint_hex  # one fingerprint key per vault
    assert first.brand == "jcb"


async def test_concurrent_tokenize_of_one_card_yields_one_token(vault_client):
    pan = make_pan("222100")
    infos = await asyncio.gather(*(vault_client.tokenize("m_race", CardNumber(pan), 5, 2031, None)
                                   for _ in range(50)))
    assert len({info.token for info in infos}) == 1


async def test_fingerprint_is_keyed_not_a_plain_hash(vault_client):
    import hashlib

    pan = make_pan("411111")
    info = await vault_client.tokenize("m_fp", CardNumber(pan), 5, 2031, None)
    assert info.fingerprint_hex != hashlib.sha256(pan.encode()).hexdigest()
