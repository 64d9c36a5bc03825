"""Per-item drill-down data for ``report.html``: what each model replied and what each
judge said, beside the conversation so far and the gold reply.

:func:`~csc_harness.analysis.load_judgments` drops rationales and reply text to keep a
million rows small; the report needs them, so this module reads ``judgments.jsonl`` again
in its own compact pass (only absolute rows of one variant; only the fields shown) and the
dataset for the context. Each dialogue is stored once and an item points into it, which
keeps 25,810 CSConv items to one copy of the 50,587 utterances.

Payload (JSON, embedded in the page): ``models``, ``judges``, ``dims`` (name lists that
rows index into), ``dialogues`` (``{conversation_id: [[speaker, text, strategy], ...]}``,
speaker ``"s"`` supporter / ``"c"`` customer), ``items``: one list per item
``[item_id, conversation_id, turn_index, stage, strategy, topic, language, replies,
scores, model_spread, judge_spread]`` where ``replies`` is ``[[model, reply,
claimed_strategy, metrics?], ...]`` and ``scores`` ``[[model, judge, dim, score,
rationale], ...]`` (indexes into the name lists). ``metrics``, present when the automatic
metrics of that model have per-item values (an lm-eval samples file or candidates.jsonl),
is ``[ROUGE-L, BLEU-2, BLEU-4, strategy correct]`` in the order of ``metric_names``
(sentence-level BLEU, 0-100, one decimal; 1/0 for the strategy; null when unknown) and
``metric_settings`` says per model which setting they came from. Spreads are the largest
gap in mean score between two models, and between two judges of one reply, on one
dimension (null when undefined).

Simulated conversations (``transcripts.jsonl`` of ``csc-harness simulate`` or ``run
--interactive``, found beside the judgments) come as ``conversations``: one list per
conversation id (a scenario and sample, met by every model) ``[conversation_id, topic,
language, runs, scores, model_spread, judge_spread]``, ``runs`` ``[[model, turns,
end_reason, customer, end_detail], ...]`` with ``turns`` ``[[speaker, text, strategy],
...]`` (the strategy's name) and ``scores`` the judges' conversation-level verdicts,
shaped as for items.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..contract import JUDGMENTS_FILE, TRANSCRIPTS_FILE
from ..jsonl import read_jsonl
from .rows import judgment_files

RATIONALE_CHARS = 400
RATIONALE_BUDGET = 4_000_000
"""Characters of rationale one page holds at most: at CSConv scale (25,810 items x models x
dimensions x judges) each rationale is cut shorter so the file stays quick to open."""
_SPEAKER = {"supporter": "s", "customer": "c"}
METRIC_NAMES = ("rougeL", "bleu2", "bleu4", "strategy_acc")


def load_items(paths: Sequence[str | Path], *, variant: str | None = None,
               data: str | None = None, rationale_chars: int = RATIONALE_CHARS,
               metrics: Sequence[dict[str, Any]] = (),
               transcripts: Sequence[str | Path] | None = None) -> dict[str, Any]:
    """The items payload for the judgments under ``paths`` (see the module docstring).

    ``data`` is a dataset spec for the context (``csc_harness.data.load_source``; None:
    ``$CSCONV_DATA`` else the bundled sample); items whose dialogue it lacks show no
    context. Rationales are cut to ``rationale_chars`` characters (0 drops them) to keep
    the page small, and shorter still when all of them would pass
    :data:`RATIONALE_BUDGET` characters. Returns also ``data_source``, ``data_set``,
    ``data_counts`` and ``rationale_chars`` (the cut used).

    ``metrics`` are :func:`~csc_harness.analysis.load_automatic_metrics` records: their
    per-item values are joined to the replies (the reference setting when a model has
    both). ``transcripts`` are transcripts.jsonl files to show as conversations; None
    looks beside the judgment folders (:func:`find_transcripts`). Their conversation-level
    judgment rows are shown with the conversations, not as items.
    """
    conversations = load_conversations(
        find_transcripts(paths) if transcripts is None else transcripts,
        rationale_chars=rationale_chars)
    names: dict[str, dict[str, int]] = {"models": {}, "judges": {}, "dims": {}}
    meta: dict[str, list[Any]] = {}
    replies: dict[str, dict[int, list[Any]]] = defaultdict(dict)
    verdicts: dict[tuple[str, int, int, int], list[Any]] = {}

    def index(kind: str, value: str) -> int:
        return names[kind].setdefault(value, len(names[kind]))

    for path in judgment_files(paths):
        for _line, row in read_jsonl(path):
            if row.get("kind", "absolute") != "absolute":
                continue
            if variant is not None and row.get("variant", "default") != variant:
                continue
            item = str(row.get("item_id"))
            if row.get("turn_index") is None and item in conversations["ids"]:
                continue
            if item not in meta:
                meta[item] = [item, row.get("conversation_id"), row.get("turn_index"),
                              row.get("stage"), row.get("strategy"), row.get("topic"),
                              row.get("language")]
            m = index("models", str(row.get("model")))
            if m not in replies[item]:
                replies[item][m] = [m, row.get("reply"), row.get("predicted_strategy")]
            key = (item, m, index("judges", str(row.get("judge"))),
                   index("dims", str(row.get("dimension"))))
            slot = verdicts.setdefault(key, [0.0, 0, None])
            if row.get("status") == "ok" and isinstance(row.get("score"), (int, float)):
                slot[0] += float(row["score"])
                slot[1] += 1
            if slot[2] is None and row.get("rationale") and rationale_chars:
                slot[2] = str(row["rationale"])[:rationale_chars]
    given = sum(1 for v in verdicts.values() if v[2])
    limit = min(rationale_chars, max(40, RATIONALE_BUDGET // given)) if given else 0
    scores: dict[str, list[list[Any]]] = defaultdict(list)
    for (item, m, j, d), (total, n, why) in verdicts.items():
        if why is not None and len(why) > limit:
            why = why[:limit] + "…"
        scores[item].append([m, j, d, round(total / n, 3) if n else None, why])
    dialogues, source = _dialogues({str(v[1]) for v in meta.values()}, data)
    values, settings = _item_metrics(metrics, list(names["models"]))
    for item, by_model in replies.items():
        for m, reply in by_model.items():
            known = values.get((item, m))
            if known is not None:
                reply.append(known)
    items = [meta[i] + [list(replies[i].values()), scores[i], *_spreads(scores[i])]
             for i in meta]
    payload = {"models": list(names["models"]), "judges": list(names["judges"]),
               "dims": list(names["dims"]), "dialogues": dialogues, "items": items,
               "rationale_chars": limit, "metric_names": list(METRIC_NAMES),
               "metric_settings": settings, **source}
    return _merge_conversations(payload, conversations)


def _spreads(scores: list[list[Any]]) -> tuple[float | None, float | None]:
    """(largest gap between models' mean scores, largest gap between judges on one reply),
    over dimensions."""
    by_model: dict[tuple[int, int], list[float]] = defaultdict(list)
    by_judge: dict[tuple[int, int], list[float]] = defaultdict(list)
    for m, j, d, score, _why in scores:
        if score is not None:
            by_model[(d, m)].append(score)
            by_judge[(d, m)].append(score)
    means: dict[int, list[float]] = defaultdict(list)
    for (d, _m), vals in by_model.items():
        means[d].append(sum(vals) / len(vals))
    model_gap = [max(v) - min(v) for v in means.values() if len(v) > 1]
    judge_gap = [max(v) - min(v) for v in by_judge.values() if len(v) > 1]
    return (round(max(model_gap), 3) if model_gap else None,
            round(max(judge_gap), 3) if judge_gap else None)


def _dialogues(wanted: set[str], spec: str | None) -> tuple[dict[str, list], dict[str, Any]]:
    from ..data import load_source

    loaded = load_source(spec)
    out: dict[str, list] = {}
    utterances = supporter = 0
    for conv in loaded.conversations:
        utterances += len(conv.utterances)
        supporter += sum(u.speaker == "supporter" for u in conv.utterances)
        if conv.id in wanted:
            out[conv.id] = [[_SPEAKER.get(str(u.speaker), str(u.speaker)[:1]), u.text,
                             u.strategy] for u in conv.utterances]
    counts = {"dialogues": len(loaded.conversations), "utterances": utterances,
              "supporter_turns": supporter}
    return out, {"data_source": loaded.source, "data_set": loaded.set_name,
                 "data_counts": counts}


def _item_metrics(records: Sequence[dict[str, Any]], models: list[str]
                  ) -> tuple[dict[tuple[str, int], list[Any]], dict[str, str]]:
    """Per (item, model index): ``[ROUGE-L, BLEU-2, BLEU-4, strategy correct]``, and the
    setting each model's values come from (reference preferred: `run` judges those)."""
    from ..metrics import bleu_from_statistics
    from .automatic import MetricItems, match_model

    chosen: dict[int, dict[str, Any]] = {}
    for rec in records:
        per = rec.get("per_item")
        name = match_model(str(rec.get("model")), models)
        if not isinstance(per, MetricItems) or per.item_bleu is None or name is None:
            continue
        m = models.index(name)
        if m not in chosen or chosen[m]["setting"] != "reference":
            chosen[m] = rec
    values: dict[tuple[str, int], list[Any]] = {}
    for m, rec in chosen.items():
        per = rec["per_item"]
        given = per.item_values or {}
        rouge, acc = given.get("rougeL"), given.get("strategy_acc")
        for k, item in enumerate(per.item_ids):
            if item is None:
                continue
            bleu = bleu_from_statistics(per.item_bleu[k])
            values[(item, m)] = [
                _tenth(rouge[k] if rouge is not None else None), _tenth(bleu["bleu2"]),
                _tenth(bleu["bleu4"]),
                None if acc is None or math.isnan(acc[k]) else int(acc[k] >= 50)]
    return values, {models[m]: str(rec["setting"]) for m, rec in chosen.items()}


def _tenth(value: float | None) -> float | None:
    if value is None or math.isnan(value):
        return None
    return round(float(value), 1)


def find_transcripts(paths: Sequence[str | Path]) -> list[Path]:
    """transcripts.jsonl files belonging to the judgment folders ``paths``: in the folder
    or its ``interactive/`` (``run --interactive``), and for a ``judge`` folder (how
    ``run`` and ``simulate`` name it) in its parent and the parent's ``interactive/``."""
    found: dict[Path, None] = {}
    for raw in paths:
        path = Path(raw)
        folder = path if path.is_dir() else path.parent
        places = [folder, folder / "interactive"]
        for up in (folder.resolve(), folder.resolve().parent):  # judge/ or judge/<variant>/
            if up.name == "judge":
                places += [up.parent, up.parent / "interactive"]
        for place in places:
            file = place / TRANSCRIPTS_FILE
            if file.is_file():
                found.setdefault(file.resolve())
    return list(found)


def load_conversations(files: Sequence[str | Path], *,
                       rationale_chars: int = RATIONALE_CHARS) -> dict[str, Any]:
    """The transcripts in ``files`` with the verdicts of ``judge/judgments.jsonl`` beside
    each, names kept as strings (:func:`conversations_payload`); the first row of a
    (conversation, model) pair wins, as in the simulate store."""
    merged: dict[str, Any] = {"ids": set(), "entries": {}}
    for file in files:
        file = Path(file)
        part = conversations_payload(_whole_rows(file), _conversation_judgments(file.parent),
                                     rationale_chars=rationale_chars)
        for cid, entry in part["entries"].items():
            have = merged["entries"].setdefault(cid, entry)
            if have is not entry:
                models = {r[0] for r in have["runs"]}
                have["runs"] += [r for r in entry["runs"] if r[0] not in models]
                have["scores"] += [s for s in entry["scores"] if s[0] not in models]
        merged["ids"] |= part["ids"]
    return merged


def _conversation_judgments(folder: Path) -> list[Path]:
    """The judgments of a simulate folder: ``judge/judgments.jsonl`` and one
    ``judge/<variant>/judgments.jsonl`` per rubric variant."""
    judge = folder / "judge"
    return [p for p in (judge / JUDGMENTS_FILE,) if p.is_file()] + sorted(
        judge.glob(f"*/{JUDGMENTS_FILE}"))


def _whole_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a transcripts file; a torn last line (a run killed mid-write, redone by
    the next run) is left out, and the file is not touched."""
    from ..jsonl import parse_json

    data = path.read_bytes()
    lines = data.split(b"\n")[:-1]  # the last piece is "" or a torn line
    rows = [parse_json(line, path=path, line=n) for n, line in enumerate(lines, 1)
            if line.strip()]
    return [r for r in rows if isinstance(r, dict)]


def conversations_payload(rows: Sequence[dict[str, Any]], judgments: Sequence[Path], *,
                          rationale_chars: int = RATIONALE_CHARS) -> dict[str, Any]:
    """``{"ids", "entries": {conversation_id: {"topic", "language", "runs", "scores"}}}``
    from transcript rows and the conversation-level judgments files (missing ones give no
    verdicts). Dimensions of several rubric variants are named ``variant · dimension``."""
    from ..framework import BY_CODE

    entries: dict[str, dict[str, Any]] = {}
    for row in rows:
        cid, model = str(row.get("conversation_id")), str(row.get("model"))
        entry = entries.setdefault(cid, {"topic": row.get("topic"),
                                         "language": row.get("language"), "runs": [],
                                         "scores": []})
        if any(r[0] == model for r in entry["runs"]):
            continue
        turns = [[_SPEAKER.get(str(t.get("speaker")), str(t.get("speaker"))[:1]),
                  t.get("text"), _strategy_name(t, BY_CODE)]
                 for t in row.get("turns") or [] if isinstance(t, dict)]
        entry["runs"].append([model, turns, row.get("end_reason"), row.get("customer"),
                              row.get("end_detail") or None])
    verdicts: dict[tuple[str, str, str, str, str], list[Any]] = {}
    for file in judgments:
        if not file.is_file():
            continue
        for _line, j in read_jsonl(file):
            key = tuple(str(j.get(k)) for k in ("item_id", "model", "judge", "variant",
                                                "dimension"))
            if j.get("kind", "absolute") != "absolute" or key[0] not in entries:
                continue
            slot = verdicts.setdefault(key, [0.0, 0, None])  # type: ignore[arg-type]
            if j.get("status") == "ok" and isinstance(j.get("score"), (int, float)):
                slot[0] += float(j["score"])
                slot[1] += 1
            if slot[2] is None and j.get("rationale") and rationale_chars:
                slot[2] = str(j["rationale"])[:rationale_chars]
    several = len({k[3] for k in verdicts}) > 1
    for (cid, model, judge, variant, dim), (total, n, why) in verdicts.items():
        entries[cid]["scores"].append([model, judge, f"{variant} · {dim}" if several else dim,
                                       round(total / n, 3) if n else None, why])
    return {"ids": set(entries), "entries": entries}


def _strategy_name(turn: dict[str, Any], names: dict[str, Any]) -> str | None:
    code = turn.get("strategy")
    if code in names:
        return str(names[code].name)
    if code:
        return str(code)
    return "no valid label" if turn.get("speaker") == "supporter" else None


def conversation_view(rows: Sequence[dict[str, Any]], judgments: Sequence[Path]
                      ) -> dict[str, Any]:
    """The items payload holding simulated conversations only: the simulate report's
    transcripts, rendered by the same items view as ``report.html``."""
    empty = {"models": [], "judges": [], "dims": [], "dialogues": {}, "items": [],
             "rationale_chars": RATIONALE_CHARS, "metric_names": list(METRIC_NAMES),
             "metric_settings": {}}
    return _merge_conversations(empty, conversations_payload(rows, judgments))


def _merge_conversations(payload: dict[str, Any], conv: dict[str, Any]) -> dict[str, Any]:
    """``payload`` with ``conversations`` (see the module docstring): names become indexes
    into its ``models``, ``judges`` and ``dims`` lists, extended as needed."""
    def index(kind: str, value: str) -> int:
        if value not in payload[kind]:
            payload[kind].append(value)
        return payload[kind].index(value)

    out = []
    for cid, entry in conv["entries"].items():
        runs = [[index("models", r[0]), *r[1:]] for r in entry["runs"]]
        scores = [[index("models", m), index("judges", j), index("dims", d), score, why]
                  for m, j, d, score, why in entry["scores"]]
        out.append([cid, entry["topic"], entry["language"], runs, scores, *_spreads(scores)])
    payload["conversations"] = out
    return payload
