from __future__ import annotations

import argparse

from .leaderboard import add_bootstrap_options, check_bootstrap_options


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "correlate",
        help="measure judge agreement with human ratings",
        description="Compare judge scores with human ratings (item_id, model, dimension, "
        "rater, score; CSV or JSONL): Spearman, Kendall tau-b and Pearson with bootstrap "
        "intervals, Krippendorff's ordinal alpha and the human leave-one-out baseline, at "
        "item and system level. Writes correlation.json and correlation.md.",
    )
    parser.add_argument("--human", required=True, metavar="RATINGS",
                        help="human ratings file (.csv or .jsonl)")
    parser.add_argument("--judgments", nargs="+", required=True, metavar="DIR",
                        help="judge output folders (holding judgments.jsonl) or files")
    parser.add_argument("--level", choices=("item", "system"),
                        help="compute one level only (default: both)")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder to write into")
    add_bootstrap_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..analysis import correlate, load_human_ratings, load_judgments
    from ..report import correlation_markdown, write_correlation

    check_bootstrap_options(args)
    human = load_human_ratings(args.human)
    judgments = load_judgments(args.judgments)
    levels = (args.level,) if args.level else ("item", "system")
    result = correlate(judgments, human, levels=levels, rounds=args.rounds, seed=args.seed,
                       confidence=args.confidence, variant=args.variant, score=args.score)
    paths = write_correlation(result, args.out)
    print(correlation_markdown(result), end="")
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
