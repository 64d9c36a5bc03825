"""Test guards: no connection leaves the machine, and nothing writes outside tmp_path."""

from __future__ import annotations

import ipaddress
import json
import socket

import pytest

_real = {
    "connect": socket.socket.connect,
    "connect_ex": socket.socket.connect_ex,
    "sendto": socket.socket.sendto,
    "sendmsg": socket.socket.sendmsg,
    "getaddrinfo": socket.getaddrinfo,
    "gethostbyname": socket.gethostbyname,
    "gethostbyname_ex": socket.gethostbyname_ex,
    "gethostbyaddr": socket.gethostbyaddr,
}
"""The unguarded functions; ``test_network_guard`` swaps them to prove none is reached."""
_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost",
                          "ip6-loopback", ""})


class NetworkBlocked(RuntimeError):
    """A test tried to reach beyond loopback; raised before any packet is sent."""


def _is_loopback(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if host is None:
        return True  # getaddrinfo(None, port): a local wildcard address, no look-up
    if not isinstance(host, str):
        return False
    if host.lower() in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _is_numeric(host: object) -> bool:
    """An IP literal: resolving it needs no DNS."""
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    try:
        ipaddress.ip_address(str(host).split("%", 1)[0])
    except ValueError:
        return False
    return True


def _check(address: object, what: str = "connection") -> None:
    if isinstance(address, (str, bytes)):
        return  # AF_UNIX path: stays on this machine
    if isinstance(address, tuple) and address and _is_loopback(address[0]):
        return
    raise NetworkBlocked(f"test tried to open a non-loopback {what} to {address!r}")


def _check_name(host: object, what: str) -> None:
    if _is_loopback(host) or (what == "DNS look-up" and _is_numeric(host)):
        return
    raise NetworkBlocked(f"test tried a {what} of {host!r}")


def _guarded_connect(self: socket.socket, address: object) -> None:
    _check(address)
    return _real["connect"](self, address)


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    _check(address)
    return _real["connect_ex"](self, address)


def _guarded_sendto(self: socket.socket, data: bytes, *args: object) -> int:
    _check(args[-1] if args else None, "datagram")
    return _real["sendto"](self, data, *args)


def _guarded_sendmsg(self: socket.socket, buffers: object, *args: object) -> int:
    if len(args) >= 3 and args[2] is not None:
        _check(args[2], "datagram")
    return _real["sendmsg"](self, buffers, *args)


def _guarded_getaddrinfo(host: object, *args: object, **kwargs: object) -> list:
    _check_name(host, "DNS look-up")
    return _real["getaddrinfo"](host, *args, **kwargs)


def _guarded_gethostbyname(host: str) -> str:
    _check_name(host, "DNS look-up")
    return _real["gethostbyname"](host)


def _guarded_gethostbyname_ex(host: str) -> tuple:
    _check_name(host, "DNS look-up")
    return _real["gethostbyname_ex"](host)


def _guarded_gethostbyaddr(host: str) -> tuple:
    _check_name(host, "reverse DNS look-up")
    return _real["gethostbyaddr"](host)


def _guard_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every way out of loopback raises :class:`NetworkBlocked` first: TCP connect (also
    what ``socket.create_connection`` and asyncio's ``create_connection`` /
    ``sock_connect`` end in), UDP ``sendto`` / ``sendmsg``, and DNS look-ups."""
    for name in ("connect", "connect_ex", "sendto", "sendmsg"):
        monkeypatch.setattr(socket.socket, name, globals()[f"_guarded_{name}"])
    for name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr"):
        monkeypatch.setattr(socket, name, globals()[f"_guarded_{name}"])


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    home = tmp_path_factory.mktemp("home")
    _guard_network(monkeypatch)
    for var in ("HOME", "XDG_CACHE_HOME", "HF_HOME", "CSC_HARNESS_CACHE"):
        monkeypatch.setenv(var, str(home / var.lower()))
    monkeypatch.delenv("CSC_HARNESS_MODELS", raising=False)  # --models exports it
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE",
                "LITELLM_LOCAL_MODEL_COST_MAP"):
        monkeypatch.setenv(var, "1" if "LITELLM" not in var else "True")
    for var in ("CSCONV_DATA", "CSC_STAGE_MAP", "OPENAI_API_KEY", "ANTHROPIC_API_KEY",
                "OPENAI_BASE_URL", "OPENAI_API_BASE"):
        monkeypatch.delenv(var, raising=False)


MINI_CSCONV = [
    {"id": "z1", "source": "产品咨询", "dialogue": [
        {"speaker": "客户", "text": "你好，我想问一下理财产品。"},
        {"speaker": "客服", "strategy": "策略1 礼貌问候", "text": "您好，很高兴为您服务！"},
        {"speaker": "客户", "text": "那个产品收益多少？"},
        {"speaker": "客服", "strategy": "策略7 信息传达", "text": "该产品近一年年化收益为3.2%。"},
    ]},
    {"id": "e1", "source": "技术故障", "dialogue": [
        {"speaker": "customer", "text": "Hi, the app keeps crashing."},
        {"speaker": "agent", "strategy": "Greeting", "text": "Hello, thanks for reaching out!"},
        {"speaker": "customer", "text": "It crashes at login."},
        {"speaker": "agent", "strategy": "PR", "text": "Which phone model are you using?"},
    ]},
]
"""Two dialogues (z1 Chinese, e1 English), four supporter turns: z1:1, z1:3, e1:1, e1:3."""


@pytest.fixture
def data_file(tmp_path, monkeypatch):
    """MINI_CSCONV in a file that CSCONV_DATA points at."""
    path = tmp_path / "csconv.json"
    path.write_text(json.dumps(MINI_CSCONV, ensure_ascii=False), encoding="utf-8")
    monkeypatch.setenv("CSCONV_DATA", str(path))
    return path
