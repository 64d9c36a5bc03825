"""Judge-prompt ablations, driver side: judge the same replies under every cell of a grid
of judge settings, then compare the cells (statistics: :mod:`csc_harness.analysis`).

The config is YAML, read by :mod:`csc_harness.ablation_config` (``examples/ablation.yaml``
documents it). Output (OUT is ``--out``)::

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

import json
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .ablation_config import (
    AXES,
    AblationConfig,
    Cell,
    cell_folder,
    cell_name,
    expand_grid,
    load_ablation,
)
from .errors import CacheMiss, DataError, ProviderError, UserError
from .jsonl import read_json
from .judge import (
    JUDGMENTS_FILE,
    JudgmentStore,
    estimate_judgments,
    load_candidates,
    run_judgments,
    with_controls,
)
from .llm.budget import Budget

if TYPE_CHECKING:
    import pandas as pd

    from .judge import Candidate, Estimate
    from .llm import Client

__all__ = ["AXES", "AblationConfig", "Cell", "CellRun", "analyse_ablation", "cell_folder",
           "cell_name", "estimate_ablation", "expand_grid", "load_ablation", "load_cell_rows",
           "record_settings", "run_ablation"]

CELLS_DIR, MANIFEST, RUN_FILE = "cells", "cells.json", "run.json"

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


def _candidates(config: AblationConfig) -> list[Candidate]:
    """The replies every cell judges: the config's candidates plus control replies on
    ``control_dialogues`` of their dialogues, so each cell's judge check can be measured."""
    candidates = load_candidates([str(p) for p in config.candidates], data=config.data)
    return with_controls(candidates, config.controls, dialogues=config.control_dialogues,
                         data=config.data)[0]


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
    candidates = _candidates(config)
    record_settings(config, out)
    previous = client.budget
    if config.max_cost is not None:  # one budget over every cell, their recorded spend used
        client.budget = Budget(config.max_cost, spent=sum(_recorded_spend(config, out).values()))
    runs: list[CellRun] = []
    try:
        for i, cell in enumerate(config.cells, 1):
            echo(f"[{i}/{len(config.cells)}] {cell.name} -> {out / CELLS_DIR / cell.folder}")
            run = await _run_cell(config, cell, candidates, out, client=client,
                                  progress=progress)
            echo(f"[{i}/{len(config.cells)}] {run.line()}")
            runs.append(run)
            if run.exit_code:
                break
    finally:
        client.budget = previous
    return runs


async def _run_cell(config: AblationConfig, cell: Cell, candidates: Sequence[Candidate],
                    out: Path, *, client: Client, progress: bool | None) -> CellRun:
    run = CellRun(cell, out / CELLS_DIR / cell.folder)
    calls, cost = client.stats.calls, client.stats.cost_usd
    try:
        result = await run_judgments(config.judge_config(cell), candidates,
                                     run.out_dir, client=client, progress=progress)
        run.exit_code, reason = result.exit_code, result.message
        if result.exit_code and not reason:
            reason = f"{result.remaining} judgment(s) not done"
    except (CacheMiss, ProviderError) as exc:
        run.exit_code, reason = (2 if isinstance(exc, CacheMiss) else 1), str(exc)
    except UserError as exc:
        raise UserError(f"cell {cell.name!r}: {exc}") from None
    if run.exit_code:
        budget_note = (" (the ablation's budget: --max-cost, else max_cost in its config, "
                       "covers every cell)") if (
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
    cells = read_json(path, what="ablation settings file").get("cells") if path.is_file() \
        else {}
    if not isinstance(cells, dict):
        raise DataError("not an ablation settings file (no 'cells' object); delete it",
                        path=str(path), field="cells")
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
    candidates = _candidates(config)
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
            prompts = read_json(run, what="run file").get("prompts")
            if not isinstance(prompts, dict):
                raise DataError("expected the prompts object", path=str(run), field="prompts")
            rows = rows[rows["prompt_id"].isin([p.get("prompt_id") for p in prompts.values()
                                                if isinstance(p, dict)])]
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
