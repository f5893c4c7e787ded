"""Scenario timelines and settlement files, driven by a real Link over loopback TCP."""

import asyncio
import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from acquirer_sim.control import ControlApi
from acquirer_sim.scenario import ScenarioError, load_scenario
from acquirer_sim.settlement import Settlement
from switch.iso import PROFILES
from switch.iso.messages import authorization_request, completion_advice, financial_request, reversal
from switch.network.config import LinkConfig
from switch.network.link import Link, LinkDownError
from tests.network.mac_keys import key_provider

TERMINAL = "TERMS001"
T0 = datetime(2030, 5, 6, 7, 8, 9, tzinfo=UTC)


def card(stan: int, amount_minor: int, rrn: str | None = None, pan: str = "4242424242424242") -> dict:
    return {
        "pan": pan, "amount_minor": amount_minor, "currency": "978", "stan": f"{stan:06d}",
        "rrn": rrn or f"RRS{stan:09d}", "terminal_id": TERMINAL, "merchant_id": "MERCHANTS",
        "expiry_yymm": "3012", "now": T0,
    }  # fmt: skip


def about(original: dict, replacement_minor: int, auth_code: str | None = None) -> dict:
    return {
        "pan": original["2"], "amount_minor": int(original["4"]), "currency": original["49"],
        "stan": original["11"], "rrn": original["37"], "terminal_id": original["41"].strip(),
        "merchant_id": original["42"].strip(), "expiry_yymm": original["14"], "processing_code": original["3"],
        "original_mti": original["t"], "original_transmitted_at": original["7"], "acquirer_id": "400001",
        "replacement_amount_minor": replacement_minor, "auth_code": auth_code, "now": T0 + timedelta(seconds=1),
    }  # fmt: skip


async def until(condition, timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.01)


async def http(port: int, method: str, path: str, body=None) -> tuple[int, dict]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    payload = json.dumps(body).encode() if body is not None else b""
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(payload)}\r\n\r\n".encode() + payload)
    data = await reader.read()
    writer.close()
    head, _, body_bytes = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body_bytes)


@pytest.fixture
async def control(simulator, tmp_path):
    api = ControlApi(simulator, Settlement(simulator.issuer, simulator.networks, tmp_path / "settlement"))
    port = await api.start("127.0.0.1", 0)
    yield port
    await api.close()


@pytest.fixture(params=["visa", "mastercard"])
async def link(request, simulator):
    name = request.param
    link = Link(
        "127.0.0.1", simulator.ports[name], PROFILES[name], late_handler=print, mac_key_provider=key_provider(name),
        config=LinkConfig(reconnect_delay_initial_s=0.02, reconnect_delay_max_s=0.05),
    )  # fmt: skip
    await link.start()
    yield link
    await link.close()


async def test_scenario_file_drives_a_network_down_and_up(link, simulator, control, tmp_path):
    name = link.profile.name
    path = tmp_path / "down.toml"
    path.write_text(
        'name = "primary down for a while"\n'
        f'[[steps]]\nat_s = 0.6\nnetwork = "{name}"\nset = {{ refuse_connections = false }}\n'
        f'[[steps]]\nat_s = 0.3\nnetwork = "{name}"\nset = {{ refuse_connections = true }}\n'
    )
    scenario = load_scenario(path, simulator.networks)
    assert [step.at_s for step in scenario.steps] == [0.3, 0.6]  # Sorted by time.
    status, body = await http(control, "POST", "/scenario", json.loads(json.dumps({
        "name": scenario.name, "steps": [{"at_s": s.at_s, "network": s.network, "set": s.set} for s in scenario.steps],
    })))  # fmt: skip
    assert status == 200 and body == {"name": "primary down for a while", "running": True, "steps": 2,
                                      "steps_applied": 0}  # fmt: skip
    assert link.ready
    await until(lambda: not link.ready)
    with pytest.raises(LinkDownError):
        await link.request(authorization_request(**card(1, 100)), timeout_s=1.0)
    await until(lambda: link.ready)
    assert (await http(control, "GET", "/scenario"))[1]["steps_applied"] == 2
    assert simulator.networks[name].behaviour.refuse_connections is False
    assert (await link.request(authorization_request(**card(2, 100)), timeout_s=2.0))["39"] == "00"


@pytest.mark.parametrize(
    ("scenario", "error"),
    [
        ({"steps": [{"at_s": 1, "network": "amex", "set": {}}]}, "steps[0].network must be one of"),
        ({"steps": [{"at_s": 1, "network": "visa", "set": {"drop_rate": 3}}]}, "steps[0].set: Expected `float`"),
        ({"steps": [{"at_s": -1, "network": "visa", "set": {}}]}, "Expected `float` >= 0.0 - at `$.steps[0].at_s`"),
        ({"step": []}, "Object contains unknown field `step`"),
    ],
)
async def test_bad_scenario_is_refused(control, scenario, error):
    status, body = await http(control, "POST", "/scenario", scenario)
    assert status == 400 and body["error"].startswith(error)


def test_scenario_file_errors_name_the_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"steps": [{"at_s": 1, "network": "visa"}]}')
    with pytest.raises(ScenarioError, match=r"broken.json: Object missing required field `set`"):
        load_scenario(path, ["visa"])


def read_settlement(path) -> tuple[list[dict], list[list[str]]]:
    text = Path(path).read_text()
    assert "4242424242424242" not in text  # Card data never reaches a settlement file.
    rows = list(csv.reader(text.splitlines()))
    header = rows[0]
    details = [dict(zip(header, row, strict=True)) for row in rows[1:] if row[0] == "D"]
    trailers = [row for row in rows[1:] if row[0] == "T"]
    assert len(details) + len(trailers) == len(rows) - 1
    return details, trailers


async def test_settlement_file_after_a_day_of_business(link, simulator, control):
    name = link.profile.name
    send = link.request
    auth = authorization_request(**card(10, 10_000))
    approved = await send(auth, timeout_s=2.0)
    capture = completion_advice(repeat=False, **about(auth, 7_000, approved["38"]))
    assert (await send(capture, timeout_s=2.0))["39"] == "00"
    sale = financial_request(**card(11, 2_500))
    sold = await send(sale, timeout_s=2.0)
    refund = financial_request(processing_code="200000", **card(12, 1_200))
    refunded = await send(refund, timeout_s=2.0)
    reversed_sale = financial_request(**card(13, 999))
    await send(reversed_sale, timeout_s=2.0)
    await send(reversal(repeat=False, **about(reversed_sale, 0)), timeout_s=2.0)
    never_captured = authorization_request(**card(14, 5_000))
    await send(never_captured, timeout_s=2.0)
    await send(reversal(repeat=False, **about(never_captured, 0)), timeout_s=2.0)
    declined = financial_request(**card(15, 100, pan="4000000000000002"))
    assert (await send(declined, timeout_s=2.0))["39"] == "05"

    status, body = await http(control, "POST", "/settlement")
    assert status == 200 and len(body["files"]) == 3
    [path] = [file for file in body["files"] if f"/{name}-" in file]
    details, trailers = read_settlement(path)
    today = datetime.now(UTC).date().isoformat()
    fees = {"visa": (150, 10), "mastercard": (175, 12)}[name]
    expected = [
        ("RRS000000010", "000010", "capture", "7000", approved["38"], (7000 * fees[0] + 5000) // 10_000 + fees[1]),
        ("RRS000000011", "000011", "sale", "2500", sold["38"], (2500 * fees[0] + 5000) // 10_000 + fees[1]),
        ("RRS000000012", "000012", "refund", "-1200", refunded["38"], 0),
    ]
    assert [
        (d["rrn"], d["stan"], d["transaction_type"], d["amount_minor"], d["auth_code"], int(d["interchange_fee_minor"]))
        for d in details
    ] == expected  # fmt: skip
    assert {(d["network"], d["terminal_id"], d["currency"], d["transaction_date"], d["settlement_date"])
            for d in details} == {(name, TERMINAL, "978", today, today)}  # fmt: skip
    fee_total = sum(row[-1] for row in expected)
    assert trailers == [["T", name, "978", "3", "9500", "1200", "8300", str(fee_total), today, trailers[0][-1]]]
    assert sorted(file.name.split("-")[0] for file in Path(path).parent.iterdir()) == sorted(PROFILES)  # No temp files.

    # A reversal after the cut-off shows up in the next file as an adjustment; nothing else repeats.
    await send(reversal(repeat=False, **about(sale, 500)), timeout_s=2.0)
    status, body = await http(control, "POST", "/settlement")
    [path] = [file for file in body["files"] if f"/{name}-" in file]
    details, trailers = read_settlement(path)
    assert [(d["rrn"], d["transaction_type"], d["amount_minor"], d["interchange_fee_minor"]) for d in details] == [
        ("RRS000000011", "adjustment", "-2000", "0")
    ]
    assert trailers[0][2:8] == ["978", "1", "0", "2000", "-2000", "0"]
    [other] = [file for file in body["files"] if "/generic-" in file]
    assert read_settlement(other) == ([], [["T", "generic", "", "0", "0", "0", "0", "0", today, trailers[0][-1]]])


async def test_summary_catches_a_double_charge(link, control):
    """The same payment (one RRN) approved under two STANs: the trap a drill must catch."""
    for stan in (30, 31):
        sale = financial_request(**card(stan, 800, rrn="RRSDOUBLE001"))
        assert (await link.request(sale, timeout_s=2.0))["39"] == "00"
    status, summary = await http(control, "GET", "/summary?rrn=RRSDOUBLE001")
    assert status == 200 and summary["charged_once"] is False
    assert summary["charged_more_than_once"] == ["RRSDOUBLE001"]
    assert summary["by_rrn"]["RRSDOUBLE001"] == {
        "originals": 2, "charges": 2, "charged_minor": 1600, "refunded_minor": 0, "held_minor": 0
    }  # fmt: skip
    # Reversing one of them leaves a single live charge.
    first = financial_request(**card(30, 800, rrn="RRSDOUBLE001"))
    assert (await link.request(reversal(repeat=False, **about(first, 0)), timeout_s=2.0))["39"] == "00"
    status, summary = await http(control, "GET", "/summary?rrn=RRSDOUBLE001")
    assert summary["charged_once"] is True and summary["by_rrn"]["RRSDOUBLE001"]["charged_minor"] == 800
