"""``csc-harness judge``: argument parsing only; the work is :func:`csc_harness.judge.run_judgments`.

Nothing heavy is imported at module level (``csc-harness --help`` stays fast): the judge
package, jinja2, tqdm and litellm load when the command runs.
"""

from __future__ import annotations

import argparse
import sys

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


def _judging(how: argparse._ArgumentGroup) -> None:
    how.add_argument("--judge", action="append", required=True, metavar="MODEL",
                     help="judge model in litellm form; repeat for a panel")
    how.add_argument("--dimensions", nargs="+", metavar="DIM",
                     help="dimension ids (default: all of the variant)")
    how.add_argument("--mode", choices=("separate", "joint"), default="separate",
                     help="one call per dimension, or one call for all (default: separate)")
    how.add_argument("--pairwise", action="store_true",
                     help="compare exactly two candidate models, each pair in both orders")
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
    provider.add_argument("--dry-run", action="store_true",
                          help="print calls, tokens and cost; call nothing")
    provider.add_argument("--no-progress", action="store_true", help="no progress bar")


def _config(args: argparse.Namespace):  # -> JudgeConfig (imported lazily)
    from ..judge import JudgeConfig

    return JudgeConfig(
        judges=tuple(args.judge), dimensions=tuple(args.dimensions) if args.dimensions else None,
        mode=args.mode, pairwise=args.pairwise, reference_guided=args.reference_guided,
        variant=args.variant, verdict=args.verdict, samples=args.samples,
        temperature=args.temperature, max_tokens=args.max_tokens, logprobs=args.logprobs,
        api_base=args.api_base, prompts=args.prompts,
        embedded_models=tuple(args.embedded_model), max_cost=args.max_cost,
    )


def run(args: argparse.Namespace) -> int:
    import asyncio

    from ..errors import CacheMiss, ProviderError, UserError
    from ..judge import estimate_judgments, load_candidates, run_judgments
    from ..judge.summary import format_summary
    from ..llm import Client

    config = _config(args)
    candidates = load_candidates(args.candidates, data=args.data)
    client = Client(cache_path=args.cache, cache_mode=args.cache_mode,
                    concurrency=args.concurrency, rpm=args.rpm, timeout=args.timeout,
                    max_tries=args.max_tries, structured=args.structured)
    if args.dry_run:
        estimate = estimate_judgments(config, candidates, args.out, client=client)
        print("\n".join(f"dry run · {line}" for line in estimate.lines()))
        return 0

    async def judge():
        async with client:
            return await run_judgments(config, candidates, args.out, client=client,
                                       progress=False if args.no_progress else None)

    try:
        result = asyncio.run(judge())
    except CacheMiss as exc:
        raise UserError(str(exc)) from None
    except ProviderError as exc:
        print(f"csc-harness judge: error: {exc}", file=sys.stderr)
        return 1
    for line in format_summary(result.summary):
        print(line)
    print(f"judgments: {result.judgments_path}")
    print(f"run: {result.run_path}")
    if result.message:
        print(f"csc-harness judge: {result.message}", file=sys.stderr)
    return result.exit_code
