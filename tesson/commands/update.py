"""tesson update: a rolling replacement of a group's shards with another image, command, config or
environment, one shard (or ``--parallel K``) at a time, each kept out of the front door only while
its successor starts and proves healthy (:mod:`tesson.runtime.converge`)."""

from __future__ import annotations

import argparse
import copy


def new_config(spec, config_path: str | None, env: list[str]) -> dict:
    """The config of the update: ``-c`` replaces the group's, ``--env K=V`` sets variables in it."""
    from tesson import config as config_mod
    from tesson.errors import UsageError
    from tesson.runtime.body import _env_merge

    cfg = config_mod.load(config_path) if config_path else copy.deepcopy(spec.config or {})
    pairs = {}
    for item in env:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise UsageError(f"--env {item!r}: expected KEY=VALUE")
        pairs[key] = value
    if pairs:
        cfg["Env"] = _env_merge(list(cfg.get("Env") or []), pairs, {})
    return cfg


def update(group: str, image: str | None, config_path: str | None, env: list[str], command: list[str],
           parallel: int, rollback: str, drain_timeout: float, timeout: int, health_timeout: float,
           where: tuple | None = None) -> int:
    from tesson import frontend, names
    from tesson import group as G
    from tesson.commands import find_group
    from tesson.commands.scale import _spec_and_frontend
    from tesson.docker_client import explain, is_status
    from tesson.errors import TessonError
    from tesson.runtime import change, converge, replan
    from tesson.runtime import plan as P
    from tesson.runtime.repair import report

    client, grp = find_group(group, " (tesson ls lists every group)")
    old, fe = _spec_and_frontend(grp)
    if old.config is None and not config_path:  # the labels keep only a digest: read it back
        from tesson import config as config_mod

        old = old._replace(config=config_mod.recover(client, grp))
    cfg = new_config(old, config_path, env)
    command = command[1:] if command[:1] == ["--"] else command
    want = old._replace(image=image or old.image, command=list(command) if command else list(old.command), config=cfg)
    try:
        image_id = client.inspect_image(want.image)["Id"]
    except Exception as e:
        if is_status(e, 404):
            raise TessonError(f"image {want.image!r} not found on the daemon: pull or build it first "
                              f"(update does not pull); nothing changed") from None
        raise TessonError(f"image {want.image!r}: {explain(e)}") from None
    opts = converge.Options(drain_timeout=drain_timeout, parallel=parallel, health_timeout=health_timeout)
    lock = change.acquire(client, grp, "update", image=want.image, old_image=old.image, size=grp.size)
    rolled: list[str] = []
    try:
        grp = G.find(client, grp.name) or grp
        if replan.pooled(grp):  # successors go where the shards are now, not where the labels say they started
            here, _ = replan.spec_now(client, grp, replan.topology_of(client, where))
            want = want._replace(shards=here.shards, limits=here.limits)
            old = old._replace(shards=here.shards, limits=here.limits)
        G.read_pins(client, grp)
        plan = P.plan(grp, want, image_id=image_id, update=True)
        if not plan.work:
            print(f"group {grp.name}: every shard already runs {want.image} as asked, nothing to update")
            return 0
        change.write_record(client, grp, want)
        ctx = frontend.Context.for_group(grp, client, timeout=timeout, spec=want)
        out = converge.execute(ctx, fe, plan, opts)
        if out.stopped_at:
            change.write_record(client, grp, old)  # the update did not happen: the previous spec stands
            if rollback == "all" and out.replaced:
                now = G.find(client, grp.name) or grp
                G.read_pins(client, now)
                back_ctx = frontend.Context.for_group(now, client, timeout=timeout, spec=old)
                back = converge.execute(back_ctx, fe, P.plan(now, old, update=True), opts)
                rolled = [names.shard_name(grp.name, i) for i in back.replaced]
    finally:
        change.release(client, lock)
    if out.stopped_at:
        replaced = [names.shard_name(grp.name, i) for i in out.replaced]
        if rolled:
            kept = f"rolled back {', '.join(rolled)} to {old.image}"
        elif replaced:
            kept = (f"{', '.join(replaced)} replaced before it keep {want.image} ('--rollback all' would undo "
                    f"them; 'tesson update -g {grp.name}' brings them back to the group's spec)")
        else:
            kept = "no shard was replaced"
        why = "; ".join(out.failed) or out.fe_error or "its front door failed"  # the door refused to take it out
        raise TessonError(f"update of {grp.name} stopped at {out.stopped_at}: {why}; its previous "
                          f"version serves again, the other shards are untouched; {kept}")
    for line in report(out, grp.name, "update"):
        print(line)
    after = G.find(client, grp.name)
    print(f"group {grp.name}: {len(out.replaced)} shard{'s' if len(out.replaced) != 1 else ''} updated to "
          f"{want.image}, {after.status if after else 'gone'}")
    return 0


def main(args: argparse.Namespace) -> int:
    return update(args.group, args.image, args.config, args.env, list(args.command or []), args.parallel,
                  args.rollback, args.drain_timeout, args.time, args.health_timeout, (args.fsroot, args.fsroot_given))
