"""report.html in a real headless browser (Debian's chromium): it renders, and asks nothing
of the network. Every chromium request is routed to a loopback proxy that records it; the
browser's own service pings (update check, account probe on Google hosts), which no flag
fully silences, are told apart from requests a page makes."""

from __future__ import annotations

import http.server
import shutil
import subprocess
import threading
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

import pytest

from csc_harness.analysis import leaderboard, load_judgments
from csc_harness.analysis.synthetic import pairwise_row, synthetic_rows, write_jsonl
from csc_harness.report import write_leaderboard

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() and shutil.which("chromium") is None,
    reason="needs Debian's chromium (/usr/bin/chromium): apt-get install -y chromium")
MODELS = ("openai/gpt-4o-mini", "qwen2.5-7b-instruct", "smollm2-135m")
BROWSER_SERVICES = (".google.com", ".googleapis.com", ".gstatic.com", ".gvt1.com")
QUIET = ("--disable-features=NetworkTimeServiceQuerying,OptimizationHints,Translate,MediaRouter",
         "--no-pings", "--disable-domain-reliability", "--disable-default-apps",
         "--disable-extensions", "--disable-client-side-phishing-detection")


def page_requests(seen: list[str]) -> list[str]:
    """Requests other than chromium's own service pings."""
    out = []
    for entry in seen:
        target = entry.split(" ", 1)[1]
        host = urlsplit(target).hostname if "://" in target else target.rsplit(":", 1)[0]
        if not ("." + (host or "")).endswith(BROWSER_SERVICES):
            out.append(entry)
    return out


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[str]] = []

    def _record(self) -> None:
        self.seen.append(f"{self.command} {self.path}")
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = do_HEAD = do_CONNECT = _record

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def proxy():
    _Recorder.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, _Recorder.seen
    server.shutdown()
    server.server_close()


def chromium(page: Path, tmp_path: Path, proxy_port: int, *extra: str) -> str:
    binary = str(CHROMIUM) if CHROMIUM.exists() else shutil.which("chromium")
    cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
           f"--proxy-server=http://127.0.0.1:{proxy_port}", "--proxy-bypass-list=<-loopback>",
           "--window-size=1280,2000", *QUIET, *extra, page.as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class _Dom(HTMLParser):
    """Counts what a reader would see: tables by id, their body rows, SVG charts, text."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.rows: dict[str, int] = {}
        self.svgs = 0
        self.text: list[str] = []
        self.table: str | None = None
        self.body_attrs: dict[str, str | None] = {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.table = attrs.get("id") or f"table{len(self.rows)}"
            self.rows.setdefault(self.table, 0)
        elif tag == "tr" and "tbody" in self.stack and self.table:
            self.rows[self.table] += 1
        elif tag == "svg":
            self.svgs += 1
        elif tag == "body":
            self.body_attrs = attrs
        self.stack.append(tag)

    def handle_endtag(self, tag):
        while self.stack and self.stack.pop() != tag:
            pass

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("html")
    rows = list(synthetic_rows(MODELS, dialogues=10, turns=4, judges=("gpt-4o", "qwen-max"),
                               seed=6))
    rows = [dict(r, embedded=True) if r["model"] == "smollm2-135m" else r for r in rows]
    rows += [pairwise_row(item_id=f"conv00000:{i}", order=o, winner=w, model_a=MODELS[0],
                          model_b=MODELS[1], model=f"{MODELS[0]} vs {MODELS[1]}")
             for i, (o, w) in enumerate([("ab", "a"), ("ba", "a"), ("ab", "b")])]
    write_jsonl(iter(rows), folder / "j" / "judgments.jsonl")
    metrics = [{"model": MODELS[0], "setting": "reference", "source": "r.json",
                "metrics": {"bleu2": 8.1, "bleu4": 3.0, "rougeL": 4.1, "bertscore": 64.3,
                            "strategy_acc": 42.6}}]
    board = leaderboard(load_judgments([folder / "j"]), metrics, rounds=100)
    write_leaderboard(board, folder / "out")
    return folder / "out" / "report.html"


def test_report_renders_the_table_charts_and_labels_in_chromium(report, tmp_path, proxy):
    server, seen = proxy
    dom = _Dom()
    dom.feed(chromium(report, tmp_path, server.server_address[1], "--dump-dom"))
    text = " ".join(dom.text)
    assert dom.rows["leaderboard"] == len(MODELS)
    assert dom.rows["significance-table"] == len(MODELS) - 1
    for model in MODELS:
        assert model in text
    assert "embedded demo model: not a quality estimate" in text
    assert "Overall score by stage" in text and "Connecting" in text
    assert "ref BS" in text and "64.30" in text
    assert dom.svgs >= 4 + 2 + 6  # dimension charts, heatmaps, score histograms
    assert dom.body_attrs.get("data-sortable") == "on"  # the hashed inline script ran
    assert "Pairwise comparisons" in text and "Order-inconsistent" in text
    assert page_requests(seen) == []


def test_report_screenshot_is_a_real_picture(report, tmp_path, proxy):
    server, seen = proxy
    shot = tmp_path / "report.png"
    chromium(report, tmp_path, server.server_address[1], f"--screenshot={shot}",
             "--hide-scrollbars")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000
    assert page_requests(seen) == []


def test_the_proxy_would_see_a_network_request(tmp_path, proxy):
    """Control: a page that does fetch something is caught, so `seen == []` means something."""
    server, seen = proxy
    page = tmp_path / "leaky.html"
    page.write_text('<html><body><img src="http://example.invalid/pixel.png"></body></html>')
    chromium(page, tmp_path, server.server_address[1], "--dump-dom")
    assert any("example.invalid" in s for s in page_requests(seen))
