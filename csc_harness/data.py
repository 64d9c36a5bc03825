"""CSConv dialogues: loading, validation and expansion into supporter-turn examples.

A dialogue becomes one :class:`Example` per supporter turn. The item id
``<dialogue id>:<utterance index>`` is the join key of the whole project: lm-eval
samples, candidate files, judgments and human ratings all carry it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from ._hub import hub_rows, parse_hub_spec
from .errors import DataError, LabelError
from .framework import StageMap, parse_stage_map, parse_strategy, stage_for_turns
from .jsonl import parse_json, read_json

Speaker = Literal["supporter", "customer"]
Language = Literal["zh", "en"]

SAMPLE = "bundled:sample"
HUB_DATASET = "DianJin/DianJin-CSC-Data"
ENV_VAR = "CSCONV_DATA"
STAGE_MAP_VAR = "CSC_STAGE_MAP"

_SPEAKERS: dict[str, Speaker] = {
    "客服": "supporter", "supporter": "supporter", "agent": "supporter",
    "assistant": "supporter", "客户": "customer", "customer": "customer", "user": "customer",
}
_ID_FIELDS = ("id", "dialogue_id", "conversation_id", "dialog_id")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")


@dataclass(frozen=True)
class Utterance:
    speaker: Speaker
    text: str
    strategy: str | None = None
    """Strategy code on supporter turns, None on customer turns."""


@dataclass(frozen=True)
class Conversation:
    id: str
    topic: str
    language: Language
    utterances: tuple[Utterance, ...]


@dataclass(frozen=True)
class Example:
    """One supporter turn to predict, with everything before it as context."""

    item_id: str
    conversation_id: str
    turn_index: int
    """Index of the supporter utterance in its dialogue (0-based)."""
    context: tuple[Utterance, ...]
    strategy: str
    reply: str
    stage: str
    topic: str
    language: Language

    def to_doc(self) -> dict[str, Any]:
        """A flat, JSON-safe row (the lm-eval document and the candidate join row)."""
        return {
            "item_id": self.item_id,
            "conversation_id": self.conversation_id,
            "turn_index": self.turn_index,
            "context": [
                {"speaker": u.speaker, "text": u.text, "strategy": u.strategy}
                for u in self.context
            ],
            "strategy": self.strategy,
            "reply": self.reply,
            "stage": self.stage,
            "topic": self.topic,
            "language": self.language,
        }


def detect_language(texts: Iterable[str]) -> Language:
    """``zh`` when CJK characters outnumber Latin letters, else ``en``."""
    joined = "".join(texts)
    return "zh" if len(_CJK.findall(joined)) >= len(_LATIN.findall(joined)) / 4 else "en"


def _derived_id(dialogue: Any) -> str:
    canonical = json.dumps(dialogue, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return "csc-" + hashlib.sha256(canonical.encode()).hexdigest()[:12]


def parse_record(record: Any, *, path: str, index: int, line: int | None = None) -> Conversation:
    """Validate one released-shape record; every problem names its record and field."""

    def fail(message: str, field: str | None = None) -> DataError:
        return DataError(message, path=path, record=index, field=field, line=line)

    if not isinstance(record, dict):
        raise fail(f"expected an object with a 'dialogue' list, got {type(record).__name__}")
    dialogue = record.get("dialogue")
    if isinstance(dialogue, str):
        try:
            dialogue = parse_json(dialogue)
        except DataError as exc:
            raise fail(f"'dialogue' is a string that is not valid JSON ({exc})", "dialogue")
    if not isinstance(dialogue, list) or not dialogue:
        raise fail("missing or empty 'dialogue' list", "dialogue")
    utterances = []
    for i, turn in enumerate(dialogue):
        where = f"dialogue[{i}]"
        if not isinstance(turn, dict):
            raise fail("expected an object with 'speaker' and 'text'", where)
        raw_speaker = turn.get("speaker", turn.get("role"))
        speaker = _SPEAKERS.get(str(raw_speaker).strip().lower()) if raw_speaker else None
        if speaker is None:
            raise fail(
                f"unknown speaker {raw_speaker!r}; use 客服/supporter/agent or 客户/customer/user",
                f"{where}.speaker",
            )
        text = turn.get("text", turn.get("content"))
        if not isinstance(text, str) or not text.strip():
            raise fail("missing or empty text", f"{where}.text")
        code = None
        if speaker == "supporter":
            label = turn.get("strategy")
            if not label:
                raise fail("supporter turn without a strategy label", f"{where}.strategy")
            try:
                code = parse_strategy(label).code
            except LabelError as exc:
                raise fail(str(exc), f"{where}.strategy") from None
        utterances.append(Utterance(speaker, text.strip(), code))
    if not any(u.speaker == "supporter" for u in utterances):
        raise fail("dialogue has no supporter turn to evaluate", "dialogue")

    raw_id = next((record[k] for k in _ID_FIELDS if record.get(k) not in (None, "")), None)
    topic = record.get("source", record.get("topic"))
    language = record.get("language", record.get("lang"))
    if language is not None and language not in ("zh", "en"):
        raise fail(f"unknown language {language!r}; use 'zh' or 'en'", "language")
    return Conversation(
        id=str(raw_id) if raw_id is not None else _derived_id(dialogue),
        topic=str(topic).strip() if topic else "unknown",
        language=language or detect_language(u.text for u in utterances),
        utterances=tuple(utterances),
    )


def _read_records(path: Path) -> Iterator[tuple[Any, int | None]]:
    try:
        raw = path.read_bytes().removeprefix(b"\xef\xbb\xbf")
    except FileNotFoundError:
        raise DataError(
            f"no such file; set {ENV_VAR} or pass an existing CSConv JSON/JSONL file",
            path=str(path),
        ) from None
    except OSError as exc:
        raise DataError(f"cannot read file ({exc.strerror})", path=str(path)) from None
    if raw.lstrip().startswith(b"["):
        records = parse_json(raw, path=path)
        del raw
        for i in range(len(records)):  # release each raw record once it is parsed
            record, records[i] = records[i], None
            yield record, None
        return
    for lineno, line in enumerate(raw.splitlines(), 1):
        if line.strip():
            yield parse_json(line, path=path, line=lineno), lineno


def _unique(conversations: Iterable[Conversation], path: str) -> list[Conversation]:
    """Explicit duplicate ids are an error; derived ones (identical dialogues) get a suffix."""
    seen: Counter[str] = Counter()
    out = []
    for index, conv in enumerate(conversations):
        seen[conv.id] += 1
        if seen[conv.id] > 1:
            if not conv.id.startswith("csc-"):
                raise DataError(f"duplicate dialogue id {conv.id!r}", path=path,
                                record=index, field="id")
            conv = Conversation(f"{conv.id}-{seen[conv.id]}", conv.topic, conv.language,
                                conv.utterances)
        out.append(conv)
    return out


def load_file(path: str | os.PathLike[str]) -> list[Conversation]:
    """Load a CSConv file: a JSON list or JSONL of records in the released shape."""
    path = Path(path)
    convs = (parse_record(r, path=str(path), index=i, line=ln)
             for i, (r, ln) in enumerate(_read_records(path)))
    result = _unique(convs, str(path))
    if not result:
        raise DataError("file holds no dialogues", path=str(path))
    return result


def load_sample() -> list[Conversation]:
    """The bundled sample: dialogues written for this project in the CSConv shape."""
    return load_source(SAMPLE).conversations


def load_hub(spec: str = f"hf:{HUB_DATASET}") -> list[Conversation]:
    """One set of a hub dataset (``hf:<id>[#<set>]``, CSConv unless ``#RoleCS`` etc.)."""
    return load_source(spec).conversations


@dataclass(frozen=True)
class Loaded:
    """Dialogues with where they came from, for reports and the CSConv count check."""

    conversations: list[Conversation]
    source: str
    """The file actually read: a path, ``hf://datasets/<id>/<file>`` or the sample's path."""
    set_name: str | None
    """``CSConv`` / ``RoleCS`` / ... : the hub selection, else the file's stem; None for
    the bundled sample."""


def _parsed(rows: Iterable[Any], source: str) -> list[Conversation]:
    return _unique((parse_record(r, path=source, index=i) for i, r in enumerate(rows)), source)


def load_source(spec: str | None = None) -> Loaded:
    """Load by spec (see :func:`load_conversations`) and say which file was read."""
    spec = data_spec(spec)
    if spec == SAMPLE:
        with resources.as_file(
                resources.files("csc_harness") / "sample" / "csconv_sample.json") as p:
            return Loaded(load_file(p), str(p), None)
    if spec.startswith("hf:"):
        hub = parse_hub_spec(spec, HUB_DATASET)
        opened = hub_rows(hub)
        convs = _parsed(opened.rows, opened.source)
        if not convs:
            raise DataError("the selected file holds no dialogues", path=opened.source)
        return Loaded(convs, opened.source, PurePosixPath(hub.name).stem)
    return Loaded(load_file(spec), str(Path(spec)), Path(spec).stem)


def data_spec(spec: str | None = None) -> str:
    """The data a run uses: an explicit spec, else ``$CSCONV_DATA``, else the sample."""
    return spec or os.environ.get(ENV_VAR) or SAMPLE


def load_conversations(spec: str | None = None) -> list[Conversation]:
    """Load by spec: a file path, the bundled sample, or ``hf:<dataset>[#<set>]``.

    ``hf:<dataset>`` reads one file of a hub dataset, or of a local folder laid out like
    one: ``CSConv.json`` (the evaluation set) unless ``#RoleCS`` (the training set) or
    another file stem or path follows.
    """
    return load_source(spec).conversations


CSCONV_COUNTS = {"dialogues": 1855, "utterances": 50587, "supporter_turns": 25810}
"""What the released CSConv holds, as the paper reports it."""


def count_warnings(set_name: str | None, stats: Mapping[str, Any]) -> list[str]:
    """Warnings for a set called CSConv whose counts differ from the release's: a subset,
    another version or a merged file (the hub's single split) would change every score."""
    if (set_name or "").lower() != "csconv":
        return []
    off = [(k, v) for k, v in CSCONV_COUNTS.items() if stats.get(k) != v]
    if not off:
        return []
    said = ", ".join(f"{stats.get(k)} {k.replace('_', ' ')} (expected {v:,})" for k, v in off)
    return [f"this CSConv holds {said}: not the released evaluation set (a subset, another "
            f"version or a merged file); its scores are not comparable with the paper's"]


def load_stage_map(path: str | None = None) -> StageMap | None:
    """A stage-map override from a JSON file ``{strategy label: stage}``.

    Without ``path``, ``$CSC_STAGE_MAP`` names the file; with neither, None (the
    default mapping). Unlisted strategies keep their default stage.
    """
    path = path or os.environ.get(STAGE_MAP_VAR)
    if not path:
        return None
    if not Path(path).exists():
        raise DataError(f"no such stage-map file (set by {STAGE_MAP_VAR} or --stage-map)",
                        path=path)
    raw = read_json(path, what="stage map", root=None)
    if not isinstance(raw, dict):
        raise DataError('expected a JSON object {"<strategy>": "<stage>"}', path=path)
    try:
        return parse_stage_map(raw)
    except LabelError as exc:
        raise DataError(str(exc), path=path) from None


def expand(conv: Conversation, stage_map: StageMap | None = None) -> list[Example]:
    """One example per supporter turn, with all earlier utterances as context."""
    turns = [i for i, u in enumerate(conv.utterances) if u.speaker == "supporter"]
    stages = stage_for_turns([conv.utterances[i].strategy for i in turns], stage_map)
    return [
        Example(
            item_id=f"{conv.id}:{i}",
            conversation_id=conv.id,
            turn_index=i,
            context=conv.utterances[:i],
            strategy=conv.utterances[i].strategy,
            reply=conv.utterances[i].text,
            stage=stage.value,
            topic=conv.topic,
            language=conv.language,
        )
        for i, stage in zip(turns, stages)
    ]


def with_own_replies(conversation_id: str, context: Sequence[Utterance],
                     reply_for: Callable[[str], Utterance]) -> tuple[Utterance, ...]:
    """``context`` as a model saw it in the generated setting: every supporter utterance
    replaced by ``reply_for(item id)``, the model's own reply for that turn; customer
    utterances stay as recorded. ``reply_for`` raises KeyError for a turn it lacks."""
    return tuple(reply_for(f"{conversation_id}:{i}") if u.speaker == "supporter" else u
                 for i, u in enumerate(context))


def load_examples(spec: str | None = None, stage_map: StageMap | None = None) -> list[Example]:
    """Supporter-turn examples of the data a run uses, staged by ``$CSC_STAGE_MAP``
    unless a map is given."""
    stage_map = stage_map if stage_map is not None else load_stage_map()
    return [ex for conv in load_conversations(spec) for ex in expand(conv, stage_map)]


def statistics(conversations: Sequence[Conversation],
               stage_map: StageMap | None = None) -> dict[str, Any]:
    """Counts and distributions; the keys are the JSON contract of ``data check --json``."""
    examples = [ex for conv in conversations for ex in expand(conv, stage_map)]

    def dist(values: Iterable[str]) -> dict[str, int]:
        return dict(Counter(values).most_common())

    return {
        "dialogues": len(conversations),
        "utterances": sum(len(c.utterances) for c in conversations),
        "supporter_turns": len(examples),
        "strategies": dist(ex.strategy for ex in examples),
        "stages": dist(ex.stage for ex in examples),
        "topics": dist(c.topic for c in conversations),
        "languages": dist(c.language for c in conversations),
    }
