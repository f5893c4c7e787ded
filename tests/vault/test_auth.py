"""Callers without the shared credential are refused; a wrong HSM PIN stops the vault with a clear error."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import tempfile
from pathlib import Path

import pytest

from switch.dev.devstack import Stack
from switch.vault_client import VaultClient
from switch.vault_protocol import ENCODER, FRAME_HEADER, RESPONSE_DECODER, VaultError
from tests.vault.conftest import run_vault_cli


async def test_wrong_credential_is_refused(vault_stack):
    client = VaultClient(vault_stack.vault_socket, "not-the-credential", connections=2)
    with pytest.raises(VaultError) as caught:
        await client.connect()
    assert caught.value.code == "unauthorized"


async def _exchange(socket_path: str, body: bytes) -> tuple[bytes, bool]:
    reader, writer = await asyncio.open_unix_connection(socket_path)
    writer.write(FRAME_HEADER.pack(len(body)) + body)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(65536), 5)
    closed = await asyncio.wait_for(reader.read(1), 5) == b""
    writer.close()
    return answer, closed


async def test_request_before_hello_is_refused_and_closed(vault_stack):
    body = ENCODER.encode({"id": 1, "op": "detokenize", "merchant_id": "m", "token": "tok_x"})
    answer, closed = await _exchange(vault_stack.vault_socket, body)
    response = RESPONSE_DECODER.decode(answer[FRAME_HEADER.size:])
    assert (response.ok, response.error) == (False, "unauthorized")
    assert closed


async def test_oversized_frame_is_refused(vault_stack):
    reader, writer = await asyncio.open_unix_connection(vault_stack.vault_socket)
    writer.write(FRAME_HEADER.pack(10 * 1024 * 1024))
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(65536), 5)
    assert RESPONSE_DECODER.decode(answer[FRAME_HEADER.size:]).error == "invalid_request"
    assert await asyncio.wait_for(reader.read(1), 5) == b""
    writer.close()


def test_wrong_pin_is_a_clear_error_without_the_pin(vault_stack):
    # A token of its own, so failed logins never touch the shared token's retry counter.
    run_dir = Path(tempfile.mkdtemp(prefix="vault-pin-"))
    own = Stack(run_dir=run_dir)
    hsm = own.init_hsm()
    wrong_pin = secrets.token_hex(8)
    overrides = {**hsm.env(), "HSM_PIN": wrong_pin, "VAULT_SOCKET": str(run_dir / "v.sock"),
                 "VAULT_CREDENTIAL": "x"}
    try:
        result = run_vault_cli(vault_stack, "serve", **overrides)
    finally:
        own.stop()
        shutil.rmtree(run_dir, ignore_errors=True)
    assert result.returncode == 2
    assert "HSM login failed: wrong PIN" in result.stderr
    assert wrong_pin not in result.stderr + result.stdout
    assert "VAULT READY" not in result.stdout


def test_missing_config_names_the_variables(vault_stack):
    result = run_vault_cli(vault_stack, "serve", VAULT_SOCKET="", VAULT_CREDENTIAL="")
    assert result.returncode == 2
    assert "VAULT_SOCKET" in result.stderr and "VAULT_CREDENTIAL" in result.stderr
