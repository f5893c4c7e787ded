"""The merchant protocol's frame reader, fuzzed: any bytes, in any chunks, give frames or a FrameError
(the connection's clean close), never another exception, and a frame's bound is enforced from its
length alone."""

from __future__ import annotations

import struct

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from switch.frontends.tcp import frames
from switch.frontends.tcp.frames import FrameError, Reader

values = st.one_of(st.integers(-2**63, 2**63 - 1), st.text(max_size=20), st.none(), st.booleans())
messages = st.dictionaries(st.text(max_size=10), values, max_size=5)


@settings(max_examples=300, deadline=None)
@given(st.lists(messages, max_size=20), st.integers(min_value=1, max_value=64))
def test_frames_round_trip_in_any_chunking(sent: list[dict[str, object]], chunk: int) -> None:
    stream = b"".join(frames.encode(message) for message in sent)
    reader, got = Reader(), []
    for at in range(0, len(stream), chunk):
        got += reader.feed(stream[at:at + chunk])
    assert got == sent and not reader.buffer


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_give_frames_or_a_frame_error(data: bytes) -> None:
    try:
        for frame in Reader().feed(data):
            assert isinstance(frame, dict)
    except FrameError as error:
        assert error.code in {"frame_too_large", "frame_empty", "frame_invalid"}


def test_an_oversized_length_is_refused_before_its_bytes_arrive() -> None:
    reader = Reader()
    try:
        reader.feed(struct.pack(">I", frames.FRAME_BYTES_MAX + 1) + b"x")
    except FrameError as error:
        assert error.code == "frame_too_large"
    else:
        raise AssertionError("an oversized frame was accepted")
    assert Reader().feed(struct.pack(">I", 5)[:3]) == []     # a partial header waits for the rest


def test_a_frame_that_is_not_a_map_is_invalid() -> None:
    for payload in (msgspec.msgpack.encode([1]), msgspec.msgpack.encode("x"), b"\xc1"):
        try:
            Reader().feed(struct.pack(">I", len(payload)) + payload)
        except FrameError as error:
            assert error.code == "frame_invalid"
        else:
            raise AssertionError(payload)


def test_a_map_nested_deeper_than_the_decoder_goes_is_invalid() -> None:
    """Within the frame bound, yet too deep to decode: msgspec raises RecursionError, which must not
    escape the reader (it would escape data_received, and the loop would drop the connection unanswered)."""
    payload = b"\x81\xa2op" + b"\x91" * 60_000 + b"\xc0"      # {"op": [[[...[nil]...]]]}
    reader = Reader()
    try:
        reader.feed(struct.pack(">I", len(payload)) + payload + frames.encode({"op": "ping"}))
    except FrameError as error:
        assert error.code == "frame_invalid"
    else:
        raise AssertionError("a frame too deep to decode was accepted")
