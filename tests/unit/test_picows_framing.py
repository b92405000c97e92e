"""What the picows listener adds to picows, driven frame by frame: reassembly under
``max_size`` and the books of the closing handshake. No sockets, no event loop."""

from __future__ import annotations

import pytest

from aiosocker import CloseCode
from aiosocker.transports.picows.framing import CloseBook, Reassembler, Violation

PING_REASON = "peer has not replied to ping in 20 s"


# -- Violation ----------------------------------------------------------------------------


def test_violation_carries_code_and_reason() -> None:
    violation = Violation(1002, "expected a continuation frame")
    assert (violation.code, violation.reason) == (1002, "expected a continuation frame")
    assert str(violation) == "expected a continuation frame (1002)"
    assert isinstance(violation, Exception)


# -- Reassembler --------------------------------------------------------------------------


def test_a_whole_binary_message() -> None:
    parts = Reassembler(max_size=16)
    message = parts.start(b"\x00\x01\xff", text=False, fin=True)
    assert message == b"\x00\x01\xff"
    assert type(message) is bytes
    assert not parts.pending


def test_a_whole_text_message() -> None:
    parts = Reassembler(max_size=16)
    assert parts.start("héllo".encode(), text=True, fin=True) == "héllo"
    assert not parts.pending


def test_text_that_is_not_utf8_is_1007() -> None:
    parts = Reassembler(max_size=16)
    assert parts.start("é".encode(), text=True, fin=True) == "é"
    with pytest.raises(Violation) as caught:
        parts.start(b"a\xffb", text=True, fin=True)
    assert (caught.value.code, caught.value.reason) == (1007, "invalid start byte at position 1")


def test_an_empty_message() -> None:
    assert Reassembler(max_size=1).start(b"", text=False, fin=True) == b""


def test_fragments_are_joined() -> None:
    parts = Reassembler(max_size=64)
    assert parts.start(b"ab", text=False, fin=False) is None
    assert parts.pending
    assert parts.more(b"cd", fin=False) is None
    assert parts.pending
    assert parts.more(memoryview(b"ef"), fin=True) == b"abcdef"
    assert not parts.pending


def test_joined_binary_message_is_bytes() -> None:
    parts = Reassembler(max_size=64)
    parts.start(b"ab", text=False, fin=False)
    message = parts.more(b"c", fin=True)
    assert type(message) is bytes


def test_text_fragments_are_joined_before_decoding() -> None:
    encoded = "é€".encode()  # a split inside a character must not become U+FFFD
    parts = Reassembler(max_size=64)
    assert parts.start(encoded[:1], text=True, fin=False) is None
    assert parts.more(encoded[1:4], fin=False) is None
    assert parts.more(encoded[4:], fin=True) == "é€"


def test_joined_text_that_is_not_utf8_is_1007() -> None:
    parts = Reassembler(max_size=64)
    parts.start(b"a", text=True, fin=False)
    with pytest.raises(Violation) as caught:
        parts.more(b"\xfe", fin=True)
    assert caught.value.code == 1007
    assert not parts.pending


def test_a_text_message_after_a_binary_one_is_text_and_vice_versa() -> None:
    parts = Reassembler(max_size=64)
    parts.start(b"x", text=True, fin=False)
    assert parts.more(b"y", fin=True) == "xy"
    parts.start(b"x", text=False, fin=False)
    assert parts.more(b"y", fin=True) == b"xy"


def test_continuation_without_start_is_1002() -> None:
    parts = Reassembler(max_size=64)
    with pytest.raises(Violation) as caught:
        parts.more(b"x", fin=True)
    assert (caught.value.code, caught.value.reason) == (1002, "continuation frame without a start")


def test_continuation_after_a_finished_message_is_1002() -> None:
    parts = Reassembler(max_size=64)
    parts.start(b"a", text=False, fin=False)
    parts.more(b"b", fin=True)
    with pytest.raises(Violation) as caught:
        parts.more(b"c", fin=True)
    assert caught.value.code == 1002


@pytest.mark.parametrize("text", [False, True])
@pytest.mark.parametrize("fin", [False, True])
def test_new_data_frame_while_fragments_are_pending_is_1002(text: bool, fin: bool) -> None:
    parts = Reassembler(max_size=64)
    parts.start(b"a", text=False, fin=False)
    with pytest.raises(Violation) as caught:
        parts.start(b"b", text=text, fin=fin)
    assert (caught.value.code, caught.value.reason) == (1002, "expected a continuation frame")


def test_exactly_max_size_is_accepted() -> None:
    parts = Reassembler(max_size=6)
    parts.start(b"ab", text=False, fin=False)
    assert parts.more(b"cd", fin=False) is None
    assert parts.more(b"ef", fin=True) == b"abcdef"


@pytest.mark.parametrize("fin", [False, True])
def test_over_max_size_is_1009_and_resets(fin: bool) -> None:
    parts = Reassembler(max_size=6)
    parts.start(b"abcd", text=False, fin=False)
    with pytest.raises(Violation) as caught:
        parts.more(b"efg", fin=fin)
    assert caught.value.code == CloseCode.MESSAGE_TOO_BIG == 1009
    assert caught.value.reason == "message over max_size (6 bytes)"
    assert not parts.pending
    # the state is clean: the old fragments are gone, a new message starts afresh
    with pytest.raises(Violation, match="without a start"):
        parts.more(b"x", fin=True)
    assert parts.start(b"new", text=False, fin=True) == b"new"


def test_max_size_bounds_the_total_not_each_fragment() -> None:
    parts = Reassembler(max_size=4)
    parts.start(b"ab", text=False, fin=False)
    parts.more(b"cd", fin=False)
    with pytest.raises(Violation):
        parts.more(b"e", fin=True)


def test_max_size_is_kept() -> None:
    assert Reassembler(max_size=123).max_size == 123


# -- CloseBook ----------------------------------------------------------------------------


def test_a_new_book() -> None:
    book = CloseBook()
    assert (book.sent, book.received) == (False, False)
    assert book.outcome() == (None, "")


def test_send_once() -> None:
    book = CloseBook()
    assert book.send(CloseCode.NORMAL, "bye") is True
    assert book.sent
    assert not book.received
    assert book.send(1001, "again") is False
    assert book.outcome() == (1000, "bye")
    assert type(book.outcome()[0]) is int


def test_receive_echoes_when_we_had_not_sent() -> None:
    book = CloseBook()
    assert book.receive(1000, "done") == (1000, "done")
    assert book.received
    assert book.sent  # the echo went out
    assert book.send(1001, "too late") is False
    assert book.outcome() == (1000, "done")


def test_receive_returns_none_when_we_had_sent() -> None:
    book = CloseBook()
    book.send(1001, "going away")
    assert book.receive(1000, "ok") is None
    assert book.received
    assert book.outcome() == (1001, "going away")


def test_a_close_frame_without_a_code_is_1005() -> None:
    book = CloseBook()
    assert book.receive(None, "") == (1005, "")
    assert book.outcome() == (1005, "")


def test_receive_converts_the_code_to_int() -> None:
    book = CloseBook()
    echo = book.receive(CloseCode.GOING_AWAY, "")
    assert echo is not None
    assert type(echo[0]) is int


def test_a_second_close_frame_changes_nothing() -> None:
    book = CloseBook()
    book.receive(1000, "first")
    assert book.receive(4000, "second") is None
    assert book.outcome() == (1000, "first")


@pytest.mark.parametrize(
    ("steps", "outcome"),
    [
        ([], (None, "")),
        ([("send", 4001, "ours")], (4001, "ours")),
        ([("receive", 4002, "theirs")], (4002, "theirs")),
        ([("send", 4001, "ours"), ("receive", 4002, "theirs")], (4001, "ours")),
        ([("receive", 4002, "theirs"), ("send", 4001, "ours")], (4002, "theirs")),
        ([("library", 1009, "too big"), ("receive", 4002, "theirs")], (1009, "too big")),
        ([("receive", 4002, "theirs"), ("library", 1009, "too big")], (4002, "theirs")),
        ([("send", 4001, "ours"), ("library", 1009, "too big")], (4001, "ours")),
        ([("library", 1009, "too big"), ("send", 4001, "ours")], (1009, "too big")),
        ([("receive", None, ""), ("send", 4001, "ours")], (1005, "")),
    ],
)
def test_outcome_is_whoever_closed_first(
    steps: list[tuple[str, int | None, str]], outcome: tuple[int | None, str]
) -> None:
    book = CloseBook()
    for step, code, reason in steps:
        if step == "send":
            book.send(code or 0, reason)
        elif step == "library":
            book.library_sent(code or 0, reason)
        else:
            book.receive(code, reason)
    assert book.outcome() == outcome


def test_library_sent_counts_as_ours_and_only_once() -> None:
    book = CloseBook()
    book.library_sent(1009, "frame too big")
    assert book.sent
    assert book.send(1000, "bye") is False
    assert book.receive(1009, "frame too big") is None  # no echo of our own
    assert book.outcome() == (1009, "frame too big")


@pytest.mark.parametrize("reason", ["peer has not replied to ping", PING_REASON])
def test_our_keepalive_timeout_is_reported_as_websockets_does(reason: str) -> None:
    book = CloseBook()
    book.library_sent(CloseCode.GOING_AWAY, reason)
    assert book.outcome() == (1011, "keepalive ping timeout")
    book.receive(1001, reason)  # the peer's answer, if it comes, changes nothing
    assert book.outcome() == (CloseCode.INTERNAL_ERROR, "keepalive ping timeout")


def test_a_peers_1001_with_the_keepalive_reason_is_reported_as_is() -> None:
    book = CloseBook()
    assert book.receive(1001, PING_REASON) == (1001, PING_REASON)  # echoed
    assert book.outcome() == (1001, PING_REASON)


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (1001, "going away"),
        (1001, "the peer has not replied to ping"),  # must start with it
        (1000, PING_REASON),  # only 1001 is picows' keepalive
        (1011, PING_REASON),
    ],
)
def test_other_closes_of_ours_are_reported_as_is(code: int, reason: str) -> None:
    book = CloseBook()
    book.library_sent(code, reason)
    assert book.outcome() == (code, reason)
