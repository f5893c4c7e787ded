"""The settlement job in the worker set: two workers watching the folder the network's files land in
import a new file once, settle what it matched, and write its report."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.conftest import simulator
from tests.integration.helpers import key, luhn_card, payment
from tests.integration.solo import SoloStack

pytestmark = pytest.mark.integration


async def test_two_workers_import_a_new_file_once(solo_stack: SoloStack, tmp_path: Path) -> None:
    stack = solo_stack.stack
    folder = stack.run_dir / "settlement"
    switch = solo_stack.start_switches({"switch-settling": {
        "SWITCH_SETTLEMENT_DIR": str(folder), "SWITCH_SETTLEMENT_REPORTS_DIR": str(tmp_path),
        "SWITCH_SETTLEMENT_POLL_S": "0.2"}}, workers=2)["switch-settling"]
    client = solo_stack.client(switch)
    pool = await solo_stack.pool()
    try:
        sale = await client.request("POST", "/v1/payments", payment(2600, luhn_card("4571"), "automatic"),
                                    idempotency_key=key("job"))
        assert sale.status == 200, sale.body
        files = simulator(stack, "/settlement", {})["files"]
        visa = next(Path(name).name for name in files if Path(name).name.startswith("visa-"))
        for _ in range(100):
            if await pool.fetchval("SELECT status FROM payments WHERE id = $1", sale.json()["id"]) == "settled":
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)                                       # both workers have had passes since
        assert await pool.fetchval("SELECT count(*) FROM settlement_files WHERE file_name = $1", visa) == 1
        assert await pool.fetchval("SELECT status FROM payments WHERE id = $1", sale.json()["id"]) == "settled"
        file_id = await pool.fetchval("SELECT id FROM settlement_files WHERE file_name = $1", visa)
        assert (tmp_path / f"visa-file{file_id}.json").exists()
    finally:
        await client.close()
        await pool.close()
        solo_stack.stop_switch(switch)
