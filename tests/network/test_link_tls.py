"""Network links over TLS (client side) to the simulator over TLS (server side), TLS 1.2 and newer."""

import asyncio
import sys

import pytest

from switch.common.tls import client_context
from switch.dev.devstack import self_signed_pair
from switch.iso import PROFILES
from switch.iso.messages import financial_request
from switch.network.config import LinkConfig
from switch.network.link import Link, LinkDownError


def _request() -> dict:
    return financial_request(pan="4242424242424242", amount_minor=500, currency="978", stan="000001",
                             rrn="RRT000000001", terminal_id="T1", merchant_id="M1", expiry_yymm="3012")


async def test_a_link_speaks_tls_to_the_simulator_and_a_plain_one_is_refused(tmp_path):
    cert, key = self_signed_pair(tmp_path / "tls")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "acquirer_sim", "--settlement-dir", str(tmp_path / "out"), "--settlement-time",
        "off", "--tls-cert", str(cert), "--tls-key", str(key), stdout=asyncio.subprocess.PIPE, cwd=tmp_path)
    try:
        line = (await asyncio.wait_for(process.stdout.readline(), 10)).decode()
        port = int(dict(part.split("=") for part in line.split()[2:])["generic"])
        fast = {"reconnect_delay_initial_s": 0.02, "connect_timeout_s": 2.0, "sign_on_timeout_s": 2.0}
        link = Link("127.0.0.1", port, PROFILES["generic"], late_handler=print,
                    config=LinkConfig(tls=client_context(str(cert)), **fast))
        await link.start()
        try:
            assert (await link.request(_request(), timeout_s=2.0))["39"] == "00"
        finally:
            await link.close()
        plain = Link("127.0.0.1", port, PROFILES["generic"], late_handler=print, config=LinkConfig(**fast))
        with pytest.raises(LinkDownError):
            await plain.start()
        await plain.close()
        untrusting = Link("127.0.0.1", port, PROFILES["generic"], late_handler=print,
                          config=LinkConfig(tls=client_context(), **fast))
        with pytest.raises(LinkDownError):
            await untrusting.start()                       # the simulator's certificate is not one it trusts
        await untrusting.close()
    finally:
        process.terminate()
        await process.wait()
