"""The ``csc-harness`` command: argument parsing only; the work lives in the library.

Each sub-command is a module in ``csc_harness._cli`` with ``register(subparsers)``;
those modules import nothing heavy at top level so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

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
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"csc-harness {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"csc-harness {args.command}: interrupted; re-run the same command to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
