"""TLS contexts: TLS 1.2 and newer only, from the standard library's ssl (PCI DSS 4.2.1: strong
cryptography on every open network; a proxy in front may do it too, but the switch must not need one)."""

from __future__ import annotations

import ssl


def server_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


def client_context(ca_file: str | None = None) -> ssl.SSLContext:
    """Verifies the peer's certificate and name (against `ca_file`, or the system's roots)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
