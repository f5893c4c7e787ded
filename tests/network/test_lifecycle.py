"""The whole card lifecycle against the simulator over loopback TCP: sale, refund, capture, reversal.

Each test drives a real Link with the builders the payment engine uses, then checks the issuer's books
through the control API (records per RRN and /holds), which shows card data as last 4 digits only.
"""

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest

from acquirer_sim.control import ControlApi
from switch.iso import PROFILES
from switch.iso.messages import authorization_request, completion_advice, financial_request, reversal
from switch.network.link import Link
from tests.network.mac_keys import key_provider

PAN = "4242424242424242"
TERMINAL = "TERM0042"
T0 = datetime(2030, 5, 6, 7, 8, 9, tzinfo=UTC)


@pytest.fixture
async def control(simulator):
    api = ControlApi(simulator)
    port = await api.start("127.0.0.1", 0)
    yield port
    await api.close()


@pytest.fixture(params=list(PROFILES))
async def link(request, simulator):
    link = Link("127.0.0.1", simulator.ports[request.param], PROFILES[request.param], late_handler=print,
                mac_key_provider=key_provider(request.param))
    await link.start()
    yield link
    await link.close()


async def get(port: int, path: str) -> dict:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.split()[1] == b"200", head
    text = body.decode()
    assert PAN not in text
    return json.loads(text)


def card(stan: int, amount_minor: int, pan: str = PAN) -> dict:
    return {
        "pan": pan, "amount_minor": amount_minor, "currency": "978", "stan": f"{stan:06d}",
        "rrn": f"RRN{stan:09d}", "terminal_id": TERMINAL, "merchant_id": "MERCHANT000042",
        "expiry_yymm": "3012", "now": T0,
    }  # fmt: skip


def about(original: dict, replacement_minor: int, attempt: int = 0, **extra) -> dict:
    """Keyword arguments for a completion or reversal of `original`, sent `attempt` seconds after it."""
    return {
        "pan": original["2"], "amount_minor": int(original["4"]), "currency": original["49"],
        "stan": original["11"], "rrn": original["37"], "terminal_id": original["41"].strip(),
        "merchant_id": original["42"].strip(), "expiry_yymm": original["14"], "processing_code": original["3"],
        "original_mti": original["t"], "original_transmitted_at": original["7"], "acquirer_id": "400001",
        "replacement_amount_minor": replacement_minor, "auth_code": extra.pop("auth_code", None),
        "now": T0 + timedelta(seconds=1 + attempt), **extra,
    }  # fmt: skip


async def send(link: Link, message: dict) -> dict:
    return await link.request(message, timeout_s=2.0)


async def records(port: int, rrn: str) -> list[dict]:
    """Oldest first."""
    return list(reversed((await get(port, f"/records?rrn={rrn}"))["records"]))


async def test_sale(link, control):
    request = financial_request(cvv="123", **card(1, 2500))
    response = await send(link, request)
    assert (response["t"], response["39"], len(response["38"])) == ("0210", "00", 6)
    [record] = await records(control, request["37"])
    assert (record["mti"], record["effect"], record["captured_minor"], record["held_minor"]) == (
        "0200", "sale", 2500, 0
    )  # fmt: skip
    holds = await get(control, "/holds")
    assert holds["holds"] == [] and holds["totals"] == {"sold": 2500}


async def test_declined_sale(link, control):
    response = await send(link, financial_request(**card(2, 2500, pan="4000000000009995")))
    assert (response["t"], response["39"]) == ("0210", "51")
    [record] = await records(control, "RRN000000002")
    assert record["effect"] == "none" and record["card_last4"] == "9995"


async def test_refund(link, control):
    request = financial_request(processing_code="200000", **card(3, 700))
    response = await send(link, request)
    assert (response["t"], response["39"], response["3"]) == ("0210", "00", "200000")
    [record] = await records(control, request["37"])
    assert (record["effect"], record["refunded_minor"]) == ("refund", 700)


async def test_duplicate_sale_answered_with_the_original_response_and_applied_once(link, control, simulator):
    request = financial_request(**card(4, 900, pan="4111111111111111"))
    first = await send(link, request)
    second = await send(link, request)
    assert first == second and first["39"] == "00"
    assert [r["effect"] for r in await records(control, request["37"])] == ["sale", "duplicate"]
    assert simulator.issuer.spent_minor("4111111111111111") == 900
    assert (await get(control, "/holds"))["totals"] == {"sold": 900}


async def test_authorization_and_full_capture(link, control):
    auth = authorization_request(**card(5, 1000))
    approved = await send(link, auth)
    assert approved["39"] == "00"
    assert (await get(control, "/holds?card_last4=4242"))["holds"][0]["held_minor"] == 1000
    advice = completion_advice(repeat=False, **about(auth, 1000, auth_code=approved["38"]))
    assert "95" not in advice
    response = await send(link, advice)
    assert (response["t"], response["39"], response["11"]) == ("0230", "00", auth["11"])
    effects = [
        (r["mti"], r["effect"], r["captured_minor"], r["released_minor"]) for r in await records(control, auth["37"])
    ]
    assert effects == [("0100", "hold", 0, 0), ("0220", "capture", 1000, 0)]
    holds = await get(control, "/holds")
    assert holds["holds"] == [] and holds["totals"] == {"held": 1000, "captured": 1000}


async def test_partial_capture_releases_the_rest_and_repeats_apply_once(link, control):
    auth = authorization_request(**card(6, 1000))
    approved = await send(link, auth)
    advice = completion_advice(repeat=False, **about(auth, 600, auth_code=approved["38"]))
    assert advice["95"].startswith("000000000600") and advice["4"] == "000000001000"
    assert (await send(link, advice))["39"] == "00"
    assert (await send(link, advice))["39"] == "00"  # The same 0220 again.
    repeat = completion_advice(repeat=True, **about(auth, 600, attempt=1, auth_code=approved["38"]))
    assert (await send(link, repeat))["t"] == "0230"
    effects = [(r["mti"], r["effect"]) for r in await records(control, auth["37"])]
    assert effects == [("0100", "hold"), ("0220", "capture"), ("0220", "duplicate"), ("0221", "duplicate")]
    [_, capture, *_] = await records(control, auth["37"])
    assert (capture["captured_minor"], capture["released_minor"], capture["remaining_minor"]) == (600, 400, 0)
    holds = await get(control, "/holds")
    assert holds["holds"] == []
    assert holds["totals"] == {"held": 1000, "captured": 600, "released": 400}


async def test_full_reversal_releases_the_hold(link, control):
    auth = authorization_request(**card(7, 1500))
    await send(link, auth)
    message = reversal(repeat=False, **about(auth, 0))
    assert "95" not in message
    response = await send(link, message)
    assert (response["t"], response["39"]) == ("0410", "00")
    holds = await get(control, "/holds")
    assert holds["holds"] == [] and holds["totals"] == {"held": 1500, "released": 1500}


async def test_partial_reversal_reduces_the_hold(link, control):
    auth = authorization_request(**card(8, 1500))
    await send(link, auth)
    assert (await send(link, reversal(repeat=False, **about(auth, 1000))))["39"] == "00"
    [hold] = (await get(control, "/holds"))["holds"]
    assert (hold["rrn"], hold["card_last4"], hold["amount_minor"], hold["held_minor"]) == (
        auth["37"], "4242", 1500, 1000
    )  # fmt: skip


async def test_reversal_repeated_is_applied_once(link, control, simulator):
    auth = authorization_request(**card(9, 800, pan="4111111111111111"))
    await send(link, auth)
    first = await send(link, reversal(repeat=False, **about(auth, 0)))
    repeats = [await send(link, reversal(repeat=True, **about(auth, 0, attempt=n))) for n in (1, 2)]
    assert first["t"] == "0410" and [r["t"] for r in repeats] == ["0430", "0430"]
    assert {r["39"] for r in (first, *repeats)} == {"00"}
    effects = [(r["mti"], r["effect"], r["released_minor"]) for r in await records(control, auth["37"])]
    assert effects == [
        ("0100", "hold", 0), ("0400", "reversal", 800), ("0421", "duplicate", 0), ("0421", "duplicate", 0)
    ]  # fmt: skip
    assert simulator.issuer.held_minor("4111111111111111") == 0
    assert (await get(control, "/holds"))["totals"] == {"held": 800, "released": 800}


async def test_reversal_of_unknown_original_is_answered_25(link, control):
    never_sent = authorization_request(**card(10, 500))
    for repeat, mti in ((False, "0410"), (True, "0430")):
        response = await send(link, reversal(repeat=repeat, **about(never_sent, 0)))
        assert (response["t"], response["39"]) == (mti, "25")
    advice = await send(link, completion_advice(repeat=False, **about(never_sent, 500)))
    assert (advice["t"], advice["39"]) == ("0230", "25")
    assert {r["effect"] for r in await records(control, never_sent["37"])} == {"none"}


async def test_reversal_of_a_sale_and_of_a_refund(link, control):
    sale = financial_request(**card(11, 1200))
    refund = financial_request(processing_code="200000", **card(12, 300))
    for original in (sale, refund):
        assert (await send(link, original))["39"] == "00"
        assert (await send(link, reversal(repeat=False, **about(original, 0))))["39"] == "00"
    totals = (await get(control, "/holds"))["totals"]
    assert totals == {"sold": 1200, "sale_reversed": 1200, "refunded": 300, "refund_reversed": 300}


async def test_every_hold_captured_or_reversed(link, control):
    """A mixed batch in flight at once; afterwards no hold is left and the sums add up."""
    auths = [authorization_request(**card(100 + n, 1000 + n)) for n in range(40)]
    answers = await asyncio.gather(*(send(link, auth) for auth in auths))
    assert {answer["39"] for answer in answers} == {"00"}
    summary = await get(control, "/holds?limit=1000")
    assert summary["holds_outstanding"] == 40 and summary["held_outstanding_minor"] == sum(range(1000, 1040))
    follow_ups = []
    for n, (auth, answer) in enumerate(zip(auths, answers, strict=True)):
        amount = int(auth["4"])
        if n % 4 == 0:
            follow_ups.append(completion_advice(repeat=False, **about(auth, amount, auth_code=answer["38"])))
        elif n % 4 == 1:
            follow_ups.append(completion_advice(repeat=False, **about(auth, amount - 100, auth_code=answer["38"])))
        elif n % 4 == 2:
            follow_ups.append(reversal(repeat=False, **about(auth, 0)))
        else:  # Partial reversal first, then capture what is left.
            await send(link, reversal(repeat=False, **about(auth, 500)))
            follow_ups.append(completion_advice(repeat=True, **about(auth, 500, attempt=1)))
    responses = await asyncio.gather(*(send(link, message) for message in follow_ups))
    assert {response["39"] for response in responses} == {"00"}
    summary = await get(control, "/holds?limit=1000")
    assert summary["holds"] == [] and summary["holds_outstanding"] == summary["held_outstanding_minor"] == 0
    totals = summary["totals"]
    assert totals["held"] == sum(range(1000, 1040))
    assert totals["held"] == totals["captured"] + totals["released"]
    captured = sum(1000 + n for n in range(0, 40, 4)) + sum(900 + n for n in range(1, 40, 4)) + 500 * 10
    assert totals["captured"] == captured
