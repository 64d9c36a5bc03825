"""``csc-harness check-judge``: judge the gold reply and control replies, then check the judge.

Argument parsing plus a thin orchestration of library calls: controls from
:mod:`csc_harness.controls`, judging through :func:`csc_harness.judge.run_judgments` (same
runner, cache and row contract as ``csc-harness judge``), the verdict from
:func:`csc_harness.analysis.judge_check.judge_check`. Nothing heavy loads at import.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .common import (
    add_models_option,
    add_stage_map_option,
    apply_models_option,
    apply_stage_map,
    judge_or_resume,
)

if TYPE_CHECKING:
    from ..data import Example
    from ..judge import Candidate

FAILED_CHECK = 4
EPILOG = """\
Controls (see the README's table): gold, mismatch, truncated, generic, wrong-label, padded.
Discrimination = share of items where the judge scores gold above a control (ties 1/2).
A dimension passes when its interval's lower bound is above --threshold and the padded
control is not preferred to gold beyond chance.
Exit codes: 0 every judge passed, 4 a judge failed the check, 1 some calls failed (re-run
to retry), 2 bad input, 3 stopped by --max-cost.
"""


def register(sub: argparse._SubParsersAction) -> None:
    from .judge import _provider
    from .leaderboard import add_bootstrap_options

    parser = sub.add_parser(
        "check-judge", help="test whether a judge tells good replies from known-bad ones",
        description="Judge the reference reply and control replies of known quality "
        "(built from the data, no model needed) and check, per judge and dimension, that "
        "the judge scores the reference above the controls. Writes OUT/judge_check.json, "
        "OUT/judge_check.md and the judgments it used (OUT/judgments.jsonl, OUT/run.json).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = parser.add_argument_group("what to judge")
    what.add_argument("--data", metavar="SPEC", help="dataset: a file or hf:<id> (default: "
                      "$CSCONV_DATA, else the bundled sample)")
    what.add_argument("--limit", type=int, metavar="N", help="judge the turns of N dialogues "
                      "chosen in a seeded order (default: all)")
    what.add_argument("--controls", nargs="+", metavar="KIND", help="controls besides gold "
                      "(default: all of them)")
    what.add_argument("--out", required=True, metavar="DIR", help="output folder")
    add_stage_map_option(what)
    add_models_option(what)
    how = parser.add_argument_group("how to judge")
    how.add_argument("--judge", action="append", required=True, metavar="MODEL",
                     help="judge model in litellm form; repeat to check several")
    how.add_argument("--dimensions", nargs="+", metavar="DIM",
                     help="dimension ids (default: all of the variant)")
    how.add_argument("--mode", choices=("separate", "joint"), default="separate",
                     help="one call per dimension, or one call for all (default: separate)")
    how.add_argument("--verdict", choices=("rationale_first", "score_only"),
                     help="override the templates' verdict format")
    how.add_argument("--prompts", metavar="DIR", help="prompts folder (default: packaged)")
    how.add_argument("--max-tokens", type=int, metavar="N", help="completion token limit")
    how.add_argument("--embedded-model", action="append", default=[], metavar="NAME",
                     help="flag rows whose judge is this demo model")
    how.add_argument("--threshold", type=float, default=0.75,
                     help="lower interval bound a dimension must exceed (default: 0.75)")
    _provider(parser.add_argument_group("provider, cache and budget"))
    add_bootstrap_options(parser.add_argument_group("statistics"))
    parser.set_defaults(func=run)


def _check_options(args: argparse.Namespace) -> None:
    from ..errors import UserError
    from .leaderboard import check_bootstrap_options

    check_bootstrap_options(args)
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be >= 1 dialogue, got {args.limit}")
    if not 0 <= args.threshold < 1:
        raise UserError(f"--threshold must be in [0, 1), got {args.threshold}")


def _items(args: argparse.Namespace) -> tuple[list[Example], list[Example]]:
    from ..controls import sample_dialogues
    from ..data import data_spec, load_examples

    apply_stage_map(args)
    pool = load_examples(data_spec(args.data))
    items = sample_dialogues(pool, args.limit, args.seed) if args.limit else pool
    return items, pool


def run(args: argparse.Namespace) -> int:
    from ..analysis import load_judgments
    from ..analysis.judge_check import judge_check
    from ..controls import parse_controls
    from ..errors import UserError
    from ..judge import JudgeConfig, control_candidates, estimate_judgments
    from ..llm import Client
    from ..report import write_judge_check

    _check_options(args)
    apply_models_option(args)
    kinds = parse_controls(args.controls)
    if not kinds:
        raise UserError("--controls none leaves nothing to check: name at least one control")
    items, pool = _items(args)
    candidates = control_candidates(items, kinds, pool=pool, seed=args.seed)
    config = JudgeConfig(
        judges=tuple(args.judge), dimensions=tuple(args.dimensions) if args.dimensions else None,
        mode=args.mode, variant=args.variant or "default", verdict=args.verdict,
        max_tokens=args.max_tokens,
        api_base=args.api_base, prompts=args.prompts,
        embedded_models=tuple(args.embedded_model), max_cost=args.max_cost)
    client = Client(cache_path=args.cache, cache_mode=args.cache_mode,
                    concurrency=args.concurrency, rpm=args.rpm, timeout=args.timeout,
                    max_tries=args.max_tries, structured=args.structured)
    if args.dry_run:
        estimate = estimate_judgments(config, candidates, args.out, client=client)
        print("\n".join(f"dry run · {line}" for line in estimate.lines()))
        return 0

    judged = judge_or_resume("check-judge", args, config, candidates, client)
    if judged is None:
        return 1
    rows = _this_run(load_judgments([args.out]).absolute, candidates, config)
    result = judge_check(rows, threshold=args.threshold,
                         rounds=args.rounds, seed=args.seed, confidence=args.confidence,
                         variant=config.variant, score=args.score)
    paths = write_judge_check(result, args.out)
    _print_summary(result, len(items), len({ex.conversation_id for ex in items}))
    print("wrote " + ", ".join(str(p) for p in [*paths, judged.judgments_path]))
    if judged.exit_code:
        print(f"csc-harness check-judge: {judged.message or 'judging is incomplete'}; the "
              "check covers the judgments written so far", file=sys.stderr)
        return judged.exit_code
    return 0 if all(j["pass"] for j in result["judges"].values()) else FAILED_CHECK


def _this_run(rows: Any, candidates: Sequence[Candidate], config: Any) -> Any:
    """The rows of this invocation's items, controls, judges and dimensions: an output
    folder reused with another --limit or --controls keeps its older rows (append-only)."""
    keep = (rows["item_id"].isin({c.item.item_id for c in candidates})
            & rows["model"].isin({c.model for c in candidates})
            & rows["judge"].isin(config.judges))
    if config.dimensions:
        keep &= rows["dimension"].isin(config.dimensions)
    return rows[keep]


def _print_summary(result: dict[str, Any], n_items: int, n_dialogues: int) -> None:
    s = result["settings"]
    print(f"controls: {', '.join(s['controls'])} on {n_items} turns of {n_dialogues} "
          f"dialogues; pass = lower bound above {s['threshold']:g}")
    for judge, entry in result["judges"].items():
        print(f"{judge}: {'PASS' if entry['pass'] else 'FAIL'}")
        for dim, d in entry["dimensions"].items():
            print(f"  {dim}: {'pass' if d['pass'] else 'FAIL'} · {d['verdict']}")
