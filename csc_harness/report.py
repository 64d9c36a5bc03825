"""Reports: the analysis results as markdown, CSV, JSON and one self-contained HTML page.

Everything here renders dicts produced by :mod:`csc_harness.analysis` (or read back from
their JSON files); nothing is computed that the JSON does not already hold, so a report
can be re-rendered from ``leaderboard.json`` alone. Templates live in
``csc_harness/templates`` (``report.html.j2``, ``*.md.j2``); charts are inline SVG.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

from . import __version__
from .analysis import plots
from .analysis.automatic import METRIC_LABELS, TABLE_METRICS
from .analysis.leaderboard import EMBEDDED_LABEL
from .analysis.scores import OVERALL

LEADERBOARD_FILES = ("leaderboard.md", "leaderboard.csv", "leaderboard.json", "report.html",
                     "breakdowns.csv")


# --------------------------------------------------------------------------- formatting


def num(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def pval(value: float | None) -> str:
    if value is None:
        return "–"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def interval(entry: dict[str, Any] | None, digits: int = 2) -> str:
    """``mean [low, high]`` from a dict with mean/value, ci_low, ci_high."""
    if not entry:
        return "–"
    value = entry.get("mean", entry.get("value"))
    if entry.get("ci_low") is None:
        return num(value, digits)
    return f"{num(value, digits)} [{num(entry['ci_low'], digits)}, {num(entry['ci_high'], digits)}]"


def label(name: str) -> str:
    """``strategy_adherence`` -> ``Strategy adherence``."""
    text = str(name).replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def _environment(autoescape: bool):
    import jinja2

    def load(name: str) -> str:
        return (resources.files("csc_harness") / "templates" / name).read_text("utf-8")

    env = jinja2.Environment(loader=jinja2.FunctionLoader(load), autoescape=autoescape,
                             trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    env.filters.update(num=num, pct=pct, pval=pval, interval=interval, label=label,
                       cell=lambda v: str(v).replace("|", "\\|"))
    return env


def render(template: str, **context: Any) -> str:
    """Render a package template; HTML templates are autoescaped."""
    return _environment(template.endswith(".html.j2")).get_template(template).render(
        version=__version__, **context)


# --------------------------------------------------------------------------- leaderboard


def leaderboard_view(board: dict[str, Any]) -> dict[str, Any]:
    """What the leaderboard templates show, derived from ``leaderboard.json``."""
    settings = board["settings"]
    primary = settings["primary_judge"]
    dims = settings["dimensions"]
    settings_present = sorted({s for m in board["models"] for s in m["metrics"]},
                              key=lambda s: (s != "reference", s))
    metric_cols = [(s, k, METRIC_LABELS[k]) for s in settings_present for k in TABLE_METRICS
                   if any(k in m["metrics"].get(s, {}) for m in board["models"])]
    rows = []
    for m in board["models"]:
        scores = m["scores"].get(primary, {})
        first = scores.get(OVERALL) or (scores.get(dims[0]) if dims else None) or {}
        rows.append({**m, "cells": scores, "n_items": first.get("n_items"),
                     "n_dialogues": first.get("n_dialogues"),
                     "metric_values": [m["metrics"].get(s, {}).get(k) for s, k, _ in metric_cols]})
    comparisons = [c for c in board["comparisons"] if c["judge"] == primary]
    pairs: dict[tuple[str, str], dict[str, Any]] = {}
    for c in comparisons:
        pairs.setdefault((c["higher"], c["lower"]), {})[c["dimension"]] = c
    best = {d: max((r["cells"][d]["mean"] for r in rows if r["rank"] is not None
                    and r["cells"].get(d, {}).get("mean") is not None), default=None)
            for d in dims}
    return {
        "board": board, "settings": settings, "primary": primary, "dims": dims,
        "rows": rows, "metric_cols": metric_cols, "embedded_label": EMBEDDED_LABEL,
        "comparisons": comparisons, "best": best,
        "pairs": [{"higher": h, "lower": lo, "cells": cells} for (h, lo), cells in pairs.items()],
        "other_judges": [j for j in settings["judges"] if j != primary],
        "breakdowns": _breakdown_tables(board, primary),
        "embedded": [m["model"] for m in board["models"] if m["embedded"]],
    }


def _focus_dimension(board: dict[str, Any]) -> str | None:
    dims = board["settings"]["dimensions"]
    return OVERALL if OVERALL in dims else (dims[0] if dims else None)


def _breakdown_tables(board: dict[str, Any], judge: str) -> list[dict[str, Any]]:
    """Per breakdown field: groups as columns, ranked models as rows, focus-dimension means."""
    focus = _focus_dimension(board)
    models = [m["model"] for m in board["models"] if m["rank"] is not None]
    tables = []
    for field, data in board["breakdowns"].get(judge, {}).items():
        cells = {(r["model"], r["group"]): r for r in data["rows"] if r["dimension"] == focus}
        tables.append({
            "field": field, "dimension": focus, "groups": data["groups"],
            "rows": [{"model": m, "cells": [cells.get((m, g)) for g in data["groups"]]}
                     for m in models],
        })
    return tables


def leaderboard_markdown(board: dict[str, Any]) -> str:
    """``leaderboard.md``: the ranked table, paired tests, breakdowns and bias checks."""
    return render("leaderboard.md.j2", **leaderboard_view(board))


def leaderboard_csv(board: dict[str, Any]) -> str:
    """One row per model; score columns are ``<judge>:<dimension>:<statistic>``."""
    fields: list[str] = ["rank", "model", "embedded", "same_family_judges", "n_rows",
                         "invalid_rate", "refused_rate", "error_rate"]
    stats = ("mean", "ci_low", "ci_high", "n_items", "n_dialogues")
    for judge in board["settings"]["judges"]:
        for dim in board["settings"]["dimensions"]:
            fields += [f"{judge}:{dim}:{s}" for s in stats]
    metric_keys = sorted({(s, k) for m in board["models"] for s, v in m["metrics"].items()
                          for k in v if k != "source"})
    fields += [f"{s}:{k}" for s, k in metric_keys]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for m in board["models"]:
        row: dict[str, Any] = {"rank": m["rank"], "model": m["model"],
                               "embedded": m["embedded"],
                               "same_family_judges": ";".join(m["same_family_judges"]),
                               "n_rows": m["status"].get("n_rows")}
        for key in ("invalid_rate", "refused_rate", "error_rate"):
            row[key] = m["status"].get(key)
        for judge, dims in m["scores"].items():
            for dim, entry in dims.items():
                row.update({f"{judge}:{dim}:{s}": entry.get(s) for s in stats})
        for s, k in metric_keys:
            row[f"{s}:{k}"] = m["metrics"].get(s, {}).get(k)
        writer.writerow(row)
    return out.getvalue()


def breakdowns_csv(board: dict[str, Any]) -> str:
    """Long format: judge, by, group, model, dimension, mean, ci_low, ci_high, n_items."""
    out = io.StringIO()
    cols = ["judge", "by", "group", "model", "dimension", "mean", "ci_low", "ci_high",
            "n_items", "n_dialogues"]
    writer = csv.DictWriter(out, fieldnames=cols, lineterminator="\n")
    writer.writeheader()
    for judge, fields in board["breakdowns"].items():
        for field, data in fields.items():
            for r in data["rows"]:
                writer.writerow({"judge": judge, "by": field} | r)
    return out.getvalue()


def leaderboard_charts(view: dict[str, Any]) -> dict[str, Any]:
    """Inline SVG: one interval chart per dimension, stage and strategy heatmaps, histograms."""
    board, primary = view["board"], view["primary"]
    scales = board["settings"]["scales"]
    ranked = [r for r in view["rows"] if r["rank"] is not None]
    charts = []
    for dim in view["dims"]:
        rows = [(r["model"], *(r["cells"].get(dim, {}).get(k) for k in ("mean", "ci_low",
                                                                          "ci_high")))
                for r in ranked]
        charts.append(plots.interval_chart(label(dim), rows, scale=tuple(scales[dim]),
                                           muted=view["embedded"]))
    heatmaps = []
    for table in view["breakdowns"]:
        if table["field"] not in ("stage", "strategy"):
            continue
        values = [[c["mean"] if c else None for c in row["cells"]] for row in table["rows"]]
        counts = [[c["n_items"] if c else None for c in row["cells"]] for row in table["rows"]]
        heatmaps.append(plots.heatmap(
            f"{label(table['dimension'])} score by {table['field']} ({primary})",
            [r["model"] for r in table["rows"]], table["groups"], values,
            scale=tuple(scales[table["dimension"]]), counts=counts,
            cell_w=92 if table["field"] == "stage" else 58))
    hists = [plots.histogram(f"{d['judge']} · {label(d['dimension'])}", d["counts"],
                             flag=d["flat"]) for d in board["bias"]["distribution"]]
    return {"charts": charts, "heatmaps": heatmaps, "histograms": hists}


def report_html(board: dict[str, Any]) -> str:
    """``report.html``: one self-contained page (inline CSS, SVG and a tiny sort script)."""
    view = leaderboard_view(board)
    return render("report.html.j2", **view, **leaderboard_charts(view))


def write_leaderboard(board: dict[str, Any], out: str | Path) -> list[Path]:
    """Write leaderboard.md/.csv/.json, breakdowns.csv and report.html into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    texts = {
        "leaderboard.md": leaderboard_markdown(board),
        "leaderboard.csv": leaderboard_csv(board),
        "leaderboard.json": dump_json(board),
        "report.html": report_html(board),
        "breakdowns.csv": breakdowns_csv(board),
    }
    return _write(out, texts.items())


# --------------------------------------------------------------------------- agreement


def correlation_markdown(result: dict[str, Any], *, title: str = "Judge-human agreement") -> str:
    """A readable table per level: one row per judge and dimension."""
    return render("correlation.md.j2", result=result, title=title)


def write_correlation(result: dict[str, Any], out: str | Path) -> list[Path]:
    """Write ``correlation.json`` (the documented shape) and ``correlation.md``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return _write(out, [("correlation.json", dump_json(result)),
                        ("correlation.md", correlation_markdown(result))])


# --------------------------------------------------------------------------- ablation


def ablation_chart(result: dict[str, Any]) -> str:
    """Per dimension, each variant's Spearman with humans and its interval (SVG)."""
    dims = sorted({d for v in result["variants"] for d in v.get("human", {})})
    parts = []
    for dim in dims:
        rows = []
        for v in result["variants"]:
            s = v.get("human", {}).get(dim, {}).get("spearman", {})
            rows.append((v["variant"], s.get("value"), s.get("ci_low"), s.get("ci_high")))
        parts.append(plots.interval_chart(f"{label(dim)}: Spearman with humans", rows,
                                          scale=(-1.0, 1.0)))
    return "\n".join(parts)


def write_ablation(result: dict[str, Any], out: str | Path) -> list[Path]:
    """Write ``ablation.json``, ``ablation.md`` and ``ablation.svg`` (empty without humans)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    chart = ablation_chart(result)
    svg = (chart if chart.count("<svg") == 1 else
           '<svg xmlns="http://www.w3.org/2000/svg"><text y="20">no human ratings</text></svg>'
           if not chart else _stack(chart))
    return _write(out, [("ablation.json", dump_json(result)),
                        ("ablation.md", render("ablation.md.j2", result=result)),
                        ("ablation.svg", svg)])


def _stack(svgs: str) -> str:
    """Several charts in one SVG file, stacked vertically."""
    parts = svgs.split("\n")
    heights = [int(p.split('height="', 1)[1].split('"', 1)[0]) for p in parts]
    width = max(int(p.split('width="', 1)[1].split('"', 1)[0]) for p in parts)
    body, y = [], 0
    for part, h in zip(parts, heights):
        body.append(f'<g transform="translate(0,{y})">{part}</g>')
        y += h + 12
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y}" '
            f'viewBox="0 0 {width} {y}">{"".join(body)}</svg>')


# --------------------------------------------------------------------------- files


def dump_json(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2, allow_nan=False) + "\n"


def _write(out: Path, texts: Iterable[tuple[str, str]]) -> list[Path]:
    written = []
    for name, text in texts:
        path = out / name
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        written.append(path)
    return written
