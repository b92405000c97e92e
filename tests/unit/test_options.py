"""Every option declared once: ``Settings`` defaults and checks, the typed keyword
options kept in step with it, and ``close_outcome``."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import pytest

import aiosocker
from aiosocker.errors import close_outcome
from aiosocker.options import DEFAULTS, Settings
from aiosocker.transports.asgi import ASGIOptions

FIELDS = {f.name for f in dataclasses.fields(Settings)}


# -- Settings -----------------------------------------------------------------------------


def test_defaults() -> None:
    settings = Settings()
    assert dataclasses.asdict(settings) == {
        "drive": "async",
        "max_size": 2**20,
        "max_queue": 1024,
        "text": "close",
        "ping_interval": 20,
        "ping_timeout": 20,
        "close_timeout": 10,
        "max_memory": 4 * 2**20,
        "rate": None,
        "origins": None,
        "max_connections": None,
        "authenticate": None,
        "on_open": None,
        "on_close": None,
        "on_error": None,
        "routes": None,
        "allowed_hosts": None,
        "max_per_ip": None,
        "new_per_ip": None,
        "resume": None,
        "redis": None,
        "metrics": False,
        "status_page": False,
        "path": "/",
        "transport": "websockets",
    }
    assert settings == DEFAULTS


def test_settings_are_frozen_and_keyword_only() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULTS.drive = "tick"  # type: ignore[misc]
    with pytest.raises(TypeError):
        Settings("tick")  # type: ignore[misc]


@pytest.mark.parametrize(
    "options",
    [
        {"drive": "tick"},
        {"text": "ignore"},
        {"max_size": 1},
        {"max_queue": 1},
        {"path": "/ws"},
        {"transport": "picows"},
        {"ping_interval": None, "ping_timeout": None, "origins": ["*"], "max_connections": 1},
    ],
)
def test_valid_values_are_kept(options: dict[str, Any]) -> None:
    settings = Settings(**options)
    assert {name: getattr(settings, name) for name in options} == options


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("drive", "sync", "drive must be 'async' or 'tick', got 'sync'"),
        ("drive", "", "drive must be 'async' or 'tick', got ''"),
        ("text", "accept", "text must be 'close' or 'ignore', got 'accept'"),
        ("max_size", 0, "max_size must be a positive number of bytes, got 0"),
        ("max_size", -5, "max_size must be a positive number of bytes, got -5"),
        ("max_queue", 0, "max_queue must be at least 1, got 0"),
        ("path", "ws", "path must start with '/', got 'ws'"),
        ("path", "", "path must start with '/', got ''"),
        ("transport", "aiohttp", "transport must be 'websockets' or 'picows', got 'aiohttp'"),
    ],
)
def test_each_check_names_its_option(option: str, value: Any, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        Settings(**{option: value})
    assert str(caught.value) == message


def test_of_builds_settings() -> None:
    settings = Settings.of({"drive": "tick", "max_queue": 8})
    assert settings == Settings(drive="tick", max_queue=8)
    assert Settings.of({}) == DEFAULTS


def test_of_names_an_unknown_option() -> None:
    with pytest.raises(TypeError) as caught:
        Settings.of({"max_sise": 10, "drive": "tick"})
    assert str(caught.value) == "unknown option(s) 'max_sise'"


def test_of_names_every_unknown_option_sorted() -> None:
    with pytest.raises(TypeError) as caught:
        Settings.of({"zeta": 1, "alpha": 2, "path": "/"})
    assert str(caught.value) == "unknown option(s) 'alpha', 'zeta'"


def test_of_still_checks_values() -> None:
    with pytest.raises(ValueError, match="max_queue"):
        Settings.of({"max_queue": 0})


# -- the typed keyword options are fields of Settings --------------------------------------


def keys(options: Any) -> set[str]:
    """Every key a TypedDict accepts, its bases' included."""
    names = set(options.__required_keys__ | options.__optional_keys__)
    assert names == set(typing.get_type_hints(options))
    return names


OPTIONS = {
    "ServerOptions": aiosocker.ServerOptions,
    "HubOptions": aiosocker.HubOptions,
    "ClientOptions": aiosocker.ClientOptions,
    "ASGIOptions": ASGIOptions,
}


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_every_typed_option_is_a_setting(name: str) -> None:
    names = keys(OPTIONS[name])
    assert names, f"{name} declares no option"
    assert names <= FIELDS, f"{name} has options Settings lacks: {sorted(names - FIELDS)}"


def test_every_setting_is_reachable_from_serve_or_connect() -> None:
    reachable = keys(aiosocker.ServerOptions) | keys(aiosocker.ClientOptions)
    assert reachable == FIELDS, f"unreachable settings: {sorted(FIELDS - reachable)}"


def test_server_options_extend_hub_options() -> None:
    assert keys(aiosocker.HubOptions) < keys(aiosocker.ServerOptions)
    assert keys(ASGIOptions) == keys(aiosocker.HubOptions)


# -- close_outcome ------------------------------------------------------------------------

SENT = (1000, "ours")
RECEIVED = (4000, "theirs")


@pytest.mark.parametrize(
    ("sent", "received", "received_first", "outcome"),
    [
        (None, None, False, (None, "")),
        (None, None, True, (None, "")),
        (SENT, None, False, SENT),
        (SENT, None, True, SENT),  # nothing received: the flag cannot matter
        (None, RECEIVED, False, RECEIVED),
        (None, RECEIVED, True, RECEIVED),
        (SENT, RECEIVED, False, SENT),
        (SENT, RECEIVED, True, RECEIVED),
    ],
)
def test_close_outcome(
    sent: tuple[int, str] | None,
    received: tuple[int, str] | None,
    received_first: bool,
    outcome: tuple[int | None, str],
) -> None:
    assert close_outcome(sent, received, received_first) == outcome
