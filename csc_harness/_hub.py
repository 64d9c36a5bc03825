"""``hf:<dataset>[#<set>]`` specs: one data file of a hub dataset (or a folder laid out like one).

The authors release CSConv (evaluation, 1,855 dialogues) and RoleCS (training, 11,232) as
two files, ``CSConv.json`` and ``RoleCS.json``; the hub's automatic conversion merges them
into one ``train`` split. Loading "the dataset" would therefore evaluate on training
dialogues too, silently. A spec selects exactly one file by its name (``CSConv`` unless a
``#<set>`` fragment names another) and hands it to ``datasets.load_dataset`` as
``data_files``, so ``<dataset>`` resolves as ``load_dataset`` resolves it: an existing
local folder first, else a hub dataset id.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import DataError

DEFAULT_SET = "CSConv"
"""The file a bare ``hf:<id>`` selects: the evaluation set."""
_DATA_SUFFIXES = (".json", ".jsonl")
_OFFLINE_VARS = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")
_HUB_ID = re.compile(r"[\w.-]+(/[\w.-]+)?")


@dataclass(frozen=True)
class HubSpec:
    dataset: str
    """Hub dataset id (``owner/name``) or a local folder."""
    name: str
    """The set to load: a file stem (``CSConv``, ``RoleCS``) or a path inside the dataset."""
    explicit: bool
    """Whether the spec named the set with ``#<set>``."""

    @property
    def spec(self) -> str:
        return f"hf:{self.dataset}" + (f"#{self.name}" if self.explicit else "")


def parse_hub_spec(spec: str, default_dataset: str) -> HubSpec:
    """``hf:<dataset>[#<set>]`` -> :class:`HubSpec`; an empty dataset is ``default_dataset``."""
    body = spec[3:] if spec.startswith("hf:") else spec
    dataset, sep, name = body.partition("#")
    if sep and not name.strip():
        raise DataError("empty set after '#'; use e.g. '#CSConv' or '#RoleCS'", path=spec)
    return HubSpec(dataset.strip() or default_dataset, name.strip() or DEFAULT_SET, bool(sep))


def _offline() -> bool:
    return any(os.environ.get(v, "").strip().upper() in ("1", "ON", "YES", "TRUE")
               for v in _OFFLINE_VARS)


def _local_files(folder: Path) -> list[str]:
    """Data files under ``folder`` (relative POSIX paths), skipping hidden folders like .git."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = Path(root).relative_to(folder)
        found += [(rel / f).as_posix() for f in sorted(files) if not f.startswith(".")]
    return found


def _remote_files(hub: HubSpec) -> list[str]:
    from huggingface_hub import list_repo_files

    try:
        return list_repo_files(hub.dataset, repo_type="dataset")
    except Exception as exc:
        raise DataError(f"cannot list the hub dataset's files ({_first_line(exc)}); "
                        f"{_way_out(hub)}", path=hub.spec) from None


def select_file(files: list[str], hub: HubSpec) -> str:
    """The one data file ``hub.name`` names: a path inside the dataset, or a file stem
    (``CSConv`` matches ``CSConv.json``/``.jsonl`` at any depth, case-insensitively)."""
    if hub.name in files:
        return hub.name
    wanted = hub.name.lower()
    matches = [f for f in files if PurePosixPath(f).suffix.lower() in _DATA_SUFFIXES
               and wanted in (PurePosixPath(f).stem.lower(), PurePosixPath(f).name.lower())]
    if len(matches) == 1:
        return matches[0]
    data = [f for f in files if PurePosixPath(f).suffix.lower() in _DATA_SUFFIXES] or files
    listed = ", ".join(data[:20]) + (f" (+{len(data) - 20} more)" if len(data) > 20 else "")
    if matches:
        raise DataError(f"{hub.name!r} matches several files ({', '.join(matches)}); name one "
                        f"with '#<path>'", path=hub.spec)
    raise DataError(f"no data file named {hub.name!r} (.json/.jsonl); files: "
                    f"{listed or 'none'}", path=hub.spec)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _way_out(hub: HubSpec) -> str:
    from .data import ENV_VAR

    return (f"download {hub.name}.json once and set {ENV_VAR}=/path/to/{hub.name}.json, "
            f"or give a local folder as hf:<folder>")


@dataclass(frozen=True)
class HubRows:
    rows: Iterator[dict[str, Any]]
    """The selected file's records, one at a time (Arrow-backed, not all in memory)."""
    source: str
    """The file actually loaded: a local path or ``hf://datasets/<id>/<file>``."""


def hub_rows(hub: HubSpec) -> HubRows:
    """Resolve ``hub`` to one file and open it with ``datasets.load_dataset``.

    Raises DataError (one line) when ``datasets`` is missing, the file is not there (the
    message lists the files that are), the hub cannot be reached or offline mode is on.
    """
    try:
        import datasets
    except ImportError:
        raise DataError("loading hf:<id> needs the 'datasets' package (pip install datasets); "
                        f"or {_way_out(hub)}", path=hub.spec) from None
    folder = Path(hub.dataset).expanduser()
    if folder.is_dir():  # load_dataset too prefers an existing local folder over a hub id
        chosen = select_file(_local_files(folder), hub)
        target, source = str(folder), str(folder / chosen)
    elif not _HUB_ID.fullmatch(hub.dataset):
        raise DataError("no such folder, and not a hub dataset id ('owner/name')",
                        path=hub.spec)
    elif _offline():
        # No listing offline: a copy cached by an earlier online run may still load.
        chosen = hub.name if PurePosixPath(hub.name).suffix else f"{hub.name}.json"
        target, source = hub.dataset, f"hf://datasets/{hub.dataset}/{chosen}"
    else:
        chosen = select_file(_remote_files(hub), hub)
        target, source = hub.dataset, f"hf://datasets/{hub.dataset}/{chosen}"
    # A README without YAML metadata is normal for a copied folder: not worth a warning.
    logging.getLogger("huggingface_hub.repocard").setLevel(logging.ERROR)
    try:
        loaded = datasets.load_dataset(target, data_files={"test": chosen}, split="test")
    except Exception as exc:
        if folder.is_dir():
            raise DataError(f"cannot load {chosen!r} ({_first_line(exc)}); see what is wrong "
                            f"with: csc-harness data check {folder / chosen}",
                            path=hub.spec) from None
        why = ("offline mode is on (HF_DATASETS_OFFLINE/HF_HUB_OFFLINE) and no cached copy "
               "was found") if _offline() else _first_line(exc)
        raise DataError(f"cannot load {chosen!r} ({why}); {_way_out(hub)}",
                        path=hub.spec) from None
    return HubRows(_rows(loaded), source)


def _rows(loaded: Any, batch: int = 256) -> Iterator[dict[str, Any]]:
    """Rows decoded a batch at a time (faster than row by row for nested dialogues);
    only one batch is held as Python objects at once."""
    for columns in loaded.iter(batch_size=batch):
        names = list(columns)
        for values in zip(*(columns[n] for n in names)):
            yield _without_nulls(dict(zip(names, values)))


def _without_nulls(row: dict[str, Any]) -> dict[str, Any]:
    """Drop the nulls Arrow adds for keys a record lacks (a customer turn's ``strategy``),
    so a record reads, and derives its id, exactly as it does from the JSON file."""
    out = {k: v for k, v in row.items() if v is not None}
    dialogue = out.get("dialogue")
    if isinstance(dialogue, list):
        out["dialogue"] = [{k: v for k, v in t.items() if v is not None}
                           if isinstance(t, dict) else t for t in dialogue]
    return out
