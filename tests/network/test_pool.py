"""Pool against two real simulators over loopback TCP: a primary endpoint and a backup."""

import asyncio
import itertools
import types

import pytest
import pytest_asyncio
from prometheus_client import REGISTRY

from acquirer_sim.server import Simulator
from switch.common.metrics import flush_all
from switch.iso import PROFILES
from switch.iso.messages import authorization_request
from switch.network.breaker import BreakerConfig, BreakerState
from switch.network.config import Endpoint, LinkConfig, NetworkConfig
from switch.network.link import LinkBusyError, LinkDownError, LinkTimeoutError
from switch.network.pool import NoRouteError, Pool
from switch.network.router import Networks

CARDS = {"4242424242424242": "00", "4000000000000002": "05", "4000000000009995": "51"}
FAST_BREAKER = BreakerConfig(failures_consecutive_max=3, cool_down_s=0.2, trials_max=2, trial_successes_required=2)
FAST_LINKS = {"reconnect_delay_initial_s": 0.02, "reconnect_delay_max_s": 0.1}
_stans = itertools.count(1)


def auth(pan: str = "4242424242424242", terminal_id: str = "TERM0001") -> dict:
    stan = next(_stans) % 999_999 + 1
    return authorization_request(
        pan=pan, amount_minor=100 + stan, currency="840", stan=f"{stan:06d}", rrn=f"{stan:012d}",
        terminal_id=terminal_id, merchant_id="MERCHANT000001", expiry_yymm="3012", cvv="123",
    )


def set_latency(simulator: Simulator, latency_ms: int) -> None:
    network = simulator.networks["generic"]
    # The simulator's behaviour API is changing (issue 4): use whichever this version has.
    if hasattr(network, "set_behaviour"):
        network.set_behaviour({"latency_ms": latency_ms})
    else:
        network.behaviour.latency_ms = latency_ms


def authorizations(simulator: Simulator) -> int:
    return simulator.networks["generic"].stats.by_mti["0100"]


def sample(name: str, pool: Pool, index: int = 0, **labels: str) -> float:
    value = REGISTRY.get_sample_value(name, {"network": pool.network, "endpoint": pool.endpoints[index].address,
                                             **labels})
    return value or 0.0


async def wait_until(predicate, timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.01)


@pytest_asyncio.fixture
async def backup():
    simulator = Simulator(records_max=1000)
    simulator.ports = await simulator.start("127.0.0.1", {"generic": 0})
    yield simulator
    await simulator.close()


@pytest_asyncio.fixture
async def make_pool():
    pools: list[Pool] = []

    async def make(*simulators: Simulator, links: int = 1, **link_options) -> tuple[Pool, list[dict]]:
        handed_over: list[dict] = []
        endpoints = [Endpoint("127.0.0.1", simulator.ports["generic"]) for simulator in simulators]
        pool = Pool("generic", PROFILES["generic"], endpoints, late_handler=handed_over.append,
                    links_per_endpoint=links, breaker_config=FAST_BREAKER,
                    link_config=LinkConfig(**{**FAST_LINKS, **link_options}), sample_interval_s=0.05)
        pools.append(pool)
        await pool.start()
        return pool, handed_over

    yield make
    for pool in pools:
        await pool.close()


async def test_ten_thousand_concurrent_requests_match_across_links(simulator, make_pool):
    pool, handed_over = await make_pool(simulator, links=4, inflight_max=4096)
    pans = list(CARDS)
    flush_all()
    answered_before = sample("switch_network_messages_total", pool, direction="rx", mti="0110", code="00")
    requests = [auth(pans[n % len(pans)], terminal_id=f"T{n % 7:07d}") for n in range(10_000)]
    responses = await asyncio.gather(*(pool.request(request, 30.0) for request in requests))
    for request, response in zip(requests, responses, strict=True):
        for key in ("11", "37", "41", "4"):
            assert response[key] == request[key]
        assert response["39"] == CARDS[request["2"]]
    links = pool.endpoints[0].links
    assert sum(link.tx for link in links) == 10_000 + len(links)  # Plus one sign-on each.
    assert all(link.tx > 1000 for link in links), [link.tx for link in links]  # Least-in-flight spreads.
    assert all(link.pending == 0 and link.unhandled == 0 for link in links) and not handed_over
    approved = sum(1 for request in requests if CARDS[request["2"]] == "00")
    flush_all()                                 # the message counts are handed over once a second
    assert sample("switch_network_messages_total", pool, direction="rx", mti="0110", code="00") == (
        answered_before + approved)
    await wait_until(lambda: sample("switch_network_in_flight", pool) == 0)


async def test_timeout_is_not_resent_and_the_late_answer_reaches_the_handler(simulator, backup, make_pool):
    pool, handed_over = await make_pool(simulator, backup)
    timeouts_before = sample("switch_network_timeouts_total", pool)
    late_before = sample("switch_network_link_late_total", pool)
    set_latency(simulator, 200)
    request = auth()
    with pytest.raises(LinkTimeoutError) as error:
        await pool.request(request, 0.05)  # The budget is the link timeout.
    assert not error.value.retryable
    await wait_until(lambda: handed_over)
    assert handed_over[0]["11"] == request["11"] and handed_over[0]["39"] == "00"
    assert authorizations(backup) == 0  # Never sent twice.
    assert sample("switch_network_timeouts_total", pool) == timeouts_before + 1
    assert sample("switch_network_link_late_total", pool) == late_before + 1
    assert pool.endpoints[0].breaker.state is BreakerState.CLOSED  # One timeout is not an outage.


async def test_disconnect_mid_flight_is_not_resent(simulator, backup, make_pool):
    pool, _ = await make_pool(simulator, backup, links=2)
    set_latency(simulator, 500)
    in_flight = [asyncio.ensure_future(pool.request(auth(), 5.0)) for _ in range(10)]
    await wait_until(lambda: authorizations(simulator) == 10)
    assert simulator.drop_connections("generic") == 2
    results = await asyncio.gather(*in_flight, return_exceptions=True)
    assert all(isinstance(result, LinkDownError) and not result.retryable for result in results), results
    assert authorizations(backup) == 0


async def test_refused_before_sending_goes_to_another_link(simulator, backup, make_pool):
    pool, _ = await make_pool(simulator, backup, inflight_max=1)
    set_latency(simulator, 200)
    first = asyncio.ensure_future(pool.request(auth(), 5.0))
    await asyncio.sleep(0)
    # The primary's only link is full: the request is refused before sending and the backup takes it.
    second = await pool.request(auth(), 5.0)
    assert second["39"] == "00" and authorizations(backup) == 1
    assert (await first)["39"] == "00" and authorizations(simulator) == 1


async def test_no_route_when_every_link_is_full(simulator, make_pool):
    pool, _ = await make_pool(simulator, links=2, inflight_max=1)
    set_latency(simulator, 200)
    taken = [asyncio.ensure_future(pool.request(auth(), 5.0)) for _ in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(NoRouteError) as error:
        await pool.request(auth(), 5.0)
    assert error.value.retryable
    assert all(response["39"] == "00" for response in await asyncio.gather(*taken))
    assert authorizations(simulator) == 2  # The refused one never left.


async def test_paused_link_takes_no_requests(simulator, make_pool):
    pool, _ = await make_pool(simulator, links=2)
    paused, other = pool.endpoints[0].links
    paused._protocol.pause_writing()  # What asyncio calls when the kernel buffer fills.
    with pytest.raises(LinkBusyError) as error:
        await paused.request(auth(), 1.0)
    assert error.value.retryable and paused.paused
    tx_before = paused.tx
    await asyncio.gather(*(pool.request(auth(), 5.0) for _ in range(20)))
    assert paused.tx == tx_before and other.tx == 21
    paused._protocol.resume_writing()
    await asyncio.gather(*(pool.request(auth(), 5.0) for _ in range(20)))
    assert paused.tx > tx_before


async def test_timeouts_open_the_breaker_fail_over_then_fail_back(simulator, backup, make_pool):
    pool, _ = await make_pool(simulator, backup, links=2)
    primary = pool.endpoints[0]
    assert pool.status()["active"] == primary.address and not pool.degraded
    set_latency(simulator, 300)
    for _ in range(FAST_BREAKER.failures_consecutive_max):
        with pytest.raises(LinkTimeoutError):
            await pool.request(auth(), 0.03)
    assert primary.breaker.state is BreakerState.OPEN
    assert sample("switch_network_breaker_state", pool) == BreakerState.OPEN
    # Failover: the primary's links are up, but its breaker is open.
    sent_to_primary = authorizations(simulator)
    assert (await pool.request(auth(), 2.0))["39"] == "00"
    assert authorizations(backup) == 1 and authorizations(simulator) == sent_to_primary
    status = pool.status()
    assert status["ready"] and status["degraded"] and status["active"] == pool.endpoints[1].address
    assert status["endpoints"][0]["breaker"] == "open" and status["endpoints"][0]["links_ready"] == 2
    # The primary recovers: after the cool-down, trials succeed and traffic comes back.
    set_latency(simulator, 0)
    await asyncio.sleep(FAST_BREAKER.cool_down_s + 0.05)
    for _ in range(FAST_BREAKER.trial_successes_required):
        assert (await pool.request(auth(), 2.0))["39"] == "00"
    assert primary.breaker.state is BreakerState.CLOSED and not pool.degraded
    assert authorizations(simulator) == sent_to_primary + FAST_BREAKER.trial_successes_required
    assert (await pool.request(auth(), 2.0))["39"] == "00"
    assert authorizations(backup) == 1 and pool.status()["active"] == primary.address
    assert sample("switch_network_breaker_state", pool) == BreakerState.CLOSED
    assert sample("switch_network_breaker_transitions_total", pool, state="half-open") >= 1


async def test_refused_connections_open_the_breaker_and_the_backup_serves(simulator, backup, make_pool):
    pool, _ = await make_pool(simulator, backup, links=2)
    primary = pool.endpoints[0]
    port = simulator.ports["generic"]
    simulator.networks["generic"].server.close()
    simulator.drop_connections("generic")
    await wait_until(lambda: primary.breaker.state is BreakerState.OPEN)
    assert primary.links_ready == 0 and sample("switch_network_connect_failures_total", pool) >= 3
    responses = await asyncio.gather(*(pool.request(auth(), 2.0) for _ in range(10)))
    assert all(response["39"] == "00" for response in responses) and authorizations(backup) == 10
    assert pool.ready and pool.degraded
    # The primary comes back on the same port: links reconnect, trials close the breaker.
    await simulator.start("127.0.0.1", {"generic": port})
    await wait_until(lambda: primary.links_ready == 2)

    async def fails_back() -> bool:
        await pool.request(auth(), 2.0)
        return primary.breaker.state is BreakerState.CLOSED

    async with asyncio.timeout(10):
        while not await fails_back():
            await asyncio.sleep(0.05)
    before = authorizations(simulator)
    await asyncio.gather(*(pool.request(auth(), 2.0) for _ in range(10)))
    assert authorizations(simulator) == before + 10 and not pool.degraded
    assert sample("switch_network_reconnects_total", pool) >= 2


async def test_retryable_no_route_when_nothing_is_up(make_pool):
    nobody = types.SimpleNamespace(ports={"generic": 1})  # Nothing listens on port 1.
    pool, _ = await make_pool(nobody, connect_timeout_s=0.5)
    assert not pool.ready
    with pytest.raises(NoRouteError) as error:
        await pool.request(auth(), 1.0)
    assert error.value.retryable
    status = pool.status()
    assert status == {"ready": False, "degraded": True, "active": None, "endpoints": [status["endpoints"][0]]}
    assert status["endpoints"][0]["links_ready"] == 0
    assert REGISTRY.get_sample_value("switch_network_no_route_total", {"network": "generic"}) >= 1


async def test_networks_keep_their_api_over_pools(simulator, backup):
    configs = {"generic": NetworkConfig("generic", "generic", (Endpoint("127.0.0.1", simulator.ports["generic"]),
                                                               Endpoint("127.0.0.1", backup.ports["generic"])), 2)}
    late: list[tuple[str, dict]] = []
    networks = Networks(configs, lambda network, message: late.append((network, message)))
    await networks.start()
    try:
        assert networks.route("visa") == "generic" and networks.ready() == {"generic": True}
        assert (await networks.send("generic", auth(), 2.0))["39"] == "00"
        status = networks.status()["generic"]
        assert [endpoint["role"] for endpoint in status["endpoints"]] == ["primary", "backup"]
        assert [endpoint["links_ready"] for endpoint in status["endpoints"]] == [2, 2]
        with pytest.raises(NoRouteError):
            await networks.send("visa", auth(), 1.0)
        set_latency(simulator, 200)
        with pytest.raises(LinkTimeoutError):
            await networks.send("generic", auth(), 0.05)
        await wait_until(lambda: late)
        assert late[0][0] == "generic" and late[0][1]["39"] == "00"
    finally:
        await networks.close()
