"""The shared pool of spawned scoring workers, rebuilt if a worker process dies."""

from __future__ import annotations

import contextlib
import multiprocessing
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from localdev.batch_endpoint import worker


class WorkerPool:
    def __init__(self, size: int) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._executor: ProcessPoolExecutor | None = None
        self._warming: list[Future[Any]] = []

    def _fresh(self) -> ProcessPoolExecutor:
        # spawn, not fork: the server process has threads and an event loop that must not be copied.
        return ProcessPoolExecutor(max_workers=self.size, mp_context=multiprocessing.get_context("spawn"))

    def warm_up(self, mlflow_paths: list[str]) -> None:
        self._warming = [self.submit(worker.warm_up, mlflow_paths) for _ in range(self.size)]

    def warm(self) -> int:
        """How many of the start-up warm-up tasks (imports, MLflow models) have finished."""
        return sum(1 for future in self._warming if future.done())

    def submit(self, fn: Any, *args: Any) -> Future[Any]:
        with self._lock:
            for _ in range(2):
                if self._executor is None:
                    self._executor = self._fresh()
                try:
                    return self._executor.submit(fn, *args)
                except (BrokenProcessPool, RuntimeError):
                    self._discard()
            raise RuntimeError("the scoring worker pool cannot be restarted")

    def note_broken(self) -> None:
        """A worker died: drop the pool if it is still the broken one; the next submit starts a new one."""
        with self._lock:
            if self._executor is not None and getattr(self._executor, "_broken", False):
                self._discard()

    def _discard(self) -> None:
        if self._executor is not None:
            with contextlib.suppress(Exception):
                self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def shutdown(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            processes = list(getattr(executor, "_processes", {}).values())
            executor.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                with contextlib.suppress(Exception):
                    process.terminate()
