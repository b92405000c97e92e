"""The sans-I/O HTTP side: headers, requests, responses, head parsing, upgrade checks,
routes and the admission cases ``test_admission.py`` leaves out. No sockets."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from aiosocker import HandshakeRejected, Route
from aiosocker.handshake import (
    BAD_REQUEST,
    HEAD_TOO_LARGE,
    MAX_HEAD,
    Admission,
    BadRequest,
    Handshake,
    Headers,
    Request,
    Response,
    parse_head,
    refusal,
    upgrade_error,
)

KEY = base64.b64encode(b"0123456789abcdef").decode()

UPGRADE = {
    "Host": "game.example:8765",
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": KEY,
}


def upgrade(**changes: str | None) -> Request:
    """A well-formed upgrade to ``/ws``, with headers changed (``None``: removed)."""
    headers = {**UPGRADE, **changes}
    return Request("/ws", "", {k: v for k, v in headers.items() if v is not None})


# -- Headers ------------------------------------------------------------------------------


def test_headers_are_case_insensitive_and_keep_repeats() -> None:
    headers = Headers([("Origin", "http://a"), ("HOST", "h"), ("origin", "http://b")])
    assert headers["ORIGIN"] == headers["origin"] == "http://a"  # the first value
    assert headers.get("Host") == "h"
    assert headers.get("missing") is None
    assert headers.get_all("oRiGiN") == ["http://a", "http://b"]
    assert headers.get_all("missing") == []
    assert headers.raw_items() == (("Origin", "http://a"), ("HOST", "h"), ("origin", "http://b"))
    with pytest.raises(KeyError):
        headers["missing"]


def test_get_all_returns_a_copy() -> None:
    headers = Headers([("A", "1")])
    headers.get_all("a").append("2")
    assert headers.get_all("a") == ["1"]


@pytest.mark.parametrize("name", ["host", "HOST", "Host"])
def test_headers_contain_any_spelling(name: str) -> None:
    assert name in Headers([("Host", "h")])


@pytest.mark.parametrize("name", ["Origin", 1, None, b"Host"])
def test_headers_do_not_contain_other_names_or_non_strings(name: object) -> None:
    assert name not in Headers([("Host", "h")])


def test_iteration_gives_each_header_once_in_order_received() -> None:
    headers = Headers([("B", "1"), ("A", "2"), ("b", "3"), ("C", "4"), ("B", "5")])
    assert list(headers) == ["B", "A", "C"]  # the first spelling of each
    assert len(headers) == 3
    assert len(headers.keys()) == len(list(headers.keys()))  # the Mapping contract
    assert dict(headers) == {"B": "1", "A": "2", "C": "4"}


def test_empty_headers() -> None:
    headers = Headers()
    assert (len(headers), list(headers), headers.raw_items()) == (0, [], ())
    assert repr(headers) == "Headers([])"


def test_headers_from_a_dict() -> None:
    headers = Headers({"Host": "h", "X-Count": 3})  # type: ignore[dict-item]
    assert headers.raw_items() == (("Host", "h"), ("X-Count", "3"))  # values become str
    assert headers["x-count"] == "3"


def test_headers_from_a_generator_of_pairs() -> None:
    headers = Headers((name, "v") for name in ("A", "B"))
    assert headers.raw_items() == (("A", "v"), ("B", "v"))


class RawHeaders:
    """Like websockets' Headers: a mapping view loses repeats; raw_items() keeps them."""

    def items(self) -> list[tuple[str, str]]:
        raise AssertionError("items() drops repeats: raw_items() must be used")

    def raw_items(self) -> list[tuple[str, str]]:
        return [("Origin", "http://a"), ("Origin", "http://b")]


def test_headers_from_an_object_with_raw_items() -> None:
    headers = Headers(RawHeaders())  # type: ignore[arg-type]
    assert headers.get_all("origin") == ["http://a", "http://b"]


def test_headers_from_headers_keep_repeats() -> None:
    original = Headers([("A", "1"), ("a", "2")])
    assert Headers(original).raw_items() == original.raw_items()


def test_headers_repr() -> None:
    assert repr(Headers([("A", "1"), ("A", "2")])) == "Headers([('A', '1'), ('A', '2')])"


# -- Request ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "path", "query"),
    [
        ("/ws", "/ws", ""),
        ("/ws?room=1&x=2", "/ws", "room=1&x=2"),
        ("/ws?", "/ws", ""),
        ("/ws?a=?b", "/ws", "a=?b"),  # only the first ? splits
        ("", "/", ""),
        ("?token=t", "/", "token=t"),
    ],
)
def test_from_target_splits_path_and_query(target: str, path: str, query: str) -> None:
    request = Request.from_target(target, [])
    assert (request.path, request.query) == (path, query)


def test_from_target_upper_cases_the_method_and_keeps_the_rest() -> None:
    request = Request.from_target("/", {"Host": "h"}, ("10.0.0.1", 4), "post")
    assert request.method == "POST"
    assert request.remote_address == ("10.0.0.1", 4)
    assert isinstance(request.headers, Headers)
    assert request.headers["host"] == "h"


def test_request_defaults() -> None:
    request = Request("/")
    assert (request.query, request.remote_address, request.method) == ("", None, "GET")
    assert isinstance(request.headers, Headers)
    assert len(request.headers) == 0


def test_plain_dict_headers_become_headers() -> None:
    request = Request("/", "", {"Origin": "http://a"})
    assert isinstance(request.headers, Headers)
    assert request.headers["origin"] == "http://a"


def test_headers_are_kept_as_given_when_already_headers() -> None:
    headers = Headers([("A", "1")])
    assert Request("/", "", headers).headers is headers


def test_header_gives_the_single_value_or_none() -> None:
    request = Request("/", "", {"Origin": "http://a"})
    assert request.header("origin") == "http://a"
    assert request.header("Host") is None


def test_a_doubled_header_is_refused_403() -> None:
    request = Request("/", "", [("Host", "a"), ("host", "b")])  # type: ignore[arg-type]
    with pytest.raises(HandshakeRejected) as caught:
        request.header("Host")
    assert caught.value.status == 403
    assert caught.value.reason == "more than one Host header"


# -- Response -----------------------------------------------------------------------------


def test_text_response() -> None:
    response = Response.text(404, "not found", ("X-A", "1"))
    assert response.status == 404
    assert type(response.status) is int
    assert response.body == b"not found\n"
    assert response.headers == (
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", "10"),
        ("X-A", "1"),
    )


def test_text_response_counts_bytes_not_characters() -> None:
    response = Response.text(200, "é")
    assert response.body == "é\n".encode()
    assert dict(response.headers)["Content-Length"] == "3"


@pytest.mark.parametrize(
    ("status", "reason"),
    [(200, "OK"), (403, "Forbidden"), (426, "Upgrade Required"), (599, ""), (299, "")],
)
def test_reason(status: int, reason: str) -> None:
    assert Response(status, (), b"").reason == reason


def test_to_http_bytes_exactly() -> None:
    response = Response.text(403, "origin not allowed")
    assert response.to_http() == (
        b"HTTP/1.1 403 Forbidden\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: 19\r\n"
        b"Connection: close\r\n"
        b"\r\n"
        b"origin not allowed\n"
    )


def test_to_http_with_an_unknown_status_and_binary_body() -> None:
    response = Response(599, (("X-Name", "caf\xe9"),), b"\x00\xff")
    assert response.to_http() == (
        b"HTTP/1.1 599 \r\nX-Name: caf\xe9\r\nConnection: close\r\n\r\n\x00\xff"
    )


def test_refusal_is_the_status_with_the_reason_as_body() -> None:
    response = refusal(HandshakeRejected(503, "server full (2 connections)"))
    assert response.status == 503
    assert response.body == b"server full (2 connections)\n"
    assert ("Content-Type", "text/plain; charset=utf-8") in response.headers


def test_refusal_without_a_reason() -> None:
    assert refusal(HandshakeRejected(401)).body == b"\n"


def test_canned_responses() -> None:
    assert (BAD_REQUEST.status, BAD_REQUEST.body) == (400, b"malformed HTTP request\n")
    assert HEAD_TOO_LARGE.status == 431
    assert str(MAX_HEAD).encode() in HEAD_TOO_LARGE.body
    assert MAX_HEAD == 16 * 1024


# -- parse_head ---------------------------------------------------------------------------


def test_parse_a_good_head() -> None:
    head = (
        b"get /ws?room=7 HTTP/1.1\r\n"
        b"Host: game.example\r\n"
        b"X-Empty:\r\n"
        b"Origin:  http://game.example  \r\n"
        b"Origin: http://other.example\r\n"
        b"X-Time: 12:30:00\r\n"
        b"X-Latin: caf\xe9"
    )
    request = parse_head(head, ("1.2.3.4", 5))
    assert (request.method, request.path, request.query) == ("GET", "/ws", "room=7")
    assert request.remote_address == ("1.2.3.4", 5)
    headers = request.headers
    assert isinstance(headers, Headers)
    assert headers.get_all("origin") == ["http://game.example", "http://other.example"]
    assert headers["X-Empty"] == ""
    assert headers["x-time"] == "12:30:00"  # only the first colon splits
    assert headers["x-latin"] == "café"


def test_parse_a_head_without_headers() -> None:
    request = parse_head(b"HEAD / HTTP/1.0")
    assert (request.method, request.path, len(request.headers)) == ("HEAD", "/", 0)
    assert request.remote_address is None


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"GET /",
        b"GET / HTTP/1.1 extra",
        b"GET  / HTTP/1.1",  # two spaces: four parts
        b"GET / HTTP/2.0",
        b"GET / HTTPS/1.1",
        b"GET / http/1.1",
    ],
)
def test_bad_request_line(line: bytes) -> None:
    with pytest.raises(BadRequest, match="bad request line"):
        parse_head(line + b"\r\nHost: h")


@pytest.mark.parametrize("line", [b"no colon here", b": empty name", b"   : blank name", b""])
def test_bad_header_line(line: bytes) -> None:
    with pytest.raises(BadRequest, match="bad header line") as caught:
        parse_head(b"GET / HTTP/1.1\r\nHost: h\r\n" + line)
    assert repr(line[:80]) in str(caught.value)


def test_bad_lines_are_quoted_at_most_80_bytes() -> None:
    with pytest.raises(BadRequest) as caught:
        parse_head(b"X" * 200)
    assert str(caught.value) == f"bad request line {b'X' * 80!r}"


def test_bad_request_is_a_value_error() -> None:
    assert issubclass(BadRequest, ValueError)


# -- upgrade_error ------------------------------------------------------------------------


def test_a_good_upgrade_has_no_error() -> None:
    assert upgrade_error(upgrade()) is None


@pytest.mark.parametrize(
    ("upgrade_header", "connection"),
    [
        ("websocket", "keep-alive, Upgrade"),  # Firefox
        ("WebSocket", "UPGRADE"),
        ("websocket, h2c", " upgrade ,keep-alive"),
    ],
)
def test_upgrade_tokens_are_case_insensitive_lists(upgrade_header: str, connection: str) -> None:
    assert upgrade_error(upgrade(Upgrade=upgrade_header, Connection=connection)) is None


@pytest.mark.parametrize(
    "changes",
    [
        {"Upgrade": None},
        {"Connection": None},
        {"Upgrade": None, "Connection": None},
        {"Upgrade": "h2c"},
        {"Upgrade": "websockets"},
        {"Connection": "keep-alive"},
        {"Connection": "upgraded"},
    ],
)
def test_not_an_upgrade_is_426(changes: dict[str, str | None]) -> None:
    response = upgrade_error(upgrade(**changes))
    assert response is not None
    assert response.status == 426
    assert ("Upgrade", "websocket") in response.headers
    assert b"send an Upgrade: websocket request" in response.body


@pytest.mark.parametrize("version", [None, "8", "12", "13, 8", " 13", ""])
def test_bad_version_is_400_naming_13(version: str | None) -> None:
    response = upgrade_error(upgrade(**{"Sec-WebSocket-Version": version}))
    assert response is not None
    assert response.status == 400
    assert ("Sec-WebSocket-Version", "13") in response.headers
    assert response.body == b"unsupported Sec-WebSocket-Version (13 is)\n"


@pytest.mark.parametrize(
    "key",
    [
        None,
        "",
        base64.b64encode(b"0123456789abcde").decode(),  # 15 bytes
        base64.b64encode(b"0123456789abcdefg").decode(),  # 17 bytes
        "not base64 at all!!",
        KEY[:-2],  # bad padding
        KEY.replace("=", "") + "*",
        "é" * 24,  # non-ASCII: b64decode raises ValueError
    ],
)
def test_bad_key_is_400(key: str | None) -> None:
    response = upgrade_error(upgrade(**{"Sec-WebSocket-Key": key}))
    assert response is not None
    assert (response.status, response.body) == (400, b"invalid Sec-WebSocket-Key\n")


# -- Handshake.answer and route -----------------------------------------------------------


def handshake(**routes: Route) -> Handshake:
    return Handshake("/ws", {f"/{name}": route for name, route in routes.items()}, Admission())


PAGE = Route.html("<p>hi</p>")


def test_no_route_is_404() -> None:
    response = handshake(page=PAGE).answer(Request("/missing"))
    assert response is not None
    assert (response.status, response.body) == (404, b"not found\n")


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS"])
def test_route_other_methods_are_405(method: str) -> None:
    response = handshake(page=PAGE).answer(Request("/page", method=method))
    assert response is not None
    assert (response.status, response.body) == (405, b"method not allowed\n")


def test_route_get_serves_the_body() -> None:
    response = handshake(page=PAGE).answer(Request("/page"))
    assert response == Response(
        200,
        (
            ("Content-Type", "text/html; charset=utf-8"),
            ("Content-Length", "9"),
            ("Cache-Control", "no-cache"),
        ),
        b"<p>hi</p>",
    )


def test_route_head_has_no_body_but_the_full_length() -> None:
    response = handshake(page=PAGE).answer(Request("/page", method="HEAD"))
    assert response is not None
    assert response.status == 200
    assert response.body == b""
    assert dict(response.headers)["Content-Length"] == "9"
    assert response.to_http().endswith(b"\r\n\r\n")


def test_route_with_a_callable_body_renders_on_each_request() -> None:
    count = iter(range(10, 100))
    route = Route("text/plain", lambda: str(next(count)).encode())
    hs = handshake(count=route)
    first, second = hs.route(Request("/count")), hs.route(Request("/count"))
    assert (first.body, second.body) == (b"10", b"11")
    assert ("Content-Type", "text/plain") in first.headers
    assert dict(first.headers)["Content-Length"] == "2"


def test_route_that_raises_is_500_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> bytes:
        raise RuntimeError("disk on fire")

    with caplog.at_level(logging.ERROR, logger="aiosocker"):
        response = handshake(broken=Route("text/plain", broken)).answer(Request("/broken"))
    assert response is not None
    assert (response.status, response.body) == (500, b"internal error\n")
    assert b"disk on fire" not in response.to_http()  # the error stays in the log
    [record] = [r for r in caplog.records if r.name == "aiosocker"]
    assert record.getMessage() == "route /broken raised"
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)


def test_the_websocket_path_is_never_a_route() -> None:
    hs = Handshake("/ws", {"/ws": PAGE}, Admission())
    response = hs.answer(Request("/ws"))
    assert response is not None
    assert response.status == 426


@pytest.mark.parametrize("method", ["POST", "HEAD", "PUT"])
def test_websocket_path_other_methods_are_405(method: str) -> None:
    request = upgrade()
    response = handshake().answer(Request("/ws", "", request.headers, method=method))
    assert response is not None
    assert (response.status, response.body) == (405, b"method not allowed\n")


def test_websocket_path_without_upgrade_is_426() -> None:
    response = handshake(page=PAGE).answer(Request("/ws", "", {"Host": "h"}))
    assert response is not None
    assert response.status == 426


def test_websocket_path_bad_upgrade_is_400() -> None:
    response = handshake().answer(upgrade(**{"Sec-WebSocket-Key": "short"}))
    assert response is not None
    assert response.status == 400


def test_a_good_upgrade_is_left_to_admission() -> None:
    assert handshake(page=PAGE).answer(upgrade()) is None
    assert handshake().answer(Request.from_target("/ws?room=1", UPGRADE)) is None


def test_routes_match_the_path_without_the_query() -> None:
    response = handshake(page=PAGE).answer(Request.from_target("/page?v=2", {}))
    assert response is not None
    assert response.status == 200


# -- Admission: what test_admission.py leaves out ------------------------------------------


@pytest.mark.parametrize("limit", [-1, 0])
def test_max_connections_below_one_names_the_value(limit: int) -> None:
    with pytest.raises(ValueError, match=f"got {limit}"):
        Admission(max_connections=limit)


def test_origins_may_be_any_sequence() -> None:
    admission = Admission(origins=("https://a.example",))
    admission.check(Request("/", "", {"Origin": "https://a.example"}), 0)
    with pytest.raises(HandshakeRejected):
        admission.check(Request("/", "", {"Origin": "https://b.example"}), 0)


def test_check_is_synchronous_and_unlimited_without_max_connections() -> None:
    assert Admission().check(Request("/"), 10**9) is None


@pytest.mark.parametrize("live", [0, 2])
def test_check_admits_below_the_limit(live: int) -> None:
    assert Admission(max_connections=3).check(Request("/"), live) is None


@pytest.mark.parametrize("live", [3, 4])
def test_check_refuses_at_the_limit(live: int) -> None:
    with pytest.raises(HandshakeRejected) as caught:
        Admission(max_connections=3).check(Request("/"), live)
    assert (caught.value.status, caught.value.reason) == (503, "server full (3 connections)")


def test_an_origin_without_a_host_header_is_refused_by_default() -> None:
    with pytest.raises(HandshakeRejected) as caught:
        Admission().check_origin(Request("/", "", {"Origin": "http://game.example"}))
    assert caught.value.status == 403
    assert caught.value.reason == "origin http://game.example not allowed for host "


def test_host_header_case_does_not_matter() -> None:
    request = Request("/", "", {"Host": "GAME.Example:8765", "Origin": "http://game.example:8765"})
    assert Admission().check_origin(request) is None


def test_a_doubled_host_header_is_refused_even_without_origin() -> None:
    request = Request("/", "", [("Host", "a"), ("Host", "b")])  # type: ignore[arg-type]
    with pytest.raises(HandshakeRejected) as caught:
        Admission(origins=["*"]).check(request, 0)
    assert (caught.value.status, caught.value.reason) == (403, "more than one Host header")


def test_a_doubled_origin_is_refused_even_with_star() -> None:
    request = Request("/", "", [("Origin", "http://a"), ("Origin", "http://b")])  # type: ignore[arg-type]
    with pytest.raises(HandshakeRejected, match="more than one Origin"):
        Admission(origins=["*"]).check(request, 0)


def authenticated(admission: Admission, request: Request) -> Any:
    return asyncio.run(admission.authenticated(request))


def test_authenticated_without_a_hook_is_none() -> None:
    assert authenticated(Admission(), Request("/")) is None


def test_authenticated_runs_only_the_hook() -> None:
    # origin and limit are check()'s business: authenticated() alone does not refuse them
    admission = Admission(max_connections=1, authenticate=lambda req: req.query)
    request = Request("/", "user=ada", {"Host": "h", "Origin": "https://evil.example"})
    assert authenticated(admission, request) == "user=ada"


def test_async_authenticate_false_is_403() -> None:
    async def deny(req: Request) -> bool:
        await asyncio.sleep(0)
        return False

    with pytest.raises(HandshakeRejected) as caught:
        authenticated(Admission(authenticate=deny), Request("/"))
    assert (caught.value.status, caught.value.reason) == (403, "authentication refused")


@pytest.mark.parametrize("user", [None, 0, "", [], True])
def test_only_false_refuses(user: Any) -> None:
    async def hook(req: Request) -> Any:
        return user

    assert authenticated(Admission(authenticate=lambda req: user), Request("/")) == user
    assert authenticated(Admission(authenticate=hook), Request("/")) == user


def test_async_authenticate_may_raise_its_own_status() -> None:
    async def hook(req: Request) -> None:
        raise HandshakeRejected(429, "slow down")

    with pytest.raises(HandshakeRejected) as caught:
        authenticated(Admission(authenticate=hook), Request("/"))
    assert caught.value.status == 429


class MultiHeaders(RawHeaders, Mapping[str, str]):
    """websockets' Headers, as far as Headers reads it: case-insensitive ``get_all``."""

    def get_all(self, name: str) -> list[str]:
        return [v for k, v in self.raw_items() if k.lower() == name.lower()]

    def __getitem__(self, name: str) -> str:
        raise AssertionError("repeated: websockets raises MultipleValuesError here")

    def __iter__(self) -> Iterator[str]:
        return iter(["origin"])

    def __len__(self) -> int:
        return 1

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() == "origin"


def test_headers_read_through_a_multi_valued_mapping_without_copying() -> None:
    source = MultiHeaders()
    headers = Headers(source)
    assert headers._view is source  # one copy of the request's headers, not two
    assert headers["ORIGIN"] == "http://a"  # the first value, not an error
    assert headers.get_all("Origin") == ["http://a", "http://b"]
    assert "origin" in headers and "host" not in headers
    assert len(headers) == 1 and list(headers) == ["Origin"]
    assert headers.raw_items() == (("Origin", "http://a"), ("Origin", "http://b"))
    with pytest.raises(KeyError):
        headers["host"]


def test_headers_over_websockets_headers() -> None:
    from websockets.datastructures import Headers as WsHeaders

    source = WsHeaders([("Origin", "http://a"), ("origin", "http://b"), ("Host", "h")])
    headers = Headers(source)
    assert headers["origin"] == "http://a"
    assert headers.get_all("ORIGIN") == ["http://a", "http://b"]
    assert dict(headers) == {"Origin": "http://a", "Host": "h"}
