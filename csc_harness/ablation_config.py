"""Judge-prompt ablations, config side: read and check the YAML grid into cells.

``examples/ablation.yaml`` documents the format; an unknown key is an error listing the
valid ones; relative paths resolve against the file's folder. The driver that judges the
cells and compares them is :mod:`csc_harness.ablate`.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn, get_args

from .analysis.stats import MAX_ROUNDS
from .errors import DataError, UserError, brief
from .judge import JudgeConfig, load_rubrics, select_templates
from .judge.config import JudgeMode
from .judge.rubrics import VerdictFormat
from .llm import CacheMode, StructuredMode

if TYPE_CHECKING:
    from .llm import Client

__all__ = ["AXES", "AblationConfig", "Axis", "Cell", "cell_folder", "cell_name", "expand_grid",
           "load_ablation"]

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
            "max_cost", "analysis", "controls", "control_dialogues", *JUDGE_KEYS,
            *CLIENT_KEYS)
CONTROL_DIALOGUES = 10
"""Default ``control_dialogues``: ~100 turns with control replies per cell."""
# Value kinds of the scalar keys: (checker, argument).
_KINDS: dict[str, tuple[str, Any]] = {
    **dict.fromkeys(("human", "cache", "prompts", "data"), ("path", None)),
    **dict.fromkeys(("api_base", "baseline"), ("text", None)),
    **dict.fromkeys(("judges", "dimensions"), ("texts", None)), "candidates": ("paths", None),
    **dict.fromkeys(("samples", "max_tokens", "logprobs", "concurrency", "max_tries",
                     "rounds", "control_dialogues"), ("whole", 1)), "seed": ("whole", 0),
    "controls": ("texts", None),
    **dict.fromkeys(("temperature", "max_cost"), ("number", 0.0)),
    **dict.fromkeys(("rpm", "timeout"), ("positive", None)), "confidence": ("fraction", None),
    "structured": ("choice", get_args(StructuredMode)),
    "cache_mode": ("choice", get_args(CacheMode)), "score": ("choice", ("score", "weighted_score")),
}


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
    controls: tuple[str, ...] = ("gold", "mismatch", "padded")
    """Control replies every cell also judges (gold first; empty: none), so each cell's
    discrimination can be measured (:mod:`csc_harness.controls`)."""
    control_dialogues: int = CONTROL_DIALOGUES
    """Dialogues (seeded choice among those of the candidates) that get control replies."""

    def judge_config(self, cell: Cell, *, max_cost: float | None = None) -> JudgeConfig:
        """The judge run of ``cell``: shared settings overridden by the cell's axes."""
        options: dict[str, Any] = {**self.judging, "judges": self.judges, "max_cost": max_cost}
        options.update({_FIELD[axis]: value for axis, value in cell.settings.items()})
        try:
            return JudgeConfig.from_dict(options)
        except UserError as exc:
            raise UserError(f"{self.path}: cell {cell.name!r}: {exc}") from None

    def make_client(self, *, dry_run: bool = False) -> Client:
        """The one Client (and cache) every cell goes through.

        ``dry_run``: a cache file that does not exist yet is not created (it would hold
        nothing to count), so a dry run writes nothing, wherever the config puts the cache.
        """
        from .llm import Client, default_cache_path

        options = dict(self.client)
        if "cache" in options:
            options["cache_path"] = options.pop("cache")
        if dry_run and not Path(options.get("cache_path") or default_cache_path()).is_file():
            options["cache_mode"] = "off"
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
                self.fail(key, f"expected a whole number >= {low}, got {brief(v)}")
            if key.endswith("rounds") and v > MAX_ROUNDS:
                self.fail(key, f"expected at most {MAX_ROUNDS:,} rounds, got {v:,}")
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
        analysis={k: reader.value(f"analysis.{k}", v) for k, v in analysis.items()},
        **_control_options(reader, values))
    rubrics = load_rubrics(config.judging.get("prompts"))
    for cell in cells:
        judge = config.judge_config(cell)
        try:
            select_templates(rubrics, variant=judge.variant, mode=judge.mode,
                             dimensions=judge.dimensions)
        except UserError as exc:
            raise UserError(f"{path}: cell {cell.name!r}: {exc}") from None
    return config


def _control_options(reader: _Reader, values: dict[str, Any]) -> dict[str, Any]:
    """``controls`` (kinds, ``all`` or ``none``) and ``control_dialogues``, when given."""
    from .controls import parse_controls

    out: dict[str, Any] = {}
    if "controls" in values:
        try:
            out["controls"] = parse_controls(values["controls"])
        except UserError as exc:
            reader.fail("controls", str(exc))
    if "control_dialogues" in values:
        out["control_dialogues"] = values["control_dialogues"]
    return out


def _read_yaml(path: Path) -> Any:
    from .jsonl import read_yaml

    if not path.is_file():
        raise UserError(f"ablation config {str(path)!r} does not exist")
    return read_yaml(path)


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
