"""Automatic metrics (BLEU, ROUGE-L, BERTScore, strategy accuracy) from result folders.

Two sources are read:

- lm-eval output folders: ``OUTPUT/<model_name_sanitized>/results_<date>.json``, searched
  recursively. The task ``csconv_reply`` holds keys such as ``"bleu2,none"``; the model
  name is ``results["model_name"]`` or ``model=...`` in ``config.model_args``. These are
  the reference-context setting. When one model has several results files the newest
  (by the date in the file name) wins.
- ``metrics.json`` files of shape ``{"model", "setting": "reference"|"generated",
  "metrics": {name: value}, "tokenization"?: {...}, "embedded"?: bool}``, written by the
  generated-context rollout.

Values are kept as reported (the project's metrics are on a 0-100 scale).

Per-item values, for dialogue-bootstrap intervals (:func:`metric_intervals`), come from
the lm-eval samples file of the same run (``samples_csconv_reply_<date>.jsonl``: the
document with its ``conversation_id``, ``rougeL`` and ``strategy_acc`` per item, BLEU as a
``(reference, reply, language)`` tuple) or from ``candidates.jsonl`` beside a
``metrics.json``, joined with the dataset for the gold turns. They are summed per dialogue
(:class:`MetricItems`): BLEU keeps n-gram counts, because corpus BLEU is computed from
summed counts, never as a mean of per-item scores.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, UserError, brief

log = logging.getLogger(__name__)

TASK = "csconv_reply"
SETTINGS = ("reference", "generated")
METRIC_LABELS = {"bleu2": "B-2", "bleu4": "B-4", "rougeL": "R-L", "bertscore": "BS",
                 "strategy_acc": "ACC", "strategy_f1": "F1"}
TABLE_METRICS = ("bleu2", "bleu4", "rougeL", "bertscore", "strategy_acc")
TOKENIZATION_KEYS = ("bleu", "rougeL", "strategy", "bertscore", "scale")
INTERVAL_METRICS = ("bleu2", "bleu4", "rougeL", "strategy_acc")
"""Metrics that get dialogue-bootstrap intervals (BERTScore and macro F1 do not)."""
_DATE = re.compile(r"results_(.+)\.json$")


def sanitize_model_name(name: str) -> str:
    """lm-eval's folder form of a model name (``/`` and similar become ``__``)."""
    return re.sub(r"[\"<>:/|\\?*\[\]]+", "__", name)


def _model_from_results(data: dict[str, Any], path: Path) -> str:
    name = data.get("model_name")
    if isinstance(name, str) and name:
        return name
    args = _object(data, "config").get("model_args")
    if isinstance(args, dict) and isinstance(args.get("model"), str):
        return args["model"]
    if isinstance(args, str):
        for part in args.split(","):
            key, _, value = part.partition("=")
            if key.strip() in ("model", "pretrained") and value.strip():
                return value.strip()
    # lm-eval names the folder after the sanitized model name: the best guess left.
    return path.parent.name


def _number(value: Any, path: Path, name: str) -> float | None:
    if value is None or value == "N/A":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(f"expected a number, got {brief(value)}", path=str(path), field=name)
    return float(value)


def _read_json(path: Path) -> Any:
    from ..jsonl import read_json

    return read_json(path, what="metrics file", root=None)


def _object(data: dict[str, Any], name: str) -> dict[str, Any]:
    """``data[name]`` when it is an object, else an empty one (a field a file may omit)."""
    value = data.get(name)
    return value if isinstance(value, dict) else {}


def _from_results(path: Path) -> dict[str, Any] | None:
    data = _read_json(path)
    task = _object(data, "results").get(TASK) if isinstance(data, dict) else None
    if not isinstance(task, dict):
        log.warning("%s has no %r task results; skipped", path, TASK)
        return None
    metrics = {}
    for key, value in task.items():
        name, _, _filter = key.partition(",")
        if name.endswith("_stderr") or name == "alias" or not _filter:
            continue
        number = _number(value, path, f"results.{TASK}.{key}")
        if number is not None:
            metrics[name] = number
    match = _DATE.search(path.name)
    config = _object(data, "configs").get(TASK)
    meta = config.get("metadata") if isinstance(config, dict) else None
    tokenization = ({k: v for k, v in meta.items() if k in TOKENIZATION_KEYS}
                    if isinstance(meta, dict) else None)
    return {"model": _model_from_results(data, path), "setting": "reference",
            "metrics": metrics, "source": str(path), "tokenization": tokenization or None,
            "embedded": False,
            "order": (match.group(1) if match else "", path.stat().st_mtime)}


def _from_metrics_file(path: Path) -> dict[str, Any]:
    data = _read_json(path)
    if not isinstance(data, dict):
        raise DataError("expected a JSON object", path=str(path))
    for name, kind in (("model", str), ("setting", str), ("metrics", dict)):
        if not isinstance(data.get(name), kind):
            raise DataError(f"expected {kind.__name__}, got {brief(data.get(name))}",
                            path=str(path), field=name)
    if data["setting"] not in SETTINGS:
        raise DataError(f"{data['setting']!r} is not one of {', '.join(SETTINGS)}",
                        path=str(path), field="setting")
    metrics = {}
    for name, value in data["metrics"].items():
        number = _number(value, path, f"metrics.{name}")
        if number is not None:
            metrics[name] = number
    tokenization = data.get("tokenization")
    return {"model": data["model"], "setting": data["setting"], "metrics": metrics,
            "source": str(path),
            "tokenization": tokenization if isinstance(tokenization, dict) else None,
            "embedded": data.get("embedded") is True, "order": ("", path.stat().st_mtime),
            "_data": (data.get("generation") or {}).get("data")
            if isinstance(data.get("generation"), dict) else None}


def _candidates(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted([*path.rglob("results_*.json"), *path.rglob("metrics.json")])
    raise UserError(f"{str(path)!r} does not exist")


def load_automatic_metrics(paths: Sequence[str | Path], *,
                           data: str | None = None) -> list[dict[str, Any]]:
    """One record per (model, setting): ``{"model", "setting", "metrics", "source",
    "tokenization", "embedded"}``, plus ``"per_item"`` when a per-item file sits beside
    the source (see the module docstring): a :class:`MetricItems`, or a string saying why
    its values cannot be used.

    ``tokenization`` is how the numbers were made, as the result file states it (the task
    metadata of lm-eval results, ``tokenization`` of metrics.json), else None; ``embedded``
    is true when metrics.json says the bundled demo model made the replies. ``metrics`` maps
    metric names (``bleu2``, ``bleu4``, ``rougeL``, ``bertscore``, ``strategy_acc``,
    ``strategy_f1``, ...) to values as reported. For a (model, setting) found more than
    once the newest file wins. ``data`` is the dataset spec candidates.jsonl rows are
    joined with (default: the one metrics.json records, else ``$CSCONV_DATA`` / the
    sample). Raises UserError when a path holds no metrics at all, DataError for a
    malformed file.
    """
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for raw in paths:
        found = 0
        for path in _candidates(Path(raw)):
            record = (_from_metrics_file(path) if path.name == "metrics.json"
                      else _from_results(path))
            if record is None:
                continue
            found += 1
            key = (record["model"], record["setting"])
            if key not in best or record["order"] > best[key]["order"]:
                best[key] = record
        if not found:
            raise UserError(f"no lm-eval results (results_*.json with a {TASK!r} task) or "
                            f"metrics.json in {str(raw)!r}")
    out = []
    for _key, rec in sorted(best.items()):
        per_item = _per_item(rec, data)
        rec = {k: v for k, v in rec.items() if k != "order" and not k.startswith("_")}
        out.append(rec if per_item is None else rec | {"per_item": per_item})
    return out


# --------------------------------------------------------------------------- per item


@dataclass(frozen=True)
class MetricItems:
    """One (model, setting)'s per-item metric values summed per dialogue.

    ``bleu[g]`` holds dialogue g's summed :data:`csc_harness.metrics.BLEU_FIELDS` counts;
    ``sums[name][g]`` the sum of its items' values (0-100) for the mean-type metrics
    (``rougeL``, ``strategy_acc``); ``counts[g]`` its number of items. ``item_ids``,
    ``item_bleu`` (one row of counts per item) and ``item_values`` keep each item's own
    values for the report's items view (an id is None when the file names none).
    """

    source: str
    dialogues: tuple[str, ...]
    counts: np.ndarray
    bleu: np.ndarray
    sums: dict[str, np.ndarray]
    item_ids: tuple[str | None, ...] = ()
    item_bleu: np.ndarray | None = None
    item_values: dict[str, np.ndarray] | None = None

    @property
    def n_items(self) -> int:
        return int(self.counts.sum())


def _per_item(rec: dict[str, Any], data: str | None) -> MetricItems | str | None:
    source = Path(rec["source"])
    if source.name == "metrics.json":
        path = source.parent / "candidates.jsonl"
        if not path.is_file():
            return None
        return _from_candidates(path, rec["setting"], data or rec.get("_data"))
    path = source.parent / f"samples_{TASK}_{rec['order'][0]}.jsonl"
    return _from_samples(path) if rec["order"][0] and path.is_file() else None


def _text(value: Any, path: Path, line: int, name: str) -> str:
    if not isinstance(value, str):
        raise DataError(f"expected a string, got {brief(value)}", path=str(path), line=line,
                        field=name)
    return value


def _from_samples(path: Path) -> MetricItems:
    """Per-item rows of an lm-eval samples file (see the module docstring)."""
    from ..jsonl import read_jsonl

    rows = []
    for line, row in read_jsonl(path):
        doc = row.get("doc")
        if not isinstance(doc, dict):
            raise DataError("expected the document object", path=str(path), line=line,
                            field="doc")
        bleu = row.get("bleu2")
        if not isinstance(bleu, list) or len(bleu) != 3:
            raise DataError(f"expected [reference, reply, language], got {brief(bleu)}",
                            path=str(path), line=line, field="bleu2")
        ref, reply, lang = (_text(v, path, line, "bleu2") for v in bleu)
        values = {name: _number(row.get(name), path, name) for name in ("rougeL",
                                                                         "strategy_acc")}
        item = doc.get("item_id")
        rows.append((_text(doc.get("conversation_id"), path, line, "doc.conversation_id"),
                     ref, reply, lang, values, item if isinstance(item, str) else None))
    return _sum_by_dialogue(rows, str(path))


@lru_cache(maxsize=4)
def _examples(spec: str | None) -> dict[str, Any]:
    from ..data import load_examples

    return {ex.item_id: ex for ex in load_examples(spec)}


def _from_candidates(path: Path, setting: str, spec: str | None) -> MetricItems | str:
    """Per-item rows of a generate folder's candidates.jsonl, joined with the dataset."""
    from ..jsonl import read_jsonl
    from ..metrics import rouge_l

    examples = _examples(spec)
    rows, missing = [], 0
    for line, row in read_jsonl(path):
        item = _text(row.get("item_id"), path, line, "item_id")
        ex = examples.get(item)
        if ex is None:
            missing += 1
            continue
        reply = _text(row.get("reply"), path, line, "reply")
        acc = 100.0 if row.get("predicted_strategy") == ex.strategy else 0.0
        rows.append((ex.conversation_id, ex.reply, reply, ex.language,
                     {"rougeL": 100.0 * rouge_l(ex.reply, reply, ex.language),
                      "strategy_acc": acc}, item))
    if missing:
        return (f"{missing} items of {str(path)!r} are not in the data "
                f"({spec or 'default data'}); pass the data it was generated from")
    return _sum_by_dialogue(rows, str(path))


def _sum_by_dialogue(rows: list[tuple[str, str, str, str, dict[str, float | None],
                                      str | None]], source: str) -> MetricItems:
    from ..metrics import bleu_statistics

    ids, group = np.unique([r[0] for r in rows], return_inverse=True)
    n = len(ids)
    counts = np.bincount(group, minlength=n).astype(float)
    stats = np.asarray(bleu_statistics([r[1] for r in rows], [r[2] for r in rows],
                                       [r[3] for r in rows]), dtype=float).reshape(-1, 10)
    bleu = np.zeros((n, 10))
    np.add.at(bleu, group, stats)
    sums, values = {}, {}
    for name in ("rougeL", "strategy_acc"):
        column = [r[4].get(name) for r in rows]
        values[name] = np.asarray([np.nan if v is None else v for v in column], float)
        if rows and all(v is not None for v in column):
            sums[name] = np.bincount(group, weights=values[name], minlength=n)
    return MetricItems(source, tuple(str(i) for i in ids), counts, bleu, sums,
                       tuple(r[5] for r in rows), stats, values)


def metric_intervals(items: MetricItems, reported: dict[str, float], *, rounds: int,
                     seed: int, confidence: float) -> dict[str, dict[str, Any]]:
    """Dialogue-bootstrap intervals of the reported metrics that have per-item values.

    ``{name: {"value", "ci_low", "ci_high", "n_items", "n_dialogues"}}`` for the names of
    :data:`INTERVAL_METRICS` in ``reported``; ``value`` is the reported number. Each round
    redraws dialogues (seeded by ``seed``; the same draws for every model on the same
    dialogues) and recomputes the statistic: BLEU from the resample's summed n-gram
    counts, the others as the resample's item mean. A null interval carries
    ``ci_reason``: one dialogue, or per-item values that do not reproduce the reported
    value (files of different runs).
    """
    from ..metrics import bleu_from_statistics
    from .stats import count_blocks, estimate

    names = [n for n in INTERVAL_METRICS if n in reported]
    total = items.bleu.sum(axis=0)
    point = {**bleu_from_statistics(total),
             **{n: float(v.sum() / items.counts.sum()) for n, v in items.sums.items()}}
    reps = {n: np.full(rounds, np.nan) for n in names}
    row = 0
    for block in count_blocks(len(items.dialogues), rounds, np.random.default_rng([seed, 2])):
        size = len(block)
        if "bleu2" in reps or "bleu4" in reps:
            for i, stats in enumerate(block @ items.bleu):
                for n, v in bleu_from_statistics(stats).items():
                    if n in reps:
                        reps[n][row + i] = v
        den = block @ items.counts
        for n, sums in items.sums.items():
            if n in reps:
                reps[n][row:row + size] = (block @ sums) / den
        row += size
    base = {"n_items": items.n_items, "n_dialogues": len(items.dialogues)}
    out = {}
    for n in names:
        value = float(reported[n])
        if n not in point:
            out[n] = base | {"value": value, "ci_low": None, "ci_high": None,
                             "ci_reason": f"no per-item {n} in {items.source!r}"}
            continue
        if abs(point[n] - value) > 1e-6 * max(1.0, abs(value)):
            out[n] = base | {"value": value, "ci_low": None, "ci_high": None,
                             "ci_reason": f"per-item values in {items.source!r} give "
                             f"{point[n]:.4f}, not the reported {value:.4f}: not the same run"}
            continue
        est = estimate(value, None, reps[n], confidence, n_clusters=len(items.dialogues))
        out[n] = base | {"value": value, "ci_low": est.ci_low, "ci_high": est.ci_high}
        if est.ci_reason:
            out[n]["ci_reason"] = est.ci_reason
    return out


def match_model(name: str, candidates: Sequence[str]) -> str | None:
    """The candidate naming the same model as ``name``: exact, else equal once sanitized."""
    if name in candidates:
        return name
    wanted = sanitize_model_name(name)
    for cand in candidates:
        if sanitize_model_name(cand) == wanted:
            return cand
    return None


def with_intervals(records: Sequence[dict[str, Any]], *, rounds: int, seed: int,
                   confidence: float) -> list[dict[str, Any]]:
    """The records, each with ``intervals`` (``{metric: {...}}`` of :func:`metric_intervals`,
    or entries with a null interval and ``ci_reason`` when there are no usable per-item
    values); records that already have ``intervals`` are kept as they are."""
    out = []
    for rec in records:
        if "intervals" in rec:
            out.append(dict(rec))
            continue
        per_item = rec.get("per_item")
        if isinstance(per_item, MetricItems):
            intervals = metric_intervals(per_item, rec["metrics"], rounds=rounds, seed=seed,
                                         confidence=confidence)
        else:
            why = per_item if isinstance(per_item, str) else (
                f"no per-item values beside {rec.get('source')!r} (lm-eval samples file or "
                "candidates.jsonl)")
            intervals = {n: {"value": float(rec["metrics"][n]), "ci_low": None,
                             "ci_high": None, "ci_reason": why}
                         for n in INTERVAL_METRICS if n in rec["metrics"]}
        out.append(dict(rec) | {"intervals": intervals})
    return out
