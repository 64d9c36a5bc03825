"""One writer per output folder: an exclusive, advisory lock held for the whole run.

Two processes appending to one ``judgments.jsonl`` would both judge every missing row and
pay twice. The lock is ``flock`` on ``OUT/.csc-harness.lock``: the kernel drops it when
the process dies (even by kill -9), so a stale lock never blocks the next run.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

from .contract import LOCK_FILE
from .errors import UserError

__all__ = ["folder_lock"]


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike[str], *, wait_s: float = 0.0) -> Iterator[None]:
    """Hold the folder's lock; another holder makes this wait up to ``wait_s`` seconds,
    then raise a one-line :class:`UserError`. Creates the folder."""
    import fcntl

    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise UserError(f"cannot write to output folder {str(path)!r} ({exc.strerror or exc}): "
                        "pass a writable --out folder") from None
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                    raise UserError(f"another csc-harness process (pid {holder}) is writing to "
                                    f"{str(path)!r}: wait for it to finish, or use another "
                                    "--out") from None
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock
