"""The ``csc-harness`` command: argument parsing only; the work lives in the library.

Each sub-command is a module in ``csc_harness._cli`` with ``register(subparsers)``;
those modules import nothing heavy at top level so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from . import __version__
from .errors import UserError

COMMANDS = (
    "run",
    "data",
    "lm_eval",
    "leaderboard",
    "correlate",
    "judge",
    "serve_local",
    "generate",
    "ablate",
    "check_judge",
    "simulate",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="csc-harness",
        description="Evaluate customer-support chat models on CSC/CSConv.",
    )
    parser.add_argument("--version", action="version", version=f"csc-harness {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"csc_harness._cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # `lm-eval` forwards its arguments untouched, including ones argparse would eat.
    if argv[:1] == ["lm-eval"]:
        from ._cli.lm_eval import forward

        return forward(argv[1:])
    args = build_parser().parse_args(argv)
    args.argv = argv  # for the resume command that error messages print
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    terminated: list[int] = []
    previous = _on_sigterm(terminated)
    try:
        check_common_options(args)
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"csc-harness {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        what = "terminated (SIGTERM)" if terminated else "interrupted"
        print(f"csc-harness {args.command}: {what}; re-run the same command to resume",
              file=sys.stderr)
        return 128 + signal.SIGTERM if terminated else 130
    except OSError as exc:  # the environment: disk full, permissions, a vanished folder
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"csc-harness {args.command}: error: {exc.strerror or _one_line(exc)}{where}; "
              "fix it and re-run the same command to resume", file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _one_line(exc: BaseException) -> str:
    """An error message on one line, whatever text it quotes."""
    return " ".join(str(exc).split("\n"))


def check_common_options(args: argparse.Namespace) -> None:
    """Options several commands share, checked once for all: ``--out ""`` (it would write
    into the working directory) or naming a file, and ``--rounds`` outside 1..MAX_ROUNDS (too many would
    exhaust memory after the inputs were read)."""
    out = getattr(args, "out", None)
    if isinstance(out, str) and not out.strip():
        raise UserError(f"--out must name a folder, got {out!r}")
    if isinstance(out, str) and os.path.exists(out) and not os.path.isdir(out):
        raise UserError(f"--out {out!r} is a file, not a folder: pass a folder path")
    rounds = getattr(args, "rounds", None)
    if isinstance(rounds, int):
        from .analysis.stats import MAX_ROUNDS

        if rounds < 1:
            raise UserError(f"--rounds must be at least 1, got {rounds}")
        if rounds > MAX_ROUNDS:
            raise UserError(f"--rounds must be at most {MAX_ROUNDS:,}, got {rounds:,}")


def _on_sigterm(terminated: list[int]) -> Any:
    """Make SIGTERM stop a run as Ctrl-C does (folders marked incomplete, resumable).

    The handler re-raises the signal as SIGINT, so whatever handles SIGINT at that moment
    (asyncio's graceful cancel, or KeyboardInterrupt) handles it. Returns the previous
    handler to restore, or None off the main thread, where no handler can be set.
    """
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, frame: object) -> None:
        terminated.append(signum)
        if callable(signal.getsignal(signal.SIGINT)):
            signal.raise_signal(signal.SIGINT)
        else:  # SIGINT ignored (a background job): interrupt directly
            raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, handler)


if __name__ == "__main__":
    sys.exit(main())
