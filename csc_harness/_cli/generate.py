"""``csc-harness generate``: candidate replies in the reference or generated setting."""

from __future__ import annotations

import argparse
import sys

from .common import add_models_option, apply_models_option


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "generate",
        help="write a model's candidate replies and automatic metrics (both CSC settings)",
        description="Ask a model for every supporter turn and write OUT/candidates.jsonl "
        "(resumable: a re-run skips finished items) and OUT/metrics.json. 'reference': "
        "the gold history is the context (as in the lm-eval task); 'generated': each "
        "dialogue is rolled out with the model's own earlier replies. Without --model the "
        "embedded demo model runs on a local llama.cpp server (the 'local' extra).",
    )
    parser.add_argument("--model", default=None,
                        help="litellm model, e.g. openai/gpt-4o-mini (default: the embedded "
                        "demo model, openai/smollm2-135m-instruct)")
    parser.add_argument("--api-base", default=None,
                        help="OpenAI-compatible server URL, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--setting", choices=("reference", "generated"), default="reference",
                        help="whose earlier supporter replies form the context "
                        "(default: reference)")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="only the first N dialogues")
    parser.add_argument("--data", default=None,
                        help="CSConv file or hf:<dataset id> (default: $CSCONV_DATA or the "
                        "bundled sample)")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="requests (reference) or dialogues (generated) in flight "
                        "(default: 8; for the embedded model 8 requests per worker, or "
                        "one dialogue per worker)")
    parser.add_argument("--max-tokens", type=int, default=None,
                        help="reply length cap (default: 200; 48 for the embedded model)")
    parser.add_argument("--cache", default=None, metavar="PATH",
                        help="answer cache file (default: $CSC_HARNESS_CACHE or "
                        "~/.cache/csc-harness/llm.sqlite)")
    parser.add_argument("--cache-mode", choices=("rw", "replay", "off"), default="rw",
                        help="rw: read and write; replay: cached answers only; off: no cache")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output folder (one model and setting per folder)")
    add_models_option(parser)
    parser.set_defaults(func=run_generate)


def run_generate(args: argparse.Namespace) -> int:
    from ..errors import CacheMiss, ProviderError
    from ..llm.local import EMBEDDED_MODEL
    from ..rollout import generate

    apply_models_option(args)
    try:
        result = generate(
            args.model or EMBEDDED_MODEL, out=args.out, setting=args.setting,
            api_base=args.api_base, data=args.data, limit=args.limit,
            concurrency=args.concurrency, max_tokens=args.max_tokens, cache_path=args.cache,
            cache_mode=args.cache_mode, progress=not args.no_progress,
        )
    except (ProviderError, CacheMiss) as exc:
        from . import resume_command

        print(f"csc-harness generate: error: generating replies stopped: {exc}; finished "
              f"replies are kept in {args.out}; re-run the same command to resume: "
              f"{resume_command(args)}",
              file=sys.stderr)
        return 1
    print(result.summary())
    print(f"wrote {result.candidates_path} and {result.metrics_path}")
    return 0
