"""Tokenize and detokenize through the real vault process over its Unix socket."""

from __future__ import annotations

import asyncio

import pytest

from switch.common.cards import CardNumber, SecretStr
from switch.vault_protocol import VaultError
from tests.vault.conftest import make_pan


async def test_tokenize_then_detokenize_returns_the_card(vault_client):
    pan = make_pan("424242")
    info = await vault_client.tokenize("m_round", CardNumber(pan), 12, 2031, SecretStr("123"))
    assert info.token.startswith("tok_")
    assert (info.brand, info.bin, info.last4) == ("visa", pan[:6], pan[-4:])
    assert (info.exp_month, info.exp_year) == (12, 2031)
    assert len(info.fingerprint_hex) == 64
    card = await vault_client.detokenize("m_round", info.token)
    assert card.number.reveal() == pan
    assert (card.brand, card.last4, card.exp_month, card.exp_year) == ("visa", pan[-4:], 12, 2031)


async def test_ping(vault_client):
    assert await vault_client.ping() is True


async def test_unknown_token_is_not_found(vault_client):
    with pytest.raises(VaultError) as caught:
        await vault_client.detokenize("m_round", "tok_doesnotexist")
    assert caught.value.code == "not_found"


async def test_other_merchants_token_is_not_found(vault_client):
    info = await vault_client.tokenize("m_owner", CardNumber(make_pan("555555")), 1, 2032, None)
    with pytest.raises(VaultError) as caught:
        await vault_client.detokenize("m_thief", info.token)
    assert caught.value.code == "not_found"


@pytest.mark.parametrize(("prefix", "length", "code"), [
    ("999999", 16, "unsupported_brand"),
])
async def test_unsupported_brand_is_refused(vault_client, prefix, length, code):
    with pytest.raises(VaultError) as caught:
        await vault_client.tokenize("m_round", CardNumber(make_pan(prefix, length)), 1, 2032, None)
    assert caught.value.code == code


@pytest.mark.parametrize(("month", "year", "code"), [
    (13, 2032, "invalid_expiry_month"), (1, 1999, "invalid_expiry_year"), (1, 2020, "expired_card"),
])
async def test_bad_expiry_is_refused(vault_client, month, year, code):
    with pytest.raises(VaultError) as caught:
        await vault_client.tokenize("m_round", CardNumber(make_pan()), month, year, None)
    assert caught.value.code == code


async def test_many_pipelined_requests(vault_client):
    pans = [make_pan("510510") for _ in range(300)]
    infos = await asyncio.gather(*(vault_client.tokenize("m_pipe", CardNumber(pan), 6, 2033, None)
                                   for pan in pans))
    cards = await asyncio.gather(*(vault_client.detokenize("m_pipe", info.token) for info in infos))
    assert [card.number.reveal() for card in cards] == pans
    assert all(info.brand == "mastercard" for info in infos)


async def test_detokenize_is_audited_without_the_pan(vault_client, vault_db):
    pan = make_pan("378282", 15)
    info = await vault_client.tokenize("m_audit", CardNumber(pan), 3, 2034, None)
    await vault_client.detokenize("m_audit", info.token)
    with pytest.raises(VaultError):
        await vault_client.detokenize("m_other", info.token)
    rows = []
    for _ in range(100):
        rows = await vault_db.fetch(
            "SELECT caller, operation, merchant_id, outcome, audit::text AS line FROM vault.audit AS audit"
            " WHERE token_id = $1 AND operation = 'detokenize' ORDER BY id", info.token)
        if len(rows) >= 2:
            break
        await asyncio.sleep(0.05)
    outcomes = [(row["merchant_id"], row["outcome"]) for row in rows]
    assert outcomes == [("m_audit", "ok"), ("m_other", "not_found")]
    assert all(row["caller"] == "switch" for row in rows)
    assert not any(pan in row["line"] for row in rows)


async def test_a_bad_token_never_fails_the_lookups_batched_with_it(vault_client, vault_db):
    # A token holding a NUL once reached the batched SELECT, which Postgres refused as a whole (all 30 good
    # lookups failed with it), and its audit row then stalled the audit log. It is refused before both
    # now; were anything else refused in a batch, the batch would be split (refused_by_postgres).
    info = await vault_client.tokenize("m_batch", CardNumber(make_pan("555555")), 12, 2031, None)
    lookups = [vault_client.detokenize("m_batch", info.token) for _ in range(30)]
    lookups.insert(15, vault_client.detokenize("m_batch", "tok_bad\u0000token"))
    results = await asyncio.gather(*lookups, return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    assert len(failed) == 1 and isinstance(failed[0], VaultError), failed
    assert all(r.last4 == info.last4 for r in results if not isinstance(r, BaseException))
    for _ in range(100):                                # the audit log still flows
        if await vault_db.fetchval("SELECT count(*) FROM vault.audit WHERE merchant_id = 'm_batch' "
                                   "AND operation = 'detokenize'") >= 31:
            break
        await asyncio.sleep(0.05)
    assert await vault_db.fetchval("SELECT count(*) FROM vault.audit WHERE merchant_id = 'm_batch' "
                                   "AND operation = 'detokenize'") == 31
