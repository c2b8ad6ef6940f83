"""tesson exec: run a command in one shard of a group (shard 0 unless --index says otherwise)."""

from __future__ import annotations

import sys


def exec_in_shard(group: str, index: int, command: list[str], *, interactive: bool, tty: bool,
                  env: list[str], user: str, workdir: str | None) -> int:
    """Run ``command`` in shard ``index`` of ``group``; returns the command's exit status."""
    from tesson import attach, shardio
    from tesson.errors import UsageError

    if not command:
        raise UsageError("exec needs a COMMAND to run in the shard (tesson exec --help)")
    client, grp = shardio.open_group(group)
    target = shardio.pick(grp, index)
    return attach.run(client, target.id, command, interactive=interactive, tty=tty, env=env, user=user,
                      workdir=workdir)


def main(args) -> int:
    command = list(args.command or [])
    if command[:1] == ["--"]:
        command = command[1:]
    interactive, tty = args.interactive, args.tty
    if not (interactive or tty or args.no_tty) and sys.stdin.isatty() and sys.stdout.isatty():
        interactive = tty = True  # on a terminal, as docker compose exec: -it unless -T
    return exec_in_shard(args.group, args.index, command, interactive=interactive, tty=tty, env=args.env,
                         user=args.user or "", workdir=args.workdir)
