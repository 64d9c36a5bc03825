"""What a run asks: one job per (reply or reply pair, template call, judge, sample, order).

Jobs are generated lazily and rendered in small chunks by the runner, so a 77k-judgment
run never holds all prompts in memory. A job's identity (:func:`job_keys`) is known before
rendering, which is what lets a resumed run skip finished work without rendering it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Literal

from ..contract import digest
from ..data import Example
from ..errors import UserError
from ..llm import Request
from .candidates import Candidate
from .config import JudgeConfig
from .render import Reply, render_prompt, response_schema
from .rows import identity
from .rubrics import Rubric, TemplateGroup, VerdictFormat, select_templates

__all__ = ["Job", "Plan", "job_keys"]

Order = Literal["ab", "ba"]


@dataclass(slots=True, eq=False)
class Job:
    """One provider call. ``candidates`` are in the order shown (A then B for pairwise)."""

    group: TemplateGroup
    judge: str
    sample: int
    candidates: tuple[Candidate, ...]
    order: Order | None
    prompt_id: str
    variant: str
    input_id: str = ""
    """Digest of what is judged and how (see :mod:`csc_harness.contract`)."""
    request: Request | None = None
    nonce: str | None = None

    @property
    def pairwise(self) -> bool:
        return self.order is not None

    @property
    def model(self) -> str:
        if self.order is None:
            return self.candidates[0].model
        a, b = self.pair
        return f"{a} vs {b}"

    @property
    def pair(self) -> tuple[str, str]:
        """(model_a, model_b) in canonical order, whatever order they are shown in."""
        first, second = self.candidates[0].model, self.candidates[1].model
        return (first, second) if self.order == "ab" else (second, first)


def item_digest(item: Example) -> str:
    """Digest of everything about an item a judge may see."""
    return digest(item.to_doc())


def job_keys(job: Job, config: JudgeConfig) -> list[tuple]:
    """Row identities this job produces: one per dimension (see :func:`rows.identity`)."""
    mode = "joint" if job.group.mode == "joint" else "separate"
    kind = "pairwise" if job.pairwise else "absolute"
    item_id = job.candidates[0].item.item_id
    return [identity(kind, item_id, job.model, job.judge, dim, job.prompt_id, job.sample,
                     job.variant, mode, config.reference_guided, job.order)
            for dim in job.group.dimensions]


def prompt_identity(rubric: Rubric, verdict: VerdictFormat) -> tuple[str, str]:
    """``(prompt_id, variant)``: a verdict format other than the template's default is part
    of both, so rows asked differently never share an identity."""
    if verdict == rubric.verdict:
        return rubric.prompt_id, rubric.variant
    digest = hashlib.sha256(f"{rubric.digest}\0verdict={verdict}".encode()).hexdigest()
    return f"{rubric.name}@{rubric.version}#{digest[:10]}", f"{rubric.variant}+{verdict}"


class Plan:
    """The jobs of a run, in a stable order, with their request parameters."""

    def __init__(self, config: JudgeConfig, candidates: Sequence[Candidate],
                 rubrics: Sequence[Rubric]) -> None:
        self.config = config
        mode = "pairwise" if config.pairwise else config.mode
        self.groups = select_templates(rubrics, variant=config.variant, mode=mode,
                                       dimensions=config.dimensions)
        self._verdict = {g.rubric.name: config.verdict or g.rubric.verdict for g in self.groups}
        self._identity = {g.rubric.name: prompt_identity(g.rubric, self._verdict[g.rubric.name])
                          for g in self.groups}
        self._schemas: dict[tuple[str, tuple[str, ...]], dict] = {}
        self._settings = digest(config.judging_settings())
        self._items: dict[int, str] = {}
        self.candidates = list(candidates)
        self.pairs: list[tuple[Candidate, Candidate]] = []
        self.unpaired = 0
        if config.pairwise:
            self.pairs, self.unpaired = _pairs(self.candidates, config.baseline,
                                               config.all_pairs)
        if not self.candidates:
            raise UserError("no candidates to judge")

    @property
    def dimensions(self) -> list[str]:
        return [d for g in self.groups for d in g.dimensions]

    def __len__(self) -> int:
        per_reply = len(self.groups) * len(self.config.judges) * self.config.samples
        return per_reply * (2 * len(self.pairs) if self.config.pairwise else len(self.candidates))

    @property
    def judgments(self) -> int:
        """Rows a complete run writes (a joint call writes one per dimension)."""
        per = sum(len(g.dimensions) for g in self.groups) * len(self.config.judges)
        per *= self.config.samples
        return per * (2 * len(self.pairs) if self.config.pairwise else len(self.candidates))

    def input_id(self, candidates: Sequence[Candidate]) -> str:
        """Digest of the item, the replies (in canonical order) and the judge settings."""
        item = candidates[0].item
        item_id = self._items.get(id(item))
        if item_id is None:
            item_id = self._items[id(item)] = item_digest(item)
        replies = sorted((c.model, c.reply, c.predicted_strategy) for c in candidates)
        return digest([self._settings, item_id, replies])

    def __iter__(self) -> Iterator[Job]:
        judges, samples = self.config.judges, range(self.config.samples)
        if not self.config.pairwise:
            for cand in self.candidates:
                input_id = self.input_id((cand,))
                for group in self.groups:
                    prompt_id, variant = self._identity[group.rubric.name]
                    for judge in judges:
                        for k in samples:
                            yield Job(group, judge, k, (cand,), None, prompt_id, variant,
                                      input_id)
            return
        for a, b in self.pairs:
            input_id = self.input_id((a, b))
            for group in self.groups:
                prompt_id, variant = self._identity[group.rubric.name]
                for judge in judges:
                    for k in samples:
                        yield Job(group, judge, k, (a, b), "ab", prompt_id, variant, input_id)
                        yield Job(group, judge, k, (b, a), "ba", prompt_id, variant, input_id)

    def verdict(self, job: Job) -> VerdictFormat:
        return self._verdict[job.group.rubric.name]

    def max_tokens(self, group: TemplateGroup) -> int:
        """Completion budget: the config's, the template's, or a default by verdict format."""
        if self.config.max_tokens:
            return self.config.max_tokens
        if group.rubric.max_tokens:
            return group.rubric.max_tokens
        per_dim = 400 if self._verdict[group.rubric.name] == "rationale_first" else 16
        return per_dim * len(group.dimensions) + 32

    def render(self, job: Job) -> Request:
        """Render the job's prompt and build its request (kept on the job)."""
        group, item = job.group, job.candidates[0].item
        verdict = self._verdict[group.rubric.name]
        replies = [Reply(c.reply, c.predicted_strategy) for c in job.candidates]
        rendered = render_prompt(group, item, replies, verdict=verdict,
                                 reference_guided=self.config.reference_guided)
        schema_key = (group.rubric.name, group.dimensions)
        schema = self._schemas.get(schema_key)
        if schema is None:
            schema = self._schemas[schema_key] = response_schema(group, verdict)
        job.nonce = rendered.nonce
        job.request = Request(
            model=job.judge, messages=rendered.messages, api_base=self.config.api_base,
            temperature=self.config.sampling_temperature, max_tokens=self.max_tokens(group),
            response_schema=schema,
            top_logprobs=None if job.pairwise else self.config.logprobs, sample=job.sample,
        )
        return job.request


def model_pairs(models: Sequence[str], baseline: str | None = None,
                all_pairs: bool = False) -> list[tuple[str, str]]:
    """Model pairs to compare, each sorted by name (so a pair's rows keep one identity
    whichever model is the baseline): every model with the baseline (default the first
    model), or every pair with ``all_pairs``."""
    if len(models) < 2:
        raise UserError(f"pairwise mode needs at least two candidate models, got "
                        f"{len(models)}: {', '.join(models)}")
    if all_pairs:
        return [tuple(sorted(p)) for p in combinations(models, 2)]  # type: ignore[misc]
    baseline = models[0] if baseline is None else baseline
    if baseline not in models:
        raise UserError(f"--baseline {baseline!r} is not a candidate model; models: "
                        f"{', '.join(models)}")
    return [tuple(sorted((baseline, m))) for m in models if m != baseline]  # type: ignore[misc]


def _pairs(candidates: Sequence[Candidate], baseline: str | None = None,
           all_pairs: bool = False) -> tuple[list[tuple[Candidate, Candidate]], int]:
    """Items both models of each pair answered, as (model_a's, model_b's); ``unpaired``
    counts replies that take part in no comparison."""
    models = list(dict.fromkeys(c.model for c in candidates))
    by_model: dict[str, dict[str, Candidate]] = {m: {} for m in models}
    for cand in candidates:
        by_model[cand.model][cand.item.item_id] = cand
    out: list[tuple[Candidate, Candidate]] = []
    used: set[tuple[str, str]] = set()
    for first, second in model_pairs(models, baseline, all_pairs):
        a, b = by_model[first], by_model[second]
        shared = [item_id for item_id in a if item_id in b]
        if not shared:
            raise UserError(f"models {first!r} and {second!r} share no item to compare")
        out.extend((a[i], b[i]) for i in shared)
        used.update((m, i) for m in (first, second) for i in shared)
    unpaired = sum(len(v) for v in by_model.values()) - len(used)
    return out, unpaired
