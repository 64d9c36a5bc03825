from __future__ import annotations

import argparse
import sys

from .common import add_models_option, add_stage_map_option, apply_models_option, apply_stage_map
from .leaderboard import add_paper_rows_option

EPILOG = """\
With no --model and no --judge, the bundled SmolLM2-135M-Instruct (llama.cpp, 127.0.0.1)
writes the replies and judges them: a demonstration of the pipeline, not a quality
estimate. Keys come from the provider environment variables (OPENAI_API_KEY, ...).
A re-run with the same arguments reuses everything cached.
The judge also scores control replies of known quality (control:gold, mismatch, padded)
on a seeded subset of dialogues; report.html's "Can this judge be trusted?" says whether
it told them apart (reference rows, never ranked).
Exit codes: 0 done, 2 a step failed or bad input, 3 stopped by --max-cost.
"""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "run", help="the main job: replies, metrics, judges, leaderboard and report",
        description="Evaluate models on CSConv end to end into OUT: candidate replies "
        "(lm-eval for the reference context, a rollout for the generated context), the "
        "paper's automatic metrics, rubric judges, leaderboard.md/.csv/.json and report.html.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", default=[], metavar="MODEL",
                        help="candidate model in litellm form, repeatable "
                        "(default: the embedded model)")
    parser.add_argument("--judge", action="append", default=[], metavar="MODEL",
                        help="judge model, repeatable (default: the embedded model)")
    parser.add_argument("--setting", choices=("reference", "generated", "both"),
                        default="reference", help="context setting (default: reference)")
    parser.add_argument("--limit", type=int, metavar="N", help="first N dialogues only")
    parser.add_argument("--data", metavar="SPEC",
                        help="file or hf:<id> (default: $CSCONV_DATA, else the bundled sample)")
    parser.add_argument("--api-base", metavar="URL",
                        help="OpenAI-compatible server of the candidate models")
    parser.add_argument("--judge-api-base", metavar="URL",
                        help="OpenAI-compatible server of the judge models")
    parser.add_argument("--mode", choices=("joint", "separate"), default="joint",
                        help="one judge call for all dimensions, or one per dimension")
    parser.add_argument("--concurrency", type=int, default=8, metavar="N",
                        help="requests in flight per model (default: 8; the embedded model "
                        "takes 8 per worker, one dialogue per worker when rolling out)")
    parser.add_argument("--cache", metavar="PATH", help="provider cache file (default: "
                        "$CSC_HARNESS_CACHE or ~/.cache/csc-harness/llm.sqlite)")
    parser.add_argument("--rounds", type=int, default=1000, metavar="N",
                        help="bootstrap rounds for the intervals (default: 1000)")
    parser.add_argument("--max-cost", type=float, metavar="USD",
                        help="stop before this run's new provider spend would pass USD "
                        "(exit code 3; cached answers are free)")
    parser.add_argument("--controls", nargs="+", metavar="KIND",
                        help="control replies judged beside the models to test the judge: "
                        "mismatch, truncated, generic, wrong-label, padded, all or none "
                        "(default: mismatch padded; control:gold is always added)")
    parser.add_argument("--control-dialogues", metavar="N|all",
                        help="dialogues whose turns get controls, chosen in a seeded order "
                        "(default: 20; with the embedded judge 31, one seeded turn each; "
                        "all: every dialogue)")
    parser.add_argument("--interactive", action="store_true",
                        help="also run whole conversations with a simulated customer (the "
                        "first judge plays it) into OUT/interactive, as `csc-harness simulate`")
    parser.add_argument("--batch", action="store_true",
                        help="judge through the providers' batch APIs (OpenAI, Anthropic: "
                        "about half price, results within 24 h; a re-run resumes waiting)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    add_stage_map_option(parser)
    add_models_option(parser)
    add_paper_rows_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..pipeline import RunOptions, StepFailed, run_pipeline
    from . import resume_command

    apply_stage_map(args)
    apply_models_option(args)
    try:
        record = run_pipeline(RunOptions(
            out=args.out, models=tuple(args.model), judges=tuple(args.judge),
            setting=args.setting, limit=args.limit, data=args.data, api_base=args.api_base,
            judge_api_base=args.judge_api_base, mode=args.mode,
            concurrency=args.concurrency, cache=args.cache, rounds=args.rounds,
            progress=not args.no_progress, max_cost=args.max_cost,
            paper_rows=args.paper_rows, controls=_controls(args.controls),
            control_dialogues=_control_dialogues(args.control_dialogues),
            interactive=args.interactive, batch=args.batch,
        ))
    except StepFailed as exc:
        print(f"csc-harness run: error: {exc}. Resume with: {resume_command(args)}",
              file=sys.stderr)
        return exc.exit_code
    print(f"wrote {args.out}/leaderboard.md, report.html and run.json")
    if record.get("label"):
        print(f"note: {record['label']}")
    for line in record.get("judge_check", {}).get("findings", []):
        print(f"judge check: {line} (report.html, judge_check.md)")
    return 0


def _controls(values: list[str] | None) -> tuple[str, ...] | None:
    from ..controls import parse_controls

    return None if values is None else parse_controls(values)


def _control_dialogues(value: str | None) -> int | None:
    """``all`` -> 0 (every dialogue), a whole number >= 1, or None (the default)."""
    from ..errors import UserError

    if value is None:
        return None
    if value.strip().lower() == "all":
        return 0
    if not value.strip().isdigit() or int(value) < 1:
        raise UserError(f"--control-dialogues must be a whole number >= 1 or all, got {value!r}")
    return int(value)
