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

from .contract import digest
from .errors import CSCError, UserError
from .jsonl import write_json_atomic
from .llm.budget import Budget, BudgetExhausted
from .lock import folder_lock
from .profiles import EMBEDDED

REFERENCE_MAX_GEN_TOKENS = 256
"""``max_gen_toks`` of the lm-eval ``csconv_reply`` task (tasks/csconv/csconv_reply.yaml)."""
CONTROL_DIALOGUES = 20
"""Dialogues whose turns get control replies in a run (seeded choice), when the run has
more: ~200 turns of CSConv, each control costs one judge call per turn and dimension."""
EMBEDDED_CONTROL_DIALOGUES = 31
"""The same with the embedded judge, one seeded turn each (:data:`EMBEDDED_CONTROL_TURNS`):
31 turns x 3 replies (gold, mismatch, padded) is 93 calls; each follows its item's model
reply and reuses its prompt prefix (see ``with_controls``), reading only the reply, so a
call costs the same wherever its turn is, and 31 dialogues give the dialogue bootstrap an
interval that every turn of 3 would not."""
EMBEDDED_CONTROL_TURNS = 1
"""Turns per chosen dialogue that get controls with the embedded judge (others: all)."""
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
    max_cost: float | None = None
    """USD cap on new provider spend of this invocation, over every step (cached answers
    are free). Unpriced candidate models served at ``api_base`` count as free (you host
    them); unpriced judges are refused."""
    paper_rows: bool = False
    """Show the paper's reported metrics beside the models (full CSConv only)."""
    controls: tuple[str, ...] | None = None
    """Control kinds judged beside the models, gold included (None: gold, mismatch and
    padded; empty: none); see :mod:`csc_harness.controls`."""
    control_dialogues: int | None = None
    """Dialogues that get controls (None: :data:`CONTROL_DIALOGUES`, or
    :data:`EMBEDDED_CONTROL_DIALOGUES` with the embedded judge, one turn each; 0: every
    dialogue)."""
    interactive: bool = False
    """Add whole conversations with a simulated customer (``csc-harness simulate``) into
    ``OUT/interactive``; the first judge plays the customer."""
    batch: bool = False
    """Judge through the providers' batch APIs (the Client's batch path)."""
    embedded_names: tuple[str, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        if self.setting not in SETTINGS:
            raise UserError(f"setting {self.setting!r} is not one of {', '.join(SETTINGS)}")
        if self.limit is not None and self.limit < 1:
            raise UserError(f"--limit must be >= 1 dialogue, got {self.limit}")
        if self.control_dialogues is not None and self.control_dialogues < 0:
            raise UserError(f"--control-dialogues must be >= 1 (or all), got "
                            f"{self.control_dialogues}")
        if self.max_cost is not None and not self.max_cost >= 0:
            raise UserError(f"--max-cost must be >= 0 USD, got {self.max_cost}")
        from .llm import check_api_base, check_model  # light: litellm loads on first call

        check_api_base(self.api_base)
        check_api_base(self.judge_api_base)
        for model in (*self.models, *self.judges):
            check_model(model)


class StepFailed(UserError):
    """A step of the run failed; the message names the step and how to resume."""

    exit_code = 2


class BudgetStopped(StepFailed):
    """A step stopped before the run's ``--max-cost`` would be passed (exit code 3)."""

    exit_code = 3


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
    except BudgetExhausted as exc:
        raise BudgetStopped(f"step {number} ({name}) stopped: {exc}; re-run with a higher "
                            "--max-cost to continue (finished work is cached)") from None
    except CSCError as exc:
        raise StepFailed(f"step {number} ({name}) failed: {exc}; {resume}") from None
    except Exception as exc:
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
    provider = model.split("/", 1)[0] if "/" in model else ""
    if provider == "anthropic" and api_base:  # litellm's Anthropic base is the host root
        return ("anthropic-chat-completions",
                f"model={served_name(model)},base_url={api_base.rstrip('/')}/v1/messages")
    if api_base:
        url = api_base.rstrip("/") + "/chat/completions"
        return ("local-chat-completions", f"model={served_name(model)},base_url={url},"
                f"num_concurrent={concurrency},max_retries=5,timeout=600")
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
    from .llm.models import listed_endpoint, listed_key

    listed = listed_endpoint(model)
    target, base, key_env = (listed.model, listed.api_base, listed.key_env) if listed \
        else (model, api_base, {})
    if listed and listed.note:
        print(f"note: {listed.note}", file=sys.stderr, flush=True)
    backend, model_args = lm_eval_backend(target, base, concurrency=width)
    metadata = {"data": opts.data, "dialogues": opts.limit}
    cache_dir.mkdir(parents=True, exist_ok=True)
    tracker = EvaluationTracker(output_path=str(Path(opts.out) / "lm_eval"))
    with listed_key(key_env):  # the key reaches lm-eval through its env variable only
        results = simple_evaluate(
            model=backend, model_args=model_args, tasks=["csconv_reply"],
            task_manager=TaskManager(include_path=tasks_path(), include_defaults=False,
                                     metadata=metadata),
            apply_chat_template=True, log_samples=True, evaluation_tracker=tracker,
            use_cache=str(cache_dir / _lm_eval_cache_name(model, api_base, opts)),
            gen_kwargs=f"max_gen_toks={max_gen_toks}" if max_gen_toks else None,
            bootstrap_iters=0, metadata=metadata,
        )
    if listed:  # rows name the list entry (as judging and the generated context do)
        from lm_eval.loggers.evaluation_tracker import sanitize_model_name

        general = tracker.general_config_tracker
        general.model_name = served_name(model)
        general.model_name_sanitized = sanitize_model_name(general.model_name)
    samples = results.pop("samples")
    tracker.save_results_aggregated(results=results, samples=samples)
    tracker.save_results_samples(task_name="csconv_reply", samples=samples["csconv_reply"])
    return results["results"]["csconv_reply"]


def _lm_eval_cache_name(model: str, api_base: str | None, opts: RunOptions) -> str:
    """lm-eval keys its request cache by prompt only: one file per model *and* endpoint, so
    pointing a run at another server never returns the first server's replies. The
    embedded model is one set of weights whatever port it is served on."""
    endpoint = "embedded" if model in opts.embedded_names else (api_base or "default")
    return f"{served_name(model).replace('/', '__')}-{digest([model, endpoint], 12)}"


def lm_eval_cache_dir(opts: RunOptions) -> Path:
    """lm-eval's request cache sits beside the provider cache, not in OUT (results stay small)."""
    from .llm import default_cache_path

    return Path(opts.cache).parent if opts.cache else default_cache_path().parent / "lm_eval"


def _metric_line(metrics: dict[str, Any], suffix: str = "") -> str:
    names = ("strategy_acc", "bleu2", "bleu4", "rougeL")
    return ", ".join(f"{n} {metrics[n + suffix]:.2f}" for n in names if n + suffix in metrics)


def _judge(opts: RunOptions, candidate_dirs: Sequence[Path], judges: Sequence[str],
           judge_api_base: str | None, structured: str, width: int,
           budget: Budget | None = None) -> dict[str, Any]:
    """Judge every candidate reply of the run into ``OUT/judge``."""
    from .judge import JudgeConfig, load_candidates, run_judgments
    from .judge.summary import format_summary
    from .llm import Client

    local = any(j in opts.embedded_names for j in judges)
    # The 135M demo judge reads prompts at ~200 tokens/s and would spend most of its time on
    # the full rubric and on rationales nobody should read: it gets the compact rubric.
    config = JudgeConfig(judges=tuple(judges), mode=opts.mode, api_base=judge_api_base,
                         embedded_models=opts.embedded_names,
                         variant=EMBEDDED.judge_variant if local and opts.mode == "joint"
                         else "default",
                         verdict=EMBEDDED.judge_verdict if local else None)
    candidates = load_candidates([str(p) for p in candidate_dirs], data=opts.data)
    candidates, controls = _with_controls(opts, candidates, local)

    async def judge():
        async with Client(cache_path=opts.cache, concurrency=width,
                          timeout=EMBEDDED.timeout_s if local else 120.0,
                          structured=structured, budget=budget,
                          batch=opts.batch) as client:
            return await run_judgments(config, candidates, Path(opts.out) / "judge",
                                       client=client, progress=opts.progress)

    result = asyncio.run(judge())
    if result.stop == "budget" and budget is not None:
        raise BudgetExhausted(result.message or "budget exhausted", cap=budget.cap,
                              spent=budget.spent, needed=0.0)
    if result.exit_code:
        raise UserError(result.message or f"{result.errors} judge calls failed")
    return {"line": "; ".join([*format_summary(result.summary)[:3], *result.lines]) or "done",
            "variant": config.variant, "controls": controls, "notes": result.lines}


def _with_controls(opts: RunOptions, candidates: list[Any],
                   local: bool) -> tuple[list[Any], dict[str, Any] | None]:
    """The run's candidates plus control replies on a seeded subset of dialogues, and
    what the controls cover (None with ``--controls none``)."""
    from .controls import RUN_CONTROLS
    from .judge import with_controls

    kinds = RUN_CONTROLS if opts.controls is None else opts.controls
    if not kinds:
        return candidates, None
    dialogues = opts.control_dialogues
    if dialogues is None:
        dialogues = EMBEDDED_CONTROL_DIALOGUES if local else CONTROL_DIALOGUES
    merged, coverage = with_controls(candidates, kinds, dialogues=dialogues or None,
                                     turns=EMBEDDED_CONTROL_TURNS if local else None,
                                     data=opts.data)
    return merged, {"kinds": list(kinds), **coverage}


def _leaderboard(opts: RunOptions,
                 metric_dirs: Sequence[Path]) -> tuple[list[Path], dict[str, Any] | None]:
    """Write the leaderboard files; returns them and the judge check (None: no controls)."""
    from .analysis import leaderboard, load_automatic_metrics, load_judgments
    from .analysis.items import load_items
    from .analysis.reference import data_counts
    from .report import write_leaderboard

    judge_dir = [Path(opts.out) / "judge"]
    judgments = load_judgments(judge_dir)
    metrics = load_automatic_metrics([str(p) for p in metric_dirs], data=opts.data)
    # No pairwise judging in `run`: the baseline stays the leaderboard's default.
    board = leaderboard(judgments, metrics, rounds=opts.rounds, paper_rows=opts.paper_rows,
                        data_counts=data_counts(opts.data) if opts.paper_rows else None)
    items = load_items(judge_dir, variant=board["settings"]["variant"], data=opts.data,
                       metrics=metrics)
    return write_leaderboard(board, opts.out, items), board.get("judge_check")


def _generated(model: str, name: str, api_base: str | None, opts: RunOptions,
               width: int, guard: Any = None, budget: Budget | None = None) -> dict[str, Any]:
    from .data import load_conversations
    from .llm import Client
    from .rollout import generate_async

    conversations = load_conversations(opts.data)[: opts.limit]
    local = model in opts.embedded_names
    out = Path(opts.out) / "generated" / served_name(name).replace("/", "__")

    async def go():
        async with Client(cache_path=opts.cache, concurrency=width,
                          timeout=EMBEDDED.timeout_s if local else 120.0,
                          budget=budget) as client:
            return await generate_async(conversations, model=model, name=name, client=client,
                                        out=out, setting="generated", api_base=api_base,
                                        concurrency=width, progress=opts.progress,
                                        data=opts.data, guard=guard)

    result = asyncio.run(go())
    return {"line": _metric_line(result.metrics), "dir": str(out.relative_to(opts.out))}


def _interactive(opts: RunOptions, models: Sequence[str], judges: Sequence[str],
                 server: Any) -> dict[str, Any]:
    """``csc-harness simulate`` for the run's models into ``OUT/interactive``; the demo run
    (no model named: the embedded model) gets the simulate demo's few short conversations."""
    from .simulate import SimulateOptions, simulate

    record = simulate(SimulateOptions(
        out=str(Path(opts.out) / "interactive"), models=tuple(models), api_base=opts.api_base,
        customer=judges[0], customer_api_base=opts.judge_api_base, judges=tuple(judges),
        judge_api_base=opts.judge_api_base, data=opts.data, scenarios=opts.limit,
        concurrency=opts.concurrency, cache=opts.cache, rounds=opts.rounds,
        progress=opts.progress, demonstration=not opts.models), server=server)
    done = record["steps"]["conversations"]
    return {"line": f"{done['n']} conversations ({done['new']} new)", "dir": "interactive"}


def run_pipeline(opts: RunOptions) -> dict[str, Any]:
    """Run every step into ``opts.out`` and return what ``OUT/run.json`` records."""
    from .llm.local import local_server

    def one_spelling(names: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(EMBEDDED.model if EMBEDDED.matches(n) else n for n in names)

    models = one_spelling(opts.models or (EMBEDDED.model,))
    judges = one_spelling(opts.judges or (EMBEDDED.model,))
    needs_local = EMBEDDED.model in models + judges
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        stack.enter_context(folder_lock(out))
        server = stack.enter_context(local_server()) if needs_local else None
        opts = RunOptions(**{**asdict(opts), "embedded_names": (
            EMBEDDED.model, EMBEDDED.alias)})
        return _steps(opts, models, judges, server, EMBEDDED.model, EMBEDDED.max_tokens,
                      started)


def _run_budget(opts: RunOptions, models: Sequence[str],
                judges: Sequence[str]) -> Budget | None:
    """The one budget of a run, or None without ``--max-cost``; refuses unpriced judges (and
    unpriced candidates without ``--api-base``) before any step spends anything."""
    if opts.max_cost is None:
        return None
    from .llm import Client

    prices = Client(cache_mode="off")
    free = set(opts.embedded_names)
    for model in models:
        if model not in free and opts.api_base and prices.price(model, 1000, 1000) is None:
            free.add(model)  # self-hosted behind --api-base: no provider bill to cap
    unpriced = [m for m in (*models, *judges)
                if m not in free and prices.price(m, 1000, 1000) is None]
    if unpriced:
        raise UserError(f"--max-cost needs prices, and litellm's price map has none for "
                        f"{', '.join(map(repr, unpriced))}: drop --max-cost or use priced "
                        "model names (candidates served at --api-base count as free)")
    return Budget(opts.max_cost, free=free)


def _reserve_reference(budget: Budget | None, model: str, opts: RunOptions,
                       max_gen_toks: int | None) -> Any:
    """Hold the worst case of lm-eval's reference step (every prompt + its token cap).

    lm-eval makes these calls itself, out of the client's sight, so the step is charged its
    worst case (even answers lm-eval serves from its cache): the cap holds, at the price of
    counting some spend that did not happen.
    """
    if budget is None or model in budget.free:
        return None
    from .data import expand, load_conversations
    from .llm import Client
    from .prompting import reply_messages

    prices = Client(cache_mode="off")
    examples = [ex for conv in load_conversations(opts.data)[: opts.limit] for ex in expand(conv)]
    prompt = sum(prices.count_tokens(model, reply_messages(ex.context, ex.language))
                 for ex in examples)
    cap = max_gen_toks or REFERENCE_MAX_GEN_TOKENS
    worst = prices.price(model, int(prompt * 1.1) + 16 * len(examples), cap * len(examples))
    return budget.take(model, worst or 0.0)


def _steps(opts: RunOptions, models: Sequence[str], judges: Sequence[str], server: Any,
           embedded: str, embedded_max_tokens: int, started: float) -> dict[str, Any]:
    out = Path(opts.out)
    resume = "re-run the same command to resume (finished work is cached)"
    settings = ("reference", "generated") if opts.setting == "both" else (opts.setting,)
    total = len(models) * len(settings) + 2 + int(opts.interactive)
    number, record = 0, {"options": {k: v for k, v in asdict(opts).items()
                                     if k != "embedded_names"}, "steps": []}
    budget = _run_budget(opts, models, judges)

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
                    max_gen = embedded_max_tokens if model == embedded else None
                    held = _reserve_reference(budget, model, opts, max_gen)
                    results = reference_candidates(
                        model, base_for(model, opts.api_base), opts, lm_eval_cache_dir(opts),
                        max_gen_toks=max_gen, width=width_for(model))
                    if held is not None:
                        budget.settle(held, None)  # type: ignore[union-attr]
                    summary["line"] = _metric_line(results, ",none")
                    candidate_dirs.append(out / "lm_eval")
                    metric_dirs.append(out / "lm_eval")
                else:
                    guard = server.check if server and model == embedded else None
                    summary.update(_generated(model, served_name(model),
                                              base_for(model, opts.api_base), opts,
                                              width_for(model, conversations_at_once=True),
                                              guard, budget))
                    metric_dirs.append(out / summary["dir"])
                    if "reference" not in settings:
                        candidate_dirs.append(out / summary["dir"] / "candidates.jsonl")
            record["steps"].append({"step": name, **summary})
    number += 1
    with step(number, total, f"judging with {', '.join(judges)}", resume) as summary:
        judge_base = server.base_url if embedded in judges else opts.judge_api_base
        summary.update(_judge(opts, sorted(set(candidate_dirs)), judges, judge_base,
                              EMBEDDED.structured if embedded in judges else "auto",
                              min(width_for(j) for j in judges), budget))
    record["steps"].append({"step": "judging", **summary})
    # Before the report, which shows the transcripts of OUT/interactive.
    if opts.interactive:
        number += 1
        with step(number, total, "interactive conversations", resume) as summary:
            summary.update(_interactive(opts, models, judges, server))
        record["steps"].append({"step": "interactive", **summary})
    number += 1
    with step(number, total, "leaderboard and report", resume) as summary:
        written, check = _leaderboard(opts, sorted(set(metric_dirs)))
        summary["line"] = ", ".join(p.name for p in written)
    record["steps"].append({"step": "leaderboard", "files": [p.name for p in written],
                            "seconds": summary["seconds"]})
    if check:  # the finding of the run: printed by the CLI, kept in run.json
        record["judge_check"] = {"passed": {j: e["pass"] for j, e in check["judges"].items()},
                                 "findings": check["findings"],
                                 "coverage": check.get("coverage")}
    if embedded in list(models) + list(judges):
        record["label"] = EMBEDDED.label
        record["embedded_model"] = {
            "weights": server.gguf.name, "workers": server.workers,
            "threads_per_worker": server.settings.n_threads,
            "flash_attention": server.settings.flash_attn,
            "jump_forward": server.settings.jump_forward,
            "max_tokens": embedded_max_tokens}
    if budget is not None:
        record["budget"] = budget.as_dict()
    record["seconds"] = round(time.perf_counter() - started, 1)
    write_json_atomic(out / "run.json", record)
    return record
