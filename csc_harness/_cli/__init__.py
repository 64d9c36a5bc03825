"""One module per sub-command; each exposes ``register(subparsers)``."""

from __future__ import annotations

import argparse
import shlex


def resume_command(args: argparse.Namespace) -> str:
    """The command line that resumes this run, for error messages (``cli.main`` stores the
    arguments it parsed as ``args.argv``; URLs with credentials were refused before)."""
    return shlex.join(["csc-harness", *getattr(args, "argv", [args.command])])
