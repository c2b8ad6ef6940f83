"""The runtime's concurrency: a bounded pool that stops starting work after the first failure or
Ctrl-C, a ``started k/N`` progress line, and SIGTERM handled like Ctrl-C."""

from __future__ import annotations

import signal
import sys
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, TextIO

from tesson.errors import TessonError

MAX_WORKERS = 16


class Interrupted(TessonError):
    """Ctrl-C or SIGTERM during a run: cleaned up, exit 130 like a shell."""

    exit_code = 130


class Progress:
    """``started k/N`` on stderr, rewritten in place, only when stderr is a terminal."""

    def __init__(self, total: int, verb: str, stream: TextIO | None = None) -> None:
        self.total, self.verb, self.done = total, verb, 0
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._closed = False
        self._lock = threading.Lock()

    def step(self) -> None:
        with self._lock:
            self.done += 1
            if self.tty:
                self.stream.write(f"\r{self.verb} {self.done}/{self.total}")
                self.stream.flush()

    def close(self) -> None:
        if self.tty and self.done and not self._closed:
            self.stream.write("\n")
            self.stream.flush()
        self._closed = True


class NoProgress(Progress):
    """A progress that shows nothing (steps counted by the caller's own progress)."""

    def __init__(self) -> None:
        self.done = 0

    def step(self) -> None:
        pass

    def close(self) -> None:
        pass


@contextmanager
def interrupts(ignore: bool = False) -> Iterator[None]:
    """SIGTERM behaves like Ctrl-C (or, with ignore, both are held off while cleaning up)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        old[sig] = signal.getsignal(sig)
        if ignore:
            signal.signal(sig, signal.SIG_IGN)
        elif sig == signal.SIGTERM:
            signal.signal(sig, raise_interrupt)
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


class Cancelled(Exception):
    """Raised by :meth:`Batch.check` in a task once the batch is cancelled."""


class Batch:
    """Run one task per item on a bounded pool; stop starting new ones after the first failure
    (unless ``stop_on_error`` is false) or Ctrl-C, and wait for those in flight (they record what
    they made) before returning. ``errors`` holds ``(item, exception)`` of every task that failed."""

    def __init__(self, workers: int, stop_on_error: bool = True) -> None:
        self.workers = workers
        self.stop_on_error = stop_on_error
        self.cancelled = threading.Event()
        self.errors: list[tuple[Any, BaseException]] = []
        self._lock = threading.Lock()

    def check(self) -> None:
        if self.cancelled.is_set():
            raise Cancelled

    def run(self, fn: Callable[[Any, Batch], None], items: Iterable[Any]) -> None:
        items = list(items)
        if not items:
            return

        def task(item: Any) -> None:
            if self.cancelled.is_set():
                return
            try:
                fn(item, self)
            except Cancelled:
                pass
            except BaseException as e:  # reported by the caller
                with self._lock:
                    self.errors.append((item, e))
                if self.stop_on_error:
                    self.cancelled.set()

        pool = ThreadPoolExecutor(max_workers=min(self.workers, len(items)), thread_name_prefix="tesson")
        futures = [pool.submit(task, it) for it in items]
        try:
            pending = set(futures)
            while pending:
                _, pending = wait(pending, timeout=0.2, return_when=FIRST_EXCEPTION)
        except BaseException:
            self.cancelled.set()
            for f in futures:
                f.cancel()
            with interrupts(ignore=True):
                pool.shutdown(wait=True)
            raise
        pool.shutdown(wait=True)
