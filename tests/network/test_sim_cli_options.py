"""`python -m acquirer_sim` with start-up behaviour, a scenario file and a settlement folder."""

import asyncio
import json
import signal
import sys

import pytest

from switch.iso import PROFILES
from switch.iso.messages import financial_request
from switch.network.link import Link


async def http(port: int, method: str, path: str) -> tuple[int, dict]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


async def test_start_up_options(tmp_path):
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps({"name": "slow visa", "steps": [
        {"at_s": 0, "network": "visa", "set": {"latency_distribution": "lognormal", "latency_ms": 3,
                                                "latency_sigma": 0.5}},
        {"at_s": 3600, "network": "visa", "set": {"refuse_connections": True}},
    ]}))  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "acquirer_sim", "--settlement-dir", str(tmp_path / "out"), "--settlement-time", "off",
        "--behaviour", 'generic={"error_rate": 1.0, "error_code": "91"}', "--scenario", str(scenario),
        stdout=asyncio.subprocess.PIPE, cwd=tmp_path,
    )  # fmt: skip
    try:
        line = (await asyncio.wait_for(process.stdout.readline(), 10)).decode()
        ports = dict(part.split("=") for part in line.split()[2:])
        control = int(ports["control"])
        status, behaviour = await http(control, "GET", "/behaviour")
        assert status == 200
        assert (behaviour["generic"]["error_rate"], behaviour["generic"]["error_code"]) == (1.0, "91")
        assert (behaviour["visa"]["latency_distribution"], behaviour["visa"]["latency_ms"]) == ("lognormal", 3)
        assert (await http(control, "GET", "/scenario"))[1] == {
            "name": "slow visa", "running": True, "steps": 2, "steps_applied": 1
        }  # fmt: skip

        link = Link("127.0.0.1", int(ports["generic"]), PROFILES["generic"], late_handler=print)
        await link.start()
        request = financial_request(
            pan="4242424242424242", amount_minor=500, currency="978", stan="000001", rrn="RRC000000001",
            terminal_id="T1", merchant_id="M1", expiry_yymm="3012",
        )  # fmt: skip
        assert (await link.request(request, timeout_s=2.0))["39"] == "91"
        await link.close()

        status, body = await http(control, "POST", "/settlement")
        assert status == 200
        assert sorted(path.rsplit("/", 1)[0] for path in body["files"]) == [str(tmp_path / "out")] * 3
        assert (await http(control, "GET", "/settlement"))[1]["cut_offs"] == 1
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 10) == 0


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--behaviour", 'visa={"drop_rate": 2}'], b"--behaviour visa: Expected `float` <= 1.0 - at `$.drop_rate`"),
        (["--behaviour", "amex={}"], b"--behaviour: unknown network 'amex'"),
        (["--settlement-time", "noon"], b"--settlement-time must be HH:MM (UTC) or off"),
        (["--scenario", "/nonexistent/scenario.json"], b"--scenario: [Errno 2] No such file or directory"),
    ],
)
async def test_bad_start_up_options_exit_with_a_clear_message(arguments, message):
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "acquirer_sim", *arguments, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), 10)
    assert process.returncode != 0 and stdout == b""
    assert message in stderr
