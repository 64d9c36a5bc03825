"""The main job with the embedded model, as a newcomer runs it: time and memory.

Prints one JSON object last. Goal (issue 5): ``seconds`` < 600 on a 2-core machine for the
default run over the whole bundled sample, from an empty cache (the re-encoded weights,
lm-eval's request cache and the answer cache all start empty, in a temporary folder).

Runs ``csc-harness run --out TMP/out`` as a subprocess with ``CSC_HARNESS_CACHE`` pointing
into the temporary folder, then reads the step times from ``TMP/out/run.json``.
``peak_rss_mb`` is the largest resident set of any process of the run (the CLI or one
llama.cpp server), from ``getrusage(RUSAGE_CHILDREN)``.

``--smoke`` runs the same command on a file of one customer turn and one supporter turn
(from the bundled sample's first dialogue, written into the temporary folder and named by
``CSCONV_DATA``): it checks that the script and the whole pipeline still run (the test
suite runs it); its figures are mostly start-up cost.

Usage: python benchmarks/bench_demo_run.py [--limit N] [--keep DIR] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="first N dialogues only")
    parser.add_argument("--keep", default=None, help="copy the run's output folder here")
    parser.add_argument("--smoke", action="store_true",
                        help="one supporter turn: checks the run works, measures nothing")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="csc-bench-demo-") as tmp:
        out = Path(tmp) / "out"
        command = [sys.executable, "-m", "csc_harness.cli", "run", "--no-progress",
                   "--out", str(out)] + (["--limit", str(args.limit)] if args.limit else [])
        env = {**os.environ, "CSC_HARNESS_CACHE": str(Path(tmp) / "cache" / "llm.sqlite")}
        if args.smoke:  # 50 bootstrap rounds: the leaderboard step is not what smoke checks
            env["CSCONV_DATA"] = str(_smoke_data(Path(tmp)))
            command += ["--rounds", "50"]
        started = time.perf_counter()
        done = subprocess.run(command, check=False, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
        seconds = time.perf_counter() - started
        if done.returncode:
            sys.exit(f"csc-harness run failed ({done.returncode}):\n{done.stderr[-2000:]}")
        record = json.loads((out / "run.json").read_text(encoding="utf-8"))
        if args.keep:
            shutil.copytree(out, args.keep, dirs_exist_ok=True)
        steps = {s["step"].split(",")[0].split(":")[0]: s["seconds"] for s in record["steps"]}
        from csc_harness.data import expand, load_conversations

        conversations = load_conversations(env.get("CSCONV_DATA"))[: args.limit]
    print(json.dumps({
        "smoke": args.smoke, "dialogues": len(conversations),
        "supporter_turns": sum(len(expand(c)) for c in conversations),
        "seconds": round(seconds, 1), "steps_seconds": steps,
        "workers": record.get("embedded_model", {}).get("workers"),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
    }))


def _smoke_data(folder: Path) -> Path:
    """One supporter turn after one customer turn, from the bundled sample, as a file."""
    from importlib.resources import files

    sample = files("csc_harness") / "sample" / "csconv_sample.json"
    dialogue = json.loads(sample.read_text(encoding="utf-8"))[0]
    dialogue["dialogue"] = dialogue["dialogue"][1:3]  # customer, supporter
    path = folder / "smoke.json"
    path.write_text(json.dumps([dialogue], ensure_ascii=False), encoding="utf-8")
    return path


if __name__ == "__main__":
    main()
