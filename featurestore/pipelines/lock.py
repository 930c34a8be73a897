"""One run per model at a time: an exclusive lock on `<registry folder>/pipelines/<model>.lock`.

    with ModelLock(folder, "trip_completion", busy=lambda: "run 7 is running"):
        ...   # this process is the only one running trip_completion's pipeline

`fcntl.flock` (LOCK_EX | LOCK_NB): a second runner is refused at once instead of waiting, and the
operating system releases the lock when its process dies, however it dies. That is what tells a
killed run ("running" in the registry, nobody holding the lock: resume it) from a live one
("running", lock held: refuse). The lock guards runners on one machine (the registry file's); the
registry's compare-and-set on run steps and aliases keeps the records right beyond that.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from ..errors import PipelineError


class ModelLock:
    """The lock of one model's pipeline; `busy()` says who holds it, for the refusal's message."""

    def __init__(self, folder: Path, model: str, busy: Callable[[], str]):
        self.path = Path(folder) / f"{model}.lock"
        self.model = model
        self.busy = busy
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise PipelineError naming what holds it."""
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise PipelineError(
                f"the training pipeline of model '{self.model}' is already running: {self.busy()} "
                f"(lock {self.path}); wait for it to finish"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        """Let go of the lock (idempotent); the OS also releases it when the process dies."""
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def __enter__(self) -> ModelLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
