"""Fixtures for network tests: the real simulator, in-process, on free loopback ports."""

import pytest_asyncio

from acquirer_sim.server import Simulator
from tests.network.mac_keys import MASTER_KEYS


@pytest_asyncio.fixture
async def simulator():
    simulator = Simulator(records_max=10_000, mac_master_keys=MASTER_KEYS)
    simulator.ports = await simulator.start("127.0.0.1", {"visa": 0, "mastercard": 0, "generic": 0})
    yield simulator
    await simulator.close()
