"""The wheel carries everything a run needs: tasks, sample, templates, judge prompts."""

import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )
    (path,) = out.glob("csc_harness-*.whl")
    return path


def test_wheel_holds_every_package_and_data_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {**{f"csc_harness/{p.relative_to(ROOT / 'csc_harness')}": p
                  for p in (ROOT / "csc_harness").rglob("*") if p.is_file()},
               **{f"csc_harness/tasks/{p.relative_to(ROOT / 'tasks')}": p
                  for p in (ROOT / "tasks").rglob("*") if p.is_file()},
               **{f"csc_harness/judge_prompts/{p.relative_to(ROOT / 'judge_prompts')}": p
                  for p in (ROOT / "judge_prompts").rglob("*") if p.is_file()}}
    missing = sorted(n for n in sources if "__pycache__" not in n and n not in names)
    assert missing == []


def test_wheel_holds_tasks_sample_templates_and_entry_points(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in ("csc_harness/tasks/csconv/csconv_reply.yaml",
                     "csc_harness/tasks/csconv/csconv.yaml",
                     "csc_harness/tasks/csconv/csconv_strategy_mc.yaml",
                     "csc_harness/tasks/csconv/utils.py",
                     "csc_harness/sample/csconv_sample.json",
                     "csc_harness/templates/reply_system.j2"):
        assert required in names, required
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[lm_eval.tasks]" in text and "csc-harness = csc_harness.cli:main" in text


def test_wheel_ships_the_lm_eval_start_up_hook_at_its_root(wheel):
    from csc_harness._lm_eval_hook import PTH_LINE, PTH_NAME

    archive = zipfile.ZipFile(wheel)
    assert archive.read(PTH_NAME).decode() == PTH_LINE
    record = next(n for n in archive.namelist() if n.endswith(".dist-info/RECORD"))
    assert f"{PTH_NAME}," in archive.read(record).decode()  # so uninstall removes it


def test_installed_wheel_runs_without_the_source_tree(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(target), str(wheel)], check=True, capture_output=True, timeout=300)
    script = """
import json, csc_harness
from csc_harness._cli.lm_eval import tasks_path
from csc_harness.judge import load_rubrics, prompts_dir
from lm_eval.tasks import TaskManager
task = TaskManager(include_path=tasks_path(), include_defaults=False).load(["csconv_reply"])
docs = list(task["tasks"]["csconv_reply"].test_docs())
print(json.dumps({"package": csc_harness.__file__, "tasks": tasks_path(), "docs": len(docs),
                  "prompts": str(prompts_dir()), "rubrics": len(load_rubrics())}))
"""
    env = {**os.environ, "PYTHONPATH": str(target)}
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["package"].startswith(str(target))
    assert info["tasks"].startswith(str(target))
    assert info["docs"] > 400
    assert info["prompts"].startswith(str(target)) and info["rubrics"] >= 4


def test_help_is_fast_and_imports_no_heavy_library():
    script = ("import sys, time; t = time.perf_counter(); from csc_harness.cli import build_parser; "
              "build_parser().format_help(); print(time.perf_counter() - t); "
              "print(sorted(m for m in ('lm_eval', 'litellm', 'pandas', 'torch', 'scipy') "
              "if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=True)
    seconds, heavy = proc.stdout.strip().splitlines()
    assert heavy == "[]"
    assert float(seconds) < 0.5
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "csc_harness.cli", "--help"], check=True,
                   capture_output=True, timeout=60)
    assert time.perf_counter() - start < 5  # includes interpreter start-up
