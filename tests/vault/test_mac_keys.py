"""MAC session keys: derived by the vault inside the HSM, equal to the simulator's software derivation, for
authenticated callers only. The master keys sit in the token as sensitive, non-extractable CMAC-only keys."""

from __future__ import annotations

import asyncio
import os

import pytest
from pkcs11 import Attribute

from switch.dev.devstack import mac_master_keys_file
from switch.iso.mac import derive_session_key, parse_master_keys
from switch.vault_client import VaultClient
from switch.vault_protocol import ENCODER, FRAME_HEADER, RESPONSE_DECODER, Hello, MacKeyRequest, VaultError
from vault.hsm import Hsm, mac_master_label


@pytest.fixture
def master_keys(vault_stack):
    """The simulator's copy of the master keys: the file the stack runner wrote for this stack."""
    path = mac_master_keys_file(vault_stack.run_dir)
    assert os.stat(path).st_mode & 0o777 == 0o600
    return parse_master_keys(path.read_text())


@pytest.mark.parametrize("network", ["visa", "mastercard", "generic"])
async def test_session_key_matches_the_far_ends_derivation(vault_client, master_keys, network):
    for generation in (1, 1_700_000_000):
        key = await vault_client.mac_key(network, generation)
        assert key == derive_session_key(master_keys[network], network, generation)


async def test_generations_and_networks_give_different_keys(vault_client):
    keys = [await vault_client.mac_key(network, generation)
            for network in ("visa", "mastercard") for generation in (10, 11, 12)]
    assert len(set(keys)) == len(keys)
    assert await vault_client.mac_key("visa", 11) == keys[1]  # Deterministic: both ends agree.


async def test_unknown_network_and_bad_generation_are_refused(vault_client):
    with pytest.raises(VaultError) as caught:
        await vault_client.mac_key("amex", 1)
    assert caught.value.code == "not_found"
    with pytest.raises(VaultError) as caught:
        await vault_client.mac_key("visa", 0)
    assert caught.value.code == "invalid_request"


async def _frames(socket_path: str, *bodies: bytes) -> list:
    """Send raw frames, return every response frame until the vault closes or goes quiet."""
    reader, writer = await asyncio.open_unix_connection(socket_path)
    writer.write(b"".join(FRAME_HEADER.pack(len(body)) + body for body in bodies))
    await writer.drain()
    data = b""
    try:
        async with asyncio.timeout(2):
            while chunk := await reader.read(65536):
                data += chunk
    except TimeoutError:
        pass
    writer.close()
    responses = []
    while data:
        (length,) = FRAME_HEADER.unpack_from(data)
        responses.append(RESPONSE_DECODER.decode(data[FRAME_HEADER.size:FRAME_HEADER.size + length]))
        data = data[FRAME_HEADER.size + length:]
    return responses


async def test_unauthenticated_callers_get_no_key(vault_stack):
    request = ENCODER.encode(MacKeyRequest(id=1, network="visa", generation=5))
    # No hello at all: refused and closed.
    [response] = await _frames(vault_stack.vault_socket, request)
    assert (response.ok, response.error, response.key) == (False, "unauthorized", None)
    # A wrong credential, then the request anyway: refused and closed before the request is read.
    wrong_hello = ENCODER.encode(Hello(credential="not-the-credential"))
    [response] = await _frames(vault_stack.vault_socket, wrong_hello, request)
    assert (response.ok, response.error, response.key) == (False, "unauthorized", None)
    # The same request after a good hello is answered: the refusals above were about authentication.
    good_hello = ENCODER.encode(Hello(credential=vault_stack.vault_credential))
    hello_answer, answer = await _frames(vault_stack.vault_socket, good_hello, request)
    assert hello_answer.ok and answer.ok and answer.key is not None and len(answer.key) == 16
    client = VaultClient(vault_stack.vault_socket, "not-the-credential", connections=1)
    with pytest.raises(VaultError) as caught:
        await client.connect()
    assert caught.value.code == "unauthorized"


async def test_master_keys_in_the_token_are_not_extractable(vault_stack, monkeypatch):
    token = vault_stack.hsm
    monkeypatch.setenv("SOFTHSM2_CONF", token.conf_path)
    hsm = await asyncio.to_thread(Hsm.open, token.module, token.label, token.pin)
    try:
        key = hsm._mac_key_locked(mac_master_label("visa"))
        assert key[Attribute.SENSITIVE] is True
        assert key[Attribute.EXTRACTABLE] is False
        assert key[Attribute.SIGN] is True and key[Attribute.ENCRYPT] is False
    finally:
        hsm.close()
