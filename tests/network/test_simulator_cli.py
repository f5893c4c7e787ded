"""`python -m acquirer_sim` as a process: READY line, control API, clean stop on SIGTERM."""

import asyncio
import json
import signal
import sys

from switch.iso import PROFILES
from switch.iso.mac import format_master_keys
from switch.iso.messages import authorization_request
from switch.network.link import Link
from tests.network.mac_keys import MASTER_KEYS, key_provider


async def http(port: int, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    payload = json.dumps(body).encode() if body is not None else b""
    writer.write(
        f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(payload)}\r\n\r\n".encode() + payload
    )
    data = await reader.read()
    writer.close()
    head, _, body_bytes = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body_bytes)


async def test_simulator_process(tmp_path):
    key_file = tmp_path / "mac-keys.json"
    key_file.write_text(format_master_keys(MASTER_KEYS))
    key_file.chmod(0o600)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "acquirer_sim", "--records-max", "50", "--mac-key-file", str(key_file),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        line = (await asyncio.wait_for(process.stdout.readline(), 10)).decode()
        assert line.startswith("SIM READY ")
        ports = dict(part.split("=") for part in line.split()[2:])
        assert set(ports) == {"visa", "mastercard", "generic", "control"}
        control = int(ports["control"])

        link = Link("127.0.0.1", int(ports["visa"]), PROFILES["visa"], late_handler=print,
                    mac_key_provider=key_provider("visa"))
        await link.start()
        request = authorization_request(
            pan="4000000000009995",
            amount_minor=500,
            currency="978",
            stan="000321",
            rrn="RRN000000321",
            terminal_id="T1",
            merchant_id="M1",
            expiry_yymm="3012",
        )
        assert (await link.request(request, timeout_s=2.0))["39"] == "51"
        await link.close()

        status, body = await http(control, "GET", "/records?rrn=RRN000000321")
        assert status == 200 and body["records_max"] == 50
        [record] = body["records"]
        assert record["card_last4"] == "9995" and record["field39"] == "51" and record["network"] == "visa"
        assert "4000000000009995" not in json.dumps(body)

        status, body = await http(control, "GET", "/stats")
        assert status == 200 and body["visa"]["by_mti"] == {"0800": 2, "0100": 1}

        status, body = await http(control, "POST", "/behaviour", {"network": "visa", "latency_ms": 5})
        assert status == 200 and (body["visa"]["latency_ms"], body["visa"]["drop_rate"]) == (5, 0.0)
        status, body = await http(control, "POST", "/behaviour", {"network": "visa", "drop_rate": 2})
        assert status == 400 and body["error"] == "Expected `float` <= 1.0 - at `$.drop_rate`"
        status, _ = await http(control, "GET", "/nothing")
        assert status == 404
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 10) == 0
