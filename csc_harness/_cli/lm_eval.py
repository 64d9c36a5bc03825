from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "lm-eval",
        help="run lm-eval's own CLI with the CSConv tasks on its include path",
        description="Everything after 'lm-eval' goes to lm_eval unchanged, plus "
        "--include_path pointing at the installed CSConv tasks. Example: csc-harness lm-eval "
        "--tasks csconv --model local-chat-completions --model_args "
        "model=M,base_url=http://HOST/v1/chat/completions --apply_chat_template",
        add_help=False,
    )
    parser.add_argument("args", nargs=argparse.REMAINDER)
    parser.set_defaults(func=lambda args: forward(args.args))


def tasks_path() -> str:
    """The folder holding the installed ``csconv`` task YAMLs."""
    from importlib import resources

    return str(resources.files("csc_harness.tasks"))


def forward(argv: Sequence[str]) -> int:
    argv = list(argv)
    if any(a == "--include_path" or a.startswith("--include_path=") for a in argv):
        print(
            "csc-harness lm-eval: error: --include_path is set by csc-harness (lm-eval takes "
            f"only one folder); run lm_eval directly with --include_path {tasks_path()}",
            file=sys.stderr,
        )
        return 2
    from lm_eval.__main__ import cli_evaluate

    sys.argv = ["lm_eval", "--include_path", tasks_path(), *argv]
    try:
        cli_evaluate()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0
