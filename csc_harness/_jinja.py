"""The one Jinja environment for prompt templates: sandboxed, strict, and fast enough.

A prompts folder (``--prompts``) or a scenarios template is code from wherever the user got
it, so every template renders in Jinja's immutable sandbox, which refuses attribute walks
such as ``''.__class__.__mro__``. The sandbox checks each attribute access with several
``isinstance`` tests against abstract base classes; a judge prompt reads ~75 attributes (the
dialogue's turns, the rubric's levels), and those checks were most of a render and a third
of the judge path's own CPU per call (profiled). Two shortcuts keep the sandbox's answers:
the fields of the plain data records the harness itself passes in (registered with
:func:`allow_fields`: named tuples and frozen dataclasses holding data) are read directly,
and for anything else the safety verdict, which depends only on the object's type and the
attribute's name, is memoised on those.
"""

from __future__ import annotations

import builtins
import dataclasses
from functools import lru_cache
from typing import Any, ClassVar

__all__ = ["allow_fields", "compile_template"]

_FIELDS: dict[type, frozenset[str]] = {}


def allow_fields(*classes: type) -> None:
    """Let templates read these record classes' public fields without the sandbox's checks.

    Only for the harness's own data records (named tuples, dataclasses), whose fields hold
    data, never callables.
    """
    for cls in classes:
        names = cls._fields if hasattr(cls, "_fields") else [  # type: ignore[attr-defined]
            f.name for f in dataclasses.fields(cls)]
        _FIELDS[cls] = frozenset(n for n in names if not n.startswith("_"))


@lru_cache(maxsize=1)
def _environment() -> Any:
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class _Sandbox(ImmutableSandboxedEnvironment):
        _verdicts: ClassVar[dict[tuple[type, str], bool]] = {}

        def getattr(self, obj: Any, attribute: str) -> Any:
            if attribute in _FIELDS.get(type(obj), ()):
                return builtins.getattr(obj, attribute)
            return super().getattr(obj, attribute)

        def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
            key = (type(obj), attr)
            verdict = self._verdicts.get(key)
            if verdict is None:
                verdict = self._verdicts[key] = super().is_safe_attribute(obj, attr, value)
            return verdict

    return _Sandbox(undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                    keep_trailing_newline=False, autoescape=False)


@lru_cache(maxsize=256)
def compile_template(source: str) -> Any:
    """The compiled template for ``source`` (templates are few; renders are many)."""
    return _environment().from_string(source)
