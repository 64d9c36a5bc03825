"""Test guards: no connection leaves the machine, and nothing writes outside tmp_path."""

from __future__ import annotations

import ipaddress
import json
import socket

import pytest

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _check(address: object) -> None:
    if isinstance(address, tuple) and address:
        host = address[0]
        try:
            if ipaddress.ip_address(host).is_loopback:
                return
        except ValueError:
            if host == "localhost":
                return
        raise RuntimeError(f"test tried to open a non-loopback connection to {address!r}")


def _guarded_connect(self: socket.socket, address: object) -> None:
    _check(address)
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    _check(address)
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded_connect_ex)
    for var in ("HOME", "XDG_CACHE_HOME", "HF_HOME", "CSC_HARNESS_CACHE"):
        monkeypatch.setenv(var, str(home / var.lower()))
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE",
                "LITELLM_LOCAL_MODEL_COST_MAP"):
        monkeypatch.setenv(var, "1" if "LITELLM" not in var else "True")
    for var in ("CSCONV_DATA", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENAI_BASE_URL",
                "OPENAI_API_BASE"):
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
