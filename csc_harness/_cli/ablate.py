"""``csc-harness ablate``: argument parsing only; the work is :mod:`csc_harness.ablate`.

Nothing heavy is imported at module level (``csc-harness --help`` stays fast).
"""

from __future__ import annotations

import argparse
import sys

from .common import add_models_option, add_stage_map_option, apply_models_option, apply_stage_map

EPILOG = """\
The config names the candidates, the judge(s), optional human ratings and a grid over
template, mode, reference_guided, verdict and judge (see examples/ablation.yaml). Each cell
is judged into OUT/cells/<cell>/ through one cache, then the cells are compared into
OUT/ablation.json, ablation.md and ablation.svg. Re-running resumes; finished cells cost
nothing. Exit codes: 0 done, 1 a cell's calls failed (re-run to retry), 2 bad input,
3 stopped by the budget (--max-cost, else max_cost in the config).
"""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "ablate", help="compare judge-prompt variants on the same replies",
        description="Judge the same candidate replies under every cell of a grid of judge "
        "settings, then compare the cells: agreement with human ratings, leaderboard rank "
        "agreement with the baseline cell, invalid rate, tokens and cost.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, metavar="ABLATION.yaml",
                        help="ablation config (YAML)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    add_stage_map_option(parser)
    add_models_option(parser)
    parser.add_argument("--max-cost", type=float, metavar="USD",
                        help="budget of the whole ablation, spend recorded in every cell "
                        "folder included (overrides max_cost in the config; exit code 3)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print calls, tokens and cost per cell; call nothing")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import dataclasses

    from ..ablate import analyse_ablation, estimate_ablation, load_ablation, run_ablation
    from ..errors import UserError

    apply_stage_map(args)
    apply_models_option(args)
    config = load_ablation(args.config)
    if args.max_cost is not None:
        if not args.max_cost >= 0:
            raise UserError(f"--max-cost must be >= 0 USD, got {args.max_cost}")
        config = dataclasses.replace(config, max_cost=args.max_cost)
    client = config.make_client(dry_run=args.dry_run)
    if args.dry_run:
        try:
            lines = _estimate_lines(estimate_ablation(config, args.out, client=client))
        finally:
            asyncio.run(client.aclose())
        print("\n".join(f"dry run · {line}" for line in lines))
        return 0

    async def judge():
        async with client:
            return await run_ablation(config, args.out, client=client, echo=print,
                                      progress=False if args.no_progress else None)

    runs = asyncio.run(judge())
    if runs and runs[-1].exit_code:
        print(f"csc-harness ablate: error: {runs[-1].message}. To resume (finished cells and "
              f"cached answers cost nothing): csc-harness ablate --config {args.config} --out "
              f"{args.out}", file=sys.stderr)
        return runs[-1].exit_code
    result, paths = analyse_ablation(config, args.out)
    for line in _comparison_lines(result):
        print(line)
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def _estimate_lines(estimates: list) -> list[str]:
    """One line per cell (calls, tokens, cost bound) and a total."""
    lines, cost, unpriced = [], 0.0, False
    for cell, e in estimates:
        unpriced |= e.cost_usd is None
        cost += e.cost_usd or 0.0
        price = (f"up to ${e.cost_usd:.4f}" if e.cost_usd is not None
                 else f"unknown (no price for {', '.join(e.unpriced)})")
        lines.append(f"{cell.name}: {e.calls} provider calls ({e.cached} cached; {e.done}/"
                     f"{e.judgments} judgments done) · ~{e.prompt_tokens:,} prompt + up to "
                     f"{e.completion_tokens:,} completion tokens · {price}")
    total = f"up to ${cost:.4f}" + (" + unpriced calls" if unpriced else "")
    lines.append(f"total: {sum(e.calls for _, e in estimates)} provider calls · {total}")
    return lines


def _comparison_lines(result: dict) -> list[str]:
    """One line per cell: invalid rate, leaderboard agreement, Spearman with humans."""
    def num(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    lines = []
    for v in result["variants"]:
        invalid = v["status"]["invalid_rate"]
        parts = [f"invalid {'n/a' if invalid is None else f'{100 * invalid:.1f}%'}",
                 f"leaderboard Spearman vs baseline {num(v['leaderboard'].get('spearman'))}"]
        for dim, h in v.get("human", {}).items():
            diff = h["vs_baseline"] or {}
            parts.append(f"{dim} vs humans {num(h['spearman'].get('value'))}" + (
                f" ({diff['diff']:+.3f} vs baseline)" if diff.get("diff") is not None else ""))
        mark = " (baseline)" if v["variant"] == result["baseline"] else ""
        lines.append(f"{v['variant']}{mark}: " + " · ".join(parts))
    return lines
