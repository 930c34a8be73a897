"""One run per model at a time: an exclusive lock on `<registry folder>/pipelines/<model>.lock`.

    with ModelLock(folder, "trip_completion", busy=lambda: "run 7 is running"):
        ...   # this process is the only one running trip_completion's pipeline

`fcntl.flock` (LOCK_EX | LOCK_NB): a second runner is refused at once instead of waiting, and the
operating system releases the lock when its process dies, however it dies. That is what tells a
killed run ("running" in the registry, nobody holding the lock: resume it) from a live one
("running", lock held: refuse). The lock guards runners on one machine (the registry file's); the
registry's compare-and-set on run steps and aliases keeps the records right beyond that. With a
registry that has a lock of its own (PostgreSQL: `RegistryStore.exclusive_lock`), the lock is
`pipeline:<model>` there instead, so runners on every machine sharing the registry are refused the same way.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType

from ..errors import PipelineError


class ModelLock:
    """The lock of one model's pipeline; `busy()` says who holds it, for the refusal's message."""

    def __init__(
        self,
        folder: Path,
        model: str,
        busy: Callable[[], str],
        shared: Callable[[str, bool], AbstractContextManager[bool] | None] | None = None,
    ):
        """`shared`: the registry's cross-machine lock (`RegistryStore.exclusive_lock`); when it gives
        one, that is taken instead of the file lock."""
        self.path = Path(folder) / f"{model}.lock"
        self.model = model
        self.busy = busy
        self._fd: int | None = None
        self._shared = shared
        self._held: AbstractContextManager[bool] | None = None

    def _refused(self, where: str) -> PipelineError:
        return PipelineError(
            f"the training pipeline of model '{self.model}' is already running: {self.busy()} "
            f"({where}); wait for it to finish"
        )

    def acquire(self) -> None:
        """Take the lock, or raise PipelineError naming what holds it."""
        lock = self._shared(f"pipeline:{self.model}", False) if self._shared is not None else None
        if lock is not None:
            if not lock.__enter__():
                lock.__exit__(None, None, None)
                raise self._refused(f"lock pipeline:{self.model} in the registry")
            self._held = lock
            return
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise self._refused(f"lock {self.path}") from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self, exc_type: type[BaseException] | None = None) -> None:
        """Let go of the lock (idempotent); the OS (or the registry) also releases it when the process dies.
        A registry lock found lost meanwhile raises RegistryError, unless `exc_type` is already raised."""
        if self._held is not None:
            held, self._held = self._held, None
            held.__exit__(exc_type, None, None)
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def __enter__(self) -> ModelLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release(exc_type)
