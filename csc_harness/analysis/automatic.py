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
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import DataError, UserError

log = logging.getLogger(__name__)

TASK = "csconv_reply"
SETTINGS = ("reference", "generated")
METRIC_LABELS = {"bleu2": "B-2", "bleu4": "B-4", "rougeL": "R-L", "bertscore": "BS",
                 "strategy_acc": "ACC", "strategy_f1": "F1"}
TABLE_METRICS = ("bleu2", "bleu4", "rougeL", "bertscore", "strategy_acc")
TOKENIZATION_KEYS = ("bleu", "rougeL", "strategy", "bertscore", "scale")
_DATE = re.compile(r"results_(.+)\.json$")


def sanitize_model_name(name: str) -> str:
    """lm-eval's folder form of a model name (``/`` and similar become ``__``)."""
    return re.sub(r"[\"<>:/|\\?*\[\]]+", "__", name)


def _model_from_results(data: dict[str, Any], path: Path) -> str:
    name = data.get("model_name")
    if isinstance(name, str) and name:
        return name
    args = (data.get("config") or {}).get("model_args")
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
        raise DataError(f"expected a number, got {value!r}", path=str(path), field=name)
    return float(value)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"invalid JSON ({exc})", path=str(path)) from None


def _from_results(path: Path) -> dict[str, Any] | None:
    data = _read_json(path)
    task = (data.get("results") or {}).get(TASK) if isinstance(data, dict) else None
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
    config = ((data.get("configs") or {}).get(TASK) or {})
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
            raise DataError(f"expected {kind.__name__}, got {data.get(name)!r}",
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
            "embedded": data.get("embedded") is True, "order": ("", path.stat().st_mtime)}


def _candidates(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted([*path.rglob("results_*.json"), *path.rglob("metrics.json")])
    raise UserError(f"{str(path)!r} does not exist")


def load_automatic_metrics(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """One record per (model, setting): ``{"model", "setting", "metrics", "source",
    "tokenization", "embedded"}``.

    ``tokenization`` is how the numbers were made, as the result file states it (the task
    metadata of lm-eval results, ``tokenization`` of metrics.json), else None; ``embedded``
    is true when metrics.json says the bundled demo model made the replies. ``metrics`` maps metric names (``bleu2``, ``bleu4``, ``rougeL``, ``bertscore``,
    ``strategy_acc``, ``strategy_f1``, ...) to values as reported. For a (model, setting)
    found more than once the newest file wins. Raises UserError when a path holds no
    metrics at all, DataError for a malformed file.
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
    return [{k: v for k, v in rec.items() if k != "order"}
            for _key, rec in sorted(best.items())]


def match_model(name: str, candidates: Sequence[str]) -> str | None:
    """The candidate naming the same model as ``name``: exact, else equal once sanitized."""
    if name in candidates:
        return name
    wanted = sanitize_model_name(name)
    for cand in candidates:
        if sanitize_model_name(cand) == wanted:
            return cand
    return None
