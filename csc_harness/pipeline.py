"""The main job: candidate replies, automatic metrics, judging, leaderboard, one command.

Each step writes into its own folder of ``OUT`` and reuses what is cached (the provider
cache for judges and the generated-context rollout, lm-eval's own request cache for the
reference context), so a re-run after a failure or Ctrl-C only does the missing work.

``OUT/lm_eval/``    lm-eval's results and samples (reference context)
``OUT/generated/``  generated-context candidates and metrics.json, one folder per model
``OUT/judge/``      judgments.jsonl and run.json
``OUT/``            leaderboard.md/.csv/.json, breakdowns.csv, report.html, run.json
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import CSCError, UserError
from .jsonl import write_json_atomic

EMBEDDED_JUDGE_VARIANT = "compact"
"""The rubric the embedded demo judge gets in joint mode (half the prompt of the default)."""
Setting = Literal["reference", "generated", "both"]
SETTINGS: tuple[str, ...] = ("reference", "generated", "both")


@dataclass(frozen=True)
class RunOptions:
    """What ``csc-harness run`` was asked to do; recorded in ``OUT/run.json``."""

    out: str
    models: tuple[str, ...] = ()
    """Candidate models in litellm form; empty = the embedded model."""
    judges: tuple[str, ...] = ()
    """Judge models in litellm form; empty = the embedded model."""
    setting: Setting = "reference"
    limit: int | None = None
    """Keep the first N dialogues."""
    data: str | None = None
    api_base: str | None = None
    """OpenAI-compatible server of the candidate models (vLLM, Ollama, ...)."""
    judge_api_base: str | None = None
    mode: Literal["joint", "separate"] = "joint"
    concurrency: int = 8
    cache: str | None = None
    """Provider cache file; None = the user cache (``default_cache_path()``)."""
    rounds: int = 1000
    progress: bool = True
    embedded_names: tuple[str, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        if self.setting not in SETTINGS:
            raise UserError(f"setting {self.setting!r} is not one of {', '.join(SETTINGS)}")
        if self.limit is not None and self.limit < 1:
            raise UserError(f"--limit must be >= 1 dialogue, got {self.limit}")


class StepFailed(UserError):
    """A step of the run failed; the message names the step and how to resume."""


@contextlib.contextmanager
def step(number: int, total: int, name: str, resume: str) -> Iterator[dict[str, Any]]:
    """Announce a step, time it, and turn any failure into one line naming the step."""
    print(f"[{number}/{total}] {name} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    summary: dict[str, Any] = {}
    try:
        yield summary
    except KeyboardInterrupt:
        raise
    except CSCError as exc:
        raise StepFailed(f"step {number} ({name}) failed: {exc}; {resume}") from None
    except Exception as exc:  # noqa: BLE001 - a third-party failure still names its step
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise StepFailed(f"step {number} ({name}) failed: {type(exc).__name__}: {first}; "
                         f"{resume}") from exc
    summary["seconds"] = round(time.perf_counter() - started, 1)
    print(f"[{number}/{total}] {name}: {summary.get('line', 'done')} ({summary['seconds']}s)",
          file=sys.stderr, flush=True)


def served_name(model: str) -> str:
    """The name a server knows the model by: litellm's name without its provider."""
    return model.split("/", 1)[1] if "/" in model else model


def lm_eval_backend(model: str, api_base: str | None, *, concurrency: int) -> tuple[str, str]:
    """lm-eval backend and ``model_args`` for a litellm model name."""
    if api_base:
        url = api_base.rstrip("/") + "/chat/completions"
        return ("local-chat-completions", f"model={served_name(model)},base_url={url},"
                f"num_concurrent={concurrency},max_retries=5,timeout=600")
    provider = model.split("/", 1)[0] if "/" in model else ""
    if provider == "openai":
        return ("openai-chat-completions",
                f"model={served_name(model)},num_concurrent={concurrency},max_retries=5")
    if provider == "anthropic":
        return "anthropic-chat-completions", f"model={served_name(model)}"
    raise UserError(
        f"no lm-eval backend for {model!r}: serve it behind an OpenAI-compatible URL "
        "(vLLM, Ollama, llama.cpp) and pass --api-base, or use an openai/ or anthropic/ model")


def reference_candidates(model: str, api_base: str | None, opts: RunOptions,
                         cache_dir: Path, *, max_gen_toks: int | None,
                         width: int) -> dict[str, Any]:
    """Reference-context replies and metrics through lm-eval's own evaluator."""
    from lm_eval import simple_evaluate
    from lm_eval.loggers import EvaluationTracker
    from lm_eval.tasks import TaskManager

    from ._cli.lm_eval import tasks_path

    backend, model_args = lm_eval_backend(model, api_base, concurrency=width)
    metadata = {"data": opts.data, "dialogues": opts.limit}
    cache_dir.mkdir(parents=True, exist_ok=True)
    tracker = EvaluationTracker(output_path=str(Path(opts.out) / "lm_eval"))
    results = simple_evaluate(
        model=backend, model_args=model_args, tasks=["csconv_reply"],
        task_manager=TaskManager(include_path=tasks_path(), include_defaults=False,
                                 metadata=metadata),
        apply_chat_template=True, log_samples=True, evaluation_tracker=tracker,
        use_cache=str(cache_dir / served_name(model).replace("/", "__")),
        gen_kwargs=f"max_gen_toks={max_gen_toks}" if max_gen_toks else None,
        bootstrap_iters=0, metadata=metadata,
    )
    samples = results.pop("samples")
    tracker.save_results_aggregated(results=results, samples=samples)
    tracker.save_results_samples(task_name="csconv_reply", samples=samples["csconv_reply"])
    return results["results"]["csconv_reply"]


def lm_eval_cache_dir(opts: RunOptions) -> Path:
    """lm-eval's request cache sits beside the provider cache, not in OUT (results stay small)."""
    from .llm import default_cache_path

    return Path(opts.cache).parent if opts.cache else default_cache_path().parent / "lm_eval"


def _metric_line(metrics: dict[str, Any], suffix: str = "") -> str:
    names = ("strategy_acc", "bleu2", "bleu4", "rougeL")
    return ", ".join(f"{n} {metrics[n + suffix]:.2f}" for n in names if n + suffix in metrics)


def _judge(opts: RunOptions, candidate_dirs: Sequence[Path], judges: Sequence[str],
           judge_api_base: str | None, structured: str, width: int) -> dict[str, Any]:
    """Judge every candidate reply of the run into ``OUT/judge``."""
    from .judge import JudgeConfig, load_candidates, run_judgments
    from .judge.summary import format_summary
    from .llm import Client

    local = any(j in opts.embedded_names for j in judges)
    # The 135M demo judge reads prompts at ~200 tokens/s and would spend most of its time on
    # the full rubric and on rationales nobody should read: it gets the compact rubric.
    config = JudgeConfig(judges=tuple(judges), mode=opts.mode, api_base=judge_api_base,
                         embedded_models=opts.embedded_names,
                         variant=EMBEDDED_JUDGE_VARIANT if local and opts.mode == "joint"
                         else "default",
                         verdict="score_only" if local else None)
    candidates = load_candidates([str(p) for p in candidate_dirs], data=opts.data)

    async def judge():
        async with Client(cache_path=opts.cache, concurrency=width,
                          timeout=600.0 if local else 120.0, structured=structured) as client:
            return await run_judgments(config, candidates, Path(opts.out) / "judge",
                                       client=client, progress=opts.progress)

    result = asyncio.run(judge())
    if result.exit_code:
        raise UserError(result.message or f"{result.errors} judge calls failed")
    return {"line": "; ".join(format_summary(result.summary)[:3]) or "done",
            "variant": config.variant}


def _leaderboard(opts: RunOptions, metric_dirs: Sequence[Path]) -> list[Path]:
    from .analysis import leaderboard, load_automatic_metrics, load_judgments
    from .report import write_leaderboard

    judgments = load_judgments([Path(opts.out) / "judge"])
    metrics = load_automatic_metrics([str(p) for p in metric_dirs])
    board = leaderboard(judgments, metrics, rounds=opts.rounds)
    return write_leaderboard(board, opts.out)


def _generated(model: str, name: str, api_base: str | None, opts: RunOptions,
               width: int, guard: Any = None) -> dict[str, Any]:
    from .data import load_conversations
    from .llm import Client
    from .rollout import generate_async

    conversations = load_conversations(opts.data)[: opts.limit]
    local = model in opts.embedded_names
    out = Path(opts.out) / "generated" / served_name(name).replace("/", "__")

    async def go():
        async with Client(cache_path=opts.cache, concurrency=width,
                          timeout=600.0 if local else 120.0) as client:
            return await generate_async(conversations, model=model, name=name, client=client,
                                        out=out, setting="generated", api_base=api_base,
                                        concurrency=width, progress=opts.progress,
                                        data=opts.data, guard=guard)

    result = asyncio.run(go())
    return {"line": _metric_line(result.metrics), "dir": str(out.relative_to(opts.out))}


def run_pipeline(opts: RunOptions) -> dict[str, Any]:
    """Run every step into ``opts.out`` and return what ``OUT/run.json`` records."""
    from .llm.local import EMBEDDED_MODEL, local_server
    from .rollout import EMBEDDED_MAX_TOKENS

    models = opts.models or (EMBEDDED_MODEL,)
    judges = opts.judges or (EMBEDDED_MODEL,)
    needs_local = EMBEDDED_MODEL in models + judges
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(local_server()) if needs_local else None
        opts = RunOptions(**{**asdict(opts), "embedded_names": (
            EMBEDDED_MODEL, served_name(EMBEDDED_MODEL))})
        return _steps(opts, models, judges, server, EMBEDDED_MODEL, EMBEDDED_MAX_TOKENS,
                      started)


def _steps(opts: RunOptions, models: Sequence[str], judges: Sequence[str], server: Any,
           embedded: str, embedded_max_tokens: int, started: float) -> dict[str, Any]:
    out = Path(opts.out)
    resume = "re-run the same command to resume (finished work is cached)"
    settings = ("reference", "generated") if opts.setting == "both" else (opts.setting,)
    total = len(models) * len(settings) + 2
    number, record = 0, {"options": {k: v for k, v in asdict(opts).items()
                                     if k != "embedded_names"}, "steps": []}

    def base_for(model: str, api_base: str | None) -> str | None:
        return server.base_url if model == embedded else api_base

    def width_for(model: str, conversations_at_once: bool = False) -> int:
        if model != embedded or server is None:
            return opts.concurrency
        return server.workers if conversations_at_once else server.concurrency

    candidate_dirs, metric_dirs = [], []
    for setting in settings:
        for model in models:
            number += 1
            name = f"candidate replies, {setting} context: {model}"
            with step(number, total, name, resume) as summary:
                if setting == "reference":
                    results = reference_candidates(
                        model, base_for(model, opts.api_base), opts, lm_eval_cache_dir(opts),
                        max_gen_toks=embedded_max_tokens if model == embedded else None,
                        width=width_for(model))
                    summary["line"] = _metric_line(results, ",none")
                    candidate_dirs.append(out / "lm_eval")
                    metric_dirs.append(out / "lm_eval")
                else:
                    guard = server.check if server and model == embedded else None
                    summary.update(_generated(model, served_name(model),
                                              base_for(model, opts.api_base), opts,
                                              width_for(model, conversations_at_once=True),
                                              guard))
                    metric_dirs.append(out / summary["dir"])
                    if "reference" not in settings:
                        candidate_dirs.append(out / summary["dir"] / "candidates.jsonl")
            record["steps"].append({"step": name, **summary})
    number += 1
    with step(number, total, f"judging with {', '.join(judges)}", resume) as summary:
        judge_base = server.base_url if embedded in judges else opts.judge_api_base
        summary.update(_judge(opts, sorted(set(candidate_dirs)), judges, judge_base,
                              "json_object" if embedded in judges else "auto",
                              min(width_for(j) for j in judges)))
    record["steps"].append({"step": "judging", **summary})
    number += 1
    with step(number, total, "leaderboard and report", resume) as summary:
        written = _leaderboard(opts, sorted(set(metric_dirs)))
        summary["line"] = ", ".join(p.name for p in written)
    record["steps"].append({"step": "leaderboard", "files": [p.name for p in written],
                            "seconds": summary["seconds"]})
    if embedded in list(models) + list(judges):
        from .llm.local import EMBEDDED_LABEL

        record["label"] = EMBEDDED_LABEL
        record["embedded_model"] = {
            "weights": server.gguf.name, "workers": server.workers,
            "threads_per_worker": server.settings.n_threads,
            "max_tokens": embedded_max_tokens}
    record["seconds"] = round(time.perf_counter() - started, 1)
    write_json_atomic(out / "run.json", record)
    return record
