"""MAC'd links (visa, mastercard) against the real simulator over loopback TCP, and a hand-written far end
for a response with no MAC at all. The simulator verifies every request's MAC and signs its answers."""

import asyncio

import pytest

from switch.iso import PROFILES
from switch.iso.framing import framing_for
from switch.iso.mac import derive_session_key, sign, verify, with_generation
from switch.iso.messages import NETWORK_SIGN_ON, authorization_request, decode, encode, network_request, response_for
from switch.network.config import LinkConfig
from switch.network.link import Link, LinkDownError, MacError
from tests.network.mac_keys import MASTER_KEYS, KeyProvider

MAC_NETWORKS = ["visa", "mastercard"]
WRONG_MASTER_KEY = bytes(32)


def auth(stan: int, pan: str = "4242424242424242") -> dict:
    return authorization_request(
        pan=pan, amount_minor=100 + stan, currency="840", stan=f"{stan:06d}", rrn=f"{stan:012d}",
        terminal_id="TERM0001", merchant_id="MERCHANT000001", expiry_yymm="3012", cvv="123",
    )  # fmt: skip


async def open_link(port: int, network: str, provider: KeyProvider) -> tuple[Link, list[dict]]:
    handed_over: list[dict] = []
    link = Link("127.0.0.1", port, PROFILES[network], late_handler=handed_over.append, mac_key_provider=provider,
                config=LinkConfig(reconnect_delay_initial_s=0.02))
    await link.start()
    return link, handed_over


async def wait_until(predicate, timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.01)


def test_a_mac_profile_link_needs_a_key_provider():
    with pytest.raises(ValueError, match="mac_key_provider"):
        Link("127.0.0.1", 1, PROFILES["visa"], late_handler=print)


@pytest.mark.parametrize("network", MAC_NETWORKS)
async def test_good_mac_round_trip_and_rotation_on_sign_on(simulator, network):
    provider = KeyProvider(network)
    link, handed_over = await open_link(simulator.ports[network], network, provider)
    stats = simulator.networks[network].stats
    try:
        response = await link.request(auth(1), timeout_s=2.0)
        assert response["39"] == "00" and response["11"] == "000001"
        assert "64" not in response and "128" not in response  # The MAC stays in the link layer.
        assert stats.mac_failures == 0 and link.mac_failures == 0
        assert len(provider.generations) == 1
        # A new connection signs on with a new, larger generation: a fresh session key.
        assert simulator.drop_connections(network) == 1
        await wait_until(lambda: link.reconnects == 1 and link.ready)
        assert len(provider.generations) == 2 and provider.generations[1] > provider.generations[0]
        response = await link.request(auth(2, "4000000000009995"), timeout_s=2.0)
        assert response["39"] == "51"
        assert stats.mac_failures == 0 and link.mac_failures == 0 and not handed_over
    finally:
        await link.close()


@pytest.mark.parametrize("network", MAC_NETWORKS)
async def test_bad_mac_response_is_rejected_and_counted(simulator, network):
    link, handed_over = await open_link(simulator.ports[network], network, KeyProvider(network))
    try:
        simulator.networks[network].set_behaviour({"bad_mac_rate": 1.0})
        with pytest.raises(MacError) as caught:
            await link.request(auth(7), timeout_s=2.0)
        assert not caught.value.retryable
        assert link.mac_failures == 1 and link.pending == 0 and not handed_over
        assert "4242424242424242" not in str(caught.value)
        simulator.networks[network].set_behaviour({"bad_mac_rate": 0.0})
        assert (await link.request(auth(8), timeout_s=2.0))["39"] == "00"  # The link itself is fine.
        assert link.mac_failures == 1
    finally:
        await link.close()


@pytest.mark.parametrize("network", MAC_NETWORKS)
async def test_simulator_refuses_a_link_with_the_wrong_key(simulator, network):
    provider = KeyProvider(network, master_key=WRONG_MASTER_KEY)
    with pytest.raises(LinkDownError, match="sign-on"):
        await open_link(simulator.ports[network], network, provider)
    stats = simulator.networks[network].stats
    assert stats.mac_failures == 1 and stats.by_field39["63"] == 1


@pytest.mark.parametrize("network", MAC_NETWORKS)
async def test_simulator_answers_security_violation_to_bad_or_missing_mac(simulator, network):
    """On the wire, as raw frames: a sign-on MAC'd with generation 42's key, then an unsigned 0100, a tampered
    one and a good one. Every answer is signed with the same session key."""
    profile = PROFILES[network]
    framing = framing_for(profile)
    key = derive_session_key(MASTER_KEYS[network], network, 42)
    reader, writer = await asyncio.open_connection("127.0.0.1", simulator.ports[network])
    frames = framing.reader()

    async def exchange(data: bytes) -> bytes:
        writer.write(framing.encode_frame(data))
        async with asyncio.timeout(2):
            while True:
                received = frames.feed(await reader.read(4096))
                if received:
                    return received[0]

    try:
        sign_on = with_generation(network_request(NETWORK_SIGN_ON, "000001"), 42)
        answer = await exchange(sign(profile, sign_on, key))
        assert verify(profile, answer, key) and decode(profile, answer)["39"] == "00"
        signed = sign(profile, auth(3), key)
        for data in (encode(profile, auth(2)), signed[:-1] + bytes([signed[-1] ^ 0x01])):
            answer = await exchange(data)
            assert verify(profile, answer, key) and decode(profile, answer)["39"] == "63"
        answer = await exchange(sign(profile, auth(4), key))
        assert verify(profile, answer, key) and decode(profile, answer)["39"] == "00"
        assert simulator.networks[network].stats.mac_failures == 2
    finally:
        writer.close()


async def test_missing_mac_on_a_response_is_rejected():
    """A far end that signs its sign-on answer but answers the 0100 without a MAC, then sends a stray
    unsigned response: the request fails with MacError, the stray is dropped, both are counted."""
    network, profile = "visa", PROFILES["visa"]
    framing = framing_for(profile)
    provider = KeyProvider(network)

    async def far_end(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        frames = framing.reader()
        key = None
        while data := await reader.read(4096):
            for frame in frames.feed(data):
                message = decode(profile, frame)
                if message["t"] == "0800":
                    key = derive_session_key(MASTER_KEYS[network], network, provider.generations[-1])
                    writer.write(framing.encode_frame(sign(profile, response_for(message, "00"), key)))
                elif message["t"] == "0100":
                    stray = {"t": "0110", "11": "999999", "41": "NOBODY  ", "39": "00"}
                    writer.write(framing.encode_frame(encode(profile, response_for(message, "00")))
                                 + framing.encode_frame(encode(profile, stray)))

    server = await asyncio.start_server(far_end, "127.0.0.1", 0)
    link, handed_over = await open_link(server.sockets[0].getsockname()[1], network, provider)
    try:
        with pytest.raises(MacError):
            await link.request(auth(5), timeout_s=2.0)
        await wait_until(lambda: link.mac_failures == 2)
        assert not handed_over and link.unhandled == 0 and link.ready
    finally:
        await link.close()
        server.close()
        await server.wait_closed()
