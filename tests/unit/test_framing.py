"""Framing on raw bytes: every split point, coalesced frames, oversize and garbage."""

import pytest

from switch.iso.framing import AsciiLengthFraming, BinaryLengthFraming, FramingError

FRAMINGS = [BinaryLengthFraming(2), BinaryLengthFraming(4), AsciiLengthFraming(4)]
PAYLOADS = [b"x", b"0800" + bytes(range(256)), b"\x00" * 70]


@pytest.mark.parametrize("framing", FRAMINGS, ids=lambda f: f"{type(f).__name__}{f.header_size}")
def test_split_at_every_byte(framing):
    stream = b"".join(framing.encode_frame(payload) for payload in PAYLOADS)
    for split in range(len(stream) + 1):
        reader = framing.reader()
        frames = reader.feed(stream[:split]) + reader.feed(stream[split:])
        assert frames == PAYLOADS, split
        assert reader.buffered == 0


@pytest.mark.parametrize("framing", FRAMINGS, ids=lambda f: f"{type(f).__name__}{f.header_size}")
def test_byte_at_a_time_and_coalesced(framing):
    stream = b"".join(framing.encode_frame(payload) for payload in PAYLOADS * 3)
    reader = framing.reader()
    frames = []
    for index in range(len(stream)):
        frames += reader.feed(stream[index : index + 1])
    assert frames == PAYLOADS * 3
    assert framing.reader().feed(stream) == PAYLOADS * 3


def test_headers_on_the_wire():
    assert BinaryLengthFraming(2).encode_frame(b"abc") == b"\x00\x03abc"
    assert AsciiLengthFraming(4).encode_frame(b"abc") == b"0003abc"


@pytest.mark.parametrize("framing", FRAMINGS, ids=lambda f: f"{type(f).__name__}{f.header_size}")
def test_oversize_is_refused_both_ways(framing):
    with pytest.raises(FramingError):
        framing.encode_frame(b"x" * (framing.frame_size_max + 1))
    header = framing.encode_header(framing.frame_size_max + 1)
    with pytest.raises(FramingError, match="frame_size_max"):
        framing.reader().feed(header)


@pytest.mark.parametrize("framing", FRAMINGS, ids=lambda f: f"{type(f).__name__}{f.header_size}")
def test_zero_length_is_refused(framing):
    with pytest.raises(FramingError):
        framing.reader().feed(framing.encode_header(0))
    with pytest.raises(FramingError):
        framing.encode_frame(b"")


@pytest.mark.parametrize("garbage", [b"GET ", b"-001", b" 123", b"12a4", b"\xff\xff\xff\xff"])
def test_ascii_garbage_is_refused(garbage):
    with pytest.raises(FramingError):
        AsciiLengthFraming(4).reader().feed(garbage + b"payload")


def test_binary_garbage_reads_as_oversize():
    with pytest.raises(FramingError):
        BinaryLengthFraming(2).reader().feed(b"GET / HTTP/1.1\r\n")


def test_custom_maximum():
    framing = AsciiLengthFraming(4, frame_size_max=10)
    assert framing.reader().feed(b"0010" + b"x" * 10) == [b"x" * 10]
    with pytest.raises(FramingError):
        framing.reader().feed(b"0011")
