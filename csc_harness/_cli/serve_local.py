"""``csc-harness serve-local``: the embedded model's server alone, for lm_eval or curl."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..llm.local import LocalServer


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "serve-local",
        help="run the embedded demo model's OpenAI-compatible server until Ctrl-C",
        description="Start llama.cpp's OpenAI-compatible server with the bundled "
        "SmolLM2-135M-Instruct (the 'local' extra), print its base URL and an lm_eval "
        "command line, and stop it cleanly on Ctrl-C. Its answers demonstrate the "
        "pipeline; they are not quality estimates.",
    )
    parser.add_argument("--port", type=int, default=None,
                        help="port on 127.0.0.1 (default: 8357 if free, else a free one)")
    parser.add_argument("--gguf", default=None,
                        help="serve another GGUF model file instead of the bundled one")
    parser.add_argument("--workers", type=int, default=None,
                        help="server processes behind the one URL (default: one per core, "
                        "at most 4)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads per server process (default: 1)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--logprobs", action="store_true",
                      help="compute logits for every prompt token so chat completions can "
                      "return top_logprobs (judge --logprobs N); judge calls take longer")
    mode.add_argument("--scoring", action="store_true",
                      help="serve prompt log-probabilities for log-likelihood tasks "
                      "(lm_eval --model gguf --tasks csconv_strategy_mc) from one process; "
                      "no chat completions")
    parser.add_argument("--log-dir", default=None,
                        help="folder for local-server.log (default: a temporary file)")
    parser.set_defaults(func=run_serve_local)


def run_serve_local(args: argparse.Namespace) -> int:
    import time

    from ..llm.local import EMBEDDED_LABEL, LocalSettings, local_server

    chosen = {"workers": args.workers, "n_threads": args.threads}
    settings = LocalSettings(logprobs=args.logprobs, scoring=args.scoring,
                             **{k: v for k, v in chosen.items() if v is not None})
    with local_server(port=args.port, gguf=args.gguf, settings=settings,
                      log_dir=args.log_dir) as server:
        try:  # Ctrl-C may land at any moment once the server is up
            _announce(server, f"  ({EMBEDDED_LABEL})" if args.gguf is None else "")
            while True:
                server.check()
                time.sleep(0.5)
        except KeyboardInterrupt:
            print("serve-local: stopping the local model server", file=sys.stderr)
            return 0


def _announce(server: LocalServer, label: str) -> None:
    from .lm_eval import tasks_path

    print(f"model:    {server.model}{label}")
    print(f"base URL: {server.base_url}")
    print(f"server:   pid {', '.join(map(str, server.pids))}, log {server.log_path}")
    if server.settings.scoring:
        print(f"lm-eval:  lm_eval --include_path {tasks_path()} --tasks csconv_strategy_mc "
              f"--model gguf --model_args base_url={server.root_url}")
        print("Press Ctrl-C to stop.", flush=True)
        return
    print(f"lm-eval:  lm_eval --include_path {tasks_path()} --tasks csconv --model "
          f"local-chat-completions --model_args model={server.alias},base_url="
          f"{server.base_url}/chat/completions,num_concurrent={server.concurrency} "
          "--apply_chat_template")
    logprobs = " --logprobs 5" if server.settings.logprobs else ""
    print(f"generate: csc-harness generate --model {server.model} "
          f"--api-base {server.base_url} --out OUT")
    print(f"judge:    csc-harness judge --judge {server.model} --api-base {server.base_url}"
          f"{logprobs} --candidates OUT --out JUDGED")
    print("Press Ctrl-C to stop.", flush=True)
