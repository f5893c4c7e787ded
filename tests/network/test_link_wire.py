"""Link behaviour that needs a hand-written far end: unsolicited messages and the network's own echo."""

import asyncio

from switch.iso import GENERIC, decode, encode
from switch.iso.framing import framing_for
from switch.iso.messages import network_request, response_for
from switch.network.link import Link

FRAMING = framing_for(GENERIC)


async def test_unsolicited_response_is_unhandled_and_network_echo_answered():
    received: list[dict] = []

    async def far_end(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        frame_reader = FRAMING.reader()
        while True:
            data = await reader.read(4096)
            if not data:
                return
            for frame in frame_reader.feed(data):
                message = decode(GENERIC, frame)
                received.append(message)
                if message["t"] == "0800" and message["70"] == "001":
                    stray = {"t": "0110", "11": "123456", "41": "NOBODY  ", "39": "00"}
                    writer.write(
                        FRAMING.encode_frame(encode(GENERIC, response_for(message, "00")))
                        + FRAMING.encode_frame(encode(GENERIC, stray))
                        + FRAMING.encode_frame(encode(GENERIC, network_request("301", "900001")))
                    )

    server = await asyncio.start_server(far_end, "127.0.0.1", 0)
    handed_over: list[dict] = []
    link = Link("127.0.0.1", server.sockets[0].getsockname()[1], GENERIC, late_handler=handed_over.append)
    try:
        await link.start()
        async with asyncio.timeout(2):
            while not (handed_over and any(m["t"] == "0810" for m in received)):
                await asyncio.sleep(0.01)
        assert link.unhandled == 1 and link.late == 0
        assert handed_over[0]["11"] == "123456"
        echo_answer = next(m for m in received if m["t"] == "0810")
        assert echo_answer["11"] == "900001" and echo_answer["39"] == "00"
    finally:
        await link.close()
        server.close()
        await server.wait_closed()
