"""Judge prompts as files: one folder per template, found and validated here.

A folder under the prompts directory (the packaged ``judge_prompts/`` or ``--prompts DIR``)
holds ``rubric.yaml`` (metadata: version, variant, modes, scale, dimensions with level
descriptions), ``prompt.j2`` (the user message) and optionally ``system.j2``. Adding a
dimension or a variant is adding a folder; nothing here names a dimension.

``prompt_id`` = ``f"{folder}@{version}#{sha256(files)[:10]}"``: the hash covers
``rubric.yaml`` and every ``*.j2`` of the folder, so editing any of them changes the id,
and with it every cache key (the rendered messages change too).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, get_args

from ..errors import DataError, UserError

__all__ = [
    "Dimension",
    "Level",
    "Mode",
    "Rubric",
    "TemplateGroup",
    "VerdictFormat",
    "load_rubrics",
    "prompts_dir",
    "select_templates",
]

Mode = Literal["separate", "joint", "pairwise"]
"""``separate``: one call per dimension; ``joint``: one call for several; ``pairwise``: A vs B."""
VerdictFormat = Literal["rationale_first", "score_only"]
"""What the judge writes: reasoning then the score, or the score alone."""

RUBRIC_FILE = "rubric.yaml"
PROMPT_FILE = "prompt.j2"
SYSTEM_FILE = "system.j2"
_RUBRIC_KEYS = ("version", "variant", "description", "modes", "verdict", "scale",
                "dimensions", "max_tokens", "options")
_DIMENSION_KEYS = ("id", "title", "question", "levels")


@dataclass(frozen=True)
class Level:
    """One level description; ``low == high`` except for bands such as ``1-2``."""

    low: int
    high: int
    text: str

    @property
    def label(self) -> str:
        return str(self.low) if self.low == self.high else f"{self.low}-{self.high}"


@dataclass(frozen=True)
class Dimension:
    id: str
    title: str
    question: str
    levels: tuple[Level, ...] = ()


@dataclass(frozen=True)
class Rubric:
    """One template folder, validated. ``scale`` is None for pairwise templates."""

    name: str
    path: Path
    version: str
    variant: str
    modes: tuple[Mode, ...]
    verdict: VerdictFormat
    scale: tuple[int, int] | None
    dimensions: tuple[Dimension, ...] = field(repr=False)
    prompt_source: str = field(repr=False)
    system_source: str | None = field(repr=False)
    digest: str = field(repr=False)
    """sha256 over the folder's rubric.yaml and *.j2 files (names and bytes)."""
    description: str = ""
    max_tokens: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    @cached_property
    def prompt_id(self) -> str:
        return f"{self.name}@{self.version}#{self.digest[:10]}"

    def dimension(self, dim_id: str) -> Dimension:
        return next(d for d in self.dimensions if d.id == dim_id)


def prompts_dir(path: str | Path | None = None) -> Path:
    """The prompts folder: ``path`` if given, else the packaged ``judge_prompts``.

    The packaged copy is package data (``csc_harness.judge_prompts``); a source checkout
    installed before that mapping existed falls back to the repository's folder.
    """
    if path is not None:
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise UserError(f"prompts folder {str(folder)!r} does not exist")
        return folder
    try:
        from importlib import resources

        packaged = Path(str(resources.files("csc_harness.judge_prompts")))
        if packaged.is_dir():
            return packaged
    except (ModuleNotFoundError, TypeError):
        pass
    fallback = Path(__file__).resolve().parents[2] / "judge_prompts"
    if fallback.is_dir():
        return fallback
    raise UserError("the packaged judge prompts are missing (reinstall csc-harness) - "
                    "or pass --prompts DIR")


def load_rubrics(path: str | Path | None = None) -> list[Rubric]:
    """Every template folder under the prompts folder, validated, sorted by name.

    Folders starting with ``_`` or ``.`` are skipped. Raises :class:`DataError` naming the
    file and field of the first problem.
    """
    root = prompts_dir(path)
    rubrics = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if folder.name.startswith(("_", ".")):
            continue
        rubrics.append(load_rubric(folder))
    if not rubrics:
        raise UserError(f"no judge templates in {str(root)!r}: each sub-folder needs "
                        f"{RUBRIC_FILE} and {PROMPT_FILE}")
    return rubrics


def load_rubric(folder: Path) -> Rubric:
    """One template folder (see the module docstring).

    Parsed once per process while its files stay unchanged (by name, size and mtime): an
    ablation or a benchmark starts many runs, and YAML parsing is ~15 ms a folder.
    """
    try:
        stamp = tuple((f.name, st.st_size, st.st_mtime_ns)
                      for f in sorted(folder.iterdir()) for st in (f.stat(),))
    except OSError:
        stamp = None
    loaded = _loaded.get(folder)
    if stamp is not None and loaded is not None and loaded[0] == stamp:
        return loaded[1]
    rubric = _parse_rubric(folder)
    if stamp is not None:
        _loaded[folder] = (stamp, rubric)
    return rubric


_loaded: dict[Path, tuple[tuple, Rubric]] = {}


def _parse_rubric(folder: Path) -> Rubric:
    from ..jsonl import read_yaml

    rubric_path, prompt_path = folder / RUBRIC_FILE, folder / PROMPT_FILE
    for needed in (rubric_path, prompt_path):
        if not needed.is_file():
            raise DataError(f"template folder lacks {needed.name}", path=str(folder))
    meta = read_yaml(rubric_path)
    where = str(rubric_path)
    if not isinstance(meta, dict):
        raise DataError("expected a mapping of rubric fields", path=where)
    _check_keys(meta, _RUBRIC_KEYS, where, None)
    modes = _modes(meta.get("modes", ["separate"]), where)
    verdict = meta.get("verdict", "rationale_first")
    if verdict not in get_args(VerdictFormat):
        raise DataError(f"{verdict!r} is not one of {', '.join(get_args(VerdictFormat))}",
                        path=where, field="verdict")
    scale = _scale(meta.get("scale"), where, pairwise_only=modes == ("pairwise",))
    dims = _dimensions(meta.get("dimensions"), scale, where)
    system_path = folder / SYSTEM_FILE
    return Rubric(
        name=folder.name, path=folder, version=str(meta.get("version", "1")),
        variant=str(meta.get("variant", "default")), modes=modes, verdict=verdict,
        scale=scale, dimensions=dims,
        prompt_source=prompt_path.read_text(encoding="utf-8"),
        system_source=system_path.read_text(encoding="utf-8") if system_path.is_file() else None,
        digest=_digest(folder), description=str(meta.get("description") or ""),
        max_tokens=_positive_int(meta.get("max_tokens"), where, "max_tokens"),
        options=dict(meta.get("options") or {}),
    )


def _digest(folder: Path) -> str:
    sha = hashlib.sha256()
    for file in sorted([folder / RUBRIC_FILE, *folder.glob("*.j2")]):
        sha.update(file.name.encode() + b"\0" + file.read_bytes() + b"\0")
    return sha.hexdigest()


def _check_keys(obj: Mapping, valid: tuple[str, ...], where: str, prefix: str | None) -> None:
    unknown = [k for k in obj if k not in valid]
    if unknown:
        name = f"{prefix}.{unknown[0]}" if prefix else str(unknown[0])
        raise DataError(f"unknown key {unknown[0]!r}; valid keys: {', '.join(valid)}",
                        path=where, field=name)


def _positive_int(value: Any, where: str, name: str) -> int | None:
    if value is None:
        return None
    if type(value) is not int or value < 1:
        raise DataError(f"expected a positive whole number, got {value!r}", path=where, field=name)
    return value


def _modes(raw: Any, where: str) -> tuple[Mode, ...]:
    values = [raw] if isinstance(raw, str) else raw
    valid = get_args(Mode)
    if not isinstance(values, list) or not values or any(m not in valid for m in values):
        raise DataError(f"expected a list drawn from {', '.join(valid)}, got {raw!r}",
                        path=where, field="modes")
    if "pairwise" in values and len(values) > 1:
        raise DataError("a pairwise template serves no other mode", path=where, field="modes")
    return tuple(values)


def _scale(raw: Any, where: str, *, pairwise_only: bool) -> tuple[int, int] | None:
    if raw is None and pairwise_only:
        return None
    if not isinstance(raw, dict) or set(raw) != {"min", "max"}:
        raise DataError("expected {min: N, max: M}", path=where, field="scale")
    lo, hi = raw["min"], raw["max"]
    if type(lo) is not int or type(hi) is not int or lo >= hi:
        raise DataError(f"need whole numbers with min < max, got {raw!r}", path=where,
                        field="scale")
    return lo, hi


def _dimensions(raw: Any, scale: tuple[int, int] | None, where: str) -> tuple[Dimension, ...]:
    if not isinstance(raw, list) or not raw:
        raise DataError("expected a non-empty list of dimensions", path=where, field="dimensions")
    dims, seen = [], set()
    for i, item in enumerate(raw):
        prefix = f"dimensions[{i}]"
        if not isinstance(item, dict):
            raise DataError("expected a mapping with id, title, question, levels", path=where,
                            field=prefix)
        _check_keys(item, _DIMENSION_KEYS, where, prefix)
        values = {}
        for key in ("id", "title", "question"):
            value = item.get(key)
            if not isinstance(value, str) or not value.strip():
                raise DataError("missing or empty text", path=where, field=f"{prefix}.{key}")
            values[key] = " ".join(value.split())
        if not values["id"].replace("_", "").isalnum() or values["id"] in seen:
            raise DataError(f"dimension id {values['id']!r} must be unique and made of letters, "
                            "digits and _", path=where, field=f"{prefix}.id")
        seen.add(values["id"])
        levels = _levels(item.get("levels"), scale, where, f"{prefix}.levels")
        dims.append(Dimension(values["id"], values["title"], values["question"], levels))
    return tuple(dims)


def _levels(raw: Any, scale: tuple[int, int] | None, where: str, name: str) -> tuple[Level, ...]:
    """Level descriptions keyed by score (``3``) or band (``"1-2"``) covering the scale once."""
    if scale is None:
        if raw:
            raise DataError("levels need a scale", path=where, field=name)
        return ()
    if not isinstance(raw, dict) or not raw:
        raise DataError("expected level descriptions keyed by score", path=where, field=name)
    levels = []
    for key, text in raw.items():
        try:
            low, _, high = str(key).partition("-")
            level = Level(int(low), int(high or low), " ".join(str(text).split()))
        except ValueError:
            raise DataError(f"level key {key!r} is not a score or a band like '1-2'",
                            path=where, field=name) from None
        if not level.text:
            raise DataError(f"level {key!r} has no description", path=where, field=name)
        levels.append(level)
    levels.sort(key=lambda lv: lv.low)
    covered = [s for lv in levels for s in range(lv.low, lv.high + 1)]
    if covered != list(range(scale[0], scale[1] + 1)):
        raise DataError(f"levels {', '.join(lv.label for lv in levels)} must cover the scale "
                        f"{scale[0]}-{scale[1]} exactly once", path=where, field=name)
    return tuple(levels)


@dataclass(frozen=True)
class TemplateGroup:
    """One template and the dimensions one call of it judges (one, or several in joint)."""

    rubric: Rubric
    dimensions: tuple[str, ...]
    mode: Mode


def select_templates(rubrics: Iterable[Rubric], *, variant: str, mode: Mode,
                     dimensions: Iterable[str] | None = None) -> list[TemplateGroup]:
    """The calls a run makes per reply: which template judges which dimensions.

    ``dimensions=None`` means every dimension the variant defines for the mode. Raises
    UserError for an unknown variant or dimension, DataError when two folders of one
    variant claim the same dimension for the same mode.
    """
    rubrics = list(rubrics)
    in_variant = [r for r in rubrics if r.variant == variant]
    if not in_variant:
        known = sorted({r.variant for r in rubrics})
        raise UserError(f"no judge template has variant {variant!r}; variants: {', '.join(known)}")
    owner: dict[str, Rubric] = {}
    for rubric in (r for r in in_variant if mode in r.modes):
        for dim in rubric.dimensions:
            if dim.id in owner:
                raise DataError(f"dimension {dim.id!r} of variant {variant!r} in mode {mode!r} is "
                                f"also defined in {str(owner[dim.id].path)!r}; keep one",
                                path=str(rubric.path / RUBRIC_FILE))
            owner[dim.id] = rubric
    wanted = list(dict.fromkeys(dimensions)) if dimensions else list(owner)
    missing = [d for d in wanted if d not in owner]
    if missing or not wanted:
        other = sorted({d.id for r in in_variant for d in r.dimensions} - set(owner))
        hint = f" ({', '.join(other)} only in other modes)" if other else ""
        raise UserError(f"no {mode} template of variant {variant!r} for dimension(s) "
                        f"{', '.join(map(repr, missing)) or '(none)'}; available: "
                        f"{', '.join(owner) or 'none'}{hint}")
    if mode != "joint":
        return [TemplateGroup(owner[d], (d,), mode) for d in wanted]
    groups: dict[str, list[str]] = {}
    for d in wanted:
        groups.setdefault(owner[d].name, []).append(d)
    by_name = {r.name: r for r in in_variant}
    return [TemplateGroup(by_name[name], tuple(dims), mode) for name, dims in groups.items()]
