"""The undo log of the front-door protocol (:mod:`tesson.frontend`): what a ``run``, ``repair`` or
change has made so far, undone newest first if it fails."""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported on the read-only verbs' path (ps makes a Context)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


class Undo:
    """What a ``run`` (or ``repair``) has made so far, to be undone if it fails.

    ``add(what, fn)`` records one thing right after it is made; ``rollback()`` calls every ``fn``,
    newest first, best effort (a failing undo is logged and the rest still run) and returns the
    descriptions of those that failed. Consecutive steps given the same ``batch`` name (the
    runtime's shard containers) are undone concurrently. An ``fn`` that decides to leave its thing
    in place (someone else uses it now) returns :attr:`KEPT`; ``undone`` lists, after a rollback,
    what really went, in the order it went.
    """

    KEPT = object()

    def __init__(self) -> None:
        self.steps: list[tuple[str, Callable[[], Any], str | None]] = []
        self.undone: list[str] = []
        import _thread  # threading's lock without importing threading (ps makes a Context, hence an Undo)

        self._lock = _thread.allocate_lock()

    def add(self, what: str, fn: Callable[[], Any], batch: str | None = None) -> None:
        with self._lock:
            self.steps.append((what, fn, batch))

    def __len__(self) -> int:
        return len(self.steps)

    def rollback(self, workers: int = 8) -> list[str]:
        from tesson import log

        with self._lock:
            steps, self.steps = list(reversed(self.steps)), []
        failed: list[str] = []

        def one(what: str, fn: Callable[[], Any]) -> None:
            try:
                if fn() is Undo.KEPT:
                    return
                log.info("undone", what=what)
                with self._lock:
                    self.undone.append(what)
            except Exception as e:  # best effort: keep undoing the rest
                log.warning("undo failed", what=what, error=str(e))
                failed.append(what)

        i = 0
        while i < len(steps):
            batch = steps[i][2]
            j = i + 1
            while batch is not None and j < len(steps) and steps[j][2] == batch:
                j += 1
            if j - i == 1:
                one(steps[i][0], steps[i][1])
            else:
                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(max_workers=min(workers, j - i)) as pool:
                    list(pool.map(lambda s: one(s[0], s[1]), steps[i:j]))
            i = j
        return failed
