"""Bad input at the vault socket: a clear error code, and nothing written but the audit row that says so.

Complements test_auth (wrong credential, wrong PIN), test_tamper (changed ciphertext), test_roundtrip
(unknown token, bad expiry) and test_kek_rotation (missing KEK, tampered wrapped key, wrong PIN).
"""

from __future__ import annotations

import asyncio

import pytest

from switch.common.cards import CardNumber
from switch.vault_protocol import ENCODER, FRAME_HEADER, FRAMING, HELLO_ID, RESPONSE_DECODER, Response, VaultError
from tests.vault.conftest import make_pan, run_vault_cli


async def _raw_requests(stack, requests: list[dict[str, object]]) -> list[Response]:
    """Send a hello and raw request frames (no client-side checks) and collect the answers by id."""
    reader, writer = await asyncio.open_unix_connection(stack.vault_socket)
    frames = [{"op": "hello", "credential": stack.vault_credential, "caller": "test"}, *requests]
    for frame in frames:
        body = ENCODER.encode(frame)
        writer.write(FRAME_HEADER.pack(len(body)) + body)
    await writer.drain()
    decoder = FRAMING.reader()
    answers: dict[int, Response] = {}
    try:
        while len(answers) < len(frames):
            data = await asyncio.wait_for(reader.read(65536), 5)
            assert data, "the vault closed the connection"
            for body in decoder.feed(data):
                response = RESPONSE_DECODER.decode(body)
                answers[response.id] = response
    finally:
        writer.close()
    assert answers[HELLO_ID].ok
    return [answers[index + 1] for index in range(len(requests))]


def _tokenize(index: int, number: str, month: int = 5, year: int = 2033, cvc: str | None = None) -> dict[str, object]:
    return {"op": "tokenize", "id": index, "merchant_id": "m_bad", "number": number, "exp_month": month,
            "exp_year": year, "cvc": cvc}


async def test_invalid_cards_are_refused_with_their_code_and_nothing_is_written(vault_stack, vault_db):
    cases = [
        ("4242424242424241", 5, 2033, None, "incorrect_number"),
        ("42424242", 5, 2033, None, "invalid_number"),
        ("4242-4242-4242-4242", 5, 2033, None, "invalid_number"),
        (make_pan("999999"), 5, 2033, None, "unsupported_brand"),
        (make_pan("424242"), 0, 2033, None, "invalid_expiry_month"),
        (make_pan("424242"), 5, 3000, None, "invalid_expiry_year"),
        (make_pan("424242"), 1, 2021, None, "expired_card"),
        (make_pan("424242"), 5, 2033, "12a", "invalid_cvc"),
        (make_pan("378282", 15), 5, 2033, "123", "invalid_cvc"),
    ]
    before = await vault_db.fetchval("SELECT count(*) FROM vault.tokens WHERE merchant_id = 'm_bad'")
    answers = await _raw_requests(vault_stack, [_tokenize(index + 1, number, month, year, cvc)
                                                for index, (number, month, year, cvc, _) in enumerate(cases)])
    assert [(answer.ok, answer.error) for answer in answers] == [(False, code) for *_, code in cases]
    assert all(answer.token is None and answer.number is None for answer in answers)
    await asyncio.sleep(0.2)  # one audit flush interval
    assert await vault_db.fetchval("SELECT count(*) FROM vault.tokens WHERE merchant_id = 'm_bad'") == before
    assert await vault_db.fetchval("SELECT count(*) FROM vault.audit WHERE merchant_id = 'm_bad'") == 0


async def test_missing_or_malformed_tokens_are_not_found_and_audited(vault_stack, vault_db):
    tokens = ["tok_" + "A" * 22, "tok_" + "x" * 100, "card_123", "tok_\u00e9t\u00e9"]
    answers = await _raw_requests(vault_stack, [
        {"op": "detokenize", "id": index + 1, "merchant_id": "m_bad_tokens", "token": token}
        for index, token in enumerate(tokens)])
    assert [(answer.ok, answer.error) for answer in answers] == [(False, "not_found")] * len(tokens)
    for _ in range(100):
        outcomes = await vault_db.fetch(
            "SELECT outcome FROM vault.audit WHERE merchant_id = 'm_bad_tokens' AND operation = 'detokenize'")
        if len(outcomes) == len(tokens):
            break
        await asyncio.sleep(0.05)
    assert [row["outcome"] for row in outcomes] == ["not_found"] * len(tokens)


async def test_tampered_nonce_is_decrypt_failed_and_the_row_is_left_alone(vault_client, vault_db):
    info = await vault_client.tokenize("m_bad_nonce", CardNumber(make_pan()), 8, 2033, None)
    await vault_db.execute(
        "UPDATE vault.tokens SET nonce = set_byte(nonce, 0, get_byte(nonce, 0) # 1) WHERE id = $1", info.token)
    before = await vault_db.fetchrow("SELECT t::text AS line FROM vault.tokens t WHERE id = $1", info.token)
    with pytest.raises(VaultError) as caught:
        await vault_client.detokenize("m_bad_nonce", info.token)
    assert caught.value.code == "decrypt_failed"
    assert await vault_db.fetchrow("SELECT t::text AS line FROM vault.tokens t WHERE id = $1", info.token) == before


async def test_ciphertext_claiming_another_key_version_is_decrypt_failed(vault_stack, vault_client, vault_db):
    info = await vault_client.tokenize("m_bad_version", CardNumber(make_pan()), 8, 2033, None)
    result = run_vault_cli(vault_stack, "rotate-key")
    assert result.returncode == 0, result.stderr
    other = await vault_db.fetchval(
        "SELECT max(d.version) FROM vault.data_keys d, vault.tokens t WHERE t.id = $1 AND d.version <> t.key_version",
        info.token)
    await vault_db.execute("UPDATE vault.tokens SET key_version = $2 WHERE id = $1", info.token, other)
    with pytest.raises(VaultError) as caught:
        await vault_client.detokenize("m_bad_version", info.token)
    assert caught.value.code == "decrypt_failed"
