"""Candidate replies for CSConv supporter turns, in the paper's two settings.

* ``reference``: the context of every turn is the gold history, exactly the chat messages
  the lm-eval ``csconv_reply`` task sends (both build them with
  :func:`csc_harness.prompting.reply_messages`).
* ``generated``: each dialogue is rolled out turn by turn; the model's own earlier
  supporter replies (parsed, without the strategy tag) replace the gold ones, customer
  turns stay as recorded, so errors compound. Dialogues run concurrently, turns within a
  dialogue in order.

Output contract of a folder ``OUT`` (one model and one setting per folder):

* ``OUT/candidates.jsonl``: one row per item, appended as it finishes, never duplicated:
  ``{"item_id", "model", "reply", "raw", "predicted_strategy", "setting"}`` where ``raw``
  is the model's whole answer and ``reply`` / ``predicted_strategy`` come from
  :func:`csc_harness.framework.parse_reply`. A re-run skips the items already there.
* ``OUT/metrics.json``: ``{"model", "setting", "n", "metrics", "tokenization", "embedded",
  ...}`` from :func:`csc_harness.metrics.score`, the metric code of the lm-eval task.

Every model call goes through the one :class:`csc_harness.llm.Client` (cache, retries).
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .contract import (
    CANDIDATES_FILE,
    CANDIDATES_SOURCE_FILE,
    METRICS_FILE,
    SETTINGS,
    CandidateRow,
    Setting,
)
from .data import (
    Conversation,
    Example,
    Utterance,
    data_spec,
    expand,
    load_conversations,
    with_own_replies,
)
from .errors import DataError, UserError
from .framework import parse_reply
from .jsonl import parse_json, read_json, write_json_atomic
from .lock import folder_lock
from .metrics import TOKENIZATION, Scored, score
from .profiles import EMBEDDED
from .prompting import reply_messages

if TYPE_CHECKING:
    from .llm import CacheMode, Client, Response

__all__ = [
    "CANDIDATES_FILE", "DEFAULT_MAX_TOKENS", "EMBEDDED_MAX_TOKENS", "METRICS_FILE",
    "SETTINGS", "CandidateRow", "CandidateStore", "GenerationResult", "Setting",
    "answer_row", "generate", "generate_async", "generated_context", "score_candidates",
]

DEFAULT_MAX_TOKENS = 200
"""Reply length cap for real models: CSConv replies are one or two sentences."""
EMBEDDED_MAX_TOKENS = EMBEDDED.max_tokens
"""Cap for the embedded demo model (``EMBEDDED.max_tokens``, see :mod:`.profiles`)."""


def answer_row(item_id: str, model: str, raw: str, setting: Setting) -> CandidateRow:
    """The candidate row of a model's whole answer (strategy label parsed off)."""
    code, reply = parse_reply(raw)
    return CandidateRow(item_id, model, reply, raw, code, setting)


@dataclass(frozen=True)
class GenerationResult:
    """What a generation run produced; ``metrics`` is :func:`csc_harness.metrics.score`."""

    model: str
    setting: Setting
    n: int
    metrics: dict[str, float]
    embedded: bool
    candidates_path: Path
    metrics_path: Path
    new_rows: int
    """Rows written by this run (the rest were already in the file)."""
    elapsed_s: float

    def summary(self) -> str:
        """One line: items, metrics, time (and the demo label for the embedded model)."""
        shown = " ".join(f"{k} {v:.2f}" for k, v in self.metrics.items())
        label = f" [{EMBEDDED.label}]" if self.embedded else ""
        return (f"{self.model} {self.setting}: n={self.n} ({self.new_rows} new) {shown} "
                f"in {self.elapsed_s:.1f}s{label}")


class CandidateStore:
    """``OUT/candidates.jsonl`` for one model and setting: rows done, and appending more.

    A final line cut short by a killed run is dropped (that item is asked again); any
    other malformed line, or a row for another model or setting, is a :class:`DataError`.
    """

    def __init__(self, out: str | os.PathLike[str], model: str, setting: Setting,
                 source: dict[str, Any] | None = None) -> None:
        self.path = Path(out) / CANDIDATES_FILE
        self.model, self.setting = model, setting
        self.rows: dict[str, CandidateRow] = {}
        if source is not None:
            _check_source(Path(out) / CANDIDATES_SOURCE_FILE, source, self.path.exists())
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"not UTF-8 text ({exc.reason}); use another --out",
                            path=str(self.path)) from None
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        elif lines:  # no trailing newline: the last write was interrupted
            self.path.write_text("".join(f"{line}\n" for line in lines[:-1]), encoding="utf-8")
            lines.pop()
        for lineno, line in enumerate(lines, 1):
            if line.strip():
                self._add_loaded(line, lineno)

    def _add_loaded(self, line: str, lineno: int) -> None:
        try:
            obj = parse_json(line)
            row = CandidateRow(**obj)
            if not all(isinstance(getattr(row, name), str)
                       for name in ("item_id", "model", "setting", "reply", "raw")):
                raise TypeError("a field that must be text is not")
        except (DataError, TypeError) as exc:
            raise DataError(f"not a candidate row ({exc}); remove the line or use another "
                            "--out", path=str(self.path), line=lineno) from None
        if (row.model, row.setting) != (self.model, self.setting):
            raise DataError(
                f"row for model {row.model!r}, setting {row.setting!r}; this run is model "
                f"{self.model!r}, setting {self.setting!r}: use one --out folder per model "
                "and setting", path=str(self.path), line=lineno)
        self.rows.setdefault(row.item_id, row)

    def append(self, row: CandidateRow) -> None:
        """Write one finished row at once (a crash loses at most the calls in flight)."""
        if row.item_id in self.rows:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(row.to_json() + "\n")
        self.rows[row.item_id] = row


def _check_source(path: Path, source: dict[str, Any], have_rows: bool) -> None:
    """Replies in a folder are reused only for the same model, endpoint and settings."""
    if path.is_file() and have_rows:
        try:
            recorded = read_json(path, root=None)
        except DataError:
            recorded = None
        if recorded != source:
            changed = sorted(k for k in source if not isinstance(recorded, dict)
                             or recorded.get(k) != source[k])
            raise UserError(f"{str(path.parent)!r} holds replies asked with other "
                            f"{', '.join(changed) or 'settings'} ({path.name}): use another "
                            "--out, or delete its candidates.jsonl to start over")
    if not path.is_file() or not have_rows:
        write_json_atomic(path, source)


def generated_context(conversation: Conversation, turn_index: int,
                      rows: Mapping[str, CandidateRow]) -> tuple[Utterance, ...]:
    """The context the model saw at ``turn_index`` in the generated setting: its own
    earlier replies (from ``rows``, keyed by item id, labelled with its predicted strategy)
    between the gold customer turns. Raises KeyError when an earlier turn has no row yet.
    """
    def own(item_id: str) -> Utterance:
        row = rows[item_id]
        return Utterance("supporter", row.reply, row.predicted_strategy)

    return with_own_replies(conversation.id, conversation.utterances[:turn_index], own)


def score_candidates(examples: Sequence[Example], rows: Mapping[str, CandidateRow]
                     ) -> dict[str, float]:
    """:func:`csc_harness.metrics.score` of the rows against their gold turns (0-100)."""
    return score([Scored(ex.strategy, rows[ex.item_id].predicted_strategy, ex.reply,
                         rows[ex.item_id].reply, ex.language) for ex in examples])


@dataclass
class _Run:
    """One generation run's fixed inputs and shared state."""

    client: Client
    model: str
    name: str
    """The model name recorded in rows (lm-eval's name for it, in a combined run)."""
    api_base: str | None
    setting: Setting
    max_tokens: int
    stop: tuple[str, ...] | None
    store: CandidateStore
    advance: Callable[[], None]
    guard: Callable[[], None] | None = None

    async def ask(self, example: Example, context: Sequence[Utterance]) -> CandidateRow:
        from .llm import Request

        if self.guard is not None:
            self.guard()
        request = Request(model=self.model, messages=reply_messages(context, example.language),
                          api_base=self.api_base, temperature=0.0, max_tokens=self.max_tokens,
                          stop=self.stop)
        response: Response = await self.client.complete(request)
        row = answer_row(example.item_id, self.name, response.text, self.setting)
        self.store.append(row)
        self.advance()
        return row

    async def dialogue(self, conversation: Conversation) -> None:
        """Generated setting: turns in order, each seeing the model's earlier replies."""
        for example in expand(conversation):
            if example.item_id not in self.store.rows:
                context = generated_context(conversation, example.turn_index, self.store.rows)
                await self.ask(example, context)


async def _run_all(jobs: Iterable[Callable[[], Awaitable[Any]]], limit: int) -> None:
    """Run jobs with at most ``limit`` at once, started in order; the first failure cancels
    the rest. Each coroutine is made only once its slot is free (none is left un-awaited)."""
    slots = asyncio.Semaphore(limit)
    failed = False

    async def bounded(job: Callable[[], Awaitable[Any]]) -> None:
        nonlocal failed
        async with slots:
            if failed:  # a slot freed by the failure must not start another job
                return
            try:
                await job()
            except BaseException:
                failed = True
                raise

    tasks = [asyncio.ensure_future(bounded(job)) for job in jobs]
    if not tasks:
        return
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


def _progress_bar(total: int, initial: int, setting: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="reply", desc=f"generate ({setting})",
                file=sys.stderr, disable=not enabled, dynamic_ncols=True)


async def generate_async(
    conversations: Sequence[Conversation], *, model: str, client: Client,
    out: str | os.PathLike[str], setting: Setting = "reference", api_base: str | None = None,
    max_tokens: int | None = None, stop: Sequence[str] | None = None, concurrency: int = 8,
    progress: bool = True, data: str | None = None, name: str | None = None,
    guard: Callable[[], None] | None = None,
) -> GenerationResult:
    """Generate (or finish generating) candidates for every supporter turn, then score them.

    ``name`` is the model name written to rows and metrics.json (default ``model``), so
    a run can record the generated setting under the name lm-eval gives the same model.
    ``guard`` runs before every request and stops the run by raising, e.g.
    :meth:`LocalServer.check <csc_harness.llm.local.LocalServer.check>`.

    ``concurrency`` bounds items in flight (reference) or dialogues in flight (generated);
    requests are issued in dialogue order either way, which lets a llama.cpp server reuse
    the shared prompt prefix of consecutive turns. ``max_tokens`` None means
    :data:`EMBEDDED_MAX_TOKENS` for the embedded model, else :data:`DEFAULT_MAX_TOKENS`.
    ``data`` is only recorded in ``metrics.json``. Provider failures propagate
    (:class:`~csc_harness.errors.ProviderError`, :class:`~csc_harness.errors.CacheMiss`);
    rows finished before them stay in the file for the next run.
    """
    if setting not in SETTINGS:
        raise UserError(f"setting {setting!r} is not one of {', '.join(map(repr, SETTINGS))}")
    if concurrency < 1 or (max_tokens is not None and max_tokens < 1):
        raise UserError(f"need concurrency >= 1 and max_tokens >= 1, got "
                        f"concurrency={concurrency!r}, max_tokens={max_tokens!r}")
    with folder_lock(out):
        cap = max_tokens or (EMBEDDED.max_tokens if EMBEDDED.matches(model) else DEFAULT_MAX_TOKENS)
        started = time.perf_counter()
        name = name or model
        source = {"model": model, "endpoint": "embedded" if EMBEDDED.matches(model)
                  else api_base or "default", "max_tokens": cap, "stop": list(stop or []),
                  "setting": setting}
        store = CandidateStore(out, name, setting, source)
        examples = [ex for conv in conversations for ex in expand(conv)]
        scope = {ex.item_id for ex in examples}
        before = sum(1 for item in store.rows if item in scope)
        bar = _progress_bar(len(examples), before, setting, progress)
        stops = tuple(stop) if stop else None
        run = _Run(client, model, name, api_base, setting, cap, stops, store,
                   lambda: bar.update(1), guard)
        try:
            if setting == "reference":
                todo = [ex for ex in examples if ex.item_id not in store.rows]
                await _run_all((functools.partial(run.ask, ex, ex.context) for ex in todo),
                               concurrency)
            else:
                await _run_all((functools.partial(run.dialogue, conv) for conv in conversations),
                               concurrency)
        finally:
            bar.close()
        metrics = score_candidates(examples, store.rows)
        generation = {"temperature": 0.0, "max_tokens": cap, "stop": list(stops or []),
                      "dialogues": len(conversations), "data": data}
        metrics_path = _write_metrics(Path(out), name, setting, len(examples), metrics, generation,
                                      embedded=EMBEDDED.matches(model))
        return GenerationResult(name, setting, len(examples), metrics, EMBEDDED.matches(model),
                                store.path, metrics_path, len(scope & store.rows.keys()) - before,
                                time.perf_counter() - started)


def _write_metrics(out: Path, model: str, setting: Setting, n: int, metrics: dict[str, float],
                   generation: dict[str, Any], *, embedded: bool) -> Path:
    """``OUT/metrics.json``, replaced atomically (a reader never sees half a file)."""
    payload = {
        "model": model, "setting": setting, "n": n, "metrics": metrics,
        "tokenization": TOKENIZATION, "embedded": embedded,
        "label": EMBEDDED.label if embedded else None, "generation": generation,
    }
    out.mkdir(parents=True, exist_ok=True)
    path = out / METRICS_FILE
    write_json_atomic(path, payload)
    return path


def generate(
    model: str = EMBEDDED.model, *, out: str | os.PathLike[str], setting: Setting = "reference",
    api_base: str | None = None, data: str | None = None, limit: int | None = None,
    concurrency: int | None = None, max_tokens: int | None = None,
    stop: Sequence[str] | None = None, cache_path: str | os.PathLike[str] | None = None,
    cache_mode: CacheMode = "rw", timeout: float | None = None, progress: bool = True,
) -> GenerationResult:
    """Synchronous entry point: load data, make a Client, and run :func:`generate_async`.

    ``limit`` keeps the first N dialogues. The embedded model without ``api_base`` starts
    the local llama.cpp server for the run (log in ``out``) and always stops it.
    ``concurrency`` None is 8, and for the embedded model what its local server takes:
    :attr:`~csc_harness.llm.local.LocalServer.concurrency` items, or one dialogue per
    worker in the generated setting (each worker reuses only its previous prompt).
    Callers already inside an event loop use :func:`generate_async`.
    """
    from .llm import Client, check_model

    check_model(model)
    if limit is not None and limit < 1:
        raise UserError(f"limit must be >= 1 dialogue, got {limit!r}")
    if concurrency is not None and concurrency < 1:
        raise UserError(f"concurrency must be >= 1, got {concurrency!r}")
    if EMBEDDED.matches(model):
        model = EMBEDDED.model  # one spelling, so rows and cache keys agree
    spec = data_spec(data)
    conversations = load_conversations(spec)[:limit]
    local = EMBEDDED.matches(model) and api_base is None

    async def main(base: str | None, guard: Callable[[], None] | None,
                   width: int) -> GenerationResult:
        async with Client(cache_path=cache_path, cache_mode=cache_mode, concurrency=width,
                          timeout=timeout or (EMBEDDED.timeout_s if local else 120.0)) as client:
            return await generate_async(
                conversations, model=model, client=client, out=out, setting=setting,
                api_base=base, max_tokens=max_tokens, stop=stop, concurrency=width,
                progress=progress, data=spec, guard=guard)

    if not local:
        width = concurrency or (1 if EMBEDDED.matches(model) else 8)
        return asyncio.run(main(api_base, None, width))
    from .llm.local import local_server

    with local_server(log_dir=out) as server:
        width = concurrency or (server.concurrency if setting == "reference" else server.workers)
        return asyncio.run(main(server.base_url, server.check, width))
