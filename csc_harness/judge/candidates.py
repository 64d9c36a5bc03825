"""Candidate replies to judge: from lm-eval output folders or ``{item_id, model, reply}`` JSONL.

An lm-eval folder (the ``--output_path`` of a ``csconv`` run with ``--log_samples``) holds
``<model>/results_<date>.json`` (the model name) and ``samples_csconv_reply_<date>.jsonl``
(one row per item, with the document the model saw and its raw answer). A samples file is
input like any other: every document must match the dataset's item of the same id (the
judge renders the dataset's item, never the file's copy). A JSONL file is joined with the
dataset (``--data``, ``$CSCONV_DATA`` or the bundled sample) by item id.

Every problem is a :class:`DataError` naming the file, line and field; unknown item ids and
duplicate (item, model) pairs are errors, not silently dropped rows.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..contract import CandidateRow
from ..data import Example, Utterance, data_spec, load_examples, with_own_replies
from ..errors import DataError, LabelError, UserError, brief
from ..framework import parse_reply, parse_strategy
from ..jsonl import read_json, read_jsonl

log = logging.getLogger(__name__)

__all__ = ["MAX_REPLY_CHARS", "Candidate", "control_candidates", "load_candidates",
           "read_candidates_jsonl",
           "read_lm_eval_folder", "with_controls"]

SAMPLES_TASK = "csconv_reply"
MAX_REPLY_CHARS = 20_000
"""Longest reply judged as it is: a longer one (a runaway generation, or a file built to run
up the judge's bill) is cut to this many characters, counted in ``run.json``
(``plan.truncated_replies``) and announced by the dry run and a warning."""
_DOC_FIELDS = ("item_id", "conversation_id", "turn_index", "context", "strategy", "reply",
               "stage", "topic", "language")


@dataclass(frozen=True)
class Candidate:
    """A candidate row (:class:`csc_harness.contract.CandidateRow`) joined with the item it
    answers: what a judge renders."""

    item: Example
    model: str
    reply: str
    """The reply text without its strategy label."""
    predicted_strategy: str | None
    """Strategy code the model claimed, None when it gave no valid label."""
    source: str = ""
    """``file:line`` it came from, for error messages."""
    truncated_from: int | None = None
    """The reply's length in characters when it was cut to :data:`MAX_REPLY_CHARS`."""

    @classmethod
    def join(cls, row: CandidateRow, item: Example, source: str = "") -> Candidate:
        """The row answering ``item``, its reply cut to :data:`MAX_REPLY_CHARS`."""
        reply, cut = row.reply, None
        if len(reply) > MAX_REPLY_CHARS:
            reply, cut = reply[:MAX_REPLY_CHARS], len(reply)
        return cls(item, row.model, reply, row.predicted_strategy, source, cut)


def load_candidates(paths: Sequence[str | Path], *, data: str | None = None) -> list[Candidate]:
    """Candidates from lm-eval output folders and/or candidate JSONL files.

    Every reply is joined with the dataset's item (``data`` spec, else ``$CSCONV_DATA``,
    else the bundled sample). Raises DataError for malformed input, unknown item ids,
    lm-eval documents that differ from the dataset and duplicate (item_id, model) pairs.
    """
    if not paths:
        raise UserError("no candidates given: pass lm-eval output folders or JSONL files")
    for raw in paths:
        if not Path(raw).exists():
            raise UserError(f"candidates path {str(raw)!r} does not exist")
    spec = data_spec(data)
    examples = {ex.item_id: ex for ex in load_examples(spec)}
    found: list[Candidate] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(read_lm_eval_folder(path, examples, spec))
        else:
            found.extend(read_candidates_jsonl(path, examples, spec))
    _check_unique(found)
    cut = [c for c in found if c.truncated_from is not None]
    if cut:
        log.warning("%d repl%s longer than %s characters (the longest %s, at %s) cut to "
                    "%s for judging", len(cut), "y" if len(cut) == 1 else "ies",
                    f"{MAX_REPLY_CHARS:,}", f"{max(c.truncated_from or 0 for c in cut):,}",
                    cut[0].source, f"{MAX_REPLY_CHARS:,}")
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
        setting = "generated" if obj.get("setting") == "generated" else "reference"
        row = CandidateRow(item_id, model, reply, raw, code, setting)
        out.append(Candidate.join(row, examples[item_id], f"{path}:{lineno}"))
        if setting == "generated":
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
    config = results.get("config")
    args = config.get("model_args") if isinstance(config, dict) else None
    if isinstance(args, dict):
        args = ",".join(f"{k}={v}" for k, v in args.items())
    if isinstance(args, str):
        for part in args.split(","):
            key, _, value = part.partition("=")
            if key.strip() in ("model", "pretrained", "model_name") and value.strip():
                return value.strip()
    return folder.name


def read_lm_eval_folder(root: Path, examples: dict[str, Example],
                        data: str = "the dataset") -> list[Candidate]:
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
        results = read_json(results_path, what="lm-eval results file")
        date = results_path.stem.removeprefix("results_")
        samples = results_path.parent / f"samples_{SAMPLES_TASK}_{date}.jsonl"
        if not samples.is_file():
            tasks = results.get("results")
            if not isinstance(tasks, dict) or SAMPLES_TASK not in tasks:
                continue  # a run of other tasks only
            raise DataError(f"no {samples.name} next to it: run lm-eval with --log_samples",
                            path=str(results_path))
        newest[_model_name(results, results_path.parent)] = samples
    out = [cand for model, samples in newest.items()
           for cand in _read_samples(samples, model, examples, data)]
    if not out:
        raise DataError(f"no {SAMPLES_TASK} samples in any lm-eval run here", path=str(root))
    return out


def _read_samples(path: Path, model: str, examples: dict[str, Example],
                  data: str) -> list[Candidate]:
    out = []
    for lineno, row in read_jsonl(path):
        doc = row.get("doc")
        if not isinstance(doc, dict):
            raise DataError("missing 'doc' object", path=str(path), line=lineno, field="doc")
        item = _dataset_item(doc, examples, data, path, lineno)
        answers = row.get("filtered_resps")
        answer = answers[0] if isinstance(answers, list) and answers else None
        if isinstance(answer, list):  # some lm-eval versions nest one more level
            answer = answer[0] if answer else None
        if not isinstance(answer, str):
            raise DataError("expected the model's answer as a string", path=str(path),
                            line=lineno, field="filtered_resps")
        cand = CandidateRow(item.item_id, model, *_split(answer), setting="reference")
        out.append(Candidate.join(cand, item, f"{path}:{lineno}"))
    return out


def _split(answer: str) -> tuple[str, str, str | None]:
    code, reply = parse_reply(answer)
    return reply, answer, code


def _dataset_item(doc: dict, examples: dict[str, Example], data: str, path: Path,
                  line: int) -> Example:
    """The dataset's item for an lm-eval document, refusing documents that differ from it
    (a samples file is input: its gold, strategy or context must not replace the data's)."""
    item_id = doc.get("item_id")
    item = examples.get(item_id) if isinstance(item_id, str) else None
    if item is None:
        raise DataError(f"item {brief(item_id)} is not in {data}: pass --data with the dataset "
                        "the lm-eval run used", path=str(path), line=line, field="doc.item_id")
    expected = item.to_doc()
    for name in _DOC_FIELDS:
        if doc.get(name) != expected[name]:
            raise DataError(f"differs from {data} ({brief(doc.get(name))} here, "
                            f"{brief(expected[name])} in the data): the samples do not belong "
                            "to this dataset or were edited", path=str(path), line=line,
                            field=f"doc.{name}")
    return item


# --------------------------------------------------------------------------- controls


def control_candidates(items: Sequence[Example], kinds: Sequence[str], *,
                       pool: Sequence[Example] | None = None, seed: int = 0) -> list[Candidate]:
    """Gold and control replies of ``items`` as judge candidates (model ``control:<kind>``,
    see :mod:`csc_harness.controls`); ``pool`` is where mismatch replies come from."""
    from ..controls import build_controls

    by_id = {ex.item_id: ex for ex in items}
    return [Candidate(item=by_id[rec.item_id], model=rec.model, reply=rec.reply,
                      predicted_strategy=rec.predicted_strategy)
            for rec in build_controls(items, kinds, pool=pool, seed=seed)]


def with_controls(candidates: Sequence[Candidate], kinds: Sequence[str], *,
                  dialogues: int | None, turns: int | None = None, data: str | None = None,
                  seed: int = 0) -> tuple[list[Candidate], dict[str, int]]:
    """``candidates`` plus control replies on ``dialogues`` of the dialogues they cover
    (chosen in a seeded order; None = all), ``turns`` of each (seeded; None = all), and
    what the controls cover.

    Controls are built on the dataset's items (reference context, whatever context the
    models saw) and each is placed right after the replies to its item: the judge prompts
    of one item share everything up to the reply, so a server that reuses the previous
    request's prefix (llama.cpp) reads only the new reply. Returns the list and
    ``{"n_items", "n_dialogues", "of_items", "of_dialogues"}``.
    """
    from ..controls import sample_dialogues

    examples = {ex.item_id: ex for ex in load_examples(data_spec(data))}
    ids = list(dict.fromkeys(c.item.item_id for c in candidates))
    items = [examples[i] for i in ids if i in examples]
    total = len({ex.conversation_id for ex in items})
    wanted = total if dialogues is None else min(dialogues, total)
    chosen = items if not kinds or not items or (wanted == total and turns is None) else \
        sample_dialogues(items, wanted, seed, turns)
    controls = control_candidates(chosen, kinds, pool=list(examples.values()), seed=seed) \
        if kinds else []
    position = {item_id: i for i, item_id in enumerate(ids)}
    merged = sorted([*candidates, *controls], key=lambda c: position[c.item.item_id])
    covered = {c.item.item_id: c.item.conversation_id for c in controls}
    return merged, {"n_items": len(covered), "n_dialogues": len(set(covered.values())),
                    "of_items": len(items), "of_dialogues": total}
