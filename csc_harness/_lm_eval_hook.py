"""Put the CSConv tasks on lm-eval's task index, so bare ``lm_eval --tasks csconv`` works.

Why a start-up hook: lm-eval 0.4.13 finds tasks only in its own ``lm_eval/tasks/`` folder
and in ``--include_path``; it never reads the ``lm_eval.tasks`` entry point we declare
(upstream PR #4015 adds that; the entry point stays in pyproject.toml for then). Copying
our YAMLs into lm-eval's folder would outlive ``pip uninstall csc-harness``, be lost when
lm-eval is reinstalled and break editable installs. Instead, the wheel (and the editable
wheel) puts one file, ``csc_harness_lm_eval.pth``, into site-packages. Its single line,
``PTH_LINE`` below (written by setup.py from ``PTH_STUB``), runs at interpreter start-up
and only appends a tiny finder to the front of ``sys.meta_path``: no import, no file read.
The finder wakes once, when something imports ``lm_eval.tasks.manager``; then it imports
this module, which wraps that module's loader so that, right after it runs,
``TaskManager.__init__`` gains our task folder:

- only when ``include_defaults`` is true (the built-in tasks are wanted too), placed
  before the caller's ``include_path`` so a user's own copy of the tasks overrides ours,
  as lm-eval lets ``include_path`` override its built-ins;
- not when the caller's ``include_path`` already is, contains or lies inside our folder
  (``--include_path tasks`` in the repository, ``csc-harness lm-eval``): no task is
  indexed twice, so no "overrides existing task" warnings;
- ``TaskManager.include_path`` keeps the caller's value.

Uninstalling removes the .pth with the package. If the package is gone while the .pth
stays (a deleted folder), the stub finds no ``csc_harness._lm_eval_hook`` and does
nothing. Where .pth files are not read (``python -S``, ``PYTHONPATH``/``--target``
installs), ``install()`` applies the same patch in-process; ``csc-harness lm-eval`` calls it.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import Any

PTH_NAME = "csc_harness_lm_eval.pth"
MANAGER = "lm_eval.tasks.manager"

# Run at every interpreter start-up (as one exec'd line): keep it to a class definition
# and a list insert. It must import nothing and must tolerate csc_harness being gone.
PTH_STUB = '''\
import sys
class CscHarnessLmEvalStub:
    """csc-harness: add its CSConv tasks to lm-eval (csc_harness/_lm_eval_hook.py)."""
    csc_harness_hook = True
    armed = True
    def find_spec(self, name, path=None, target=None):
        if name != "lm_eval.tasks.manager" or not self.armed:
            return None
        self.armed = False
        try:
            from csc_harness._lm_eval_hook import find_spec
        except ImportError:
            return None
        return find_spec(name, path, target)
sys.meta_path.insert(0, CscHarnessLmEvalStub())
'''
PTH_LINE = f"import sys; exec({PTH_STUB!r}, {{}})\n"


def tasks_path() -> str:
    """The installed folder holding the ``csconv`` task YAMLs (``csc_harness.tasks``)."""
    from importlib import resources

    return str(resources.files("csc_harness.tasks"))


def with_csconv(include_path: str | Path | Sequence[str | Path] | None) -> Any:
    """``include_path`` with our task folder in front, unless it already covers it.

    Returns the argument unchanged when any given folder is, contains or lies inside our
    folder, or when our folder is not a real directory (a zipped install).
    """
    try:
        ours = Path(tasks_path()).resolve()
    except (ImportError, OSError, TypeError, ValueError):
        return include_path  # a broken install must not break lm-eval's own tasks
    if not ours.is_dir():
        return include_path
    if include_path is None:
        given: list[str | Path] = []
    elif isinstance(include_path, (list, tuple)):
        given = list(include_path)
    else:
        given = [include_path]  # type: ignore[list-item]
    for folder in given:
        path = Path(folder).expanduser().resolve()
        if path == ours or path.is_relative_to(ours) or ours.is_relative_to(path):
            return include_path
    return [ours, *given]


def patch(manager: ModuleType) -> None:
    """Make ``manager.TaskManager`` index our tasks; idempotent, a no-op on other shapes."""
    import inspect

    cls = getattr(manager, "TaskManager", None)
    init = getattr(cls, "__init__", None)
    if init is None or getattr(init, "csc_harness_hook", False):
        return
    signature = inspect.signature(init)
    if not {"include_path", "include_defaults"} <= set(signature.parameters):
        return  # an lm-eval we do not know: leave it alone

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            bound = signature.bind(self, *args, **kwargs)
        except TypeError:
            return init(self, *args, **kwargs)  # lm-eval's own error message
        bound.apply_defaults()
        given = bound.arguments["include_path"]
        if bound.arguments["include_defaults"]:
            bound.arguments["include_path"] = with_csconv(given)
        init(*bound.args, **bound.kwargs)
        self.include_path = given

    __init__.csc_harness_hook = True  # type: ignore[attr-defined]
    cls.__init__ = __init__  # type: ignore[misc]


class _PatchingLoader:
    """Runs the real loader, then patches the fresh module; delegates everything else."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        patch(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


def find_spec(name: str, path: Sequence[str] | None = None, target: Any = None) -> Any:
    """The spec of ``lm_eval.tasks.manager`` from the other finders, loader wrapped.

    Returns None for any other module or when no other finder knows it.
    """
    if name != MANAGER:
        return None
    for finder in list(sys.meta_path):
        if getattr(finder, "csc_harness_hook", False) or not hasattr(finder, "find_spec"):
            continue
        spec = finder.find_spec(name, path, target)
        if spec is not None:
            break
    else:
        return None
    if spec.loader is None or not hasattr(spec.loader, "exec_module"):
        return spec
    spec.loader = _PatchingLoader(spec.loader)
    return spec


class _Finder:
    """The in-process form of the .pth stub (``install``)."""

    csc_harness_hook = True

    @staticmethod
    def find_spec(name: str, path: Sequence[str] | None = None, target: Any = None) -> Any:
        return find_spec(name, path, target)


def install() -> None:
    """Add our tasks to every later ``TaskManager`` in this process; safe to call twice."""
    if MANAGER in sys.modules:
        patch(sys.modules[MANAGER])
    elif not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
