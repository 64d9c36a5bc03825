"""Judge-prompt ablations, driver side: judge the same replies under every cell of a grid
of judge settings, then compare the cells (statistics: :mod:`csc_harness.analysis`).

The config is YAML (``examples/ablation.yaml`` documents it); an unknown key is an error
listing the valid ones; relative paths resolve against the file's folder. Output (OUT is
``--out``)::

    OUT/cells/<folder>/judgments.jsonl, run.json   one resumable judge run per cell
    OUT/cells.json                                  the settings each cell folder holds
    OUT/ablation.json, ablation.md, ablation.svg    compare_variants + write_ablation

Cell labels: a judgment row's ``variant`` names the prompt variant (``default``,
``scale10``, ``default+score_only``), so cells that differ only in mode, reference use or
judge would share it. Each cell therefore writes to its own folder, and the rows are
relabelled when loaded for the analysis: ``variant`` becomes the cell name (e.g.
``template=scale10,mode=joint``); the files on disk keep the runner's value. Folders are
read one at a time because ``load_judgments`` keeps only the last of rows sharing an
identity, and two cells (say temperature 0 vs 1) can write rows with equal identities.

Every cell goes through one :class:`~csc_harness.llm.Client`, so one cache: re-running a
finished ablation makes no provider call.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn, get_args

from .errors import CacheMiss, DataError, ProviderError, UserError
from .judge import (
    JUDGMENTS_FILE,
    JudgeConfig,
    JudgmentStore,
    estimate_judgments,
    load_candidates,
    load_rubrics,
    run_judgments,
    select_templates,
)
from .judge.config import JudgeMode
from .judge.rubrics import VerdictFormat
from .llm import CacheMode, StructuredMode

if TYPE_CHECKING:
    import pandas as pd

    from .judge import Candidate, Estimate
    from .llm import Client

__all__ = ["AXES", "AblationConfig", "Cell", "CellRun", "analyse_ablation", "cell_folder",
           "cell_name", "estimate_ablation", "expand_grid", "load_ablation", "load_cell_rows",
           "record_settings", "run_ablation"]

Axis = Literal["template", "mode", "reference_guided", "verdict", "judge"]
AXES: tuple[Axis, ...] = get_args(Axis)
_FIELD = {"template": "variant", "mode": "mode", "reference_guided": "reference_guided",
          "verdict": "verdict", "judge": "judges"}
JUDGE_KEYS = ("dimensions", "samples", "temperature", "max_tokens", "logprobs", "api_base",
              "prompts")
CLIENT_KEYS = ("concurrency", "rpm", "timeout", "max_tries", "structured", "cache",
               "cache_mode")
ANALYSIS_KEYS = ("rounds", "seed", "confidence", "score")
TOP_KEYS = ("candidates", "data", "human", "judges", "baseline", "grid", "variants",
            "max_cost", "analysis", *JUDGE_KEYS, *CLIENT_KEYS)
CELLS_DIR, MANIFEST, RUN_FILE = "cells", "cells.json", "run.json"
# Value kinds of the scalar keys: (checker, argument).
_KINDS: dict[str, tuple[str, Any]] = {
    **dict.fromkeys(("human", "cache", "prompts", "data"), ("path", None)),
    **dict.fromkeys(("api_base", "baseline"), ("text", None)),
    **dict.fromkeys(("judges", "dimensions"), ("texts", None)), "candidates": ("paths", None),
    **dict.fromkeys(("samples", "max_tokens", "logprobs", "concurrency", "max_tries",
                     "rounds"), ("whole", 1)), "seed": ("whole", 0),
    **dict.fromkeys(("temperature", "max_cost"), ("number", 0.0)),
    **dict.fromkeys(("rpm", "timeout"), ("positive", None)), "confidence": ("fraction", None),
    "structured": ("choice", get_args(StructuredMode)),
    "cache_mode": ("choice", get_args(CacheMode)), "score": ("choice", ("score", "weighted_score")),
}


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class Cell:
    """One point of the grid: the judge settings it changes from the shared ones."""

    name: str
    """Stable, readable label (``template=scale10,mode=joint``): its rows' variant."""
    settings: Mapping[Axis, Any]
    """Axis values of this cell; an absent axis keeps the judge's default."""

    @property
    def folder(self) -> str:
        return cell_folder(self.name)


@dataclass(frozen=True)
class AblationConfig:
    """One ablation: the replies to judge, the cells to compare, the settings they share."""

    path: Path
    """The config file; relative paths in it resolve against its folder."""
    candidates: tuple[Path, ...]
    """lm-eval output folders and/or candidate JSONL files, judged by every cell."""
    cells: tuple[Cell, ...]
    """Cells in run order."""
    baseline: str
    """Name of the cell every other is compared with (default: the first)."""
    judges: tuple[str, ...] = ()
    """Judge model(s) of the cells that set no ``judge``."""
    data: str | None = None
    """Dataset spec for JSONL candidates (file or ``hf:<id>``); None = the default."""
    human: Path | None = None
    """Human ratings (long format); None = no correlation with humans."""
    judging: Mapping[str, Any] = field(default_factory=dict)
    """JudgeConfig options every cell shares (dimensions, samples, max_tokens, ...)."""
    client: Mapping[str, Any] = field(default_factory=dict)
    """Client options (concurrency, rpm, timeout, max_tries, structured, cache)."""
    max_cost: float | None = None
    """USD budget of the whole ablation (spend recorded in all cell folders)."""
    analysis: Mapping[str, Any] = field(default_factory=dict)
    """compare_variants options: rounds, seed, confidence, score."""

    def judge_config(self, cell: Cell, *, max_cost: float | None = None) -> JudgeConfig:
        """The judge run of ``cell``: shared settings overridden by the cell's axes."""
        options: dict[str, Any] = {**self.judging, "judges": self.judges, "max_cost": max_cost}
        options.update({_FIELD[axis]: value for axis, value in cell.settings.items()})
        try:
            return JudgeConfig.from_dict(options)
        except UserError as exc:
            raise UserError(f"{self.path}: cell {cell.name!r}: {exc}") from None

    def make_client(self) -> Client:
        """The one Client (and cache) every cell goes through."""
        from .llm import Client

        options = dict(self.client)
        if "cache" in options:
            options["cache_path"] = options.pop("cache")
        return Client(**options)


class _Reader:
    """Checks the values of one config file; every error names the file and the key."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, key: str, message: str) -> NoReturn:
        raise DataError(message, path=str(self.path), field=key)

    def mapping(self, raw: Any, valid: Sequence[str], key: str) -> dict[str, Any]:
        if not isinstance(raw, dict):
            self.fail(key, f"expected a mapping with keys among {', '.join(valid)}")
        for name in raw:
            if name not in valid:
                where = f"{key}.{name}" if key else str(name)
                self.fail(where, f"unknown key; valid keys: {', '.join(valid)}")
        return raw

    def value(self, key: str, v: Any) -> Any:
        """A top-level or ``analysis`` value, checked by its kind in :data:`_KINDS`."""
        kind, arg = _KINDS[key.rsplit(".", 1)[-1]]
        if kind == "text":
            return self.text(key, v)
        if kind == "path":  # "data" may also be a hub id or the bundled sample
            spec = self.text(key, v)
            return spec if spec.startswith(("hf:", "bundled:")) else self.resolve(spec)
        if kind in ("texts", "paths"):
            items = [v] if isinstance(v, str) else v
            if not isinstance(items, list) or not items:
                self.fail(key, f"expected a string or a non-empty list of strings, got {v!r}")
            texts = tuple(self.text(f"{key}[{i}]", x) for i, x in enumerate(items))
            return tuple(Path(self.resolve(t)) for t in texts) if kind == "paths" else texts
        if kind == "choice":
            return self.choice(key, v, arg)
        return self._number(key, v, kind, arg)

    def resolve(self, spec: str) -> str:
        return str((self.path.parent / Path(spec).expanduser()).resolve())

    def text(self, key: str, v: Any) -> str:
        if not isinstance(v, str) or not v.strip():
            self.fail(key, f"expected a non-empty string, got {v!r}")
        return v.strip()

    def choice(self, key: str, v: Any, allowed: tuple[str, ...]) -> str:
        if v not in allowed:
            self.fail(key, f"{v!r} is not one of {', '.join(allowed)}")
        return v

    def _number(self, key: str, v: Any, kind: str, low: Any) -> int | float:
        if kind == "whole":
            if type(v) is not int or v < low:
                self.fail(key, f"expected a whole number >= {low}, got {v!r}")
            return v
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            self.fail(key, f"expected a number, got {v!r}")
        if ((kind == "number" and v < low) or (kind == "positive" and v <= 0)
                or (kind == "fraction" and not 0 < v < 1)):
            bound = {"number": f">= {low}", "positive": "> 0", "fraction": "between 0 and 1"}
            self.fail(key, f"expected a number {bound[kind]}, got {v!r}")
        return float(v)

    def axis(self, key: str, axis: Axis, v: Any) -> Any:
        """One axis value; a ``judge`` list is a panel (several judges in one cell)."""
        if axis in ("mode", "verdict"):
            return self.choice(key, v, get_args(JudgeMode if axis == "mode" else VerdictFormat))
        if axis == "reference_guided":
            if not isinstance(v, bool):
                self.fail(key, f"expected true or false, got {v!r}")
            return v
        if axis == "judge" and isinstance(v, list):
            if not v:
                self.fail(key, "expected a judge model or a non-empty list of them (a panel)")
            return tuple(self.text(f"{key}[{i}]", x) for i, x in enumerate(v))
        return self.text(key, v)


def expand_grid(axes: Mapping[Axis, Sequence[Any]]) -> list[dict[Axis, Any]]:
    """Every combination of the axes' values. Axes go in :data:`AXES` order whatever the
    file's key order, so a cell's name and the first (default baseline) cell are stable."""
    names = [a for a in AXES if a in axes]
    return [dict(zip(names, combo, strict=True))
            for combo in itertools.product(*(axes[a] for a in names))]


def cell_name(settings: Mapping[Axis, Any]) -> str:
    """``axis=value`` pairs in :data:`AXES` order (``default`` when the cell sets none)."""
    def show(v: Any) -> str:
        return str(v).lower() if isinstance(v, bool) else "+".join(v) if isinstance(
            v, tuple) else str(v)
    return ",".join(f"{a}={show(settings[a])}" for a in AXES if a in settings) or "default"


def cell_folder(name: str) -> str:
    """A file-system-safe folder name for a cell (judge names hold ``/``)."""
    slug = re.sub(r"[^A-Za-z0-9._=,+-]", "_", name).lstrip(".") or "cell"
    if len(slug) > 100:  # stays well under file-name limits; the hash keeps it unique
        slug = f"{slug[:89]}-{hashlib.sha256(name.encode()).hexdigest()[:10]}"
    return slug


def load_ablation(path: str | os.PathLike[str]) -> AblationConfig:
    """Read and check an ablation config; every cell's judge settings and templates are
    checked too, so a bad cell fails before any cell spends money."""
    path = Path(path)
    reader = _Reader(path)
    raw = reader.mapping(_read_yaml(path), TOP_KEYS, "")
    values = {k: reader.value(k, v) for k, v in raw.items() if k in _KINDS}
    analysis = reader.mapping(raw.get("analysis", {}), ANALYSIS_KEYS, "analysis")
    if "candidates" not in values:
        reader.fail("candidates", "required: lm-eval output folders or candidate JSONL files")
    cells = _cells(reader, raw, "judges" in values)
    baseline = values.get("baseline", cells[0].name)
    if baseline not in [c.name for c in cells]:
        reader.fail("baseline", f"{baseline!r} is not a cell; cells: "
                    f"{', '.join(c.name for c in cells)}")
    config = AblationConfig(
        path=path, candidates=values["candidates"], cells=tuple(cells), baseline=baseline,
        judges=values.get("judges", ()), data=values.get("data"),
        human=Path(values["human"]) if "human" in values else None,
        judging={k: values[k] for k in JUDGE_KEYS if k in values},
        client={k: values[k] for k in CLIENT_KEYS if k in values},
        max_cost=values.get("max_cost"),
        analysis={k: reader.value(f"analysis.{k}", v) for k, v in analysis.items()})
    rubrics = load_rubrics(config.judging.get("prompts"))
    for cell in cells:
        judge = config.judge_config(cell)
        try:
            select_templates(rubrics, variant=judge.variant, mode=judge.mode,
                             dimensions=judge.dimensions)
        except UserError as exc:
            raise UserError(f"{path}: cell {cell.name!r}: {exc}") from None
    return config


def _read_yaml(path: Path) -> Any:
    import yaml

    if not path.is_file():
        raise UserError(f"ablation config {str(path)!r} does not exist")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise DataError(f"not valid YAML ({getattr(exc, 'problem', None) or exc})",
                        path=str(path), line=mark.line + 1 if mark else None) from None
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text ({exc.reason})", path=str(path)) from None


def _cells(reader: _Reader, raw: dict[str, Any], judges_given: bool) -> list[Cell]:
    if ("grid" in raw) == ("variants" in raw):
        reader.fail("grid", "give exactly one of 'grid' (axes whose every combination is a "
                    "cell) or 'variants' (a list of cells)")
    if "grid" in raw:
        grid = reader.mapping(raw["grid"], AXES, "grid")
        if not grid:
            reader.fail("grid", f"no axes: give at least one of {', '.join(AXES)}")
        if "judge" in grid and judges_given:
            reader.fail("judges", "unused: grid.judge sets every cell's judge; remove one")
        axes = {a: _axis_values(reader, a, grid[a]) for a in AXES if a in grid}
        cells = [Cell(cell_name(s), s) for s in expand_grid(axes)]
    else:
        cells = _variant_cells(reader, raw["variants"])
    if not judges_given and any("judge" not in c.settings for c in cells):
        reader.fail("judges", "required unless every cell sets 'judge': give judge model(s) "
                    "in litellm form, e.g. [openai/gpt-4o-mini]")
    seen: dict[str, str] = {}
    for cell in cells:
        if cell.folder in seen:
            reader.fail("grid" if "grid" in raw else "variants",
                        f"cells {seen[cell.folder]!r} and {cell.name!r} share a name or folder")
        seen[cell.folder] = cell.name
    return cells


def _axis_values(reader: _Reader, axis: Axis, values: Any) -> list[Any]:
    key = f"grid.{axis}"
    if not isinstance(values, list) or not values:
        reader.fail(key, f"expected a non-empty list of values, got {values!r}")
    parsed = [reader.axis(f"{key}[{i}]", axis, v) for i, v in enumerate(values)]
    if len(set(parsed)) < len(parsed):
        reader.fail(key, "a value repeats")
    return parsed


def _variant_cells(reader: _Reader, raw: Any) -> list[Cell]:
    if not isinstance(raw, list) or not raw:
        reader.fail("variants", "expected a non-empty list of cells, e.g. "
                    "[{name: joint, mode: joint}]")
    cells = []
    for i, item in enumerate(raw):
        key = f"variants[{i}]"
        entry = reader.mapping(item, ("name", *AXES), key)
        settings = {a: reader.axis(f"{key}.{a}", a, entry[a]) for a in AXES if a in entry}
        name = reader.text(f"{key}.name", entry["name"]) if "name" in entry else cell_name(
            settings)
        cells.append(Cell(name, settings))
    return cells


# --------------------------------------------------------------------------- running


@dataclass
class CellRun:
    """What judging one cell did; ``exit_code`` follows ``csc-harness judge`` (0 complete,
    1 provider errors, 2 replay-mode cache miss, 3 budget)."""

    cell: Cell
    out_dir: Path
    judgments: int = 0  # rows of the cell's plan in its folder, old and new
    statuses: Counter[str] = field(default_factory=Counter)
    calls: int = 0  # provider calls this session (cache hits excluded)
    tokens: int = 0  # prompt + completion tokens over the cell's rows
    new_cost_usd: float = 0.0  # spend of this session (known prices)
    cost_usd: float = 0.0  # spend recorded in the folder (known prices)
    exit_code: int = 0
    message: str | None = None
    """Why the cell stopped, naming it and its folder; None when it completed."""

    def line(self) -> str:
        statuses = ", ".join(f"{n} {s}" for s, n in self.statuses.items() if n) or "no rows"
        return (f"{self.cell.name}: {self.judgments} judgments ({statuses}) · {self.calls} "
                f"provider calls · {self.tokens:,} tokens · ${self.new_cost_usd:.4f} spent now")


def _silent(line: str) -> None:
    """Default ``echo``: library callers decide whether to print."""


async def run_ablation(config: AblationConfig, out_dir: str | os.PathLike[str], *,
                       client: Client, progress: bool | None = None,
                       echo: Callable[[str], None] = _silent) -> list[CellRun]:
    """Judge every cell in turn into ``OUT/cells/<folder>``, through ``client``.

    Stops at the first cell that does not complete (a provider failure would most likely
    repeat, and the analysis needs every cell): that cell's :class:`CellRun` comes last with
    a non-zero ``exit_code`` and a ``message``. ``echo`` receives one line before and one
    summary line after each cell; ``progress`` is the runner's bar (None: on a terminal).
    """
    out = Path(out_dir)
    candidates = load_candidates([str(p) for p in config.candidates], data=config.data)
    record_settings(config, out)
    spent = _recorded_spend(config, out) if config.max_cost is not None else {}
    runs: list[CellRun] = []
    for i, cell in enumerate(config.cells, 1):
        echo(f"[{i}/{len(config.cells)}] {cell.name} -> {out / CELLS_DIR / cell.folder}")
        budget = (None if config.max_cost is None else
                  max(0.0, config.max_cost - sum(v for k, v in spent.items() if k != cell.name)))
        run = await _run_cell(config, cell, candidates, out, client=client,
                              progress=progress, budget=budget)
        spent[cell.name] = run.cost_usd
        echo(f"[{i}/{len(config.cells)}] {run.line()}")
        runs.append(run)
        if run.exit_code:
            break
    return runs


async def _run_cell(config: AblationConfig, cell: Cell, candidates: Sequence[Candidate],
                    out: Path, *, client: Client, progress: bool | None,
                    budget: float | None) -> CellRun:
    run = CellRun(cell, out / CELLS_DIR / cell.folder)
    calls, cost = client.stats.calls, client.stats.cost_usd
    try:
        result = await run_judgments(config.judge_config(cell, max_cost=budget), candidates,
                                     run.out_dir, client=client, progress=progress)
        run.exit_code, reason = result.exit_code, result.message
        if result.exit_code and not reason:
            reason = f"{result.remaining} judgment(s) not done"
    except (CacheMiss, ProviderError) as exc:
        run.exit_code, reason = (2 if isinstance(exc, CacheMiss) else 1), str(exc)
    except UserError as exc:
        raise UserError(f"cell {cell.name!r}: {exc}") from None
    if run.exit_code:
        budget_note = " (the ablation's budget is max_cost in its config)" if (
            run.exit_code == 3) else ""
        run.message = f"cell {cell.name!r} stopped, rows so far in {run.out_dir}: {reason}" + (
            budget_note)
    run.calls, run.new_cost_usd = client.stats.calls - calls, client.stats.cost_usd - cost
    totals = json.loads((run.out_dir / RUN_FILE).read_text(encoding="utf-8"))["totals"]
    for dims in totals["statuses"].values():
        for counts in dims.values():
            run.statuses.update(counts)
    run.judgments, run.cost_usd = totals["judgments"], totals["cost_usd"]
    run.tokens = totals["prompt_tokens"] + totals["completion_tokens"]
    return run


def _recorded_spend(config: AblationConfig, out: Path) -> dict[str, float]:
    """Spend already recorded in each cell folder: the budget covers the whole ablation."""
    return {c.name: JudgmentStore(out / CELLS_DIR / c.folder, read_only=True).spent_usd_before
            for c in config.cells}


def _settings(config: AblationConfig, cell: Cell) -> dict[str, Any]:
    settings = config.judge_config(cell).as_dict()
    # api_base and max_cost change no verdict; sampling_temperature is the effective temperature
    for free in ("api_base", "max_cost", "temperature"):
        settings.pop(free)
    return {"name": cell.name, **settings, "data": config.data,
            "candidates": [str(p) for p in config.candidates]}


def record_settings(config: AblationConfig, out: Path, *, write: bool = True) -> None:
    """Refuse a cell folder that holds rows judged with other settings, then record the
    current ones in ``OUT/cells.json`` (unless ``write`` is false: the dry run).

    Why: the runner skips a reply it already has a row for, and a row's identity leaves out
    temperature, max_tokens, logprobs and which candidate files were given, so a changed
    setting would otherwise silently keep the old verdicts.
    """
    path = out / MANIFEST
    try:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"] if path.is_file() else {}
    except (ValueError, KeyError) as exc:
        raise DataError(f"not an ablation settings file ({exc}); delete it",
                        path=str(path)) from None
    for cell in config.cells:
        now, before = _settings(config, cell), cells.get(cell.folder)
        judged = (out / CELLS_DIR / cell.folder / JUDGMENTS_FILE).is_file()
        if before is not None and before != now and judged:
            changed = sorted(k for k in {*before, *now} if before.get(k) != now.get(k))
            raise UserError(f"{path}: cell {cell.name!r} was judged with other settings "
                            f"({', '.join(changed)} changed) and would keep its old verdicts: "
                            f"use a new --out, or delete {out / CELLS_DIR / cell.folder} to "
                            "judge it again (cached answers are reused)")
        cells[cell.folder] = now
    if not write:
        return
    out.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{MANIFEST}.tmp")
    tmp.write_text(json.dumps({"config": str(config.path), "cells": cells}, indent=2,
                              ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def estimate_ablation(config: AblationConfig, out_dir: str | os.PathLike[str], *,
                      client: Client) -> list[tuple[Cell, Estimate]]:
    """Per cell, the calls, tokens and cost a run would take; calls nothing, writes nothing.

    Answers another cell would put in the cache first are counted for both cells.
    """
    candidates = load_candidates([str(p) for p in config.candidates], data=config.data)
    record_settings(config, Path(out_dir), write=False)
    return [(cell, estimate_judgments(config.judge_config(cell), candidates,
                                      Path(out_dir) / CELLS_DIR / cell.folder, client=client))
            for cell in config.cells]


# --------------------------------------------------------------------------- analysis


def load_cell_rows(cells: Sequence[Cell], out_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """Absolute judgment rows of every cell, ``variant`` replaced by the cell name.

    Rows from an earlier version of a template (a prompt_id the cell's last run did not
    use) are left out: an edited template is judged again into the same folder.
    """
    import pandas as pd

    from .analysis import load_judgments

    frames = []
    for cell in cells:
        folder = Path(out_dir) / CELLS_DIR / cell.folder
        rows = load_judgments([folder]).absolute
        run = folder / RUN_FILE
        if run.is_file():
            prompts = json.loads(run.read_text(encoding="utf-8")).get("prompts", {})
            rows = rows[rows["prompt_id"].isin([p["prompt_id"] for p in prompts.values()])]
        frames.append(rows.assign(variant=cell.name))
    merged = pd.concat(frames, ignore_index=True)
    for name in frames[0].select_dtypes("category").columns.union(["variant"]):
        merged[name] = merged[name].astype("category")
    return merged


def analyse_ablation(config: AblationConfig,
                     out_dir: str | os.PathLike[str]) -> tuple[dict[str, Any], list[Path]]:
    """Compare the cells (:func:`~csc_harness.analysis.compare_variants`) and write
    ``ablation.json``, ``ablation.md`` and ``ablation.svg`` into ``out_dir``.

    The result gains a ``cells`` list (name, folder, axis settings) for provenance.
    """
    from .analysis import compare_variants, load_human_ratings
    from .report import write_ablation

    rows = load_cell_rows(config.cells, out_dir)
    human = load_human_ratings(config.human) if config.human is not None else None
    result = compare_variants(rows, human, baseline=config.baseline, **config.analysis)
    result["cells"] = [{"name": c.name, "folder": f"{CELLS_DIR}/{c.folder}",
                        "settings": {a: list(v) if isinstance(v, tuple) else v
                                     for a, v in c.settings.items()}} for c in config.cells]
    return result, write_ablation(result, Path(out_dir))
