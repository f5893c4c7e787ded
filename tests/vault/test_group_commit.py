"""Tokenize writes are group-committed: concurrent tokenizes leave as one statement, each still gets its own
token or error, and a card already stored is read, not rewritten."""

from __future__ import annotations

import asyncio
import secrets

import asyncpg

from switch.common.cards import CardNumber
from tests.vault.conftest import make_pan
from tests.vault.test_bad_input import _raw_requests
from tests.vault.test_metrics import ops, samples, scrape, value  # noqa: F401 - ops is a fixture
from vault.service import KeyRing, TokenRecord, Vault, _CardWrite, new_token_id

CONCURRENT = 64


async def test_concurrent_tokenizes_leave_in_fewer_statements_than_requests(ops, vault_client):  # noqa: F811
    merchant = f"m_group_{secrets.token_hex(4)}"
    pans = [make_pan("510510") for _ in range(CONCURRENT)]
    before = samples(await scrape(ops))
    infos = await asyncio.gather(*(vault_client.tokenize(merchant, CardNumber(pan), 3, 2033, None)
                                   for pan in pans))
    after = samples(await scrape(ops))
    assert len({info.token for info in infos}) == CONCURRENT
    assert [info.last4 for info in infos] == [pan[-4:] for pan in pans]
    statements = value(after, "vault_db_batches_total", operation="tokenize") - value(
        before, "vault_db_batches_total", operation="tokenize")
    items = value(after, "vault_db_batch_items_total", operation="tokenize") - value(
        before, "vault_db_batch_items_total", operation="tokenize")
    assert items == CONCURRENT
    # One statement per tokenize before group commit; now a few carry them all.
    assert 1 <= statements <= CONCURRENT // 4, statements
    assert value(after, "vault_tokens_written_total") - value(before, "vault_tokens_written_total") == CONCURRENT
    for pan, info in zip(pans, infos, strict=True):
        card = await vault_client.detokenize(merchant, info.token)
        assert card.number.reveal() == pan


async def test_a_repeated_card_does_not_rewrite_its_row(vault_client, vault_db):
    merchant = f"m_group_{secrets.token_hex(4)}"
    pan = make_pan("520082")
    first = await vault_client.tokenize(merchant, CardNumber(pan), 6, 2034, None)
    row = await vault_db.fetchrow("SELECT xmin::text AS xmin, ctid::text AS ctid FROM vault.tokens WHERE id = $1",
                                  first.token)
    again = await asyncio.gather(*(vault_client.tokenize(merchant, CardNumber(pan), 6, 2034, None)
                                   for _ in range(20)))
    assert {info.token for info in again} == {first.token}
    assert await vault_db.fetchrow("SELECT xmin::text AS xmin, ctid::text AS ctid FROM vault.tokens WHERE id = $1",
                                   first.token) == row
    # A new expiry is still written (once), and the token stays the same.
    renewed = await vault_client.tokenize(merchant, CardNumber(pan), 7, 2036, None)
    assert renewed.token == first.token and (renewed.exp_month, renewed.exp_year) == (7, 2036)
    changed = await vault_db.fetchrow(
        "SELECT xmin::text AS xmin, exp_month, exp_year FROM vault.tokens WHERE id = $1", first.token)
    assert (changed["exp_month"], changed["exp_year"]) == (7, 2036) and changed["xmin"] != row["xmin"]


async def test_one_batch_with_the_same_card_twice_and_new_cards_answers_each(vault_stack, vault_db):
    """Frames read in one pass form one batch: a card twice (one row, one token), new cards and a bad
    card among them each get their own answer."""
    repeated, fresh = make_pan("222300"), [make_pan("222400") for _ in range(5)]
    numbers = [repeated, *fresh, repeated, "4242424242424241"]
    requests = [{"op": "tokenize", "id": index + 1, "merchant_id": "m_group_mix", "number": number,
                 "exp_month": 5, "exp_year": 2033, "cvc": None} for index, number in enumerate(numbers)]
    answers = await _raw_requests(vault_stack, requests)
    assert [answer.ok for answer in answers] == [True] * 7 + [False]
    assert answers[-1].error == "incorrect_number"
    assert answers[0].token == answers[6].token
    assert len({answer.token for answer in answers[:6]}) == 6
    fingerprint = bytes.fromhex(answers[0].fingerprint or "")
    assert await vault_db.fetchval("SELECT count(*) FROM vault.tokens WHERE merchant_id = 'm_group_mix'"
                                   " AND fingerprint = $1", fingerprint) == 1


async def test_one_batch_renews_each_stored_cards_own_expiry(vault_stack, vault_db):
    """The batched store writes a changed expiry by the card's key (its `changed` rows), each its own."""
    pans = [make_pan("222500") for _ in range(3)]
    first = [{"op": "tokenize", "id": n + 1, "merchant_id": "m_group_renew", "number": pan, "exp_month": 5,
              "exp_year": 2033, "cvc": None} for n, pan in enumerate(pans)]
    stored = await _raw_requests(vault_stack, first)
    renewed = [dict(request, exp_month=n + 6, exp_year=2035 + n) for n, request in enumerate(first)]
    renewed[2] = first[2]                                     # the third card keeps its expiry
    answers = await _raw_requests(vault_stack, renewed)
    assert [a.token for a in answers] == [s.token for s in stored]
    rows = {row["id"]: (row["exp_month"], row["exp_year"]) for row in await vault_db.fetch(
        "SELECT id, exp_month, exp_year FROM vault.tokens WHERE id = ANY($1::text[])", [s.token for s in stored])}
    assert [rows[s.token] for s in stored] == [(6, 2035), (7, 2036), (5, 2033)]


async def _in_process_vault(pool: asyncpg.Pool, fingerprint_key: bytes | None = None) -> Vault:
    """A Vault object on the vault's database with throwaway keys in memory (no HSM): its ciphertexts are
    for these tests' own merchants only."""
    active = await pool.fetchval("SELECT version FROM vault.data_keys WHERE state = 'active'")
    vault = Vault(pool, hsm=None, kek_label="unused")  # type: ignore[arg-type]
    vault._keys = KeyRing(fingerprint_key or secrets.token_bytes(32))
    vault.keys.add(active, secrets.token_bytes(32))
    vault.keys.active_version = active
    return vault


async def test_two_vaults_storing_the_same_new_card_at_once_give_one_token(vault_db):
    """Each statement reads with its own snapshot: a card the other vault inserts after it is in neither
    its `existing` nor its `inserted` rows, and is asked for again rather than answered with an error."""
    key = secrets.token_bytes(32)
    first, second = await _in_process_vault(vault_db, key), await _in_process_vault(vault_db, key)
    merchant = f"m_group_{secrets.token_hex(4)}"
    for _ in range(30):
        pans = [make_pan("222700") for _ in range(8)]
        results = await asyncio.gather(*(vault.tokenize(merchant, CardNumber(pan), 5, 2033, None)
                                         for pan in pans for vault in (first, second)))
        for index in range(0, len(results), 2):
            assert results[index].token == results[index + 1].token
            assert results[index].created != results[index + 1].created
    assert await vault_db.fetchval("SELECT count(*) FROM vault.tokens WHERE merchant_id = $1", merchant) == 240


async def test_a_write_postgres_refuses_fails_alone_and_the_others_are_stored(vault_db):
    """In-process, on the vault's database: a write whose BIN is not six digits (a check violation) sent
    with good ones fails alone; the batch is split, the good ones are stored."""
    vault = await _in_process_vault(vault_db)
    merchant = f"m_group_{secrets.token_hex(4)}"
    good = [vault.tokenize(merchant, CardNumber(make_pan("222600")), 5, 2033, None) for _ in range(7)]
    token_id = new_token_id()
    bad = vault._card_writes.submit(_CardWrite(token_id, merchant, secrets.token_bytes(32),
                                               vault.keys.active_version, secrets.token_bytes(12), b"x" * 32,
                                               "visa", "4111", "1111", 5, 2033))
    results = await asyncio.gather(*good[:3], bad, *good[3:], return_exceptions=True)
    assert isinstance(results[3], asyncpg.CheckViolationError)
    records = [result for index, result in enumerate(results) if index != 3]
    assert all(isinstance(record, TokenRecord) and record.created for record in records), results
    assert vault._card_writes.splits >= 1
    assert await vault_db.fetchval("SELECT count(*) FROM vault.tokens WHERE merchant_id = $1", merchant) == 7
    # Eight requests, one statement, then the splits' halves: fewer than one statement each.
    assert vault._card_writes.items == 8
