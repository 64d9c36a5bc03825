from __future__ import annotations

import argparse

BREAKDOWNS = ("stage", "strategy", "topic", "language")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "leaderboard",
        help="turn judgments and lm-eval results into a leaderboard and report",
        description="Build the leaderboard: per-model judge scores with dialogue-bootstrap "
        "intervals, automatic metrics beside them, breakdowns, paired tests and bias "
        "checks. Writes leaderboard.md/.csv/.json, breakdowns.csv and report.html.",
    )
    parser.add_argument("--judgments", nargs="+", required=True, metavar="DIR",
                        help="judge output folders (holding judgments.jsonl) or files")
    parser.add_argument("--lm-eval", nargs="+", default=[], metavar="DIR", dest="lm_eval",
                        help="lm-eval output folders (results_*.json) or metrics.json files")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder to write into")
    add_bootstrap_options(parser)
    parser.add_argument("--by", default=",".join(BREAKDOWNS),
                        help=f"breakdowns, comma-separated (default: {','.join(BREAKDOWNS)})")
    parser.set_defaults(func=run)


def add_bootstrap_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by the analysis commands."""
    parser.add_argument("--rounds", type=int, default=1000,
                        help="bootstrap rounds (default: 1000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    parser.add_argument("--confidence", type=float, default=0.95,
                        help="interval coverage (default: 0.95)")
    parser.add_argument("--variant", help="prompt variant to use (default: the only one, "
                        "else 'default')")
    parser.add_argument("--score", choices=("score", "weighted_score"), default="score",
                        help="verdict field to average (default: score)")


def check_bootstrap_options(args: argparse.Namespace) -> None:
    from ..errors import UserError

    if args.rounds < 1:
        raise UserError(f"--rounds must be at least 1, got {args.rounds}")
    if not 0 < args.confidence < 1:
        raise UserError(f"--confidence must be between 0 and 1, got {args.confidence}")


def run(args: argparse.Namespace) -> int:
    from ..analysis import leaderboard, load_automatic_metrics, load_judgments
    from ..errors import UserError
    from ..report import write_leaderboard

    check_bootstrap_options(args)
    by = [b.strip() for b in args.by.split(",") if b.strip()]
    unknown = [b for b in by if b not in BREAKDOWNS]
    if unknown:
        raise UserError(f"unknown breakdown {unknown[0]!r}; valid: {', '.join(BREAKDOWNS)}")
    judgments = load_judgments(args.judgments)
    metrics = load_automatic_metrics(args.lm_eval) if args.lm_eval else []
    board = leaderboard(judgments, metrics, rounds=args.rounds, seed=args.seed,
                        confidence=args.confidence, variant=args.variant, score=args.score,
                        by=by)
    paths = write_leaderboard(board, args.out)
    _print_summary(board)
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def _print_summary(board: dict) -> None:
    from ..report import interval

    settings = board["settings"]
    primary, dims = settings["primary_judge"], settings["dimensions"]
    focus = "overall" if "overall" in dims else (dims[0] if dims else None)
    for note in board["notes"]:
        print(f"note: {note}")
    print(f"judge: {primary}; {focus} score, {int(100 * settings['confidence'])}% interval")
    for m in board["models"]:
        score = m["scores"].get(primary, {}).get(focus) if focus else None
        rank = m["rank"] if m["rank"] is not None else "-"
        print(f"  {rank:>3}  {m['model']:<40} {interval(score)}")
