"""The local server's child process: ``python -m csc_harness.llm._local_child PARENT_PID
[--convert SRC KIND] [--scoring | --no-jump-forward] ARGS``.

It watches its parent and stops itself once the parent is gone (even after ``kill -9``),
re-encodes the bundled weights when asked (once; racing starts are safe), then runs
``llama_cpp.server`` with ARGS in this same process (score-only verdicts decoded by
:mod:`._jump_forward` unless ``--no-jump-forward``), or with ``--scoring`` the scoring
server of :mod:`._local_scorer`.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

from .local import _STOP_GRACE_S, _available_cpus


def _watch_parent(parent: int) -> None:
    """Stop this server when the process that started it is gone (killed hard)."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(_STOP_GRACE_S)
    os._exit(1)


def _convert(source: Path, target: Path, kind: str) -> None:
    """Re-encode ``source`` as ``kind`` at ``target``, atomically (racing starts are safe)."""
    import ctypes

    import llama_cpp

    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{kind}")
    params.allow_requantize = True
    params.nthread = _available_cpus()
    code = llama_cpp.llama_model_quantize(str(source).encode(), str(partial).encode(),
                                          ctypes.byref(params))
    if code != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        sys.exit(f"re-encoding {source} as {kind} failed (code {code})")
    os.replace(partial, target)


def _child_main(argv: list[str]) -> None:
    import runpy

    parent, rest = int(argv[0]), argv[1:]
    if os.getppid() != parent:  # the parent died before we got here
        sys.exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True,
                     name="parent-watchdog").start()
    if rest[:1] == ["--convert"]:
        source, kind, rest = Path(rest[1]), rest[2], rest[3:]
        target = Path(rest[rest.index("--model") + 1])
        if not target.is_file():
            _convert(source, target, kind)
    if rest[:1] == ["--scoring"]:
        from ._local_scorer import serve

        serve(rest[1:])
        return
    if rest[:1] == ["--no-jump-forward"]:
        rest = rest[1:]
    else:
        from ._jump_forward import install

        install()
    sys.argv = ["llama_cpp.server", *rest]
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    _child_main(sys.argv[1:])
