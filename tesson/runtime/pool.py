"""The runtime's concurrency: a bounded pool that stops starting work after the first failure or
Ctrl-C, a ``started k/N`` progress line, and SIGTERM handled like Ctrl-C."""

from __future__ import annotations

import signal
import sys
import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
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


_held: list[list[int]] = []  # the signals recorded by each enclosing held_interrupts(), innermost last


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextmanager
def interrupts(ignore: bool = False) -> Iterator[None]:
    """Ctrl-C and SIGTERM raise KeyboardInterrupt (or, with ignore, both are held off while
    cleaning up); the previous handlers come back on the way out. Inside :func:`held_interrupts`,
    a signal it recorded before this began raises at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.getsignal(sig)
            signal.signal(sig, signal.SIG_IGN if ignore else _raise_interrupt)
        if not ignore and _held and _held[-1]:
            _held[-1].clear()
            raise KeyboardInterrupt
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


@contextmanager
def held_interrupts() -> Iterator[list[int]]:
    """Ctrl-C and SIGTERM are recorded, not raised (the list yielded holds them), except inside an
    :func:`interrupts` block. ``run`` holds them around the runtime: once the group is complete, an
    interrupt cannot cut the command short between "done" and saying so."""
    if threading.current_thread() is not threading.main_thread():
        yield []
        return
    got: list[int] = []
    old = {}

    def record(signum: int, frame: Any) -> None:
        got.append(signum)

    _held.append(got)
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.getsignal(sig)
            signal.signal(sig, record)
        yield got
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        _held.remove(got)


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
        """Run ``fn(item, batch)`` for every item, at most ``workers`` at a time.

        The pool is fed from the same loop that waits: at most ``workers`` jobs are queued at any
        moment, so on the first failure (with ``stop_on_error``) or Ctrl-C no further job starts,
        the queued ones are cancelled, and only those in flight (at most ``workers``, each one
        daemon call from done) are waited for, with interrupts held off, before the exception goes
        on. Hazard: submitting every item first and waiting after leaves, on a Ctrl-C during the
        submission, a pool that goes on creating containers behind the rollback."""
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
        try:
            queue = iter(items)
            pending: set = set()
            while True:
                while len(pending) < self.workers and not self.cancelled.is_set():
                    item = next(queue, _END)
                    if item is _END:
                        break
                    pending.add(pool.submit(task, item))
                if not pending:
                    break
                _, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
        except BaseException:
            self.cancelled.set()
            with interrupts(ignore=True):
                pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)


_END = object()
