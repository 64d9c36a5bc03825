"""Options and steps shared by the sub-commands that load CSConv data or judge.

``--stage-map FILE`` is declared here once. :func:`apply_stage_map` checks the file before
any data loads or any call is paid for, then exports it as ``$CSC_STAGE_MAP``: that one
variable is what every loader reads (``load_examples``, the lm-eval task's documents,
candidate joins), in this process and in any lm-eval run it starts.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..judge import Candidate, JudgeConfig
    from ..llm import Client

STAGE_MAP_HELP = ('JSON file {"<strategy>": "<stage>"} overriding the default stage of '
                  "each strategy (default: $CSC_STAGE_MAP)")


def add_stage_map_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """Add ``--stage-map FILE`` (dest ``stage_map``)."""
    parser.add_argument("--stage-map", metavar="FILE", help=STAGE_MAP_HELP)


def apply_stage_map(path: str | argparse.Namespace | None) -> str | None:
    """Validate the stage map (``--stage-map`` value, else ``$CSC_STAGE_MAP``) and export
    it as ``$CSC_STAGE_MAP`` (absolute path), so loaders and lm-eval see the same map.

    Returns the exported path, or None when no map is set. Raises DataError (exit 2)
    for a missing or invalid file, before anything is loaded or called.
    """
    from ..data import STAGE_MAP_VAR, load_stage_map

    if isinstance(path, argparse.Namespace):
        path = getattr(path, "stage_map", None)
    path = path or os.environ.get(STAGE_MAP_VAR) or None
    if path is None:
        return None
    load_stage_map(path)
    resolved = str(Path(path).expanduser().resolve())
    os.environ[STAGE_MAP_VAR] = resolved
    return resolved


def pop_stage_map(argv: Sequence[str]) -> tuple[list[str], str | None]:
    """Split ``--stage-map FILE`` / ``--stage-map=FILE`` out of arguments forwarded
    untouched to another program (``csc-harness lm-eval``)."""
    from ..errors import UserError

    rest: list[str] = []
    found: str | None = None
    items = iter(argv)
    for arg in items:
        if arg == "--stage-map":
            found = next(items, None)
            if found is None or found.startswith("--"):
                raise UserError("--stage-map needs a FILE argument")
        elif arg.startswith("--stage-map="):
            found = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    return rest, found


MODELS_HELP = ("model list in litellm's proxy model_list YAML shape (model_name + "
               "litellm_params, api_key: os.environ/NAME; optional router_settings): names "
               "given to --model/--judge are looked up there first (default: "
               "$CSC_HARNESS_MODELS)")


def add_models_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """Add ``--models FILE`` (dest ``models``)."""
    parser.add_argument("--models", metavar="FILE", help=MODELS_HELP)


def apply_models_option(args: argparse.Namespace) -> None:
    """Check ``--models`` before anything is paid for and export it for every Client."""
    from ..llm.models import apply_models

    apply_models(getattr(args, "models", None))


def judge_or_resume(command: str, args: argparse.Namespace, config: JudgeConfig,
                    candidates: Sequence[Candidate], client: Client) -> Any:
    """Run the judgments; ``None`` (exit 1) after printing, on a provider failure, the
    command that resumes them. A replay miss is bad input (exit 2)."""
    import asyncio
    import sys

    from ..errors import CacheMiss, ProviderError, UserError
    from ..judge import run_judgments
    from . import resume_command

    async def judge() -> Any:
        async with client:
            return await run_judgments(config, candidates, args.out, client=client,
                                       progress=False if args.no_progress else None)

    try:
        return asyncio.run(judge())
    except CacheMiss as exc:
        raise UserError(str(exc)) from None
    except ProviderError as exc:
        print(f"csc-harness {command}: error: judging stopped: {exc}. Resume with: "
              f"{resume_command(args)}", file=sys.stderr)
        return None
