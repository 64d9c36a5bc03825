"""The test network guard (``conftest._guard_network``) stops every way off the machine.

Each case swaps the guard's saved real functions for ones that fail the test, so a case
passes only if the guard raised before the real call (no packet, no DNS query), and it
uses documentation-only addresses (RFC 5737 / 6761) in case it ever did get through.
"""

from __future__ import annotations

import asyncio
import logging
import socket

import conftest
import pytest
from conftest import NetworkBlocked

OUTSIDE = ("192.0.2.1", 9)  # TEST-NET-1: never routed
NAME = "guard-test.invalid"


@pytest.fixture
def nothing_real(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any call reaching a real socket function fails the test."""
    def reached(*args: object, **kwargs: object) -> None:
        pytest.fail(f"the guard let a call through: {args!r}")

    real_getaddrinfo = conftest._real["getaddrinfo"]

    def numeric_only(host: object, port: object, *args: object, **kwargs: object) -> list:
        if not conftest._is_numeric(host):
            reached(host, port)
        # an IP literal resolves locally; AI_NUMERICHOST makes sure no query is sent
        return real_getaddrinfo(host, port, 0, 0, 0, socket.AI_NUMERICHOST)

    for name in conftest._real:
        monkeypatch.setitem(conftest._real, name, reached)
    monkeypatch.setitem(conftest._real, "getaddrinfo", numeric_only)


def _tcp_connect() -> None:
    with socket.socket() as sock:
        sock.connect(OUTSIDE)


def _tcp_connect_ex() -> None:
    with socket.socket() as sock:
        sock.connect_ex(OUTSIDE)


def _create_connection() -> None:
    socket.create_connection(OUTSIDE, timeout=1)


def _udp_sendto() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"x", OUTSIDE)


def _udp_sendto_flags() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"x", 0, OUTSIDE)


def _udp_sendmsg() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendmsg([b"x"], [], 0, OUTSIDE)


def _asyncio_create_connection() -> None:
    async def go() -> None:
        await asyncio.get_running_loop().create_connection(asyncio.Protocol, *OUTSIDE)

    asyncio.run(go())


def _asyncio_open_connection_by_name() -> None:
    asyncio.run(asyncio.open_connection(NAME, 80))


def _asyncio_sock_connect() -> None:
    async def go() -> None:
        with socket.socket() as sock:
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, OUTSIDE)

    asyncio.run(go())


class _Recorder(asyncio.DatagramProtocol):
    """asyncio reports a failed datagram send to the protocol instead of raising it."""

    def __init__(self) -> None:
        self.lost = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set_result(exc)


def _asyncio_datagram() -> None:
    async def go() -> None:
        transport, protocol = await asyncio.get_running_loop().create_datagram_endpoint(
            _Recorder, local_addr=("127.0.0.1", 0))
        transport.sendto(b"x", OUTSIDE)
        exc = await asyncio.wait_for(protocol.lost, 2)
        if exc is not None:
            raise exc

    logging.getLogger("asyncio").disabled = True  # asyncio logs the fatal write too
    try:
        asyncio.run(go())
    finally:
        logging.getLogger("asyncio").disabled = False


@pytest.mark.parametrize("attempt", [
    pytest.param(_tcp_connect, id="socket.connect"),
    pytest.param(_tcp_connect_ex, id="socket.connect_ex"),
    pytest.param(_create_connection, id="socket.create_connection"),
    pytest.param(_udp_sendto, id="udp-sendto"),
    pytest.param(_udp_sendto_flags, id="udp-sendto-with-flags"),
    pytest.param(_udp_sendmsg, id="udp-sendmsg"),
    pytest.param(lambda: socket.getaddrinfo(NAME, 80), id="getaddrinfo"),
    pytest.param(lambda: socket.gethostbyname(NAME), id="gethostbyname"),
    pytest.param(lambda: socket.gethostbyname_ex(NAME), id="gethostbyname_ex"),
    pytest.param(lambda: socket.gethostbyaddr("192.0.2.1"), id="gethostbyaddr"),
    pytest.param(_asyncio_create_connection, id="asyncio-create_connection"),
    pytest.param(_asyncio_open_connection_by_name, id="asyncio-dns"),
    pytest.param(_asyncio_sock_connect, id="asyncio-sock_connect"),
    pytest.param(_asyncio_datagram, id="asyncio-datagram"),
])
def test_leaving_loopback_is_blocked_before_any_packet(attempt, nothing_real):
    with pytest.raises(NetworkBlocked):
        attempt()


def test_loopback_still_works():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.create_connection(server.getsockname(), timeout=2):
            pass
    assert socket.getaddrinfo("localhost", 80)
    assert socket.getaddrinfo("203.0.113.5", 80)  # an IP literal needs no DNS query
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.sendto(b"x", sock.getsockname())
