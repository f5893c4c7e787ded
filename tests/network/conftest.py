"""Fixtures for network tests: the real simulator, in-process, on free loopback ports."""

import pytest_asyncio

from acquirer_sim.server import Simulator


@pytest_asyncio.fixture
async def simulator():
    simulator = Simulator(records_max=10_000)
    simulator.ports = await simulator.start("127.0.0.1", {"visa": 0, "mastercard": 0, "generic": 0})
    yield simulator
    await simulator.close()
