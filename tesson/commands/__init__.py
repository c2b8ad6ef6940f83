"""One module per verb; each has ``main(args) -> int``, which turns the parsed command line into
explicit, typed arguments (or, for ``run``, a :class:`tesson.request.RunRequest`) right there."""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported on the --dry-run path
if TYPE_CHECKING:
    from typing import Any, Sequence, TextIO

    from tesson.group import Group


def write_table(rows: Sequence[Sequence[str]], out: TextIO) -> None:
    """Rows as left-aligned columns two spaces apart, the first row the header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + "\n")


def find_group(group: str, missing: str) -> tuple[Any, Group]:
    """Connect to the daemon and rebuild ``group`` from its labels: ``(client, Group)``.

    A group that does not exist is a failure (exit 1) whose message ends with ``missing``."""
    from tesson import docker_client, names, runtime
    from tesson import group as G
    from tesson.errors import TessonError

    name = names.validate_group(group)
    client = docker_client.connect(workers=runtime.MAX_WORKERS)
    grp = G.find(client, name)
    if grp is None:
        raise TessonError(f"no group named {name!r}{missing}")
    return client, grp
