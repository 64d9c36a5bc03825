"""The conversation leaderboard: judge scores and automatic metrics per model, and a report.

``leaderboard.json`` holds ``{"kind": "conversation", "settings", "models" (ordered),
"metrics" (:func:`.metrics.metric_table`), "judged" ({variant: the turn leaderboard's dict
built from the conversation rows, see :func:`csc_harness.analysis.leaderboard`}),
"notes"}``; ``leaderboard.md`` and ``.csv`` show the same; ``report.html`` adds every
transcript (speaker, strategy, text) with its judges' scores and rationales.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..profiles import EMBEDDED
from .metrics import METRICS, metric_table
from .store import judgment_paths

__all__ = ["build_board", "write_board"]

BREAKDOWNS = ("topic", "language")


def build_board(rows: Sequence[dict[str, Any]], judge_dir: Path | None, *, rounds: int = 1000,
                seed: int = 0, embedded: bool = False) -> dict[str, Any]:
    """The board dict (see the module docstring) from transcript rows and, when
    ``judge_dir`` holds judgments, the conversation-level judge scores."""
    judged: dict[str, Any] = {}
    files = judgment_paths(judge_dir) if judge_dir is not None else []
    if files:
        from ..analysis import leaderboard, load_judgments

        judgments = load_judgments(files)
        variants = sorted(str(v) for v in judgments.absolute["variant"].dropna().unique())
        for variant in variants:
            judged[variant] = leaderboard(judgments, variant=variant, by=BREAKDOWNS,
                                          rounds=rounds, seed=seed)
    metrics = metric_table(rows, rounds=rounds, seed=seed)
    ranked = [m["model"] for m in next(iter(judged.values()))["models"]] if judged else []
    models = [m for m in ranked if m in metrics] + sorted(m for m in metrics if m not in ranked)
    notes = [f"{EMBEDDED.display_name} played roles: {EMBEDDED.label}"] if embedded else []
    return {"kind": "conversation", "models": models, "metrics": metrics, "judged": judged,
            "notes": notes, "settings": {"rounds": rounds, "seed": seed,
                                         "resample": "scenario_id", "metrics": list(METRICS)}}


def _scores(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Flat judge-score records: variant, judge, model, dimension, mean, interval."""
    out = []
    for variant, sub in board["judged"].items():
        for entry in sub["models"]:
            for judge, dims in entry.get("scores", {}).items():
                for dim, s in dims.items():
                    out.append({"variant": variant, "judge": judge, "model": entry["model"],
                                "dimension": dim, **{k: s.get(k) for k in
                                                     ("mean", "ci_low", "ci_high", "n_items")}})
    return out


def board_csv(board: dict[str, Any]) -> str:
    """One row per model: every metric's mean and interval, then every judge score."""
    scores = _scores(board)
    score_cols = sorted({(s["variant"], s["judge"], s["dimension"]) for s in scores})
    by_key = {(s["variant"], s["judge"], s["dimension"], s["model"]): s for s in scores}
    header = ["model", "n_conversations"]
    header += [f"{m}{part}" for m in METRICS for part in ("", "_ci_low", "_ci_high")]
    header += [f"{v}:{j}:{d}{part}" for v, j, d in score_cols
               for part in ("", "_ci_low", "_ci_high")]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for model in board["models"]:
        entry = board["metrics"][model]
        line: list[Any] = [_cell(model), entry["n_conversations"]]
        for m in METRICS:
            line += [entry[m]["mean"], entry[m]["ci_low"], entry[m]["ci_high"]]
        for v, j, d in score_cols:
            s = by_key.get((v, j, d, model), {})
            line += [s.get("mean"), s.get("ci_low"), s.get("ci_high")]
        writer.writerow(["" if x is None else x for x in line])
    return buf.getvalue()


def _cell(text: str) -> str:
    """A CSV cell a spreadsheet will not run as a formula."""
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def write_board(out: Path, rows: Sequence[dict[str, Any]], *, judged: bool,
                rounds: int = 1000, embedded: bool = False) -> list[Path]:
    """Write leaderboard.md/.csv/.json and report.html into ``out``; returns the paths."""
    from ..analysis.items import conversation_view
    from ..jsonl import write_json_atomic
    from ..report import page_script, render, script_json

    if not rows:
        return []
    judge_dir = out / "judge" if judged else None
    board = build_board(rows, judge_dir, rounds=rounds, embedded=embedded)
    context = {"board": board, "scores": _scores(board), "metric_names": METRICS}
    # Transcripts are shown by report.html's items view: one renderer for both reports.
    items = conversation_view(rows, judgment_paths(judge_dir) if judge_dir else [])
    texts = {
        "leaderboard.md": render("simulate.md.j2", **context),
        "leaderboard.csv": board_csv(board),
        "report.html": render("simulate.html.j2", **context, **page_script(), items=items,
                              items_json=script_json(items)),
    }
    written = []
    for name, text in texts.items():
        path = out / name
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        written.append(path)
    write_json_atomic(out / "leaderboard.json", json.loads(json.dumps(board, default=str)))
    return [*written, out / "leaderboard.json"]
