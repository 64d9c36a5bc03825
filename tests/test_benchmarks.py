"""Every benchmark keeps running: its ``--smoke`` size, as a user would start it.

Speed and memory goals are measured by the full-size benchmarks, never here; these tests
only check that each script still imports, runs to the end, prints its one JSON object
last and leaves nothing behind (a refactor once broke bench_analysis.py unnoticed).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
COMMON = {"smoke", "seconds", "peak_rss_mb"}
CASES = [
    pytest.param("bench_analysis", {"rows", "models", "dialogues", "turns", "rounds",
                                    "load_seconds", "leaderboard_seconds", "report_seconds",
                                    "json_parser", "load_average_1m"}, id="analysis"),
    pytest.param("bench_judge", {"judgments", "judgments_per_s", "litellm_calls_per_s",
                                 "throughput_ratio_vs_litellm", "replay_judgments",
                                 "replay_seconds", "goals_met"}, id="judge"),
    pytest.param("bench_metrics", {"turns", "scores"}, id="metrics"),
    pytest.param("bench_cost", {"naive_usd", "best_usd", "best_over_naive", "setups_usd"},
                 id="cost"),
    pytest.param("bench_judge_check", {"rows", "dialogues", "turns", "rounds", "controls",
                                       "check_seconds", "discrimination"}, id="judge-check"),
    pytest.param("bench_demo_run", {"dialogues", "supporter_turns", "steps_seconds",
                                    "workers"}, id="demo-run"),
    pytest.param("bench_simulate", {"conversations", "conversations_per_s", "calls_per_s",
                                    "client_cpu_ms_per_call", "bound_ratio"}, id="simulate"),
]


def test_every_benchmark_has_a_smoke_test():
    tested = {p.values[0] for p in CASES}
    assert tested == {p.stem for p in BENCHMARKS.glob("bench_*.py")}


@pytest.mark.parametrize(("name", "keys"), CASES)
def test_smoke_size_exits_0_and_prints_one_json_object_last(name, keys, tmp_path):
    if name == "bench_demo_run" and importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("the embedded model needs the 'local' extra")
    work, temp = tmp_path / "cwd", tmp_path / "tmp"
    work.mkdir()
    temp.mkdir()
    done = subprocess.run([sys.executable, str(BENCHMARKS / f"{name}.py"), "--smoke"],
                          cwd=work, env={**os.environ, "TMPDIR": str(temp)},
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert isinstance(result, dict) and result["smoke"] is True
    assert COMMON | keys <= result.keys(), sorted(COMMON | keys - result.keys())
    assert result["seconds"] > 0 and result["peak_rss_mb"] > 0
    # temporary folders only, all removed: nothing lands in the working directory
    assert not list(work.iterdir()) and not list(temp.iterdir())
