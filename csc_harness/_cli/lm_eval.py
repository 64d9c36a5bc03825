from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "lm-eval",
        help="run lm-eval's own CLI with the CSConv tasks in its task index",
        description="Everything after 'lm-eval' goes to lm_eval unchanged; the installed "
        "CSConv tasks join lm-eval's task index even where the start-up hook is not read "
        "(python -S, PYTHONPATH installs), and --include_path stays free for your own "
        "tasks. Example: csc-harness lm-eval "
        "--tasks csconv --model local-chat-completions --model_args "
        "model=M,base_url=http://HOST/v1/chat/completions --apply_chat_template. "
        "--stage-map FILE (csc-harness's own) sets $CSC_STAGE_MAP for the tasks.",
        add_help=False,
    )
    parser.add_argument("args", nargs=argparse.REMAINDER)
    parser.set_defaults(func=lambda args: forward(args.args))


def tasks_path() -> str:
    """The folder holding the installed ``csconv`` task YAMLs."""
    from .._lm_eval_hook import tasks_path as installed_tasks

    return installed_tasks()


def forward(argv: Sequence[str]) -> int:
    from ..errors import UserError
    from .common import apply_stage_map, pop_stage_map

    try:  # --stage-map is ours: the tasks read it as $CSC_STAGE_MAP
        argv, stage_map = pop_stage_map(argv)
        apply_stage_map(stage_map)
    except UserError as exc:
        print(f"csc-harness lm-eval: error: {exc}", file=sys.stderr)
        return 2
    from .._lm_eval_hook import install

    install()  # before lm-eval builds its TaskManager; the .pth stub may not have run
    from lm_eval.__main__ import cli_evaluate

    sys.argv = ["lm_eval", *argv]
    try:
        cli_evaluate()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except UserError as exc:  # e.g. a task's missing optional package, before any request
        print(f"csc-harness lm-eval: error: {exc}", file=sys.stderr)
        return 2
    return 0
