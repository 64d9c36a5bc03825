"""The project's exception tree.

The CLI turns every :class:`UserError` into a one-line message and exit code 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import json


def brief(value: object) -> str:
    """A value as it appears in a file, cut to 40 characters, for error messages."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=repr)
    except (RecursionError, ValueError):  # a deeply nested value from a user file
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 40 else text[:37] + "..."


class CSCError(Exception):
    """Base of every error csc-harness raises on purpose."""


class UserError(CSCError):
    """Bad input or a bad option: the user can fix it (exit code 2)."""


class DataError(UserError):
    """A malformed data file or record, located by file, record index and field."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        record: int | None = None,
        field: str | None = None,
        line: int | None = None,
    ) -> None:
        self.path, self.record, self.field, self.line = path, record, field, line
        where = []
        if path is not None:
            where.append(str(path))
        if line is not None:
            where.append(f"line {line}")
        if record is not None:
            where.append(f"record {record}")
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class LabelError(UserError, ValueError):
    """A strategy label that matches none of the twelve strategies."""


class MissingDependency(UserError):
    """An optional extra is not installed; the message carries the pip command."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs {package!r}, which is not installed: "
            f"pip install 'csc-harness[{extra}]'"
        )


class ProviderError(CSCError):
    """A model provider failed after all retries."""


class CacheMiss(CSCError):
    """A request was not in the cache while the cache is in replay mode."""
