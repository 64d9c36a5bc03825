"""``csc-harness judge``: argument parsing only; the work is :func:`csc_harness.judge.run_judgments`.

Nothing heavy is imported at module level (``csc-harness --help`` stays fast): the judge
package, jinja2, tqdm and litellm load when the command runs.
"""

from __future__ import annotations

import argparse
import sys

from .common import (
    add_models_option,
    add_stage_map_option,
    apply_models_option,
    apply_stage_map,
    judge_or_resume,
)

EPILOG = """\
API keys come from the provider's environment variable (OPENAI_API_KEY, ANTHROPIC_API_KEY,
...) and are never written anywhere. For a vLLM / Ollama / llama.cpp server use
--judge openai/<served name> --api-base http://host:port/v1.
Exit codes: 0 done, 1 some calls failed (re-run to retry), 2 bad input, 3 stopped by
--max-cost (re-run with a higher budget to continue).
"""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "judge", help="score candidate replies with rubric LLM judges",
        description="Judge candidate replies (lm-eval output folders or {item_id, model, "
        "reply} JSONL) with one or more LLM judges. Writes OUT/judgments.jsonl and "
        "OUT/run.json; an interrupted run resumes where it stopped.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _inputs(parser.add_argument_group("what to judge"))
    _judging(parser.add_argument_group("how to judge"))
    _provider(parser.add_argument_group("provider, cache and budget"))
    parser.set_defaults(func=run)


def _inputs(what: argparse._ArgumentGroup) -> None:
    what.add_argument("--candidates", nargs="+", required=True, metavar="PATH",
                      help="lm-eval --output_path folders and/or candidate JSONL files")
    what.add_argument("--data", metavar="SPEC", help="dataset for JSONL candidates: a file or "
                      "hf:<id> (default: $CSCONV_DATA, else the bundled sample)")
    what.add_argument("--out", required=True, metavar="DIR", help="output folder")
    add_stage_map_option(what)
    add_models_option(what)


def _judging(how: argparse._ArgumentGroup) -> None:
    how.add_argument("--judge", action="append", required=True, metavar="MODEL",
                     help="judge model in litellm form; repeat for a panel")
    how.add_argument("--dimensions", nargs="+", metavar="DIM",
                     help="dimension ids (default: all of the variant)")
    how.add_argument("--mode", choices=("separate", "joint"), default="separate",
                     help="one call per dimension, or one call for all (default: separate)")
    how.add_argument("--pairwise", action="store_true",
                     help="compare candidate models' replies, each pair in both orders: "
                     "every model against the baseline, or all pairs with --all-pairs")
    how.add_argument("--baseline", metavar="NAME", help="pairwise: the model the others "
                     "are compared with (default: the first model in the candidates)")
    how.add_argument("--all-pairs", action="store_true", help="pairwise: compare every pair "
                     "of models (n(n-1)/2 pairs; --dry-run shows the cost)")
    how.add_argument("--reference-guided", action="store_true",
                     help="show the gold strategy and reply to the judge")
    how.add_argument("--variant", default="default", help="prompt variant (default: default)")
    how.add_argument("--verdict", choices=("rationale_first", "score_only"),
                     help="override the templates' verdict format")
    how.add_argument("--prompts", metavar="DIR", help="prompts folder (default: packaged)")
    how.add_argument("--samples", type=int, default=1, metavar="K",
                     help="judgments per reply and dimension, averaged in analysis")
    how.add_argument("--temperature", type=float,
                     help="judge temperature (default: 0, or 1.0 with --samples > 1)")
    how.add_argument("--max-tokens", type=int, metavar="N", help="completion token limit")
    how.add_argument("--logprobs", type=int, metavar="N",
                     help="ask for N top logprobs to compute probability-weighted scores")
    how.add_argument("--embedded-model", action="append", default=[], metavar="NAME",
                     help="flag rows whose judge or candidate is this demo model")


def _provider(provider: argparse._ArgumentGroup) -> None:
    provider.add_argument("--api-base", metavar="URL", help="OpenAI-compatible server URL")
    provider.add_argument("--concurrency", type=int, default=8, metavar="N",
                          help="requests in flight per judge (default: 8)")
    provider.add_argument("--rpm", type=float, metavar="N", help="requests per minute per judge")
    provider.add_argument("--timeout", type=float, default=120.0, metavar="S",
                          help="seconds per request (default: 120)")
    provider.add_argument("--max-tries", type=int, default=6, metavar="N",
                          help="tries per request incl. the first (default: 6)")
    provider.add_argument("--structured", choices=("auto", "json_schema", "json_object", "none"),
                          default="auto", help="how the verdict schema is sent (default: auto)")
    provider.add_argument("--cache", metavar="PATH", help="cache file (default: "
                          "$CSC_HARNESS_CACHE or ~/.cache/csc-harness/llm.sqlite)")
    provider.add_argument("--cache-mode", choices=("rw", "replay", "off"), default="rw",
                          help="replay: answer only from the cache, a miss is an error")
    provider.add_argument("--max-cost", type=float, metavar="USD",
                          help="stop before the folder's spend would pass this budget")
    provider.add_argument("--batch", action="store_true",
                          help="send uncached calls through the provider's batch API "
                          "(OpenAI, Anthropic: about half price, results within 24 h); batch "
                          "ids are kept in OUT/batches.json, so a re-run resumes waiting")
    provider.add_argument("--batch-poll", type=float, default=60.0, metavar="S",
                          help="seconds between batch status checks (default: 60)")
    provider.add_argument("--dry-run", action="store_true",
                          help="print calls, tokens and cost; call nothing")
    provider.add_argument("--no-progress", action="store_true", help="no progress bar")


def _config(args: argparse.Namespace):  # -> JudgeConfig (imported lazily)
    from ..judge import JudgeConfig

    return JudgeConfig(
        judges=tuple(args.judge), dimensions=tuple(args.dimensions) if args.dimensions else None,
        mode=args.mode, pairwise=args.pairwise, baseline=args.baseline,
        all_pairs=args.all_pairs, reference_guided=args.reference_guided,
        variant=args.variant, verdict=args.verdict, samples=args.samples,
        temperature=args.temperature, max_tokens=args.max_tokens, logprobs=args.logprobs,
        api_base=args.api_base, prompts=args.prompts,
        embedded_models=tuple(args.embedded_model), max_cost=args.max_cost,
    )


def run(args: argparse.Namespace) -> int:
    from ..contract import SUPERSEDED_FILE
    from ..errors import UserError
    from ..judge import estimate_judgments, load_candidates
    from ..judge.summary import format_summary
    from ..llm import Client

    apply_stage_map(args)
    apply_models_option(args)
    config = _config(args)
    candidates = load_candidates(args.candidates, data=args.data)
    client = Client(cache_path=args.cache, cache_mode=args.cache_mode,
                    concurrency=args.concurrency, rpm=args.rpm, timeout=args.timeout,
                    max_tries=args.max_tries, structured=args.structured,
                    batch=args.batch, batch_poll_s=args.batch_poll)
    if args.batch and args.max_cost is not None:
        raise UserError("--batch with --max-cost is not supported yet: a batch is paid as a "
                        "whole; use --dry-run --batch to see its price first")
    if args.dry_run:
        estimate = estimate_judgments(config, candidates, args.out, client=client)
        priced = " (provider batch price)" if args.batch else ""
        print("\n".join(f"dry run · {line}{priced if line.startswith('cost') else ''}"
                        for line in estimate.lines()))
        return 0

    result = judge_or_resume("judge", args, config, candidates, client)
    if result is None:
        return 1
    for line in [*format_summary(result.summary), *result.lines]:
        print(line)
    if result.superseded:
        print(f"{result.superseded} earlier judgment(s) were of replies, items or settings that "
              f"changed and were judged anew (old rows moved to {SUPERSEDED_FILE})")
    print(f"judgments: {result.judgments_path}")
    print(f"run: {result.run_path}")
    if result.message:
        print(f"csc-harness judge: {result.message}", file=sys.stderr)
    return result.exit_code
