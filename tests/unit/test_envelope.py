"""The signaling envelope: round trips, golden bytes, every malformed frame, validation."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from aiosocker import CloseCode, SignalingError
from aiosocker.rtc import (
    Answer,
    Bye,
    Candidate,
    ChannelSpec,
    Error,
    IceServer,
    IceServers,
    Message,
    MessageType,
    Offer,
    Open,
    Ready,
    Renegotiate,
    Resume,
    decode,
    encode,
    is_signaling,
    validate_channels,
)
from aiosocker.rtc.envelope import (
    MAGIC,
    MAX_ICE_FIELD,
    MAX_ICE_SERVERS,
    MAX_SDP_SIZE,
    MAX_TEXT_SIZE,
    VERSION,
)

SDP = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


def header(kind: int, version: int = VERSION) -> bytes:
    return MAGIC + bytes((version, kind))


def channel_bytes(
    flags: int = 0,
    retransmits: int = 0,
    lifetime: int = 0,
    id_: int = 0,
    label: bytes = b"x",
    protocol: bytes = b"",
) -> bytes:
    """One channel entry of an OFFER, built by hand."""
    fixed = struct.pack(">BHHHH", flags, retransmits, lifetime, id_, len(label))
    return fixed + label + struct.pack(">H", len(protocol)) + protocol


def offer_bytes(*channels: bytes, sdp: bytes = b"v=0") -> bytes:
    return header(0x02) + struct.pack(">H", len(channels)) + b"".join(channels) + sdp


EVERY_TYPE: list[Message] = [
    Ready(),
    Offer(SDP, (ChannelSpec("state"), ChannelSpec("chat", ordered=True, max_retransmits=None))),
    Offer(SDP),
    Answer(SDP),
    Candidate("candidate:1 1 udp 2122260223 10.0.0.2 50000 typ host", "0", 0),
    Candidate(""),
    Open(),
    Renegotiate("channel 'state' closed"),
    Renegotiate(),
    Error(CloseCode.BAD_SIGNALING, "setRemoteDescription failed: ünïcode"),
    Bye(),
    Bye("done"),
    Resume("tok_-9"),
    Resume("t", resumed=True, fresh_reason=""),
    IceServers(
        (
            IceServer(
                ["turn:t.example:3478?transport=udp", "turns:t.example:5349?transport=tcp"],
                "1700000000:c1",
                "cGFzc3dvcmQ=",
            ),
            IceServer("stun:s.example:3478"),
        )
    ),
]


@pytest.mark.parametrize("message", EVERY_TYPE, ids=repr)
def test_round_trip_every_type(message: Message) -> None:
    frame = encode(message)
    assert is_signaling(frame)
    assert frame[:4] == header(message.TYPE)
    assert decode(frame) == message
    assert type(decode(frame)) is type(message)


@pytest.mark.parametrize(
    ("frame", "why"),
    [
        ("ff 53 01 09 02 00 01 61", "unknown bits"),
        ("ff 53 01 09 00 00 01 2e", "URL-safe"),
        ("ff 53 01 09 00 00 00", "URL-safe"),
        ("ff 53 01 09 00 00 05 61", "truncated"),
    ],
)
def test_bad_resume_frames(frame: str, why: str) -> None:
    with pytest.raises(SignalingError, match=why):
        decode(bytes.fromhex(frame))


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"token": ""}, ValueError),
        ({"token": "a b"}, ValueError),
        ({"token": "a", "resumed": 1}, TypeError),
    ],
)
def test_resume_is_checked(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        Resume(**kwargs)  # type: ignore[arg-type]


def test_every_type_is_covered() -> None:
    assert {m.TYPE for m in EVERY_TYPE} == set(MessageType)


# Golden frames: docs/protocol.md shows the same bytes, and the JS client must match them.
GOLDEN: list[tuple[Message, str]] = [
    (Ready(), "ff 53 01 01"),
    (Open(), "ff 53 01 05"),
    (Bye(), "ff 53 01 08"),
    (Bye("done"), "ff 53 01 08 64 6f 6e 65"),
    (Resume("ab", resumed=True), "ff 53 01 09 01 00 02 61 62"),
    (Resume("ab", fresh_reason="x"), "ff 53 01 09 00 00 02 61 62 78"),
    (Answer("v=0"), "ff 53 01 03 76 3d 30"),
    (Renegotiate("x"), "ff 53 01 06 78"),
    (Error(4400, "bad"), "ff 53 01 07 11 30 62 61 64"),
    (Candidate("c", "0", 0), "ff 53 01 04 03 00 00 00 01 30 63"),
    (Candidate("c"), "ff 53 01 04 00 00 00 00 00 63"),
    (
        IceServers((IceServer("turn:h", "u", "p"),)),
        "ff 53 01 0a 01 01 00 06 74 75 72 6e 3a 68 00 01 75 00 01 70",
    ),
    (
        IceServers((IceServer("stun:h"),)),
        "ff 53 01 0a 01 01 00 06 73 74 75 6e 3a 68 00 00 00 00",
    ),
    (
        Offer("v=0", (ChannelSpec("state"),)),
        "ff 53 01 02 00 01 04 00 00 00 00 00 00 00 05 73 74 61 74 65 00 00 76 3d 30",
    ),
    (
        Offer(
            "v=0",
            (
                ChannelSpec("chat", ordered=True, max_retransmits=None, protocol="p"),
                ChannelSpec("t", max_packet_lifetime=500, negotiated=True, id=7),
            ),
        ),
        "ff 53 01 02 00 02"
        " 01 00 00 00 00 00 00 00 04 63 68 61 74 00 01 70"
        " 0a 00 00 01 f4 00 07 00 01 74 00 00"
        " 76 3d 30",
    ),
]


@pytest.mark.parametrize(("message", "golden"), GOLDEN, ids=[repr(m) for m, _ in GOLDEN])
def test_golden_bytes(message: Message, golden: str) -> None:
    assert encode(message).hex(" ") == golden
    assert decode(bytes.fromhex(golden)) == message


# -- hypothesis: arbitrary valid messages round-trip; arbitrary bytes never crash --------

u16 = st.integers(0, 0xFFFF)
text = st.text(max_size=40)
label = st.text(min_size=1, max_size=20)
sdp = st.text(min_size=1, max_size=200)


@st.composite
def channel_specs(draw: st.DrawFn) -> ChannelSpec:
    limit = draw(st.sampled_from(["retransmits", "lifetime", "reliable"]))
    negotiated = draw(st.booleans())
    return ChannelSpec(
        draw(label),
        ordered=draw(st.booleans()),
        max_retransmits=draw(u16) if limit == "retransmits" else None,
        max_packet_lifetime=draw(u16) if limit == "lifetime" else None,
        protocol=draw(text),
        negotiated=negotiated,
        id=draw(st.integers(0, 65534)) if negotiated else None,
    )


def unique_ids(specs: list[ChannelSpec]) -> bool:
    ids = [spec.id for spec in specs if spec.id is not None]
    return len(ids) == len(set(ids))


channel_lists = st.lists(channel_specs(), max_size=5, unique_by=lambda c: c.label).filter(
    unique_ids
)

ice_servers = st.builds(
    IceServer,
    st.lists(
        st.builds(str.__add__, st.sampled_from(["stun:", "stuns:", "turn:", "turns:"]), text),
        min_size=1,
        max_size=3,
    ).map(tuple),
    st.none() | text,
    st.none() | text,
)

messages: st.SearchStrategy[Message] = st.one_of(
    st.just(Ready()),
    st.just(Open()),
    st.builds(Offer, sdp, channel_lists.map(tuple)),
    st.builds(Answer, sdp),
    st.builds(Candidate, text, st.none() | text, st.none() | u16),
    st.builds(Renegotiate, text),
    st.builds(Error, u16, text),
    st.builds(Bye, text),
    st.builds(IceServers, st.lists(ice_servers, min_size=1, max_size=3).map(tuple)),
)


@given(messages)
def test_round_trip_arbitrary_messages(message: Message) -> None:
    frame = encode(message)
    assert decode(frame) == message
    assert decode(bytearray(frame)) == message
    assert decode(memoryview(frame)) == message


@given(st.binary(max_size=64))
@example(b"")
@example(MAGIC)
def test_decode_arbitrary_bytes_returns_message_or_raises_signaling_error(data: bytes) -> None:
    check_canonical(data)


@given(st.sampled_from(list(MessageType)), st.binary(max_size=80))
def test_decode_arbitrary_payloads(kind: MessageType, payload: bytes) -> None:
    # Past the header, so hypothesis explores every payload decoder, not only the magic.
    check_canonical(header(kind) + payload)


@given(channel_lists.map(tuple), st.binary(max_size=8), st.integers(0, 40))
def test_decode_corrupted_offers(channels: tuple[ChannelSpec, ...], junk: bytes, at: int) -> None:
    frame = encode(Offer("v=0", channels))
    at = min(at, len(frame))
    check_canonical(frame[:at] + junk + frame[at + len(junk) :])


def check_canonical(frame: bytes) -> None:
    """decode either raises SignalingError or returns a message whose encoding is frame."""
    try:
        message = decode(frame)
    except SignalingError as exc:
        assert str(exc)
    else:
        assert encode(message) == frame


# -- malformed frames: each one names its problem ---------------------------------------

MALFORMED: list[tuple[bytes, str]] = [
    (b"", r"truncated signaling frame: 0 bytes"),
    (b"\xff", r"truncated signaling frame: 1 bytes"),
    (MAGIC + b"\x01", r"truncated signaling frame: 3 bytes"),
    (b"hello", r"not a signaling frame: it starts with 68 65, not the magic ff 53"),
    (b"\x00", r"not a signaling frame: it starts with 00"),
    (header(0x01, version=2), r"unsupported signaling version 2; this peer speaks version 1"),
    (header(0x01, version=0), r"unsupported signaling version 0"),
    (header(0x00), r"unknown signaling message type 0x00; version 1 has 0x01\.\.0x0a"),
    (header(0x0B), r"unknown signaling message type 0x0b"),
    (header(0xFF), r"unknown signaling message type 0xff"),
    (header(0x01) + b"\x00", r"bad READY: 1 unexpected bytes after the payload at offset 4"),
    (header(0x05) + b"xyz", r"bad OPEN: 3 unexpected bytes after the payload at offset 4"),
    (header(0x03), r"bad ANSWER: SDP is empty"),
    (header(0x03) + b"\xc3\x28", r"bad ANSWER: SDP is not valid UTF-8: .* at byte 0"),
    (header(0x03) + b"v=0\xed\xa0\x80", r"bad ANSWER: SDP is not valid UTF-8: .* at byte 3"),
    (
        header(0x03) + b"a" * (MAX_SDP_SIZE + 1),
        r"bad ANSWER: SDP is 65537 bytes; the limit is 65536",
    ),
    (header(0x02), r"bad OFFER: truncated: channel count needs 2 bytes at offset 4, 0 left"),
    (header(0x02) + b"\x00", r"bad OFFER: truncated: channel count needs 2 bytes"),
    (offer_bytes(sdp=b""), r"bad OFFER: SDP is empty"),
    (
        offer_bytes(sdp=b"a" * (MAX_SDP_SIZE + 1)),
        r"bad OFFER: SDP is 65537 bytes; the limit is 65536",
    ),
    (offer_bytes(sdp=b"\xff"), r"bad OFFER: SDP is not valid UTF-8"),
    (
        header(0x02) + b"\x00\x02" + channel_bytes(),
        r"bad OFFER: truncated: channel 2 of 2 needs 9 bytes at offset 18, 0 left",
    ),
    (
        header(0x02) + b"\x00\x01" + channel_bytes()[:10],
        r"bad OFFER: truncated: channel 1 of 1 protocol length needs 2 bytes at offset 16, 0",
    ),
    (
        header(0x02) + b"\x00\x01" + channel_bytes(label=b"abc")[:10],
        r"bad OFFER: truncated: channel 1 of 1 label needs 3 bytes at offset 15, 1 left",
    ),
    (
        header(0x02) + b"\x00\x01" + channel_bytes(protocol=b"abc")[:-1],
        r"bad OFFER: truncated: channel 1 of 1 protocol needs 3 bytes at offset 18, 2 left",
    ),
    (offer_bytes(channel_bytes(flags=0x10)), r"channel 1 of 1 sets unknown flag bits 0x10"),
    (offer_bytes(channel_bytes(flags=0xF0)), r"channel 1 of 1 sets unknown flag bits 0xf0"),
    (
        offer_bytes(channel_bytes(retransmits=3)),
        r"channel 1 of 1 has max_retransmits=3 but not its flag: absent must be 0",
    ),
    (
        offer_bytes(channel_bytes(lifetime=9)),
        r"channel 1 of 1 has max_packet_lifetime=9 but not its flag",
    ),
    (offer_bytes(channel_bytes(id_=4)), r"channel 1 of 1 has id=4 but not its flag"),
    (
        offer_bytes(channel_bytes(flags=0x0C, retransmits=1, lifetime=1)),
        r"bad OFFER: channel 1 of 1: channel 'x' sets both max_retransmits \(1\) and"
        r" max_packet_lifetime \(1\)",
    ),
    (
        offer_bytes(channel_bytes(flags=0x02, id_=65535)),
        r"bad OFFER: channel 1 of 1: id must be at most 65534, got 65535",
    ),
    (offer_bytes(channel_bytes(label=b"")), r"bad OFFER: channel 1 of 1: label must not be empty"),
    (
        offer_bytes(channel_bytes(label=b"\xe2\x82")),
        r"bad OFFER: channel 1 of 1 label is not valid UTF-8",
    ),
    (
        offer_bytes(channel_bytes(protocol=b"\x80")),
        r"bad OFFER: channel 1 of 1 protocol is not valid UTF-8",
    ),
    (
        offer_bytes(channel_bytes(label=b"a"), channel_bytes(label=b"a")),
        r"bad OFFER: duplicate channel label 'a' \(channels 0 and 1\)",
    ),
    (
        offer_bytes(
            channel_bytes(flags=0x02, id_=5, label=b"a"),
            channel_bytes(flags=0x02, id_=5, label=b"b"),
        ),
        r"bad OFFER: channels 'a' and 'b' both use id 5",
    ),
    (header(0x04), r"bad CANDIDATE: truncated: header needs 5 bytes at offset 4, 0 left"),
    (header(0x04) + b"\x04\x00\x00\x00\x00", r"bad CANDIDATE: unknown flag bits 0x04"),
    (
        header(0x04) + b"\x00\x00\x01\x00\x00",
        r"bad CANDIDATE: sdp_mline_index=1 but not its flag",
    ),
    (
        header(0x04) + b"\x00\x00\x00\x00\x01x",
        r"bad CANDIDATE: sdp_mid of 1 bytes but not its flag",
    ),
    (
        header(0x04) + b"\x01\x00\x00\x00\x02x",
        r"bad CANDIDATE: truncated: sdp_mid needs 2 bytes at offset 9, 1 left",
    ),
    (header(0x04) + b"\x01\x00\x00\x00\x01\xff", r"bad CANDIDATE: sdp_mid is not valid UTF-8"),
    (
        header(0x04) + b"\x01\x00\x00" + struct.pack(">H", MAX_TEXT_SIZE + 1) + b"m" * 4097,
        r"bad CANDIDATE: sdp_mid is 4097 bytes; the limit is 4096",
    ),
    (
        header(0x04) + b"\x00\x00\x00\x00\x00" + b"c" * (MAX_TEXT_SIZE + 1),
        r"bad CANDIDATE: candidate is 4097 bytes; the limit is 4096",
    ),
    (header(0x06) + b"\xfe", r"bad RENEGOTIATE: reason is not valid UTF-8"),
    (header(0x07), r"bad ERROR: truncated: code needs 2 bytes at offset 4, 0 left"),
    (header(0x07) + b"\x11", r"bad ERROR: truncated: code needs 2 bytes at offset 4, 1 left"),
    (header(0x07) + b"\x11\x30\xc0", r"bad ERROR: reason is not valid UTF-8"),
    (
        header(0x08) + b"r" * (MAX_TEXT_SIZE + 1),
        r"bad BYE: reason is 4097 bytes; the limit is 4096",
    ),
    (
        header(0x0A),
        r"bad ICE_SERVERS: truncated: server count needs 1 bytes at offset 4, 0 left",
    ),
    (header(0x0A) + b"\x00", r"bad ICE_SERVERS: server count 0; 1 to 8 fit"),
    (header(0x0A) + b"\x09", r"bad ICE_SERVERS: server count 9; 1 to 8 fit"),
    (header(0x0A) + b"\x01\x00", r"bad ICE_SERVERS: server 1 of 1 has 0 URLs; 1 to 8 fit"),
    (
        header(0x0A) + b"\x01\x01\x00\x06turn:h\x00\x01",
        r"bad ICE_SERVERS: truncated: server 1 of 1 username needs 1 bytes at offset 16",
    ),
    (
        header(0x0A) + b"\x01\x01\x00\x04http\x00\x00\x00\x00",
        r"bad ICE_SERVERS: ICE server 1 URL 'http' is not a stun:, stuns:, turn: or turns: URL",
    ),
    (
        header(0x0A) + b"\x01\x01\x00\x00\x00\x00\x00\x00",
        r"bad ICE_SERVERS: ICE server 1 URL '' is not a stun:",
    ),
    (
        header(0x0A) + b"\x01\x01\x04\x01turn:" + b"h" * (MAX_ICE_FIELD - 4),
        r"bad ICE_SERVERS: server 1 of 1 URL 1 is 1025 bytes; the limit is 1024",
    ),
    (
        header(0x0A) + b"\x01\x01\x00\x06turn:h\x00\x01\xff\x00\x00",
        r"bad ICE_SERVERS: server 1 of 1 username is not valid UTF-8",
    ),
    (
        header(0x0A) + b"\x01\x01\x00\x06turn:h\x00\x00\x00\x00!",
        r"bad ICE_SERVERS: 1 unexpected bytes after the payload at offset 18",
    ),
]


@pytest.mark.parametrize(("frame", "problem"), MALFORMED, ids=[p[:40] for _, p in MALFORMED])
def test_malformed_frames_name_the_problem(frame: bytes, problem: str) -> None:
    with pytest.raises(SignalingError, match=problem):
        decode(frame)


def test_text_frame_is_rejected() -> None:
    with pytest.raises(SignalingError, match=r"a signaling frame is bytes, got str"):
        decode("\xffS\x01\x01")  # type: ignore[arg-type]


def test_limits_are_inclusive() -> None:
    big_sdp = "a" * MAX_SDP_SIZE
    assert decode(encode(Answer(big_sdp))) == Answer(big_sdp)
    assert decode(encode(Offer(big_sdp))) == Offer(big_sdp)
    reason = "r" * MAX_TEXT_SIZE
    assert decode(encode(Bye(reason))) == Bye(reason)
    long_label = "l" * 0xFFFF
    offer = Offer("v=0", (ChannelSpec(long_label, protocol=long_label),))
    assert decode(encode(offer)) == offer


def test_is_signaling() -> None:
    assert is_signaling(MAGIC)
    assert is_signaling(encode(Ready()))
    assert is_signaling(bytearray(encode(Ready())))
    assert is_signaling(memoryview(encode(Ready())))
    assert is_signaling(header(0x42, version=9))  # malformed, but still signaling: decode says why
    assert not is_signaling(b"")
    assert not is_signaling(b"\xff")
    assert not is_signaling(b"S\xff")
    assert not is_signaling(b'{"type": "offer"}')


def test_encode_rejects_non_messages() -> None:
    with pytest.raises(TypeError, match=r"not a signaling message: b'ready'"):
        encode(b"ready")  # type: ignore[arg-type]


# -- messages validate their fields when built ------------------------------------------


@pytest.mark.parametrize(
    ("build", "error", "problem"),
    [
        (lambda: Offer(""), ValueError, r"OFFER SDP must not be empty"),
        (lambda: Answer(""), ValueError, r"ANSWER SDP must not be empty"),
        (lambda: Answer("a" * (MAX_SDP_SIZE + 1)), ValueError, r"ANSWER SDP is 65537 bytes"),
        (lambda: Answer("é" * 40000), ValueError, r"ANSWER SDP is 80000 bytes of UTF-8"),
        (lambda: Answer(b"v=0"), TypeError, r"ANSWER SDP must be a str, got bytes"),  # type: ignore[arg-type]
        (
            lambda: Answer("v=0\ud800"),
            ValueError,
            r"ANSWER SDP cannot be encoded as UTF-8: surrogates not allowed at index 3",
        ),
        (lambda: Offer("v=0", ("state",)), TypeError, r"channel 0 must be a ChannelSpec, got str"),  # type: ignore[arg-type]
        (
            lambda: Offer("v=0", (ChannelSpec("a"), ChannelSpec("a"))),
            ValueError,
            r"duplicate channel label 'a'",
        ),
        (lambda: Candidate(None), TypeError, r"CANDIDATE candidate must be a str, got NoneType"),  # type: ignore[arg-type]
        (lambda: Candidate("", sdp_mid=""), None, None),
        (lambda: Candidate("", sdp_mid="m" * 4097), ValueError, r"sdp_mid is 4097 bytes"),
        (lambda: Candidate("", sdp_mline_index=-1), ValueError, r"must not be negative, got -1"),
        (
            lambda: Candidate("", sdp_mline_index=65536),
            ValueError,
            r"CANDIDATE sdp_mline_index must be at most 65535, got 65536",
        ),
        (lambda: Candidate("", sdp_mline_index=True), TypeError, r"must be an int, got bool"),
        (lambda: Error(-1), ValueError, r"ERROR code must not be negative"),
        (lambda: Error(70000), ValueError, r"ERROR code must be at most 65535, got 70000"),
        (lambda: Error(4400.0), TypeError, r"ERROR code must be an int, got float"),  # type: ignore[arg-type]
        (lambda: Error(4400, "r" * 4097), ValueError, r"ERROR reason is 4097 bytes"),
        (lambda: Renegotiate("r" * 4097), ValueError, r"RENEGOTIATE reason is 4097 bytes"),
        (lambda: Bye(1), TypeError, r"BYE reason must be a str, got int"),  # type: ignore[arg-type]
        (lambda: IceServers(()), ValueError, r"ICE_SERVERS carries 1 to 8 servers, not 0"),
        (
            lambda: IceServers((IceServer("stun:h"),) * (MAX_ICE_SERVERS + 1)),
            ValueError,
            r"ICE_SERVERS carries 1 to 8 servers, not 9",
        ),
        (lambda: IceServers(("stun:h",)), TypeError, r"ICE server 1 must be an IceServer, got str"),  # type: ignore[arg-type]
        (lambda: IceServers((IceServer(()),)), ValueError, r"ICE server 1 has 0 URLs; 1 to 8 fit"),
        (
            lambda: IceServers((IceServer("http://h"),)),
            ValueError,
            r"ICE server 1 URL 'http://h' is not a stun:, stuns:, turn: or turns: URL",
        ),
        (
            lambda: IceServers((IceServer("turn:h", "u" * (MAX_ICE_FIELD + 1)),)),
            ValueError,
            r"ICE server 1 username is 1025 bytes of UTF-8; the limit is 1024",
        ),
        (
            lambda: IceServers((IceServer("turn:h", "u", 7),)),  # type: ignore[arg-type]
            TypeError,
            r"ICE server 1 credential must be a str, got int",
        ),
    ],
)
def test_messages_validate_fields(
    build: object, error: type[Exception] | None, problem: str | None
) -> None:
    assert callable(build)
    if error is None:
        build()
        return
    with pytest.raises(error, match=problem):
        build()


def test_ice_servers_store_urls_as_a_tuple_and_empty_fields_as_none() -> None:
    message = IceServers([IceServer(["turn:a", "turn:b"], "", "")])  # type: ignore[arg-type]
    assert message.servers == (IceServer(("turn:a", "turn:b")),)
    assert hash(message)
    assert decode(encode(message)) == message


def test_offer_stores_channels_as_a_tuple() -> None:
    offer = Offer("v=0", [ChannelSpec("a"), ChannelSpec("b")])  # type: ignore[arg-type]
    assert offer.channels == (ChannelSpec("a"), ChannelSpec("b"))
    assert hash(offer) == hash(Offer("v=0", (ChannelSpec("a"), ChannelSpec("b"))))


def test_messages_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Answer("v=0").sdp = "x"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ChannelSpec("a").label = "b"  # type: ignore[misc]


# -- ChannelSpec -----------------------------------------------------------------------


def test_channel_spec_defaults_are_udp_like() -> None:
    spec = ChannelSpec("state")
    assert (spec.ordered, spec.max_retransmits, spec.max_packet_lifetime) == (False, 0, None)
    assert (spec.protocol, spec.negotiated, spec.id) == ("", False, None)
    assert not spec.reliable
    assert spec.options() == {
        "ordered": False,
        "protocol": "",
        "negotiated": False,
        "maxRetransmits": 0,
    }


def test_channel_spec_lifetime_replaces_the_retransmit_default() -> None:
    spec = ChannelSpec("t", max_packet_lifetime=100)
    assert (spec.max_retransmits, spec.max_packet_lifetime) == (None, 100)
    assert spec.options()["maxPacketLifeTime"] == 100
    assert "maxRetransmits" not in spec.options()


def test_channel_spec_reliable_and_negotiated() -> None:
    spec = ChannelSpec("chat", ordered=True, max_retransmits=None, negotiated=True, id=0)
    assert spec.reliable
    assert spec.options() == {"ordered": True, "protocol": "", "negotiated": True, "id": 0}
    assert dataclasses.replace(spec, label="chat2").label == "chat2"


@pytest.mark.parametrize(
    ("kwargs", "error", "problem"),
    [
        (
            {"max_retransmits": 0, "max_packet_lifetime": 10},
            ValueError,
            r"channel 'c' sets both max_retransmits \(0\) and max_packet_lifetime \(10\);"
            r" WebRTC allows one: pass max_retransmits=None",
        ),
        ({"negotiated": True}, ValueError, r"channel 'c' is negotiated but has no id"),
        ({"id": 3}, ValueError, r"channel 'c' has id=3 but negotiated=False"),
        ({"negotiated": True, "id": -1}, ValueError, r"id must not be negative, got -1"),
        ({"negotiated": True, "id": 65535}, ValueError, r"id must be at most 65534, got 65535"),
        ({"negotiated": True, "id": "1"}, TypeError, r"id must be an int, got str"),
        ({"max_retransmits": -1}, ValueError, r"max_retransmits must not be negative, got -1"),
        ({"max_retransmits": 65536}, ValueError, r"max_retransmits must be at most 65535"),
        ({"max_retransmits": True}, TypeError, r"max_retransmits must be an int, got bool"),
        (
            {"max_retransmits": None, "max_packet_lifetime": -5},
            ValueError,
            r"max_packet_lifetime must not be negative, got -5",
        ),
        ({"max_packet_lifetime": 65536}, ValueError, r"max_packet_lifetime must be at most"),
        ({"max_packet_lifetime": 1.5}, TypeError, r"max_packet_lifetime must be an int"),
        ({"ordered": 1}, TypeError, r"ordered must be a bool, got int"),
        ({"negotiated": None}, TypeError, r"negotiated must be a bool, got NoneType"),
        ({"protocol": None}, TypeError, r"protocol of channel 'c' must be a str"),
        (
            {"protocol": "p" * 65536},
            ValueError,
            r"protocol of channel 'c' is 65536 bytes of UTF-8; the limit is 65535",
        ),
    ],
)
def test_channel_spec_rejects_bad_combinations(
    kwargs: dict[str, object], error: type[Exception], problem: str
) -> None:
    with pytest.raises(error, match=problem):
        ChannelSpec("c", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("label", "error", "problem"),
    [
        ("", ValueError, r"label must not be empty"),
        ("x" * 65536, ValueError, r"label is 65536 bytes of UTF-8; the limit is 65535"),
        ("€" * 21846, ValueError, r"label is 65538 bytes of UTF-8"),
        ("\udc80", ValueError, r"label cannot be encoded as UTF-8"),
        (b"state", TypeError, r"label must be a str, got bytes"),
    ],
)
def test_channel_spec_rejects_bad_labels(
    label: object, error: type[Exception], problem: str
) -> None:
    with pytest.raises(error, match=problem):
        ChannelSpec(label)  # type: ignore[arg-type]


def test_channel_spec_accepts_the_extremes() -> None:
    ChannelSpec("x" * 65535)
    ChannelSpec("c", negotiated=True, id=65534, max_retransmits=65535)
    ChannelSpec("c", max_packet_lifetime=0)
    ChannelSpec("c", max_retransmits=None, max_packet_lifetime=None)


def test_validate_channels() -> None:
    a, b = ChannelSpec("a"), ChannelSpec("b", negotiated=True, id=1)
    assert validate_channels([a, b]) == (a, b)
    assert validate_channels(iter([])) == ()
    with pytest.raises(ValueError, match=r"duplicate channel label 'a' \(channels 0 and 2\)"):
        validate_channels([a, b, ChannelSpec("a", ordered=True)])
    with pytest.raises(ValueError, match=r"channels 'b' and 'c' both use id 1"):
        validate_channels([a, b, ChannelSpec("c", negotiated=True, id=1)])
    with pytest.raises(TypeError, match=r"channel 1 must be a ChannelSpec, got dict"):
        validate_channels([a, {"label": "b"}])  # type: ignore[list-item]
    too_many = [ChannelSpec(str(i)) for i in range(65536)]
    with pytest.raises(ValueError, match=r"65536 channels; at most 65535 fit in an offer"):
        validate_channels(too_many)


# -- purity ----------------------------------------------------------------------------

RTC = Path(__file__).parents[2] / "src" / "aiosocker" / "rtc"


@pytest.mark.parametrize("module", ["envelope.py", "batch.py", "__init__.py"])
def test_pure_modules_import_no_io(module: str) -> None:
    tree = ast.parse((RTC / module).read_text())
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {name for name in imported if name.split(".")[0] in {"asyncio", "aiortc", "av"}}


def test_importing_socker_rtc_does_not_import_aiortc() -> None:
    code = "import sys, aiosocker.rtc; assert 'aiortc' not in sys.modules, 'aiortc imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_channel_spec_signature_explains_the_retransmit_default() -> None:
    signature = str(inspect.signature(ChannelSpec))
    assert "max_retransmits: 'int | Literal[_Unset.UNSET] | None' = 0 (None with" in signature
