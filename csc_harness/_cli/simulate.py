"""``csc-harness simulate``: whole conversations with a simulated customer."""

from __future__ import annotations

import argparse
import sys

from .common import add_models_option, apply_models_option

EPILOG = """\
With no --model, the bundled SmolLM2-135M-Instruct (llama.cpp, 127.0.0.1) plays every role
(planner, customer, supporter, judge) on 2 scenarios with a 6-utterance cap: a
demonstration of the loop, not a quality estimate. Keys come from the provider environment
variables (OPENAI_API_KEY, ...). A re-run with the same arguments resumes: finished
conversations are kept, a conversation cut short is replayed from the cache.
Exit codes: 0 done, 1 a provider failed (finished conversations are kept), 2 bad input.
"""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "simulate", help="interactive evaluation: whole conversations with a simulated customer",
        description="Let an LLM play the customer (RoleCS's customer coach + customer roles, "
        "persona and goal written once per scenario by a planner) and each candidate model "
        "the supporter, until the supporter closes, the customer ends or the utterance cap; "
        "then judge whole conversations and write OUT/transcripts.jsonl, "
        "leaderboard.md/.csv/.json and report.html.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--model", action="append", default=[], metavar="MODEL",
        help="candidate (supporter) model in litellm form, repeatable (default: the embedded "
        "model, a demonstration)")
    add("--api-base", metavar="URL", help="OpenAI-compatible server of the candidate models")
    add("--customer", metavar="MODEL",
        help="model playing planner, customer coach and customer (default: the embedded model)")
    add("--customer-api-base", metavar="URL", help="server of the customer model")
    add("--judge", action="append", default=[], metavar="MODEL",
        help="conversation judge, repeatable (default: none; the embedded model in the "
        "demonstration)")
    add("--judge-api-base", metavar="URL", help="server of the judge models")
    add("--rubric", choices=("conversation", "rolecs", "both"), default="conversation",
        help="conversation rubric: problem resolution, strategy adherence, empathy "
        "(conversation), RoleCS's five pass/fail criteria (rolecs), or both")
    add("--data", metavar="SPEC", help="dialogues to plan scenarios from: file or hf:<id> "
        "(default: $CSCONV_DATA, else the bundled sample)")
    add("--scenarios-file", metavar="PATH", help="your own scenarios (JSON/JSONL of persona, "
        "topic, goal, opening[, situation, language, id]) instead of planned ones")
    add("--scenarios", type=int, metavar="N", help="first N scenarios (default: 20; 2 in the "
        "demonstration)")
    add("--max-turns", type=int, metavar="N", help="utterance cap per conversation (default: "
        "50 as in RoleCS; 6 in the demonstration)")
    add("--samples", type=int, default=1, metavar="K",
        help="conversations per scenario and model (default: 1)")
    add("--concurrency", type=int, default=8, metavar="N",
        help="conversations in flight (default: 8; the embedded model: one per worker)")
    add("--cache", metavar="PATH", help="provider cache file (default: $CSC_HARNESS_CACHE or "
        "~/.cache/csc-harness/llm.sqlite)")
    add("--rounds", type=int, default=1000, metavar="N", help="bootstrap rounds (default: 1000)")
    add("--no-progress", action="store_true", help="no progress bars")
    add("--out", required=True, metavar="DIR", help="output folder")
    add_models_option(parser)  # names given to --model/--customer/--judge are looked up there
    parser.set_defaults(func=run_simulate)


def run_simulate(args: argparse.Namespace) -> int:
    from ..errors import CacheMiss, ProviderError
    from ..simulate import SimulateOptions, simulate

    apply_models_option(args)
    opts = SimulateOptions(
        out=args.out, models=tuple(args.model), api_base=args.api_base,
        customer=args.customer, customer_api_base=args.customer_api_base,
        judges=tuple(args.judge), judge_api_base=args.judge_api_base, rubric=args.rubric,
        data=args.data, scenarios_file=args.scenarios_file, scenarios=args.scenarios,
        max_turns=args.max_turns, samples=args.samples, concurrency=args.concurrency,
        cache=args.cache, rounds=args.rounds, progress=not args.no_progress)
    try:
        record = simulate(opts)
    except (ProviderError, CacheMiss) as exc:
        from . import resume_command

        print(f"csc-harness simulate: error: {exc}; finished conversations are kept in "
              f"{args.out}; re-run the same command to resume: {resume_command(args)}",
              file=sys.stderr)
        return 1
    steps = record["steps"]["conversations"]
    print(f"{steps['n']} conversations ({steps['new']} new) in {record['seconds']}s; wrote "
          f"{args.out}/transcripts.jsonl, leaderboard.md, report.html")
    if record.get("label"):
        print(f"note: {record['label']}")
    return 0
