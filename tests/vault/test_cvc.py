"""The CVC lives only in vault memory: handed out once, bounded, expiring, never in Postgres."""

from __future__ import annotations

from switch.common.cards import CardNumber, SecretStr
from tests.vault.conftest import make_pan
from vault.service import CvcCache


async def test_cvc_is_returned_once_then_dropped(vault_client):
    info = await vault_client.tokenize("m_cvc", CardNumber(make_pan()), 4, 2032, SecretStr("739"))
    first = await vault_client.detokenize("m_cvc", info.token)
    second = await vault_client.detokenize("m_cvc", info.token)
    assert first.cvc is not None and first.cvc.reveal() == "739"
    assert repr(first.cvc) == "SecretStr('***')"
    assert second.cvc is None


async def test_other_merchant_cannot_consume_the_cvc(vault_client):
    info = await vault_client.tokenize("m_cvc_owner", CardNumber(make_pan()), 4, 2032, SecretStr("739"))
    try:
        await vault_client.detokenize("m_cvc_thief", info.token)
    except Exception:
        pass
    card = await vault_client.detokenize("m_cvc_owner", info.token)
    assert card.cvc is not None and card.cvc.reveal() == "739"


async def test_cvc_and_pan_never_reach_postgres(vault_client, vault_db):
    pan = make_pan("378734", 15)
    info = await vault_client.tokenize("m_cvc_pg", CardNumber(pan), 4, 2032, SecretStr("7391"))
    row = await vault_db.fetchrow(
        "SELECT t.ciphertext, (SELECT string_agg(x::text, '|') FROM (SELECT id, merchant_id, brand, bin,"
        " last4, exp_month, exp_year, created_at FROM vault.tokens WHERE id = $1) x) AS clear"
        " FROM vault.tokens t WHERE t.id = $1", info.token)
    assert "7391" not in row["clear"] and pan not in row["clear"]
    # AES-GCM: ciphertext = PAN + 16-byte tag, so nothing else (no CVC) is inside it.
    assert len(row["ciphertext"]) == len(pan) + 16
    assert pan.encode() not in row["ciphertext"]
    columns = await vault_db.fetch(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'vault'")
    assert not any("cvc" in c["column_name"] or "cvv" in c["column_name"] or "pan" == c["column_name"]
                   for c in columns)
    audit = await vault_db.fetch("SELECT a::text AS line FROM vault.audit a")
    assert not any(pan in r["line"] for r in audit)


def test_cache_expires_entries():
    now = [0.0]
    cache = CvcCache(ttl_s=10, entries_max=100, clock=lambda: now[0])
    cache.put("tok_a", SecretStr("123"))
    now[0] = 10.5
    assert cache.take("tok_a") is None


def test_cache_is_bounded_and_evicts_oldest():
    now = [0.0]
    cache = CvcCache(ttl_s=600, entries_max=3, clock=lambda: now[0])
    for index in range(5):
        now[0] = float(index)
        cache.put(f"tok_{index}", SecretStr("12" + str(index)))
    assert len(cache) == 3
    assert cache.take("tok_0") is None and cache.take("tok_1") is None
    assert cache.take("tok_4") == SecretStr("124")
    assert cache.take("tok_4") is None
    assert "12" not in repr(cache)
