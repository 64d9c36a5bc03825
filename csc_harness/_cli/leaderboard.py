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
    parser.add_argument("--data", metavar="SPEC", help="dataset for the items view's "
                        "context and gold replies, for the gold turns of candidates.jsonl "
                        "and for --paper-rows' check (default: $CSCONV_DATA, else the "
                        "bundled sample)")
    parser.add_argument("--no-items", action="store_true",
                        help="leave the per-item drill-down out of report.html")
    parser.add_argument("--rationale-chars", type=int, default=400, metavar="N",
                        help="cut judge rationales in the items view to N characters "
                        "(default: 400; 0 leaves them out)")
    parser.add_argument("--baseline", metavar="NAME",
                        help="pairwise: the model others are compared with (default: the "
                        "model in the most pairs, i.e. the baseline `judge --pairwise` used)")
    add_paper_rows_option(parser)
    parser.set_defaults(func=run)


def add_paper_rows_option(parser: argparse.ArgumentParser) -> None:
    """``--paper-rows``, shared with ``run``."""
    parser.add_argument("--paper-rows", action="store_true", dest="paper_rows",
                        help="show the paper's published automatic metrics (arXiv "
                        "2508.04423) beside your models, labelled as reported by the paper "
                        "on the full CSConv; shown only when the data is the full CSConv")


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
    metrics = load_automatic_metrics(args.lm_eval, data=args.data) if args.lm_eval else []
    counts = None
    if args.paper_rows:
        from ..analysis.reference import data_counts

        counts = data_counts(args.data)
    board = leaderboard(judgments, metrics, rounds=args.rounds, seed=args.seed,
                        confidence=args.confidence, variant=args.variant, score=args.score,
                        by=by, baseline=args.baseline, paper_rows=args.paper_rows,
                        data_counts=counts)
    items = None
    if not args.no_items:
        from ..analysis.items import load_items

        items = load_items(args.judgments, variant=board["settings"]["variant"],
                           data=args.data, rationale_chars=max(0, args.rationale_chars),
                           metrics=metrics)
    paths = write_leaderboard(board, args.out, items)
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
    paper = board.get("paper")
    if paper and not paper["shown"]:
        print(f"note: {paper['reason']}")
    print(f"judge: {primary}; {focus} score, {int(100 * settings['confidence'])}% interval")
    for m in board["models"]:
        score = m["scores"].get(primary, {}).get(focus) if focus else None
        rank = m["rank"] if m["rank"] is not None else "-"
        print(f"  {rank:>3}  {m['model']:<40} {interval(score)}")
    _print_pairwise(board.get("pairwise"))


def _print_pairwise(pair: dict | None) -> None:
    from ..report import pct

    if not pair:
        return
    print(f"pairwise against {pair['baseline']}: win / tie / loss (inconsistent pairs "
          "count as ties)")
    for r in pair["win_rates"]:
        print(f"  {r['judge']} · {r['dimension']}: {r['model']:<32} "
              f"{pct(r['win']['value'])} / {pct(r['tie']['value'])} / "
              f"{pct(r['loss']['value'])}  ({r['n_inconsistent']} of {r['n_matches']} "
              "order-inconsistent)")
