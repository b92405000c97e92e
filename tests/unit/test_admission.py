"""The admission policy and the client's backoff, with plain objects: no sockets."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aiosocker import Admission, Backoff, HandshakeRejected, Headers, Request


def request(origin: str | None = None, host: str = "game.example:8765", **headers: str) -> Request:
    all_headers = {"Host": host, **headers}
    if origin is not None:
        all_headers["Origin"] = origin
    return Request("/", "", all_headers, ("127.0.0.1", 50000))


def admit(admission: Admission, req: Request, live: int = 0) -> Any:
    return asyncio.run(admission.admit(req, live))


def refused(admission: Admission, req: Request, live: int = 0) -> HandshakeRejected:
    with pytest.raises(HandshakeRejected) as caught:
        admit(admission, req, live)
    return caught.value


# -- origin -------------------------------------------------------------------------------


def test_no_origin_header_is_allowed() -> None:
    assert admit(Admission(), request()) is None
    assert admit(Admission(origins=["https://only.example"]), request()) is None


def test_same_host_origin_is_allowed_by_default() -> None:
    assert admit(Admission(), request("http://game.example:8765")) is None
    assert admit(Admission(), request("https://GAME.example:8765")) is None  # hosts: any case


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "http://game.example",  # another port is another origin
        "http://game.example:8765.evil.example",
        "null",  # sandboxed iframes, file:// pages
    ],
)
def test_other_origins_are_refused_by_default(origin: str) -> None:
    rejected = refused(Admission(), request(origin))
    assert rejected.status == 403
    assert origin in rejected.reason


def test_allow_list_replaces_the_same_host_rule() -> None:
    admission = Admission(origins=["https://game.example", "https://beta.game.example"])
    assert admit(admission, request("https://beta.game.example")) is None
    assert refused(admission, request("http://game.example:8765")).status == 403
    assert refused(admission, request("https://game.example:443")).status == 403  # exact


def test_star_allows_any_origin() -> None:
    assert admit(Admission(origins=["*"]), request("https://anyone.example")) is None


def test_origins_must_be_a_list() -> None:
    with pytest.raises(TypeError, match="list of origins"):
        Admission(origins="https://game.example")


# -- max_connections ----------------------------------------------------------------------


def test_max_connections() -> None:
    admission = Admission(max_connections=2)
    assert admit(admission, request(), live=1) is None
    rejected = refused(admission, request(), live=2)
    assert (rejected.status, rejected.reason) == (503, "server full (2 connections)")
    with pytest.raises(ValueError, match="at least 1"):
        Admission(max_connections=0)


def test_origin_is_checked_before_the_limit() -> None:
    assert refused(Admission(max_connections=1), request("https://evil.example"), 5).status == 403


# -- authenticate -------------------------------------------------------------------------


def test_authenticate_returns_the_user() -> None:
    def authenticate(req: Request) -> dict[str, str]:
        return {"token": req.headers["Authorization"]}

    admission = Admission(authenticate=authenticate)
    assert admit(admission, request(Authorization="t0k")) == {"token": "t0k"}


def test_async_authenticate() -> None:
    async def authenticate(req: Request) -> str:
        await asyncio.sleep(0)
        return "ada"

    assert admit(Admission(authenticate=authenticate), request()) == "ada"


def test_authenticate_false_is_403_and_raising_keeps_its_status() -> None:
    assert refused(Admission(authenticate=lambda req: False), request()).status == 403

    def needs_token(req: Request) -> None:
        raise HandshakeRejected(401, "token required")

    rejected = refused(Admission(authenticate=needs_token), request())
    assert (rejected.status, rejected.reason) == (401, "token required")
    assert str(rejected) == "server refused the connection: HTTP 401 token required"


def test_authenticate_is_not_called_for_refused_origins_or_a_full_server() -> None:
    calls: list[Request] = []
    admission = Admission(max_connections=1, authenticate=calls.append)
    refused(admission, request("https://evil.example"))
    refused(admission, request(), live=1)
    assert calls == []
    admit(admission, request())
    assert len(calls) == 1


# -- backoff ------------------------------------------------------------------------------


def delays(backoff: Backoff, count: int) -> list[float]:
    async def take() -> list[float]:
        series = backoff.delays()
        return [await anext(series) for _ in range(count)]

    return asyncio.run(take())


def test_backoff_grows_by_factor_up_to_the_maximum() -> None:
    backoff = Backoff(initial=0.1, maximum=1.0, factor=2, jitter=0)
    assert delays(backoff, 6) == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


def test_backoff_jitter_stays_within_its_fraction() -> None:
    backoff = Backoff(initial=1.0, maximum=1.0, jitter=0.5)
    series = delays(backoff, 200)
    assert all(0.5 <= d <= 1.0 for d in series)
    assert len(set(series)) > 100  # drawn at random: clients don't retry in step


@pytest.mark.parametrize(
    "options",
    [
        {"initial": 0},
        {"initial": 2, "maximum": 1},
        {"factor": 0.5},
        {"jitter": 1.5},
        {"jitter": -0.1},
    ],
)
def test_backoff_validates(options: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="Backoff"):
        Backoff(**options)


def test_a_doubled_origin_header_is_refused_403() -> None:
    headers = Headers(
        [("Host", "game.example:8765"), ("Origin", "http://a"), ("Origin", "http://b")]
    )
    caught = refused(Admission(), Request("/", "", headers, None))
    assert caught.status == 403
    assert "more than one Origin header" in caught.reason


@pytest.mark.parametrize(
    ("host", "origin", "allowed"),
    [  # the examples of docs/protocol.md, "0. Connecting"
        ("game.example:8765", "https://game.example:8765", True),
        ("game.example:8765", "http://game.example:8765", True),  # the scheme is not compared
        ("game.example:8765", "http://game.example", False),  # no default port filled in
        ("game.example", "https://game.example", True),
        ("game.example", "https://GAME.example", True),  # lower-cased
        ("game.example", "https://game.example:443", False),
    ],
)
def test_the_documented_origin_rule(host: str, origin: str, allowed: bool) -> None:
    request = Request("/", "", {"Host": host, "Origin": origin})
    if allowed:
        assert admit(Admission(), request) is None
    else:
        assert refused(Admission(), request).status == 403
