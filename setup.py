"""The one build step pyproject.toml cannot declare: ship ``csc_harness_lm_eval.pth``.

All metadata lives in pyproject.toml. This adds the start-up hook that lets bare
``lm_eval --tasks csconv`` find our tasks (why: csc_harness/_lm_eval_hook.py). A .pth file
works only at the top of site-packages, outside every package, so ``package-data`` cannot
place it; ``build_py`` writes it to the top of the build folder (the wheel's root). In an
editable install (PEP 660) setuptools zips only its own finder and the folder it hands
``install`` as ``install_lib``, so there the file goes into that folder instead.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HOOK = Path(__file__).resolve().parent / "csc_harness" / "_lm_eval_hook.py"


def _hook_module():
    """The hook module loaded from its file: it imports only the standard library."""
    spec = importlib.util.spec_from_file_location("_csc_harness_lm_eval_hook_build", HOOK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildPyWithPth(build_py):
    """``build_py`` that also writes the lm-eval start-up hook (.pth) at the wheel's root."""

    def run(self) -> None:
        super().run()
        hook = _hook_module()
        if self.editable_mode:
            folder = Path(self.get_finalized_command("install").install_lib)
        else:
            folder = Path(self.build_lib)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / hook.PTH_NAME).write_text(hook.PTH_LINE, encoding="utf-8")

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = super().get_outputs(include_bytecode)
        if self.editable_mode:  # written straight into the editable wheel, not build_lib
            return outputs
        return [*outputs, str(Path(self.build_lib, _hook_module().PTH_NAME))]


setup(cmdclass={"build_py": BuildPyWithPth})
