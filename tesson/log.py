"""Structured logs to stderr, through structlog, imported only when a line is really written.

structlog costs tens of milliseconds to import, so commands on the fast path (``run --dry-run``,
``topology``) must not pay for it unless they log at a level that is enabled.
"""

from __future__ import annotations

import sys

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}

_level = LEVELS["warning"]
_format = "console"
_logger = None


def setup(level: str = "warning", fmt: str = "console") -> None:
    """Choose the threshold and the renderer (``console`` or ``json``); nothing is imported yet."""
    global _level, _format, _logger
    _level = LEVELS[level]
    _format = fmt
    _logger = None


def enabled(level: str) -> bool:
    return LEVELS[level] >= _level


def _get():
    global _logger
    if _logger is None:
        import structlog

        renderer = (
            structlog.processors.JSONRenderer()
            if _format == "json"
            else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        )
        structlog.configure(
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                renderer,
            ],
            wrapper_class=structlog.make_filtering_bound_logger(_level),
            logger_factory=structlog.PrintLoggerFactory(sys.stderr),
            cache_logger_on_first_use=False,
        )
        _logger = structlog.get_logger("tesson")
    return _logger


def debug(event: str, **kw) -> None:
    if _level <= LEVELS["debug"]:
        _get().debug(event, **kw)


def info(event: str, **kw) -> None:
    if _level <= LEVELS["info"]:
        _get().info(event, **kw)


def warning(event: str, **kw) -> None:
    if _level <= LEVELS["warning"]:
        _get().warning(event, **kw)


def error(event: str, **kw) -> None:
    if _level <= LEVELS["error"]:
        _get().error(event, **kw)
