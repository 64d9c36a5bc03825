"""Bare ``lm_eval --tasks csconv`` finds our tasks from any folder, editable or from a wheel.

The start-up hook (csc_harness/_lm_eval_hook.py, shipped as csc_harness_lm_eval.pth) is
tested in-process on its parts and end to end through lm-eval's real CLI in subprocesses.
Every CLI call indexes lm-eval's ~14,000 YAMLs (~12 s): four in all here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import pytest

from csc_harness import _lm_eval_hook as hook
from csc_harness.data import load_examples
from csc_harness.framework import format_reply
from csc_harness.llm.stub import StubServer

ROOT = Path(__file__).resolve().parents[1]
OURS = ("csconv", "csconv_reply", "csconv_strategy_mc", "csconv_reply_bertscore")
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HF_EVALUATE_OFFLINE": "1", "LITELLM_LOCAL_MODEL_COST_MAP": "True",
           "TOKENIZERS_PARALLELISM": "false"}
DUPLICATE_WARNINGS = ("overrides existing task", "Duplicate task name", "Duplicate group")
TASKS = Path(hook.tasks_path()).resolve()  # the installed task folder (ROOT/tasks if editable)


def env() -> dict[str, str]:
    """The test's environment (home and caches in tmp, offline) without PYTHONPATH."""
    out = {**os.environ, **OFFLINE}
    out.pop("PYTHONPATH", None)
    return out


def run(cmd: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True,
                          timeout=timeout)


def listed(text: str) -> set[str]:
    """Which of our task names a task listing shows."""
    return {name for name in OURS if re.search(rf"(?<![\w-]){name}(?![\w-])", text)}


def first_reply(data_file: Path):
    """The gold answer of the first supporter turn, for every request (``--limit 1``)."""
    ex = load_examples(str(data_file))[0]
    return lambda body: format_reply(ex.strategy, ex.reply)


def stub_run(lm_eval: list[str], stub: StubServer, cwd: Path, *extra: str) -> dict:
    """A real ``lm_eval --tasks csconv`` run against the stub; its parsed results."""
    out = cwd / "out"
    proc = run([*lm_eval, "--tasks", "csconv", "--model", "local-chat-completions",
                "--model_args", f"model=stub-model,base_url={stub.base_url}/chat/completions,"
                "num_concurrent=1,max_retries=1",
                "--apply_chat_template", "--limit", "1", "--output_path", str(out), *extra],
               cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (results,) = out.rglob("results_*.json")
    return {"results": json.loads(results.read_text())["results"], "stderr": proc.stderr}


# ---------------------------------------------------------------- the start-up line


def test_pth_line_is_one_import_line_that_imports_nothing():
    assert hook.PTH_LINE.startswith("import ") and hook.PTH_LINE.count("\n") == 1
    script = ("import sys; before = set(sys.modules); line = sys.argv[1]; exec(line); "
              "print(sorted(set(sys.modules) - before), type(sys.meta_path[0]).__name__)")
    proc = subprocess.run([sys.executable, "-S", "-c", script, hook.PTH_LINE],
                          capture_output=True, text=True, timeout=60, check=True)
    assert proc.stdout.split() == ["[]", "CscHarnessLmEvalStub"]


def test_pth_line_leaves_lm_eval_alone_when_csc_harness_is_gone(tmp_path):
    # python -S -I: no site-packages, so no csc_harness; a stand-in lm_eval in the cwd.
    manager = tmp_path / "lm_eval" / "tasks" / "manager.py"
    manager.parent.mkdir(parents=True)
    for init in (tmp_path / "lm_eval" / "__init__.py", manager.parent / "__init__.py"):
        init.write_text("")
    manager.write_text("class TaskManager:\n    def __init__(self, include_path=None,"
                       " include_defaults=True):\n        self.paths = include_path\n")
    script = (f"exec({hook.PTH_LINE!r})\nimport sys; sys.path.insert(0, '.')\n"
              "from lm_eval.tasks.manager import TaskManager\n"
              "print(TaskManager().paths, 'csc_harness' in sys.modules)")
    proc = subprocess.run([sys.executable, "-S", "-I", "-c", script], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["None", "False"]


# ---------------------------------------------------------------- the patch


def fake_manager() -> types.ModuleType:
    module = types.ModuleType("fake_manager")

    class TaskManager:
        def __init__(self, verbosity=None, include_path=None, include_defaults=True,
                     metadata=None):
            self.include_path = include_path
            self.indexed = include_path

    module.TaskManager = TaskManager
    return module


@pytest.mark.parametrize(("given", "added"), [
    pytest.param(None, True, id="nothing-given"),
    pytest.param("elsewhere", True, id="another-folder"),
    pytest.param(["elsewhere", "more"], True, id="a-list"),
    pytest.param(str(TASKS), False, id="our-folder"),
    pytest.param(str(TASKS / "csconv"), False, id="inside-our-folder"),
    pytest.param(str(TASKS.parent), False, id="containing-our-folder"),
    pytest.param(["elsewhere", TASKS], False, id="ours-in-a-list"),
])
def test_our_folder_joins_the_index_once(given, added, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    module = fake_manager()
    hook.patch(module)
    hook.patch(module)  # idempotent
    manager = module.TaskManager(include_path=given)
    rest = [] if given is None else given if isinstance(given, list) else [given]
    assert manager.indexed == ([TASKS, *rest] if added else given)
    assert manager.include_path == given  # the caller's value, as lm-eval logs it


def test_relative_include_path_of_our_folder_is_recognised(monkeypatch):
    monkeypatch.chdir(TASKS.parent)
    module = fake_manager()
    hook.patch(module)
    assert module.TaskManager(None, TASKS.name).indexed == TASKS.name


def test_without_defaults_the_caller_gets_exactly_what_it_asked_for():
    module = fake_manager()
    hook.patch(module)
    assert module.TaskManager(include_path="x", include_defaults=False).indexed == "x"
    assert module.TaskManager(include_defaults=False).indexed is None


def test_the_installed_lm_eval_is_patched_and_fast_paths_stay_untouched():
    from lm_eval.tasks import TaskManager

    stubs = [f for f in sys.meta_path if type(f).__name__ == "CscHarnessLmEvalStub"]
    assert stubs, f"{hook.PTH_NAME} did not run at start-up: pip install -e . again"
    assert getattr(TaskManager.__init__, "csc_harness_hook", False)
    manager = TaskManager(include_path=str(ROOT / "tasks"), include_defaults=False)
    assert set(OURS) <= set(manager.all_tasks)
    assert manager.include_path == str(ROOT / "tasks")


# ---------------------------------------------------------------- editable install, real CLI


@pytest.fixture
def lm_eval_script() -> list[str]:
    script = Path(sys.executable).parent / "lm_eval"
    if not script.exists():
        pytest.skip("no lm_eval console script beside this python")
    return [str(script)]


def test_editable_lm_eval_lists_our_tasks_without_duplicate_warnings(lm_eval_script, tmp_path):
    # Our folder twice (hook + --include_path): indexed once, no override warnings.
    proc = run([*lm_eval_script, "ls", "tasks", "--include_path", str(ROOT / "tasks")],
               tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert listed(proc.stdout) == set(OURS)
    assert "hellaswag" in proc.stdout  # lm-eval's own tasks are still there
    assert not [w for w in DUPLICATE_WARNINGS if w in proc.stdout + proc.stderr]


def test_editable_bare_lm_eval_runs_csconv_from_any_folder(lm_eval_script, data_file, tmp_path):
    with StubServer(first_reply(data_file)) as stub:
        out = stub_run(lm_eval_script, stub, tmp_path)
    assert out["results"]["csconv_reply"]["strategy_acc,none"] == 100.0
    assert len(stub.requests) == 1
    assert str(ROOT / "tasks" / "csconv" / "csconv_reply.yaml") in out["stderr"]


# ---------------------------------------------------------------- wheel in a fresh venv


def build_wheel(dest: Path) -> Path:
    """The wheel, built offline from a copy of the sources (no build/ left in the repo)."""
    src = dest / "src"
    for name in ("csc_harness", "tasks", "judge_prompts"):
        shutil.copytree(ROOT / name, src / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(dest), str(src)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = dest.glob("csc_harness-*.whl")
    return wheel


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh venv seeing this environment's lm-eval, with our wheel installed in it."""
    base = tmp_path_factory.mktemp("venv")
    wheel = build_wheel(base)
    assert hook.PTH_NAME in zipfile.ZipFile(wheel).namelist()
    prefix = base / "env"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip",
                    str(prefix)], check=True, capture_output=True, timeout=120)
    python = prefix / "bin" / "python"
    # --ignore-installed: the editable csc-harness of the base environment stays, shadowed.
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index",
                    "--ignore-installed", "-q", str(wheel)],
                   check=True, capture_output=True, timeout=300, env=env())
    return prefix


def test_wheel_in_a_venv_shadows_the_editable_install(venv, tmp_path):
    script = ("import csc_harness, json; from csc_harness._lm_eval_hook import tasks_path; "
              "print(json.dumps([csc_harness.__file__, tasks_path()]))")
    proc = run([str(venv / "bin" / "python"), "-c", script], tmp_path)
    assert proc.returncode == 0, proc.stderr
    package, tasks = json.loads(proc.stdout)
    assert package.startswith(str(venv)) and tasks.startswith(str(venv))
    assert list(venv.glob(f"lib/python*/site-packages/{hook.PTH_NAME}"))


def test_wheel_bare_lm_eval_lists_and_runs_csconv(venv, data_file, tmp_path):
    python = str(venv / "bin" / "python")
    shown = run([python, "-m", "lm_eval", "ls", "tasks"], tmp_path)
    assert shown.returncode == 0, shown.stderr[-3000:]
    assert listed(shown.stdout) == set(OURS)
    with StubServer(first_reply(data_file)) as stub:
        out = stub_run([python, "-m", "lm_eval"], stub, tmp_path)
    assert out["results"]["csconv_reply"]["strategy_acc,none"] == 100.0
    site = next(venv.glob("lib/python*/site-packages"))
    assert str(site / "csc_harness" / "tasks" / "csconv" / "csconv_reply.yaml") in out["stderr"]


def test_uninstalling_the_wheel_removes_the_hook_and_lm_eval_still_imports(venv, tmp_path):
    python = str(venv / "bin" / "python")
    site = next(venv.glob("lib/python*/site-packages"))
    proc = run([python, "-m", "pip", "uninstall", "-y", "-q", "csc-harness"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    # (pip removes site-packages itself here: it held only our files)
    assert not (site / hook.PTH_NAME).exists() and not (site / "csc_harness").exists()
    proc = run([python, "-c", "import lm_eval.tasks.manager"], tmp_path)
    assert proc.returncode == 0, proc.stderr
