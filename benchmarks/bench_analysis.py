"""Benchmark: the leaderboard over CSConv-sized synthetic judgments.

10 models x 25,810 supporter turns (1,855 dialogues) x 3 dimensions = 774,300 judgment
rows, written as JSONL, then loaded, validated, bootstrapped (1,000 rounds, resampling
dialogues) and written as leaderboard.md/.csv/.json and report.html. Prints one JSON
object last: ``seconds`` (load + leaderboard + report), ``peak_rss_mb`` (whole process,
generation included), the JSON parser used (orjson when installed) and the 1-minute load
average (the machine may be shared). Goal: under 60 s and under 2 GB on 2 cores (exit 1
when missed). ``--smoke`` runs 3 models x 40 dialogues x 50 rounds, to keep this script
working (the test suite runs it).

    python benchmarks/bench_analysis.py [--rounds 1000] [--keep DIR] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from csc_harness.analysis import leaderboard, load_judgments
from csc_harness.analysis.synthetic import synthetic_rows, write_jsonl
from csc_harness.jsonl import json_loads
from csc_harness.report import write_leaderboard

DIALOGUES, TURNS, MODELS = 1855, 25_810, 10
SMOKE = {"dialogues": 40, "turns": 556, "models": 3, "rounds": 50}  # CSConv's turns/dialogue


def _turns(dialogues: int, turns: int) -> list[int]:
    base, extra = divmod(turns, dialogues)
    return [base + 1 if d < extra else base for d in range(dialogues)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--keep", help="write the files here instead of a temporary folder")
    parser.add_argument("--smoke", action="store_true",
                        help=f"tiny size ({SMOKE}): checks the script runs, measures nothing")
    args = parser.parse_args()
    size = dict(SMOKE) if args.smoke else {"dialogues": DIALOGUES, "turns": TURNS,
                                            "models": MODELS, "rounds": args.rounds}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        t0 = time.perf_counter()
        models = [f"model-{i:02d}" for i in range(size["models"])]
        rows = write_jsonl(synthetic_rows(models, dialogues=size["dialogues"],
                                          turns=_turns(size["dialogues"], size["turns"]),
                                          judges=("judge-x",), seed=0),
                           root / "judge" / "judgments.jsonl")
        t1 = time.perf_counter()
        judgments = load_judgments([root / "judge"])
        t2 = time.perf_counter()
        board = leaderboard(judgments, rounds=size["rounds"], seed=0)
        t3 = time.perf_counter()
        write_leaderboard(board, root / "out")
        t4 = time.perf_counter()
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = {
        "smoke": args.smoke, "rows": rows, **size, "dimensions": 3,
        "generate_seconds": round(t1 - t0, 2), "load_seconds": round(t2 - t1, 2),
        "leaderboard_seconds": round(t3 - t2, 2), "report_seconds": round(t4 - t3, 2),
        "seconds": round(t4 - t1, 2), "peak_rss_mb": round(peak_kb / 1024, 1),
        "json_parser": json_loads().__module__.split(".")[0],
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result))
    return 0 if result["seconds"] < 60 and result["peak_rss_mb"] < 2048 else 1


if __name__ == "__main__":
    sys.exit(main())
