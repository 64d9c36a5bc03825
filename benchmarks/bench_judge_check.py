"""Benchmark: the judge check over CSConv-sized control judgments.

Gold and five controls x 25,810 supporter turns (1,855 dialogues) x 3 dimensions =
464,580 judgment rows, as the judge runner writes them from cached verdicts (synthetic
scores: gold and padded high, the other controls lower), then loaded, validated, checked
(1,000 dialogue-bootstrap rounds) and written as judge_check.json/.md. Prints one JSON
object last: ``seconds`` (load + check + write), ``peak_rss_mb`` (whole process,
generation included), the discrimination found and the 1-minute load average. Goal: under
60 s and under 2 GB on 2 cores (exit 1 when missed). ``--smoke`` runs 40 dialogues and 50
rounds, to keep this script working (the test suite runs it).

    python benchmarks/bench_judge_check.py [--rounds 1000] [--keep DIR] [--smoke]
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

from csc_harness.analysis import load_judgments
from csc_harness.analysis.judge_check import judge_check
from csc_harness.analysis.synthetic import synthetic_rows, write_jsonl
from csc_harness.controls import KINDS
from csc_harness.report import write_judge_check

DIALOGUES, TURNS = 1855, 25_810
SMOKE = {"dialogues": 40, "turns": 556, "rounds": 50}  # CSConv's turns per dialogue
QUALITY = {"gold": 4.3, "mismatch": 2.4, "truncated": 2.8, "generic": 2.2,
           "wrong-label": 3.4, "padded": 4.2}


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
                                            "rounds": args.rounds}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        t0 = time.perf_counter()
        models = [f"control:{k}" for k in KINDS]
        rows = write_jsonl(synthetic_rows(models, dialogues=size["dialogues"],
                                          turns=_turns(size["dialogues"], size["turns"]),
                                          quality=[QUALITY[k] for k in KINDS],
                                          judges=("judge-x",), seed=0),
                           root / "check" / "judgments.jsonl")
        t1 = time.perf_counter()
        judgments = load_judgments([root / "check"])
        t2 = time.perf_counter()
        result = judge_check(judgments, rounds=size["rounds"], seed=0)
        t3 = time.perf_counter()
        write_judge_check(result, root / "check")
        t4 = time.perf_counter()
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    dims = result["judges"]["judge-x"]["dimensions"]
    out = {
        "smoke": args.smoke, "rows": rows, **size, "controls": len(KINDS) - 1,
        "generate_seconds": round(t1 - t0, 2), "load_seconds": round(t2 - t1, 2),
        "check_seconds": round(t3 - t2, 2), "write_seconds": round(t4 - t3, 2),
        "seconds": round(t4 - t1, 2), "peak_rss_mb": round(peak_kb / 1024, 1),
        "discrimination": {d: round(v["discrimination"], 3) for d, v in dims.items()},
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(out))
    return 0 if out["seconds"] < 60 and out["peak_rss_mb"] < 2048 else 1


if __name__ == "__main__":
    sys.exit(main())
