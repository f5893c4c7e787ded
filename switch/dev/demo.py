"""The scripted flow of `make demo`, over real HTTP against a running stack.

Authorize a Visa test card with manual capture, capture it, refund part of it; a declined card; and an
idempotent replay that must return the identical response. Then the day ends: the simulated networks
cut their settlement files, the switch imports them with 0 exceptions, the merchant's balance becomes
available, a payout takes it, the payout run files it for the bank and the bank's answer pays it. Each
step checks what it got; the demo exits non-zero on the first surprise.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
from switch_sdk import SwitchError

from switch.common.tls import client_context
from switch.store import outbox as outbox_store

VISA_OK = "4242424242424242"
VISA_DECLINE = "4000000000000002"


class DemoFailure(AssertionError):
    pass


@dataclass
class Exchange:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> dict:  # type: ignore[type-arg]
        return json.loads(self.body)


def _masked(body: dict) -> dict:  # type: ignore[type-arg]
    """The request as printed: card numbers masked, even test ones, as every log line must."""
    text = json.dumps(body)
    for number in (VISA_OK, VISA_DECLINE):
        text = text.replace(number, f"{number[:6]}******{number[-4:]}")
    return json.loads(text.replace('"cvc": "123"', '"cvc": "***"'))


class Client:
    def __init__(self, base_url: str, api_key: str, ca_file: str | None = None) -> None:
        parts = urlsplit(base_url)
        host = parts.hostname or "127.0.0.1"
        self.connection: http.client.HTTPConnection = (
            http.client.HTTPSConnection(host, parts.port or 443, timeout=10, context=client_context(ca_file))
            if parts.scheme == "https" else http.client.HTTPConnection(host, parts.port or 80, timeout=10))
        self.api_key = api_key

    def call(self, method: str, path: str, body: dict | None = None,  # type: ignore[type-arg]
             idempotency_key: str | None = None) -> Exchange:
        headers = {"Authorization": f"Bearer {self.api_key}"}
        payload = b""
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        suffix = f"   Idempotency-Key: {idempotency_key}" if idempotency_key else ""
        print(f"\n\033[1m> {method} {path}\033[0m{suffix}")
        if body is not None:
            print(_indent(json.dumps(_masked(body), indent=2)))
        self.connection.request(method, path, body=payload, headers=headers)
        response = self.connection.getresponse()
        exchange = Exchange(response.status, response.read(), {k.lower(): v for k, v in response.getheaders()})
        replay = "   (Idempotent-Replayed: true)" if exchange.headers.get("idempotent-replayed") else ""
        print(f"< {exchange.status} {response.reason}{replay}")
        print(_indent(json.dumps(exchange.json(), indent=2)))
        return exchange


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise DemoFailure(what)
    print(f"  \033[32mok\033[0m {what}")


def card(number: str) -> dict:  # type: ignore[type-arg]
    return {"card": {"number": number, "exp_month": 12, "exp_year": 2030, "cvc": "123"}}


def flow(client: Client) -> None:
    run = secrets.token_hex(4)
    authorize = {"amount": 5000, "currency": "usd", "capture_method": "manual", "payment_method": card(VISA_OK),
                 "description": "Order #1001"}
    first = client.call("POST", "/v1/payments", authorize, f"demo-{run}-authorize")
    payment = first.json()
    expect(first.status == 200 and payment["status"] == "requires_capture", "authorized, waiting for capture")
    expect(payment["payment_method"]["card"]["last4"] == "4242", "only the last 4 digits come back")

    captured = client.call("POST", f"/v1/payments/{payment['id']}/capture", {}, f"demo-{run}-capture")
    expect(captured.status == 200 and captured.json()["amount_received"] == 5000, "captured 50.00 USD")

    refund = client.call("POST", "/v1/refunds", {"payment": payment["id"], "amount": 1500}, f"demo-{run}-refund")
    expect(refund.status == 200 and refund.json()["status"] == "succeeded", "refunded 15.00 USD")

    after = client.call("GET", f"/v1/payments/{payment['id']}")
    expect(after.json()["amount_refunded"] == 1500, "the payment shows 15.00 refunded")

    declined = client.call("POST", "/v1/payments", {"amount": 2000, "currency": "usd", "payment_method":
                                                     card(VISA_DECLINE)}, f"demo-{run}-declined")
    error = declined.json()["error"]
    expect(declined.status == 402 and error["decline_code"] == "do_not_honor", "declined: 402 do_not_honor")

    replay = client.call("POST", "/v1/payments", authorize, f"demo-{run}-authorize")
    expect(replay.headers.get("idempotent-replayed") == "true", "the replay is marked as a replay")
    expect(replay.status == first.status and replay.body == first.body,
           "same Idempotency-Key: the identical response, byte for byte, and no second charge")


def sdk_payments(base_url: str, api_key: str, tcp_port: int, ca_file: str | None) -> None:
    """One payment through the merchant SDK (sdk/) over each transport; the TCP one replays over HTTP."""
    import ssl

    from switch_sdk import Client as SdkClient

    tls = ssl.create_default_context(cafile=ca_file) if ca_file else None
    key = f"demo-sdk-{secrets.token_hex(4)}"
    print("\n\033[1m$ switch_sdk: one payment over HTTP, one over the TCP protocol\033[0m")
    with SdkClient(api_key, base_url=base_url, tls=tls) as over_http:
        paid = over_http.create_payment(1200, "usd", card(VISA_OK))
        expect(paid.status == "succeeded", f"over HTTP: {paid.id} succeeded")
        with SdkClient(api_key, tcp_address=f"127.0.0.1:{tcp_port}", transport="tcp", tls=tls) as over_tcp:
            made = over_tcp.create_payment(1300, "usd", card(VISA_OK), idempotency_key=key)
            expect(made.status == "succeeded", f"over TCP: {made.id} succeeded")
        again = over_http.create_payment(1300, "usd", card(VISA_OK), idempotency_key=key)
        expect(again.id == made.id, "the same key over HTTP answers the TCP payment: one payment, not two")


@dataclass
class DayEnd:
    """What the end of the day needs of the stack: the simulator's control API, the switch's environment
    for its CLI, and a folder for reports and payout files."""

    simulator_control_url: str
    switch_env: dict[str, str]
    run_dir: Path


def _switch(day: DayEnd, *args: str) -> subprocess.CompletedProcess[str]:
    print(f"\n\033[1m$ switch {' '.join(args)}\033[0m")
    done = subprocess.run([sys.executable, "-m", "switch", *args], capture_output=True, text=True, check=False,
                          env={**os.environ, **day.switch_env})
    print(_indent(done.stdout.strip()) + (("\n" + _indent(done.stderr.strip())) if done.stderr.strip() else ""))
    return done


def _until_sent(database_url: str, deadline_s: float = 10.0) -> None:
    """The capture advice and the refund reach the network before it cuts the day (the outbox drains)."""
    async def drained() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            until = time.monotonic() + deadline_s
            while await outbox_store.count_unacknowledged(conn) and time.monotonic() < until:
                await asyncio.sleep(0.1)
        finally:
            await conn.close()
    asyncio.run(drained())


def end_of_day(client: Client, day: DayEnd) -> None:
    _until_sent(day.switch_env["DATABASE_URL"])
    request = urllib.request.Request(day.simulator_control_url + "/settlement", data=b"{}",  # noqa: S310
                                     method="POST", headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback only
        files = [Path(name) for name in json.loads(response.read())["files"]]
    print(f"\nThe networks cut the day: {', '.join(path.name for path in files)}")
    for path in files:
        imported = _switch(day, "settlement", "import", "--network", path.name.split("-", 1)[0], "--reports-dir",
                           str(day.run_dir / "reports"), str(path))
        expect(imported.returncode == 0, f"{path.name}: every line matched, 0 exceptions")
    balance = client.call("GET", "/v1/balance").json()
    available = {money["currency"]: money["amount"] for money in balance["available"]}
    # 50.00 captured, less the 2.9 % + 0.30 fee (1.75), less the 15.00 refund
    expect(available.get("usd") == 5000 - 175 - 1500, "available: 33.25 USD, settled, net of fee and refund")
    payout = client.call("POST", "/v1/payouts", {"amount": available["usd"], "currency": "usd"},
                         f"demo-payout-{secrets.token_hex(4)}")
    expect(payout.status == 200 and payout.json()["status"] == "pending", "a payout of the whole balance")
    filed = _switch(day, "payouts", "run", "--dir", str(day.run_dir / "payouts"))
    expect(filed.returncode == 0 and "payout file:" in filed.stdout, "the payout run files it for the bank")
    paid = _switch(day, "payouts", "confirm", payout.json()["id"], "--paid")
    expect(paid.returncode == 0, "the bank's answer: paid")
    shown = client.call("GET", f"/v1/payouts/{payout.json()['id']}")
    expect(shown.json()["status"] == "paid", "the payout is paid")
    expect(_switch(day, "ledger", "check").returncode == 0, "the ledger holds")


def run_demo(base_url: str, api_key: str, ca_file: str | None = None, day: DayEnd | None = None,
             tcp_port: int = 0) -> int:
    print(f"Payment switch demo against {base_url}")
    try:
        client = Client(base_url, api_key, ca_file)
        flow(client)
        if day is not None:
            end_of_day(client, day)
        if tcp_port:                        # after the day's settlement: its figures are the flow's
            sdk_payments(base_url, api_key, tcp_port, ca_file)
    except (DemoFailure, OSError, ValueError, KeyError, asyncpg.PostgresError, SwitchError) as error:
        print(f"\n\033[31mDEMO FAILED\033[0m: {error.__class__.__name__}: {error}", file=sys.stderr)
        return 1
    print("\n\033[32mDEMO OK\033[0m: every step behaved as expected.")
    return 0
