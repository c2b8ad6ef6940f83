"""The everyday verbs' pure parts: time arguments, the log merge order, the stats arithmetic."""

from __future__ import annotations

import io

import pytest

from tesson import shardio, shardstats
from tesson.commands.logs import parse_time
from tesson.errors import UsageError
from tesson.group import ShardState


def test_parse_time_forms():
    now = 1_000_000.0
    assert parse_time("42m", "--since", now) == now - 42 * 60
    assert parse_time("1h30m", "--since", now) == now - 5400
    assert parse_time("1.5h", "--since", now) == now - 5400
    assert parse_time("250ms", "--since", now) == pytest.approx(now - 0.25)
    assert parse_time("1714557600.5", "--since") == 1714557600.5
    assert parse_time("2024-05-01T10:00:00Z", "--since") == 1714557600.0
    assert parse_time("2024-05-01T12:00:00+02:00", "--since") == 1714557600.0
    for bad in ("yesterday", "10x", "", "-5m", "2024-13-01"):
        with pytest.raises(UsageError, match="--since"):
            parse_time(bad, "--since", now)


def test_stamps_compare_as_numbers():
    """Docker may trim trailing zeros: .1 is earlier than .12 as a time, later as text."""
    k = shardio._stamp_key
    assert b"2024-05-01T10:00:00.1Z" > b"2024-05-01T10:00:00.12Z"
    assert k(b"2024-05-01T10:00:00.1Z") < k(b"2024-05-01T10:00:00.12Z") < k(b"2024-05-01T10:00:01Z")
    assert k(b"2024-05-01T10:00:00Z") < k(b"2024-05-01T10:00:00.000000001Z")


class _Logs:
    def __init__(self, by_id):
        self.by_id = by_id

    def logs(self, cid, **kw):
        assert kw["timestamps"] is True and kw["stream"] is False
        return self.by_id[cid]


def test_print_logs_merges_by_time_and_prefixes():
    client = _Logs({
        "a": b"2024-05-01T10:00:00.1Z first of a\n2024-05-01T10:00:02Z second of a\n",
        "b": b"2024-05-01T10:00:00.12Z first of b\n2024-05-01T10:00:03Z last, no newline",
    })
    shards = [ShardState(0, "web-0", [0], [0], id="a", state="running"),
              ShardState(10, "web-10", [1], [0], id="b", state="running")]
    out = io.BytesIO()
    shardio.print_logs(client, shards, shardio.LogPrinter(["web-0", "web-10"], timestamps=False, out=out))
    assert out.getvalue().decode().splitlines() == [
        "web-0  | first of a", "web-10 | first of b", "web-0  | second of a", "web-10 | last, no newline"]
    out = io.BytesIO()
    shardio.print_logs(client, shards[:1], shardio.LogPrinter(["web-0"], timestamps=True, prefix=False, out=out))
    assert out.getvalue() == b"2024-05-01T10:00:00.1Z first of a\n2024-05-01T10:00:02Z second of a\n"


def _doc(total, pre_total, percpu, prepercpu, system, pre_system, online=4):
    return {
        "cpu_stats": {"cpu_usage": {"total_usage": total, "percpu_usage": percpu}, "system_cpu_usage": system,
                      "online_cpus": online},
        "precpu_stats": {"cpu_usage": {"total_usage": pre_total, "percpu_usage": prepercpu},
                         "system_cpu_usage": pre_system},
        "memory_stats": {"usage": 10 << 20, "limit": 1 << 30, "stats": {"total_inactive_file": 2 << 20}},
        "networks": {"eth0": {"rx_bytes": 100, "tx_bytes": 50}, "eth1": {"rx_bytes": 1, "tx_bytes": 2}},
        "pids_stats": {"current": 3},
    }


def test_usage_per_pinned_cpu():
    """One second on a 4-CPU host (4e9 ns of system time): the shard pinned to CPUs 1-2 kept CPU 1
    90% busy, CPU 2 10%, and ran 0.05 s on CPU 3 outside its pinning."""
    s = 10**9
    doc = _doc(total=2 * s + int(1.05 * s), pre_total=2 * s,
               percpu=[0, s + int(0.9 * s), s + int(0.1 * s), int(0.05 * s)], prepercpu=[0, s, s, 0],
               system=104 * s, pre_system=100 * s)
    u = shardstats.usage(3, "web-3", (1, 2), doc)
    assert u.cpu_percent == pytest.approx(105.0)
    assert u.per_cpu == pytest.approx({1: 90.0, 2: 10.0})
    assert u.elsewhere == pytest.approx(5.0)
    assert (u.mem_usage, u.mem_limit, u.net_rx, u.net_tx, u.pids) == (8 << 20, 1 << 30, 101, 52, 3)
    assert shardstats.per_cpu_text(u) == "cpu1 90% cpu2 10% elsewhere 5%"
    assert "8.00MiB / 1.00GiB" in shardstats.table([u]) and "101B / 52B" in shardstats.table([u])


def test_usage_without_a_previous_sample_or_percpu():
    """The first sample of a stream has no previous one; cgroup v2 sends no percpu_usage: then
    the figures are unknown ("-"), never made up."""
    first = {"cpu_stats": {"cpu_usage": {"total_usage": 5}, "system_cpu_usage": 10}, "precpu_stats": {}}
    u = shardstats.usage(0, "web-0", (0,), first)
    assert u.cpu_percent is None and u.per_cpu == {} and shardstats.per_cpu_text(u) == "-"
    v2 = _doc(total=2, pre_total=1, percpu=None, prepercpu=None, system=20, pre_system=10, online=2)
    u = shardstats.usage(0, "web-0", (0,), v2)
    assert u.cpu_percent == pytest.approx(20.0) and u.per_cpu == {} and u.elsewhere is None


def test_engine_lite_wire_format():
    """What tesson.engine_lite decodes and encodes, against the references: docker-py's filter
    conversion and urllib's quoting; chunked bodies and multiplexed streams as the daemon sends them."""
    import json
    import urllib.parse

    from docker.utils import convert_filters

    from tesson import engine_lite as E

    for filters in ({"label": ["io.tesson.group=web", "io.tesson.role"]}, {"status": "running", "dangling": True},
                    {"label": "a=b", "before": 3}):
        assert json.loads(E.convert_filters(filters)) == json.loads(convert_filters(filters))
    for text in ("web-0", "a b/c:d", "é{}\"=&?", '{"label":["x=y"]}'):
        assert E.quote(text) == urllib.parse.quote(text, safe="")
        assert E.quote(text, safe="/:") == urllib.parse.quote(text, safe="/:")
    assert E.query({"all": 1, "since": None, "filters": "{}"}) == "?all=1&filters=%7B%7D" and E.query({"x": None}) == ""
    body = b"5;ext=1\r\nhello\r\n1A\r\n" + b"x" * 26 + b"\r\n0\r\nTrailer: t\r\n\r\n"
    assert E.dechunk(body) == b"hello" + b"x" * 26
    with pytest.raises(E.ConnectionLost, match="cut short"):  # a stream cut short is no whole answer
        E.dechunk(b"3\r\nab")
    with pytest.raises(E.ConnectionLost):
        E.dechunk(b"zz\r\n")

    def frame(stream: int, data: bytes) -> bytes:
        return bytes([stream, 0, 0, 0]) + len(data).to_bytes(4, "big") + data

    raw = frame(1, b"out 1\n") + frame(2, b"err 1\n") + frame(1, b"") + frame(1, b"out 2\n")
    assert E.demultiplex(raw) == b"out 1\nerr 1\nout 2\n"
    assert E.demultiplex(raw, demux=True) == (b"out 1\nout 2\n", b"err 1\n")
    assert E.demultiplex(frame(1, b"x"), demux=True) == (b"x", None) and E.demultiplex(b"", demux=True) == (None, None)
    assert E.demultiplex(raw + frame(2, b"cut")[:-1]) == b"out 1\nerr 1\nout 2\ncu"  # a frame cut short
    assert E.demultiplex(raw + b"\x01\x00\x00") == b"out 1\nerr 1\nout 2\n"  # less than a header: dropped
    with pytest.raises(ValueError):
        E.demultiplex(frame(0, b"stdin?"), demux=True)


def test_parallel_keeps_order_and_raises_the_first_error_after_all_ran():
    import threading
    import time

    seen, most, lock = [], [0], threading.Lock()
    running = [0]

    def slow(i: int) -> int:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.02 * (5 - i % 5))
        with lock:
            running[0] -= 1
            seen.append(i)
        if i in (3, 7):
            raise ValueError(f"item {i}")
        return i * i

    assert shardio.parallel(lambda i: i * i, range(10), workers=3) == [i * i for i in range(10)]
    with pytest.raises(ValueError, match="item 3"):
        shardio.parallel(slow, range(10), workers=4)
    assert sorted(seen) == list(range(10)) and 1 < most[0] <= 4
    assert shardio.parallel(slow, [0]) == [0] and shardio.parallel(slow, []) == []
