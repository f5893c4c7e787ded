"""HTTPS on the merchant port: a real TLS client pays over it; TLS 1.0 / 1.1 and plain HTTP are refused."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading

import pytest

from loadtest.httpclient import Client
from switch.common.tls import client_context
from switch.dev.devstack import self_signed_pair
from tests.integration.helpers import key, payment
from tests.integration.solo import SoloStack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tls_switch(solo_stack: SoloStack):  # type: ignore[no-untyped-def]
    cert, private_key = self_signed_pair(solo_stack.stack.run_dir / "tls")
    switch = solo_stack.start_switch("switch-tls", {"SWITCH_TLS_CERT_FILE": str(cert),
                                                    "SWITCH_TLS_KEY_FILE": str(private_key)})
    yield switch, str(cert)
    solo_stack.stop_switch(switch)


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


async def test_a_payment_over_tls_verifies_the_certificate(solo_stack: SoloStack, tls_switch) -> None:
    switch, ca_file = tls_switch
    client = Client(switch.url.replace("http://", "https://"), solo_stack.api_key, ca_file=ca_file)
    try:
        created = await client.request("POST", "/v1/payments", payment(450), idempotency_key=key("tls"))
        assert created.status == 200, created.body
        again = await client.request("GET", f"/v1/payments/{created.json()['id']}")
        assert again.status == 200
    finally:
        await client.close()
    with pytest.raises(ssl.SSLCertVerificationError):     # a client that does not trust it refuses it
        untrusting = Client(switch.url.replace("http://", "https://"), solo_stack.api_key)
        await untrusting.request("GET", "/healthz")


def _tls_1_1_client(ca_file: str) -> ssl.SSLContext:
    old = client_context(ca_file)
    old.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("DEFAULT:@SECLEVEL=0")                   # so the client really offers TLS 1.1
    return old


def _speaks_tls_1_1(ca_file: str, cert: str, private_key: str) -> bool:
    """Whether this machine's OpenSSL can still hold a TLS 1.1 handshake at all (against a server that
    allows it): otherwise the refusal below would be the client's, not the switch's."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    server.set_ciphers("DEFAULT:@SECLEVEL=0")
    server.load_cert_chain(cert, private_key)
    left, right = socket.socketpair()
    with left, right:
        accepted = threading.Thread(target=lambda: _handshake_quietly(server.wrap_socket(right, server_side=True,
                                                                                          do_handshake_on_connect=False)))
        accepted.start()
        try:
            with _tls_1_1_client(ca_file).wrap_socket(left, server_hostname="127.0.0.1"):
                return True
        except ssl.SSLError:
            return False
        finally:
            accepted.join(5)


def _handshake_quietly(tls: ssl.SSLSocket) -> None:
    try:
        tls.do_handshake()
    except (ssl.SSLError, OSError):
        pass


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated")
def test_tls_1_1_and_older_are_refused(solo_stack: SoloStack, tls_switch) -> None:
    switch, ca_file = tls_switch
    cert, private_key = self_signed_pair(solo_stack.stack.run_dir / "tls")
    if not _speaks_tls_1_1(ca_file, str(cert), str(private_key)):
        pytest.skip("this OpenSSL cannot offer TLS 1.1 at all, so the switch's refusal cannot be shown")
    old = _tls_1_1_client(ca_file)
    with socket.create_connection(("127.0.0.1", _port(switch.url)), timeout=5) as raw:
        with pytest.raises(ssl.SSLError) as refused:
            with old.wrap_socket(raw, server_hostname="127.0.0.1"):
                pass
    assert "version" in str(refused.value).lower() or "protocol" in str(refused.value).lower(), refused.value
    modern = client_context(ca_file)
    with socket.create_connection(("127.0.0.1", _port(switch.url)), timeout=5) as raw:
        with modern.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")


async def test_plain_http_on_the_tls_port_gets_no_http_answer(tls_switch) -> None:
    switch, _ = tls_switch
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(switch.url))
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(4096), 5)
    writer.close()
    assert not answer.startswith(b"HTTP/1.1 200")
