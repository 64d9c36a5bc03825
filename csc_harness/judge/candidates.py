"""Candidate replies to judge: from lm-eval output folders or ``{item_id, model, reply}`` JSONL.

An lm-eval folder (the ``--output_path`` of a ``csconv`` run with ``--log_samples``) holds
``<model>/results_<date>.json`` (the model name) and ``samples_csconv_reply_<date>.jsonl``
(one row per item, with the document the model saw and its raw answer). Its documents are
used as they are, so the judge sees exactly the context the model saw. A JSONL file is
joined with the dataset (``--data``, ``$CSCONV_DATA`` or the bundled sample) by item id.

Every problem is a :class:`DataError` naming the file, line and field; unknown item ids and
duplicate (item, model) pairs are errors, not silently dropped rows.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..data import Example, Utterance, data_spec, load_examples, with_own_replies
from ..errors import DataError, LabelError, UserError
from ..framework import BY_CODE, parse_reply, parse_strategy
from ..jsonl import read_jsonl

__all__ = ["Candidate", "load_candidates", "read_candidates_jsonl", "read_lm_eval_folder"]

SAMPLES_TASK = "csconv_reply"
_DOC_FIELDS = {"item_id": str, "conversation_id": str, "turn_index": int, "context": list,
               "strategy": str, "reply": str, "stage": str, "topic": str, "language": str}


@dataclass(frozen=True)
class Candidate:
    """One model's reply to one item, with the item it answers."""

    item: Example
    model: str
    reply: str
    """The reply text without its strategy label."""
    predicted_strategy: str | None
    """Strategy code the model claimed, None when it gave no valid label."""
    source: str = ""
    """``file:line`` it came from, for error messages."""


def load_candidates(paths: Sequence[str | Path], *, data: str | None = None) -> list[Candidate]:
    """Candidates from lm-eval output folders and/or candidate JSONL files.

    The dataset (``data`` spec, else ``$CSCONV_DATA``, else the bundled sample) is loaded
    only when a JSONL file needs it. Raises DataError for malformed input, unknown item ids
    and duplicate (item_id, model) pairs across all paths.
    """
    if not paths:
        raise UserError("no candidates given: pass lm-eval output folders or JSONL files")
    examples: dict[str, Example] | None = None
    found: list[Candidate] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(read_lm_eval_folder(path))
        elif path.is_file():
            if examples is None:
                examples = {ex.item_id: ex for ex in load_examples(data_spec(data))}
            found.extend(read_candidates_jsonl(path, examples, data_spec(data)))
        else:
            raise UserError(f"candidates path {str(path)!r} does not exist")
    _check_unique(found)
    return found


def _check_unique(candidates: Sequence[Candidate]) -> None:
    seen: dict[tuple[str, str], str] = {}
    for cand in candidates:
        key = (cand.item.item_id, cand.model)
        if key in seen:
            path, _, line = cand.source.rpartition(":")
            raise DataError(f"duplicate candidate for item {key[0]!r} and model {key[1]!r} "
                            f"(first seen at {seen[key]}); keep one reply per item and model",
                            path=path or cand.source, line=int(line) if line.isdigit() else None)
        seen[key] = cand.source


def _text(obj: dict, name: str, path: Path, line: int, *, empty_ok: bool = False) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or (not empty_ok and not value.strip()):
        problem = "missing" if value is None else f"expected a non-empty string, got {value!r}"
        raise DataError(problem, path=str(path), line=line, field=name)
    return value


def read_candidates_jsonl(path: Path, examples: dict[str, Example],
                          data: str = "the dataset") -> list[Candidate]:
    """``{"item_id", "model", "reply"}`` rows joined with ``examples``.

    ``reply`` may carry a leading strategy label (``[Greeting] ...``, as the lm-eval task
    asks for); an explicit ``strategy`` field is used instead when present.
    """
    out, unknown, generated = [], [], {}
    for lineno, obj in read_jsonl(path):
        item_id = _text(obj, "item_id", path, lineno)
        model = _text(obj, "model", path, lineno)
        raw = _text(obj, "reply", path, lineno, empty_ok=True)
        if item_id not in examples:
            unknown.append(item_id)
            continue
        # `csc-harness generate` rows carry the label apart from the reply text.
        label = obj.get("strategy", obj.get("predicted_strategy"))
        if label is not None:
            try:
                code: str | None = parse_strategy(label).code
            except LabelError as exc:
                raise DataError(str(exc), path=str(path), line=lineno, field="strategy") from None
            reply = raw.strip()
        else:
            code, reply = parse_reply(raw)
        out.append(Candidate(examples[item_id], model, reply, code, f"{path}:{lineno}"))
        if obj.get("setting") == "generated":
            generated[len(out) - 1] = lineno
    if unknown:
        shown = ", ".join(repr(i) for i in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise DataError(f"{len(unknown)} item id(s) not in {data}: {shown}{more}; pass --data "
                        "with the dataset the candidates answer", path=str(path), field="item_id")
    if not out:
        raise DataError("file holds no candidates", path=str(path))
    return _in_generated_context(out, generated, path) if generated else out


def _in_generated_context(candidates: list[Candidate], generated: dict[int, int],
                          path: Path) -> list[Candidate]:
    """Generated-setting rows (``csc-harness generate --setting generated``) are judged in
    the context the model answered: its own earlier replies, not the gold ones."""
    own = {(c.model, c.item.item_id): Utterance("supporter", c.reply, c.predicted_strategy)
           for i, c in enumerate(candidates) if i in generated}
    out = list(candidates)
    for i, lineno in generated.items():
        cand = candidates[i]
        try:
            context = with_own_replies(cand.item.conversation_id, cand.item.context,
                                       lambda item_id, m=cand.model: own[(m, item_id)])
        except KeyError as exc:
            raise DataError(f"generated-setting reply {cand.item.item_id!r} of {cand.model!r} "
                            f"needs the model's earlier reply {exc.args[0][1]!r} (a finished "
                            "rollout has every turn)", path=str(path), line=lineno,
                            field="item_id") from None
        out[i] = dataclasses.replace(cand, item=dataclasses.replace(cand.item, context=context))
    return out


def _model_name(results: dict, folder: Path) -> str:
    name = results.get("model_name")
    if isinstance(name, str) and name.strip():
        return name.strip()
    args = (results.get("config") or {}).get("model_args")
    if isinstance(args, dict):
        args = ",".join(f"{k}={v}" for k, v in args.items())
    if isinstance(args, str):
        for part in args.split(","):
            key, _, value = part.partition("=")
            if key.strip() in ("model", "pretrained", "model_name") and value.strip():
                return value.strip()
    return folder.name


def read_lm_eval_folder(root: Path) -> list[Candidate]:
    """Candidates from the ``results_*.json`` + ``samples_csconv_reply_*.jsonl`` pairs.

    lm-eval adds a timestamped pair per run to a model's folder; a re-run of the same
    model is a newer answer to the same items, so the newest pair per model wins.
    """
    results_files = sorted(root.rglob("results_*.json"))
    if not results_files:
        raise DataError("no lm-eval results_*.json here: pass the --output_path folder of a "
                        "csconv run (with --log_samples), or a candidates JSONL file",
                        path=str(root))
    newest: dict[str, Path] = {}
    for results_path in results_files:  # sorted: ISO timestamps order by time
        try:
            results = json.loads(results_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"invalid JSON ({exc})", path=str(results_path)) from None
        date = results_path.stem.removeprefix("results_")
        samples = results_path.parent / f"samples_{SAMPLES_TASK}_{date}.jsonl"
        if not samples.is_file():
            if SAMPLES_TASK not in (results.get("results") or {}):
                continue  # a run of other tasks only
            raise DataError(f"no {samples.name} next to it: run lm-eval with --log_samples",
                            path=str(results_path))
        newest[_model_name(results if isinstance(results, dict) else {},
                           results_path.parent)] = samples
    out = [cand for model, samples in newest.items() for cand in _read_samples(samples, model)]
    if not out:
        raise DataError(f"no {SAMPLES_TASK} samples in any lm-eval run here", path=str(root))
    return out


def _read_samples(path: Path, model: str) -> list[Candidate]:
    out = []
    for lineno, row in read_jsonl(path):
        doc = row.get("doc")
        if not isinstance(doc, dict):
            raise DataError("missing 'doc' object", path=str(path), line=lineno, field="doc")
        item = _example(doc, path, lineno)
        answers = row.get("filtered_resps")
        answer = answers[0] if isinstance(answers, list) and answers else None
        if isinstance(answer, list):  # some lm-eval versions nest one more level
            answer = answer[0] if answer else None
        if not isinstance(answer, str):
            raise DataError("expected the model's answer as a string", path=str(path),
                            line=lineno, field="filtered_resps")
        code, reply = parse_reply(answer)
        out.append(Candidate(item, model, reply, code, f"{path}:{lineno}"))
    return out


def _example(doc: dict, path: Path, line: int) -> Example:
    for name, kind in _DOC_FIELDS.items():
        if not isinstance(doc.get(name), kind) or isinstance(doc.get(name), bool):
            raise DataError(f"expected {kind.__name__}, got {doc.get(name)!r}", path=str(path),
                            line=line, field=f"doc.{name}")
    if doc["strategy"] not in BY_CODE:
        raise DataError(f"unknown strategy code {doc['strategy']!r}", path=str(path), line=line,
                        field="doc.strategy")
    context = []
    for i, u in enumerate(doc["context"]):
        if not isinstance(u, dict) or u.get("speaker") not in ("supporter", "customer") \
                or not isinstance(u.get("text"), str):
            raise DataError("expected {speaker: supporter|customer, text, strategy}",
                            path=str(path), line=line, field=f"doc.context[{i}]")
        context.append(Utterance(u["speaker"], u["text"], u.get("strategy")))
    return Example(item_id=doc["item_id"], conversation_id=doc["conversation_id"],
                   turn_index=doc["turn_index"], context=tuple(context),
                   strategy=doc["strategy"], reply=doc["reply"], stage=doc["stage"],
                   topic=doc["topic"], language=doc["language"])
