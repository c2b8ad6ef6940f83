"""Turn a plan into pinned containers, and stop or repair them: all through docker-py's APIClient.

``run`` is all or nothing: everything it makes (containers, and whatever the frontend records in
``ctx.undo``) is removed again if any step fails or the user presses Ctrl-C. Shards are created and
started by a bounded thread pool; shard 0 is created first, alone, because creating it claims the
group's name: of two concurrent runs of one group, exactly one gets the name ``GROUP-0``. Once
all are started, ``run`` gives the last one ``SETTLE`` seconds and inspects them all again: a shard
that exits at once (a bad command) fails the run like one that could not start.

``repair`` tries every shard, keeps each one it brings back, and only then reports what it could not
repair. It makes the same settle check as ``run``: a shard that falls over again at once is not
counted as repaired (nor passed to the frontend), but left in place for a later repair.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import NamedTuple

from tesson import cpulist, log
from tesson import group as G
from tesson.docker_client import explain, is_status
from tesson.docker_client import remove_container as _remove
from tesson.errors import TessonError
from tesson.frontend import Context, Frontend

MAX_WORKERS = 16
SETTLE = 0.5  # seconds the last-started shard is given to fall over before run trusts the group


class Interrupted(TessonError):
    """Ctrl-C or SIGTERM during a run: cleaned up, exit 130 like a shell."""

    exit_code = 130


class GroupInUse(TessonError):
    pass


class Progress:
    """``started k/N`` on stderr, rewritten in place, only when stderr is a terminal."""

    def __init__(self, total: int, verb: str, stream=None) -> None:
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


@contextmanager
def _interrupts(ignore: bool = False):
    """SIGTERM behaves like Ctrl-C (or, with ignore, both are held off while cleaning up)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_interrupt(signum, frame):
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


# ---------------------------------------------------------------------------------------------
# create bodies


def _env_merge(env: list, ours: dict, defaults: dict) -> list:
    """Merge ``NAME=value`` lists: ``ours`` replace the config's, ``defaults`` only fill gaps."""
    names = [e.split("=", 1)[0] for e in env]
    out = list(env)
    for name, value in ours.items():
        item = f"{name}={value}"
        if name in names:
            out = [item if e.split("=", 1)[0] == name else e for e in out]
        else:
            out.append(item)
    for name, value in defaults.items():
        if name not in names and name not in ours:
            out.append(f"{name}={value}")
    return out


def shard_body(ctx: Context, fe: Frontend, shard) -> dict:
    """The create body of one shard: the config as given, tesson's fields on top, then the frontend's."""
    import copy

    body = copy.deepcopy(ctx.config) if ctx.config else {}
    body["Image"] = ctx.image
    if ctx.command:
        body["Cmd"] = list(ctx.command)
    cpus, mems = cpulist.format(shard.cpus), cpulist.format(shard.mems)
    body["Labels"] = {
        **(body.get("Labels") or {}),
        **ctx.labels,
        G.ROLE: "shard",
        G.SHARD: str(shard.index),
        G.CPUS: cpus,
        G.MEMS: mems,
    }
    body["Env"] = _env_merge(
        body.get("Env") or [],
        {"TESSON_GROUP": ctx.group, "TESSON_UID": str(shard.index), "TESSON_CPUS": cpus, "TESSON_NCPUS": str(len(shard.cpus))},
        {"GOMAXPROCS": str(len(shard.cpus))},
    )
    host = body.get("HostConfig") or {}
    host["CpusetCpus"] = cpus
    if mems:
        host["CpusetMems"] = mems
    if not host.get("RestartPolicy"):
        host["RestartPolicy"] = {"Name": "unless-stopped"}
    body["HostConfig"] = host
    fe.shape_shard(ctx, shard, body)
    return body


# ---------------------------------------------------------------------------------------------
# the pool


class _Batch:
    """Run one task per item on a bounded pool; stop starting new ones after the first failure or
    Ctrl-C, and wait for those in flight (they record what they made) before returning."""

    def __init__(self, workers: int, stop_on_error: bool = True) -> None:
        self.workers = workers
        self.stop_on_error = stop_on_error
        self.cancelled = threading.Event()
        self.errors: list[tuple[object, BaseException]] = []
        self._lock = threading.Lock()

    def check(self) -> None:
        if self.cancelled.is_set():
            raise _Cancelled

    def run(self, fn, items) -> None:
        items = list(items)
        if not items:
            return

        def task(item):
            if self.cancelled.is_set():
                return
            try:
                fn(item, self)
            except _Cancelled:
                pass
            except BaseException as e:  # noqa: BLE001 - reported by the caller
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
            with _interrupts(ignore=True):
                pool.shutdown(wait=True)
            raise
        pool.shutdown(wait=True)


class _Cancelled(Exception):
    pass


def _start_shard(ctx: Context, fe: Frontend, shard, batch: _Batch, progress: Progress, created: dict,
                 undo=None, starts: dict | None = None) -> None:
    """Create (unless created already) and start one shard; record it in ``undo`` (default
    ``ctx.undo``) for rollback. Without ``starts`` the shard is inspected into ``ctx.started``;
    with it, when its start returned is noted there (``run`` inspects every shard after the settle)."""
    client = ctx.docker
    undo = ctx.undo if undo is None else undo
    name = ctx.shard_name(shard.index)
    cid = created.get(shard.index)
    if cid is None:
        batch.check()
        body = shard_body(ctx, fe, shard)
        cid = client.create_container_from_config(body, name=name)["Id"]
        created[shard.index] = cid
        undo.add(f"container {name}", lambda: _remove(client, cid), batch="containers")
        log.info("shard created", shard=name, id=cid[:12], cpus=cpulist.format(shard.cpus))
    batch.check()
    client.start(cid)
    if starts is None:
        ctx.started[shard.index] = client.inspect_container(cid)
    else:
        starts[shard.index] = time.monotonic()
    log.info("shard started", shard=name, id=cid[:12])
    progress.step()


def _shard_error(ctx: Context, item, exc: BaseException, doing: str) -> str:
    name = ctx.shard_name(item.index) if hasattr(item, "index") else str(item)
    return f"shard {name} failed to {doing}: {explain(exc)}"


def _last_log_line(client, cid: str, until: float | None = None) -> str:
    """The last non-empty line a container wrote (stdout or stderr; before ``until``, an epoch
    time), for an error message."""
    try:
        text = client.logs(cid, stdout=True, stderr=True, tail=20, **({"until": until} if until else {}))
    except Exception as e:
        return f"its log cannot be read ({explain(e)})"
    text = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
    lines = [" ".join(ln.split()) for ln in text.splitlines() if ln.strip()]
    return f"last log line: {lines[-1][:200]}" if lines else "it logged nothing"


def _exit_of(client, info: dict, since: float) -> tuple:
    """(exit code, when) of a shard that fell over. Its state says, unless Docker has restarted it
    already (which resets the state's code): then its latest ``die`` event since the run began does,
    and ``when`` (epoch seconds) lets its log be cut there, before the next attempt's output."""
    state = info.get("State") or {}
    if not state.get("Running") or state.get("Restarting"):
        return state.get("ExitCode"), None
    try:
        events = list(client.events(since=int(since) - 1, until=time.time(),
                                    filters={"container": info["Id"], "event": "die"}, decode=True))
    except Exception:
        return None, None
    for e in reversed(events):
        code = ((e.get("Actor") or {}).get("Attributes") or {}).get("exitCode")
        if code is not None:
            when = e.get("timeNano")
            return int(code), (when / 1e9 + 0.01 if when else None)
    return None, None


def _fell_over(info: dict) -> bool:
    state = info.get("State") or {}
    return not state.get("Running") or bool(state.get("Restarting")) or (info.get("RestartCount") or 0) > 0


class _Down(NamedTuple):
    """A shard the settle check found down: ``kind`` is ``exited`` (not running, restarting or
    restarted by Docker), ``vanished`` (a 404) or ``unreadable`` (another inspect error, ``detail``)."""

    kind: str
    detail: str = ""


def _settle_check(ctx: Context, created: dict, starts: dict, workers: int) -> dict[int, _Down]:
    """Wait until the last-started shard has had ``SETTLE`` seconds, inspect every shard of
    ``created`` (index -> container id) in parallel into ``ctx.started``, and return each one that
    is not steadily up, by index. Used by ``run`` (which fails) and ``repair`` (which reports)."""
    client = ctx.docker
    delay = max(starts.values()) + SETTLE - time.monotonic() if starts else 0
    if delay > 0:
        time.sleep(delay)
    down: dict[int, _Down] = {}
    lock = threading.Lock()

    def look(index, _batch):
        try:
            info = client.inspect_container(created[index])
        except Exception as e:
            # a 404: removed behind our back (docker rm, --rm in the config); else the daemon's trouble
            with lock:
                down[index] = _Down("vanished" if is_status(e, 404) else "unreadable", explain(e))
            return
        ctx.started[index] = info
        if _fell_over(info):
            with lock:
                down[index] = _Down("exited")

    _Batch(workers, stop_on_error=False).run(look, sorted(created))
    for i in sorted(down):
        log.info("shard fell over after start", shard=ctx.shard_name(i), how=down[i].kind)
    return dict(sorted(down.items()))


def _down_reason(ctx: Context, created: dict, index: int, down: _Down, since: float) -> str:
    """What happened to a shard ``_settle_check`` found down, to follow its name in a message:
    for one that exited, its exit code (and restarts, OOM) and the last line it logged."""
    if down.kind == "vanished":
        return f"vanished right after it started ({down.detail})"
    if down.kind == "unreadable":
        return f"could not be inspected after it started: {down.detail}"
    client = ctx.docker
    info = ctx.started[index]
    state = info.get("State") or {}
    code, until = _exit_of(client, info, since)
    how = f"exit code {code}" if code is not None else "exit code unknown"
    if state.get("OOMKilled"):
        how += ", killed for lack of memory"
    restarts = info.get("RestartCount") or 0
    if restarts:
        how += f", restarted {restarts} time{'s' if restarts != 1 else ''} by Docker"
    return f"exited right after it started ({how}); {_last_log_line(client, created[index], until)}"


def _settle(ctx: Context, created: dict, starts: dict, since: float, workers: int) -> None:
    """``run``'s settle: fail the run when any shard is not steadily up a moment after it started
    (a command that exits at once), naming the first (one the daemon could not inspect first)."""
    down = _settle_check(ctx, created, starts, workers)
    if not down:
        return
    first = min(down, key=lambda i: (down[i].kind != "unreadable", i))
    msg = f"shard {ctx.shard_name(first)} {_down_reason(ctx, created, first, down[first], since)}"
    unreadable = down[first].kind == "unreadable"  # the daemon's trouble, not the shards'
    others = [i for i in down if i != first and (down[i].kind == "unreadable") == unreadable]
    if others:
        msg += f"; so did {', '.join(ctx.shard_name(i) for i in others)}"
    raise TessonError(msg)


def _claim_conflict(ctx: Context, name: str) -> TessonError:
    """Creating GROUP-0 hit a name conflict: another run of this group, or a stranger's container."""
    try:
        labels = (ctx.docker.inspect_container(name).get("Config") or {}).get("Labels") or {}
    except Exception:
        labels = {G.GROUP: ctx.group}  # gone again, or unreadable: most likely a run of this group
    if labels.get(G.GROUP) != ctx.group:
        return GroupInUse(
            f"a container named {name} exists and is not part of tesson group {ctx.group!r}: "
            f"remove or rename it, or choose another -g"
        )
    return GroupInUse(
        f"group {ctx.group!r} is already in use: a container named {name} exists "
        f"(stop it first: tesson stop -g {ctx.group} --purge)"
    )


# ---------------------------------------------------------------------------------------------
# run


def _new_run_id(ctx: Context) -> str:
    """Label this invocation's containers, so a cleanup can find even one whose create was cut short."""
    import uuid

    ctx.labels[G.RUN] = uuid.uuid4().hex[:16]
    return ctx.labels[G.RUN]


def _sweep(client, run_id: str) -> list[str]:
    """Remove every container and network labelled with this run's id (``io.tesson.run``), after the
    undo steps: even one whose create call was cut short does not stay."""
    failed = []
    try:
        left = client.containers(all=True, filters={"label": [f"{G.RUN}={run_id}"]})
    except Exception as e:
        return [f"containers of run {run_id} ({explain(e)})"]
    for c in left:
        try:
            _remove(client, c["Id"])
        except Exception as e:
            failed.append(f"container {(c.get('Names') or ['?'])[0].lstrip('/')} ({explain(e)})")
    try:
        nets = client.networks(filters={"label": [f"{G.RUN}={run_id}"]})
    except Exception:
        nets = []
    for n in nets:
        try:
            client.remove_network(n["Id"])
        except Exception as e:
            if not is_status(e, 404):
                failed.append(f"network {n.get('Name')} ({explain(e)})")
    return failed


def _summary(whats) -> str:
    """``["container web-0", "container web-1", "network tesson-web"]`` -> ``"2 containers, 1 network"``."""
    counts: dict[str, int] = {}
    for what in whats:
        kind = what.rsplit(" ", 1)[0]
        counts[kind] = counts.get(kind, 0) + 1
    return ", ".join(f"{n} {kind}{'s' if n != 1 else ''}" for kind, n in counts.items())


def run(ctx: Context, fe: Frontend, workers: int = MAX_WORKERS) -> None:
    """Create and start every shard of ``ctx.shards`` and the frontend; all or nothing."""
    client = ctx.docker
    run_id = _new_run_id(ctx)
    began = time.time()
    progress = Progress(len(ctx.shards), "started")
    created: dict[int, str] = {}
    batch = _Batch(workers)
    try:
        with _interrupts():
            try:
                fe.before_shards(ctx)
                first = ctx.shards[0]
                name = ctx.shard_name(first.index)

                def claim(shard, _batch):
                    cid = client.create_container_from_config(shard_body(ctx, fe, shard), name=name)["Id"]
                    created[shard.index] = cid
                    ctx.undo.add(f"container {name}", lambda: _remove(client, cid), batch="containers")

                # creating GROUP-0 claims the group name (in a worker: Ctrl-C never cuts a create short)
                claim_batch = _Batch(1)
                claim_batch.run(claim, [first])
                if claim_batch.errors:
                    exc = claim_batch.errors[0][1]
                    if is_status(exc, 409):
                        raise _claim_conflict(ctx, name)
                    raise TessonError(_shard_error(ctx, first, exc, "be created"))
                starts: dict[int, float] = {}
                batch.run(lambda s, b: _start_shard(ctx, fe, s, b, progress, created, starts=starts), ctx.shards)
                if batch.errors:
                    item, exc = min(batch.errors, key=lambda e: getattr(e[0], "index", 0))
                    doing = "start" if getattr(item, "index", None) in created else "be created"
                    raise TessonError(_shard_error(ctx, item, exc, doing))
                progress.close()
                _settle(ctx, created, starts, began, workers)  # before the frontend sees any shard
                fe.after_shards(ctx)
            finally:
                progress.close()
    except BaseException as e:
        with _interrupts(ignore=True):
            failed = ctx.undo.rollback() + _sweep(client, run_id)
        made = _summary(ctx.undo.undone)
        if failed:
            tail = f"; could not remove: {', '.join(failed)}"
        else:
            tail = f"; removed what this run made ({made})" if made else ""
        if isinstance(e, KeyboardInterrupt):
            raise Interrupted(f"interrupted{tail}") from None
        if isinstance(e, TessonError):
            e.args = (str(e) + tail,)
            raise
        raise TessonError(f"run failed: {explain(e)}{tail}") from None


# ---------------------------------------------------------------------------------------------
# stop


def stop(ctx: Context, fe: Frontend | None, workers: int = MAX_WORKERS) -> list[str]:
    """Stop (with ``ctx.purge``: remove) every container of ``ctx.state``; returns what failed."""
    client, grp = ctx.docker, ctx.state
    if fe is not None:
        fe.before_stop(ctx)
    progress = Progress(len(grp.container_ids()), "removed" if ctx.purge else "stopped")
    errors: list[str] = []

    def one(cid, _batch):
        try:
            client.stop(cid, timeout=ctx.timeout)
            if ctx.purge:
                client.remove_container(cid, v=True, force=True)
        except Exception as e:
            if not is_status(e, 404):
                errors.append(f"{cid[:12]}: {explain(e)}")
        progress.step()

    batch = _Batch(workers)
    batch.cancelled = _Never()
    try:
        batch.run(one, grp.container_ids())
    finally:
        progress.close()
    if fe is not None:  # with --purge, the frontend removes what it made (the nginx network)
        fe.after_stop(ctx)
    elif ctx.purge:  # a frontend this tesson cannot load: its networks still go
        _purge_networks(ctx, errors)
    return errors


def _purge_networks(ctx: Context, errors: list[str]) -> None:
    """``stop --purge`` of a group whose frontend cannot be loaded: remove every network labelled
    with the group, after its containers. One that stays (a stranger still attached, say) fails the
    stop with what is left and the docker commands that finish the job: the group's containers are
    gone, so no tesson command finds it any more."""
    client, group = ctx.docker, ctx.group
    left: list[str] = []
    try:
        nets = client.networks(filters={"label": [f"{G.GROUP}={group}"]})
    except Exception as e:
        nets = []
        left.append(f"its networks could not be listed ({explain(e)}): 'docker network ls --filter label={G.GROUP}={group}'")
    for net in nets:
        name = net.get("Name") or net["Id"][:12]
        try:
            client.remove_network(net["Id"])
            log.info("network removed", network=name, group=group)
        except Exception as e:
            if not is_status(e, 404):
                left.append(f"network {name} was not removed ({explain(e)}): 'docker network rm {name}'")
    if not left:
        return
    n = len(ctx.state.container_ids())
    gone = f"{len(errors)} of {n} containers could not be removed: {'; '.join(errors)}" if errors else "its containers are removed"
    raise TessonError(f"group {group}: {gone}, but {'; '.join(left)}")


class _Never:
    """A cancel flag that never trips: stop goes on with every container whatever fails."""

    def is_set(self) -> bool:
        return False

    def set(self) -> None:
        pass


# ---------------------------------------------------------------------------------------------
# repair


def repair(ctx: Context, fe: Frontend, workers: int = MAX_WORKERS) -> list[str]:
    """Restart exited shards, recreate dead and vanished ones on their planned CPUs; then the frontend.

    Every shard is tried; those repaired are kept whatever happens to the others or to the frontend,
    whose ``repair`` is still called for them. A shard counts as repaired only if it is still up
    ``SETTLE`` seconds after its start (the check ``run`` makes); one that falls over again at once
    is left as it is (a later repair tries again) and reported like one that could not be started.
    If any shard (or the frontend) could not be brought back, TessonError (exit 1) names it and why,
    and says what was repaired. Ctrl-C removes only what is half-made (a recreated shard not started
    yet); shards already repaired stay.
    """
    from tesson.frontend import Undo

    client, grp = ctx.docker, ctx.state
    _new_run_id(ctx)
    began = time.time()
    lines: list[str] = []
    restart, recreate = [], []
    for st in grp.shards:
        if st.up:
            continue
        if st.state in ("exited", "created"):
            restart.append(st)
        elif st.state in ("dead", "missing", "removing"):
            recreate.append(st)
        else:  # restarting, paused: Docker is on it, or the user paused it on purpose
            lines.append(f"left {st.name} alone: it is {st.state}")
    plan = {s.index: s for s in ctx.shards}
    progress = Progress(len(restart) + len(recreate), "repaired")
    done: dict[int, str] = {}  # index -> what was done, for each shard started (and, later, still up)
    created: dict[int, str] = {}  # index -> container id of each shard started
    starts: dict[int, float] = {}  # index -> when its start returned, for the settle check
    lock = threading.Lock()

    def one(st, batch):
        if st in restart:
            batch.check()
            client.start(st.id)
            with lock:
                created[st.index], starts[st.index] = st.id, time.monotonic()
            line = f"restarted {st.name} (cpus {cpulist.format(st.cpus)})"
        else:
            if st.id:
                _remove(client, st.id)
            # A recreated shard that fails to start is kept, created: it holds the shard's place
            # and labels, and the next repair starts it. Only Ctrl-C takes away what is half-made.
            mine = Undo()
            try:
                _start_shard(ctx, fe, plan[st.index], batch, _NoProgress(), created, undo=mine, starts=starts)
            except _Cancelled:
                mine.rollback()
                raise
            line = f"recreated {st.name} (cpus {cpulist.format(plan[st.index].cpus)})"
        with lock:
            done[st.index] = line
        progress.step()

    batch = _Batch(workers, stop_on_error=False)
    fell: list[tuple[int, str]] = []
    try:
        with _interrupts():
            try:
                batch.run(one, restart + recreate)
            finally:
                progress.close()
            # the check run makes: a shard that falls over at once is not repaired (left in place)
            up = {i: created[i] for i in done}
            down = _settle_check(ctx, up, {i: starts[i] for i in done}, workers)
            for i, d in down.items():
                fell.append((i, f"{ctx.shard_name(i)} ({_down_reason(ctx, up, i, d, began)})"))
                del done[i]
                ctx.started.pop(i, None)
    except KeyboardInterrupt:
        with _interrupts(ignore=True):
            half = _half_made(client, ctx, recreate, list(done))
        kept = ", ".join(sorted((ctx.shard_name(i) for i in done), key=_line_order)) or "none"
        raise Interrupted(f"interrupted; shards already repaired are kept ({kept}){half}") from None
    lines.extend(done.values())
    failed = [text for _, text in sorted([(item.index, f"{item.name} ({explain(exc)})") for item, exc in batch.errors] + fell)]
    # The repaired shards are healthy now: neither a shard that could not be repaired nor a frontend
    # that cannot be brought in line (Gorb down, say) takes them away again.
    fe_error = None
    try:
        lines.extend(fe.repair(ctx, sorted(done)))
    except TessonError as e:
        fe_error = str(e)
    except Exception as e:  # a daemon error inside the frontend: still one line, never "internal error"
        fe_error = f"{fe.kind} frontend could not be brought in line: {explain(e)}"
    lines.sort(key=_line_order)
    if not failed and fe_error is None:
        return lines
    did = "; ".join(lines) or "no shard"
    again = f"run 'tesson repair -g {ctx.group}' again once that is fixed"
    if failed:
        msg = f"could not repair {', '.join(failed)}"
        if fe_error:
            msg += f"; and: {fe_error}"
        raise TessonError(f"{msg} (repaired: {did}; {again})")
    raise TessonError(f"{fe_error} (shards repaired: {did}; {again})")


def _half_made(client, ctx: Context, recreate: list, done: list[int]) -> str:
    """After Ctrl-C in repair: remove recreated shards that never started (this repair's run id)."""
    removed = []
    for st in recreate:
        if st.index in done:
            continue
        try:
            found = client.containers(all=True, filters={"label": [f"{G.RUN}={ctx.labels[G.RUN]}", f"{G.SHARD}={st.index}"]})
        except Exception:
            continue
        for c in found:
            if c.get("State") == "running":
                continue
            try:
                _remove(client, c["Id"])
                removed.append(st.name)
            except Exception as e:
                log.warning("could not remove a half-made shard", shard=st.name, error=explain(e))
    return f"; removed the half-made {', '.join(removed)}" if removed else ""


def _line_order(line: str):
    import re

    m = re.search(r"-(\d+)\b", line)
    return (0 if m else 1, int(m.group(1)) if m else 0, line)


class _NoProgress:
    def step(self) -> None:
        pass


def group_context(grp, client, **kw) -> Context:
    """The frontend context of a group found on the daemon (stop, repair, ps)."""
    from tesson import ports as P

    spec = grp.spec
    ctx = Context(group=grp.name, docker=client, labels=dict(grp.labels), state=grp, **kw)
    if spec is not None:
        ctx.image, ctx.command, ctx.config, ctx.unit = spec.image, list(spec.command), spec.config, spec.unit
        ctx.shards = list(spec.shards)
        try:
            ctx.ports = P.parse(spec.port_specs)
        except TessonError:
            ctx.ports = []
    return ctx


def group_frontend(grp) -> Frontend | None:
    """The frontend a group was run with, or None (logged) when this tesson cannot load it."""
    from tesson import frontend

    try:
        return frontend.from_labels(grp.labels)
    except TessonError as e:
        log.warning("frontend unavailable", group=grp.name, error=str(e))
        return None
