"""A ciphertext changed at rest, or moved to another token, fails loudly as decrypt_failed."""

from __future__ import annotations

import pytest

from switch.common.cards import CardNumber
from switch.vault_protocol import VaultError
from tests.vault.conftest import make_pan


async def test_flipped_bit_is_decrypt_failed(vault_client, vault_db):
    info = await vault_client.tokenize("m_tamper", CardNumber(make_pan()), 8, 2033, None)
    await vault_db.execute(
        "UPDATE vault.tokens SET ciphertext = set_byte(ciphertext, 3, get_byte(ciphertext, 3) # 1)"
        " WHERE id = $1", info.token)
    with pytest.raises(VaultError) as caught:
        await vault_client.detokenize("m_tamper", info.token)
    assert caught.value.code == "decrypt_failed"


async def test_ciphertext_moved_to_another_token_is_decrypt_failed(vault_client, vault_db):
    donor = await vault_client.tokenize("m_tamper", CardNumber(make_pan()), 8, 2033, None)
    victim = await vault_client.tokenize("m_tamper", CardNumber(make_pan()), 8, 2033, None)
    await vault_db.execute(
        "UPDATE vault.tokens AS v SET ciphertext = d.ciphertext, nonce = d.nonce, key_version = d.key_version"
        " FROM vault.tokens AS d WHERE v.id = $1 AND d.id = $2", victim.token, donor.token)
    with pytest.raises(VaultError) as caught:
        await vault_client.detokenize("m_tamper", victim.token)
    assert caught.value.code == "decrypt_failed"
    assert (await vault_client.detokenize("m_tamper", donor.token)).number is not None
