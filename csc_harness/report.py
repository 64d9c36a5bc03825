"""Reports: the analysis results as markdown, CSV, JSON and one self-contained HTML page.

Everything here renders dicts produced by :mod:`csc_harness.analysis` (or read back from
their JSON files); nothing is computed that the JSON does not already hold, so a report
can be re-rendered from ``leaderboard.json`` alone. Templates live in
``csc_harness/templates`` (``report.html.j2``, ``*.md.j2``); charts are inline SVG.
"""

from __future__ import annotations

import base64
import csv
import hashlib
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
from .analysis.signflip import min_dialogues

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
    """``mean [low, high] (N dialogues)`` from a dict with mean/value, ci_low, ci_high and
    n_dialogues; ``mean (reason)`` when the interval is null with a reason."""
    if not entry:
        return "–"
    value = entry.get("mean", entry.get("value"))
    if entry.get("ci_low") is None:
        reason = _ci_reason(entry)
        return num(value, digits) + (f" ({reason})" if reason else "")
    text = f"{num(value, digits)} [{num(entry['ci_low'], digits)}, {num(entry['ci_high'], digits)}]"
    return text + (f" ({_dialogues(entry)})" if entry.get("n_dialogues") is not None else "")


def ci(entry: dict[str, Any] | None, digits: int = 2) -> str:
    """``low – high · N dialogues`` for a table cell, or why there is no interval."""
    if not entry:
        return "–"
    if entry.get("ci_low") is None:
        return _ci_reason(entry) or "no interval"
    text = f"{num(entry['ci_low'], digits)} – {num(entry['ci_high'], digits)}"
    return text + (f" · {_dialogues(entry)}" if entry.get("n_dialogues") is not None else "")


def _ci_reason(entry: dict[str, Any]) -> str | None:
    return entry.get("ci_reason") or entry.get("ci_low_reason")


def _dialogues(entry: dict[str, Any]) -> str:
    n = entry["n_dialogues"]
    return f"{n} dialogue{'' if n == 1 else 's'}"


def md_text(value: Any) -> str:
    """Text safe in Markdown: raw HTML shown as text (``<`` ``>`` ``&`` as entities), line
    breaks as spaces (a newline would end a table row or a list item)."""
    text = " ".join(str(value).splitlines()) if value is not None else ""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def md_cell(value: Any) -> str:
    """:func:`md_text` for a Markdown table cell: pipes escaped too (GFM's ``\\|``)."""
    return md_text(value).replace("\\", "\\\\").replace("|", "\\|")


CSV_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A CSV value a spreadsheet will not run: text starting with ``= + - @``, a tab or a
    carriage return gets a leading ``'`` (OWASP's advice against CSV injection). Numbers
    are left as they are, so negative numbers stay numbers."""
    if isinstance(value, str) and value.startswith(CSV_FORMULA):
        return "'" + value
    return value


def _safe_row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: csv_cell(v) for k, v in row.items()}


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
    env.filters.update(num=num, pct=pct, pval=pval, interval=interval, ci=ci, label=label,
                       cell=md_cell, md=md_text, metric=metric_interval,
                       disc=discrimination)
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
                     "metric_values": [m["metrics"].get(s, {}).get(k) for s, k, _ in metric_cols],
                     "metric_cis": [m.get("metric_intervals", {}).get(s, {}).get(k)
                                    for s, k, _ in metric_cols]})
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
        "min_dialogues": min_dialogues(settings["confidence"]),
        "pairs": [{"higher": h, "lower": lo, "cells": cells} for (h, lo), cells in pairs.items()],
        "other_judges": [j for j in settings["judges"] if j != primary],
        "breakdowns": _breakdown_tables(board, primary),
        "embedded": [m["model"] for m in board["models"] if m["embedded"]],
        "pairwise": pairwise_view(board.get("pairwise")),
        "agreement": board.get("agreement") or [],
        "paper": paper_view(board.get("paper"), metric_cols),
        "controls": [_reference_row(c, primary, dims) for c in board.get("controls") or []],
        "check": check_view(board.get("judge_check")),
    }


def _reference_row(control: dict[str, Any], primary: str, dims: list[str]) -> dict[str, Any]:
    scores = control["scores"].get(primary, {})
    first = scores.get(OVERALL) or (scores.get(dims[0]) if dims else None) or {}
    return control | {"cells": scores, "n_items": first.get("n_items")}


def discrimination(entry: dict[str, Any] | None) -> str:
    """``0.50 [0.50, 0.50] n=30`` for a judge-check cell, ``–`` when it has none."""
    if not entry or entry.get("discrimination") is None:
        return "–"
    return (f"{num(entry['discrimination'])} [{num(entry['ci_low'])}, "
            f"{num(entry['ci_high'])}] n={entry['n']}")


def check_view(result: dict[str, Any] | None) -> dict[str, Any] | None:
    """The judge check as the templates show it: control kinds in table order, the
    verdicts, what the controls covered, and the control table."""
    if not result:
        return None
    from .analysis.judge_check import controls_table, coverage_text
    from .controls import CONTROLS

    kinds = [k for k in CONTROLS if k != "gold" and k in result["settings"]["controls"]]
    failed = [j for j, e in result["judges"].items() if not e["pass"]]
    return result | {"kinds": kinds, "failed": failed, "table": controls_table(),
                     "descriptions": {k: CONTROLS[k].description for k in CONTROLS},
                     "coverage_line": coverage_text(result["coverage"])
                     if result.get("coverage") else None}


def metric_interval(entry: dict[str, Any] | None) -> str:
    """``[low, high]`` of an automatic metric, or ``""`` when it has none."""
    if not entry or entry.get("ci_low") is None:
        return ""
    return f"[{num(entry['ci_low'])}, {num(entry['ci_high'])}]"


def paper_view(paper: dict[str, Any] | None, metric_cols: list) -> dict[str, Any] | None:
    """The paper's rows in the leaderboard's metric columns (those measured here; all of
    the paper's when nothing was measured here)."""
    if not paper:
        return None
    cols = metric_cols or [(s, k, v) for s in ("reference", "generated")
                           for k, v in paper["metrics"].items()]
    rows = [{"model": r["model"], "values": [r.get(s, {}).get(k) for s, k, _ in cols]}
            for r in paper.get("rows", [])]
    return paper | {"cols": cols, "table": rows}


def pairwise_view(pair: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Per (judge, dimension): win-rate rows, Bradley-Terry ratings and order consistency."""
    if not pair:
        return []
    sections: dict[tuple[str, str], dict[str, Any]] = {}

    def section(judge: str, dim: str) -> dict[str, Any]:
        return sections.setdefault((judge, dim), {
            "judge": judge, "dimension": dim, "baseline": pair["baseline"], "rates": [],
            "ratings": None, "ratings_reason": None, "consistency": []})

    for r in pair["win_rates"]:
        section(r["judge"], r["dimension"])["rates"].append(r)
    for b in pair["bradley_terry"]:
        sec = section(b["judge"], b["dimension"])
        sec["ratings"], sec["ratings_reason"] = b["ratings"], b.get("ratings_reason")
    for c in pair["consistency"]:
        section(c["judge"], c["dimension"])["consistency"].append(c)
    return [sections[k] for k in sorted(sections)]


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
    fields: list[str] = ["rank", "model", "reference", "embedded", "same_family_judges",
                         "n_rows", "invalid_rate", "refused_rate", "error_rate"]
    stats = ("mean", "ci_low", "ci_high", "n_items", "n_dialogues", "ci_reason")
    for judge in board["settings"]["judges"]:
        for dim in board["settings"]["dimensions"]:
            fields += [f"{judge}:{dim}:{s}" for s in stats]
    metric_keys = sorted({(s, k) for m in board["models"] for s, v in m["metrics"].items()
                          for k in v if k != "source"})
    fields += [f"{s}:{k}" for s, k in metric_keys]
    ci_keys = sorted({(s, k) for m in board["models"]
                      for s, v in m.get("metric_intervals", {}).items() for k in v})
    fields += [f"{s}:{k}:{stat}" for s, k in ci_keys
               for stat in ("ci_low", "ci_high", "n_dialogues")]
    pair_cols = _pairwise_columns(board.get("pairwise"))
    fields += sorted({c for cols in pair_cols.values() for c in cols})
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writerow(_safe_row({f: f for f in fields}))
    # Control replies follow the models as reference rows: never ranked.
    for m in [*board["models"], *(board.get("controls") or [])]:
        row: dict[str, Any] = {"rank": m["rank"], "model": m["model"],
                               "reference": "control" if m["model"].startswith(
                                   "control:") else "",
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
        for s, k in ci_keys:
            entry = m.get("metric_intervals", {}).get(s, {}).get(k) or {}
            row.update({f"{s}:{k}:{stat}": entry.get(stat)
                        for stat in ("ci_low", "ci_high", "n_dialogues")})
        row.update(pair_cols.get(m["model"], {}))
        writer.writerow(_safe_row(row))
    return out.getvalue()


def _pairwise_columns(pair: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Per model: ``pairwise:<judge>:<dimension>:<win|tie|loss|score>[_ci_low|_ci_high]``,
    ``...:n_matches``, ``...:n_inconsistent`` and ``bt:<judge>:<dimension>:elo[...]``."""
    out: dict[str, dict[str, Any]] = {}
    if not pair:
        return out
    for r in pair["win_rates"]:
        cols = out.setdefault(r["model"], {})
        head = f"pairwise:{r['judge']}:{r['dimension']}"
        for name in ("win", "tie", "loss", "score"):
            for stat, suffix in (("value", ""), ("ci_low", "_ci_low"), ("ci_high", "_ci_high")):
                cols[f"{head}:{name}{suffix}"] = r[name][stat]
        cols[f"{head}:n_matches"] = r["n_matches"]
        cols[f"{head}:n_inconsistent"] = r["n_inconsistent"]
    for b in pair["bradley_terry"]:
        for rating in b["ratings"] or []:
            cols = out.setdefault(rating["model"], {})
            head = f"bt:{b['judge']}:{b['dimension']}"
            cols |= {f"{head}:elo": rating["elo"], f"{head}:elo_ci_low": rating["ci_low"],
                     f"{head}:elo_ci_high": rating["ci_high"]}
    return out


def breakdowns_csv(board: dict[str, Any]) -> str:
    """Long format: judge, by, group, model, dimension, mean, ci_low, ci_high, n_items,
    n_dialogues and ci_reason (why an interval is empty, e.g. one dialogue)."""
    out = io.StringIO()
    cols = ["judge", "by", "group", "model", "dimension", "mean", "ci_low", "ci_high",
            "n_items", "n_dialogues", "ci_reason"]
    writer = csv.DictWriter(out, fieldnames=cols, lineterminator="\n")
    writer.writerow(_safe_row({c: c for c in cols}))
    for judge, fields in board["breakdowns"].items():
        for field, data in fields.items():
            for r in data["rows"]:
                writer.writerow(_safe_row({"judge": judge, "by": field} | r))
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


def report_html(board: dict[str, Any], items: dict[str, Any] | None = None) -> str:
    """``report.html``: one self-contained page (inline CSS, SVG, one script allowed by its
    sha256 in the Content-Security-Policy) and, given ``items``
    (:func:`csc_harness.analysis.items.load_items`), the per-item drill-down."""
    view = leaderboard_view(board)
    return render("report.html.j2", **view, **leaderboard_charts(view), **page_script(),
                  items=items, items_json=None if items is None else script_json(items))


def page_script() -> dict[str, str]:
    """``script`` (report.js: table sorting and the items view) and ``script_hash``, its
    ``sha256-...`` source for the Content-Security-Policy; shared with the simulate report."""
    script = (resources.files("csc_harness") / "templates" / "report.js").read_text("utf-8")
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()
    return {"script": script, "script_hash": f"sha256-{digest}"}


def script_json(data: Any) -> str:
    """JSON safe inside ``<script type="application/json">``: every ``<`` is escaped, so
    no text (a reply holding ``</script>``) can close the block."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace(
        "\u2029", "\\u2029")


def write_leaderboard(board: dict[str, Any], out: str | Path,
                      items: dict[str, Any] | None = None) -> list[Path]:
    """Write leaderboard.md/.csv/.json, breakdowns.csv and report.html into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    texts = {
        "leaderboard.md": leaderboard_markdown(board),
        "leaderboard.csv": leaderboard_csv(board),
        "leaderboard.json": dump_json(board),
        "report.html": report_html(board, items),
        "breakdowns.csv": breakdowns_csv(board),
    }
    written = _write(out, texts.items())
    if board.get("judge_check"):
        written += write_judge_check(board["judge_check"], out)
    return written


def write_judge_check(result: dict[str, Any], out: str | Path) -> list[Path]:
    """``OUT/judge_check.json`` and ``OUT/judge_check.md``; returns their paths."""
    from .analysis.judge_check import JSON_FILE, MARKDOWN_FILE, judge_check_markdown

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return _write(out, [(JSON_FILE, dump_json(result)),
                        (MARKDOWN_FILE, judge_check_markdown(result))])


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
