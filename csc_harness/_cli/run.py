from __future__ import annotations

import argparse

EPILOG = """\
With no --model and no --judge, the bundled SmolLM2-135M-Instruct (llama.cpp, 127.0.0.1)
writes the replies and judges them: a demonstration of the pipeline, not a quality
estimate. Keys come from the provider environment variables (OPENAI_API_KEY, ...).
A re-run with the same arguments reuses everything cached.
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
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..pipeline import RunOptions, run_pipeline

    record = run_pipeline(RunOptions(
        out=args.out, models=tuple(args.model), judges=tuple(args.judge),
        setting=args.setting, limit=args.limit, data=args.data, api_base=args.api_base,
        judge_api_base=args.judge_api_base, mode=args.mode, concurrency=args.concurrency,
        cache=args.cache, rounds=args.rounds, progress=not args.no_progress,
    ))
    print(f"wrote {args.out}/leaderboard.md, report.html and run.json")
    if record.get("label"):
        print(f"note: {record['label']}")
    return 0
