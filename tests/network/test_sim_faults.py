"""Each failure knob of the simulator, observed from the switch's side: a real Link over loopback TCP.

Waits poll a condition with a bound (`until`); nothing asserts how long anything took.
"""

import asyncio
import json

import pytest

from acquirer_sim.control import ControlApi
from switch.iso import PROFILES
from switch.iso.messages import authorization_request
from switch.network.config import LinkConfig
from switch.network.link import Link, LinkDownError, LinkTimeoutError
from tests.network.mac_keys import key_provider

TERMINAL = "TERMF001"


def auth(stan: int, pan: str = "4242424242424242", amount_minor: int = 1000) -> dict:
    return authorization_request(
        pan=pan, amount_minor=amount_minor, currency="978", stan=f"{stan:06d}", rrn=f"RRF{stan:09d}",
        terminal_id=TERMINAL, merchant_id="MERCHANTF", expiry_yymm="3012",
    )  # fmt: skip


async def until(condition, timeout_s: float = 5.0) -> None:
    """Poll `condition` until it holds; fail (not hang) if it never does."""
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.01)


@pytest.fixture(params=["generic", "visa"])
async def network(request, simulator):
    """(network name, link, messages handed to the late handler)."""
    handed_over: list[dict] = []
    name = request.param
    link = Link(
        "127.0.0.1", simulator.ports[name], PROFILES[name], late_handler=handed_over.append,
        mac_key_provider=key_provider(name),
        config=LinkConfig(reconnect_delay_initial_s=0.02, reconnect_delay_max_s=0.1),
    )  # fmt: skip
    await link.start()
    yield name, link, handed_over
    await link.close()


async def test_never_answer_times_out_but_the_hold_is_applied(network, simulator):
    name, link, _ = network
    simulator.networks[name].set_behaviour({"drop_rate": 1.0})
    with pytest.raises(LinkTimeoutError):
        await link.request(auth(1), timeout_s=0.2)
    assert link.expired == 1 and link.ready
    [record] = simulator.records.query(limit=10, rrn="RRF000000001")
    assert (record["effect"], record["fault"], record["held_minor"]) == ("hold", "never_answer", 1000)
    assert simulator.networks[name].stats.by_fault == {"never_answer": 1}


async def test_late_answer_reaches_the_late_handler(network, simulator):
    name, link, handed_over = network
    simulator.networks[name].set_behaviour({"late_answer_rate": 1.0, "late_answer_ms": 300})
    with pytest.raises(LinkTimeoutError):
        await link.request(auth(2), timeout_s=0.05)
    await until(lambda: link.late == 1)
    assert [(m["t"], m["11"], m["39"]) for m in handed_over] == [("0110", "000002", "00")]


async def test_error_rate_answers_the_code_and_applies_nothing(network, simulator):
    name, link, _ = network
    simulator.networks[name].set_behaviour({"error_rate": 1.0, "error_code": "91"})
    response = await link.request(auth(3), timeout_s=2.0)
    assert (response["t"], response["39"], "38" in response) == ("0110", "91", False)
    [record] = simulator.records.query(limit=10, rrn="RRF000000003")
    assert (record["effect"], record["fault"]) == ("none", "error")
    assert simulator.issuer.summary()["holds_outstanding"] == 0


async def test_disconnect_after_n_messages(network, simulator):
    name, link, _ = network
    simulator.networks[name].set_behaviour({"disconnect_after_messages": 2})
    for stan in (4, 5):
        assert (await link.request(auth(stan), timeout_s=2.0))["39"] == "00"
    with pytest.raises(LinkDownError) as raised:
        await link.request(auth(6), timeout_s=2.0)
    assert raised.value.retryable is False  # Sent, outcome unknown: the switch must reverse.
    assert simulator.records.query(limit=10, rrn="RRF000000006") == []  # Never applied.
    await until(lambda: link.ready and link.reconnects == 1)
    assert (await link.request(auth(7), timeout_s=2.0))["39"] == "00"  # A new connection counts afresh.
    assert simulator.networks[name].stats.by_fault["disconnect"] == 1


async def test_refuse_connections_is_a_network_down(network, simulator):
    name, link, _ = network
    server = simulator.networks[name]
    server.set_behaviour({"refuse_connections": True})
    await until(lambda: not link.ready)
    with pytest.raises(LinkDownError) as raised:
        await link.request(auth(8), timeout_s=1.0)
    assert raised.value.retryable is True  # Refused before sending.
    fresh = Link("127.0.0.1", simulator.ports[name], PROFILES[name], late_handler=print,
                 mac_key_provider=key_provider(name))  # fmt: skip
    with pytest.raises(LinkDownError):
        await fresh.start()
    await fresh.close()
    assert server.stats.by_fault["refused"] >= 1
    server.set_behaviour({"refuse_connections": False})
    await until(lambda: link.ready)
    assert (await link.request(auth(9), timeout_s=2.0))["39"] == "00"


async def test_framed_garbage_is_a_decode_error_and_the_link_stays_up(network, simulator):
    name, link, _ = network
    simulator.networks[name].set_behaviour({"garbage_rate": 1.0})
    with pytest.raises(LinkTimeoutError):
        await link.request(auth(10), timeout_s=0.3)
    assert link.decode_errors == 1 and link.ready and link.reconnects == 0


async def test_unframed_garbage_drops_the_link_which_reconnects(network, simulator):
    name, link, _ = network
    simulator.networks[name].set_behaviour({"garbage_rate": 1.0, "garbage_framed": False})
    with pytest.raises(LinkDownError):
        await link.request(auth(11), timeout_s=2.0)
    simulator.networks[name].set_behaviour({"garbage_rate": 0.0})
    await until(lambda: link.ready and link.reconnects == 1)
    assert (await link.request(auth(12), timeout_s=2.0))["39"] == "00"


async def test_duplicate_response_is_counted_unhandled(network, simulator):
    name, link, handed_over = network
    simulator.networks[name].set_behaviour({"duplicate_rate": 1.0})
    response = await link.request(auth(13), timeout_s=2.0)
    assert response["39"] == "00"
    await until(lambda: link.unhandled == 1)
    assert handed_over == [response]
    assert [r["effect"] for r in simulator.records.query(limit=10, rrn="RRF000000013")] == ["hold"]


async def test_latency_holds_answers_back(network, simulator):
    name, link, _ = network
    simulator.networks[name].set_behaviour({"latency_distribution": "normal", "latency_ms": 400,
                                             "latency_stddev_ms": 10})  # fmt: skip
    with pytest.raises(LinkTimeoutError):
        await link.request(auth(14), timeout_s=0.05)
    assert (await link.request(auth(15), timeout_s=5.0))["39"] == "00"


@pytest.fixture
async def control(simulator, tmp_path):
    api = ControlApi(simulator)
    port = await api.start("127.0.0.1", 0)
    yield port
    await api.close()


async def http(port: int, method: str, path: str, body=None) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    payload = json.dumps(body).encode() if body is not None else b""
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(payload)}\r\n\r\n".encode() + payload)
    data = await reader.read()
    writer.close()
    head, _, body_bytes = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body_bytes


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"drop_rate": -0.1}, "Expected `float` >= 0.0 - at `$.drop_rate`"),
        ({"latency_ms": "5"}, "Expected `int`, got `str` - at `$.latency_ms`"),
        ({"error_code": "9"}, "Expected `str` matching regex '^[0-9A-Z]{2}$' - at `$.error_code`"),
        ({"surprise": 1}, "Object contains unknown field `surprise`"),
        ({"latency_stddev_ms": 5}, "latency_stddev_ms and latency_sigma need latency_distribution normal/lognormal"),
    ],
)
async def test_bad_behaviour_is_a_400_and_changes_nothing(control, simulator, change, error):
    status, body = await http(control, "POST", "/behaviour", {"network": "generic", **change})
    assert (status, json.loads(body)) == (400, {"error": error})
    assert simulator.networks["generic"].faults.active is False


async def test_metrics_and_summary_through_the_control_api(network, simulator, control):
    name, link, _ = network
    await link.request(auth(20), timeout_s=2.0)
    simulator.networks[name].set_behaviour({"error_rate": 1.0})
    await link.request(auth(21), timeout_s=2.0)
    status, text = await http(control, "GET", "/metrics")
    assert status == 200
    lines = text.decode().splitlines()
    assert f'acquirer_sim_messages_total{{mti="0100",network="{name}",response_code="00"}} 1.0' in lines
    assert f'acquirer_sim_messages_total{{mti="0100",network="{name}",response_code="96"}} 1.0' in lines
    assert f'acquirer_sim_faults_total{{fault="error",network="{name}"}} 1.0' in lines
    assert f'acquirer_sim_effects_total{{effect="hold",network="{name}"}} 1.0' in lines
    assert "4242424242424242" not in text.decode()
    status, body = await http(control, "GET", f"/summary?network={name}")
    summary = json.loads(body)
    assert status == 200 and summary["charged_once"] is True and summary["every_hold_resolved"] is False
    assert [hold["rrn"] for hold in summary["holds_outstanding"]] == ["RRF000000020"]
    assert summary["effects"] == {"hold": 1, "none": 1}
