"""Link against the real simulator over loopback TCP."""

import asyncio

import pytest

from switch.iso import PROFILES
from switch.iso.messages import authorization_request
from switch.network.config import LinkConfig
from switch.network.link import DuplicateKeyError, Link, LinkBusyError, LinkDownError, LinkTimeoutError
from tests.network.mac_keys import key_provider

CARDS = {
    "4242424242424242": "00",
    "4000000000000002": "05",
    "4000000000009995": "51",
    "4000000000000127": "N7",
    "4242424242424241": "14",
}


def auth(stan: int, pan: str = "4242424242424242", terminal_id: str = "TERM0001") -> dict:
    return authorization_request(
        pan=pan,
        amount_minor=100 + stan,
        currency="840",
        stan=f"{stan:06d}",
        rrn=f"{stan:012d}",
        terminal_id=terminal_id,
        merchant_id="MERCHANT000001",
        expiry_yymm="3012",
        cvv="123",
    )


async def open_link(simulator, network: str = "generic", **options) -> tuple[Link, list[dict]]:
    handed_over: list[dict] = []
    options.setdefault("reconnect_delay_initial_s", 0.02)
    link = Link(
        "127.0.0.1", simulator.ports[network], PROFILES[network], late_handler=handed_over.append,
        config=LinkConfig(**options), mac_key_provider=key_provider(network),
    )
    await link.start()
    return link, handed_over


async def wait_until(predicate, timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("network", PROFILES)
async def test_sign_on_and_authorize(simulator, network):
    link, _ = await open_link(simulator, network)
    try:
        assert link.ready
        assert simulator.networks[network].stats.by_mti["0800"] == 1
        response = await link.request(auth(1), timeout_s=2.0)
        assert response["t"] == "0110" and response["39"] == "00" and len(response["38"]) == 6
        assert response["37"] == "000000000001" and response["11"] == "000001"
    finally:
        await link.close()
    assert not link.ready
    await wait_until(lambda: simulator.networks[network].stats.by_mti["0800"] == 2)  # Sign-off.


async def test_thousand_concurrent_requests_match(simulator):
    link, handed_over = await open_link(simulator, inflight_max=1000)
    pans = list(CARDS)
    try:
        requests = [auth(n, pans[n % len(pans)], terminal_id=f"T{n % 7:07d}") for n in range(1000)]
        responses = await asyncio.gather(*(link.request(r, timeout_s=10.0) for r in requests))
        for request, response in zip(requests, responses, strict=True):
            for key in ("11", "37", "41", "4"):
                assert response[key] == request[key]
            assert response["39"] == CARDS[request["2"]]
        assert link.tx == link.rx == 1001
        assert link.pending == 0 and link.unhandled == 0 and not handed_over
    finally:
        await link.close()


async def test_duplicate_key_refused_and_inflight_bounded(simulator):
    link, _ = await open_link(simulator, inflight_max=2)
    simulator.networks["generic"].set_behaviour({"latency_ms": 100})
    try:
        first = asyncio.ensure_future(link.request(auth(1), timeout_s=2.0))
        await asyncio.sleep(0)
        with pytest.raises(DuplicateKeyError) as error:
            await link.request(auth(1), timeout_s=2.0)
        assert not error.value.retryable
        second = asyncio.ensure_future(link.request(auth(2), timeout_s=2.0))
        await asyncio.sleep(0)
        with pytest.raises(LinkBusyError) as busy:
            await link.request(auth(3), timeout_s=2.0)
        assert busy.value.retryable
        assert (await first)["39"] == "00" and (await second)["39"] == "00"
    finally:
        await link.close()


async def test_timeout_then_late_response_reaches_handler(simulator):
    link, handed_over = await open_link(simulator)
    simulator.networks["generic"].set_behaviour({"latency_ms": 200})
    try:
        with pytest.raises(LinkTimeoutError) as error:
            await link.request(auth(7), timeout_s=0.05)
        assert not error.value.retryable
        assert link.expired == 1 and link.pending == 0
        await wait_until(lambda: handed_over)
        assert link.late == 1 and link.unhandled == 0
        # A late approval: it must reach the reversal path.
        assert handed_over[0]["39"] == "00" and handed_over[0]["11"] == "000007"
    finally:
        await link.close()


async def test_caller_cancellation_also_counts_late(simulator):
    link, handed_over = await open_link(simulator)
    simulator.networks["generic"].set_behaviour({"latency_ms": 100})
    try:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.02):
                await link.request(auth(8), timeout_s=5.0)
        assert link.pending == 0
        await wait_until(lambda: handed_over)
        assert link.late == 1
    finally:
        await link.close()


async def test_disconnect_fails_inflight_then_reconnects(simulator):
    link, handed_over = await open_link(simulator)
    network = simulator.networks["generic"]
    network.set_behaviour({"latency_ms": 500})
    try:
        in_flight = [asyncio.ensure_future(link.request(auth(stan), timeout_s=5.0)) for stan in range(10)]
        await wait_until(lambda: network.stats.received >= 11)
        assert simulator.drop_connections("generic") == 1
        results = await asyncio.gather(*in_flight, return_exceptions=True)
        assert all(isinstance(result, LinkDownError) and not result.retryable for result in results)
        with pytest.raises(LinkDownError) as error:
            await link.request(auth(99), timeout_s=1.0)
        assert error.value.retryable  # Nothing was sent.
        network.set_behaviour({"latency_ms": 0})
        await wait_until(lambda: link.ready)
        assert link.reconnects == 1 and network.stats.by_mti["0800"] == 2
        assert (await link.request(auth(100), timeout_s=2.0))["39"] == "00"
    finally:
        await link.close()


async def test_reconnect_backs_off_until_the_network_returns(simulator):
    link, _ = await open_link(simulator, reconnect_delay_max_s=0.05)
    server = simulator.networks["generic"].server
    try:
        server.close()
        simulator.drop_connections("generic")
        await wait_until(lambda: not link.ready)
        await asyncio.sleep(0.3)  # Several refused attempts.
        assert not link.ready and link.reconnects == 0
        await simulator.start("127.0.0.1", {"generic": simulator.ports["generic"]})
        await wait_until(lambda: link.ready)
        assert link.reconnects == 1
    finally:
        await link.close()


async def test_idle_link_sends_echo(simulator):
    link, _ = await open_link(simulator, echo_interval_s=0.05)
    try:
        await wait_until(lambda: simulator.networks["generic"].stats.by_mti["0800"] >= 4)
        assert link.ready and link.expired == 0
    finally:
        await link.close()


async def test_request_on_a_closed_link_is_retryable_link_down(simulator):
    link, _ = await open_link(simulator)
    await link.close()
    with pytest.raises(LinkDownError) as error:
        await link.request(auth(1), timeout_s=1.0)
    assert error.value.retryable


async def test_start_fails_clearly_when_nothing_listens():
    link = Link("127.0.0.1", 1, PROFILES["generic"], late_handler=print,
                config=LinkConfig(connect_timeout_s=1.0))
    with pytest.raises(LinkDownError):
        await link.start()
