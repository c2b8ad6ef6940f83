"""The kernel door's admission of a shard once it listens, without Docker: who is in rotation, from
a container list as the daemon gives it (:func:`tesson.frontend.kernel_table.shards`, pure), and the
check itself (:mod:`tesson.frontend.kernel_listen`) against servers of this test on 127.0.0.1.

The same on the real daemon, with the map read back from the kernel: tests/test_kernel_lb_listen.py.
"""

from __future__ import annotations

import queue
import socket
import threading
import time

from tesson.frontend import kernel_listen as L
from tesson.frontend import kernel_rules as K
from tesson.frontend import kernel_table as T

NET = "tesson-g"


def shard(index: int, status: str = "Up 2 seconds", state: str = "running", address: str | None = None,
          name: str | None = None) -> dict:
    """One entry of the daemon's container list (GET /containers/json) for shard ``index`` of group g."""
    return {"Id": f"id{index}", "Names": [f"/{name or f'g-{index}'}"], "State": state, "Status": status,
            "Labels": {"io.tesson.group": "g", "io.tesson.role": "shard", "io.tesson.shard": str(index)},
            "NetworkSettings": {"Networks": {NET: {"IPAddress": f"172.30.0.{index + 2}" if address is None else address}}}}


def names(pairs) -> list[str]:
    return [b.name for _, b in pairs]


def test_a_shard_without_a_healthcheck_waits_until_found_listening():
    found = [shard(1), shard(0)]
    admitted, waiting = T.shards(found, "g", NET, listening={"id1"})
    assert names(admitted) == ["g-1"]
    assert waiting == [T.Waiting(0, K.Backend("g-0", "172.30.0.2"), "id0")]
    admitted, waiting = T.shards(found, "g", NET, listening={"id0", "id1", "id-of-a-dead-one"})
    assert names(admitted) == ["g-0", "g-1"] and waiting == []


def test_no_check_when_the_group_has_no_tcp_door():
    """listening None: UDP-only doors, nothing to probe: admitted as soon as running."""
    admitted, waiting = T.shards([shard(0), shard(1)], "g", NET, listening=None)
    assert names(admitted) == ["g-0", "g-1"] and waiting == []
    assert L.tcp_ports([K.Door("udp", 5353, 53)]) == []
    assert L.tcp_ports([K.Door("udp", 53, 53), K.Door("tcp", 8080, 80), K.Door("tcp", 8081, 80, "127.0.0.1"),
                        K.Door("tcp", 8443, 443)]) == [80, 443]


def test_a_shard_with_a_healthcheck_is_judged_by_its_health_not_by_listening():
    found = [shard(0, "Up 5 seconds (healthy)"), shard(1, "Up 1 second (health: starting)"),
             shard(2, "Up 9 seconds (unhealthy)")]
    admitted, waiting = T.shards(found, "g", NET, listening=set())
    assert names(admitted) == ["g-0"] and waiting == []
    assert T.has_healthcheck("Up 5 seconds (healthy)") and not T.has_healthcheck("Up 5 seconds")
    assert not T.has_healthcheck("Up 5 seconds (Paused)")


def test_down_paused_stopped_foreign_or_addressless_shards_neither_in_nor_waiting():
    found = [shard(0, state="exited", status="Exited (0) 1 second ago"), shard(1, "Up 3 seconds (Paused)"),
             shard(2), shard(3, name="g-3.prev"), shard(4, address=""),
             {**shard(5), "Labels": {"io.tesson.role": "lb"}}, shard(6)]
    admitted, waiting = T.shards(found, "g", NET, down={"id2"}, listening=set())
    assert admitted == [] and [x.backend.name for x in waiting] == ["g-6"]


def test_admitted_moves_the_shards_found_listening_into_rotation_and_holds_still_apply():
    w = T.Wanted([K.Door("tcp", 8080, 80)], "br-x", *T.shards([shard(0), shard(1), shard(2)], "g", NET, listening={"id1"}))
    assert names(w.backends) == ["g-1"] and [x.cid for x in w.waiting] == ["id0", "id2"]
    w2 = w.admitted({"id2"})
    assert names(w2.backends) == ["g-1", "g-2"] and [x.cid for x in w2.waiting] == ["id0"]
    assert [b.name for b in K.rotation(w2.backends, held=[2])] == ["g-1"]  # a hold still keeps it out
    assert w.admitted(set()).backends == w.backends


# --- the check, against this test's own servers on loopback ----------------------------------------

def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def listen_on(port: int) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(8)
    return s


def test_accepts_and_probe_once():
    up, down = free_port(), free_port()
    server = listen_on(up)
    try:
        assert L.accepts("127.0.0.1", up) and not L.accepts("127.0.0.1", down)
        assert L.probe_once({"a": "127.0.0.1"}, [up]) == {"a"}
        assert L.probe_once({"a": "127.0.0.1"}, [up, down]) == set()  # every TCP port must accept
        assert L.probe_once({"a": "127.0.0.1", "b": "127.0.0.2"}, []) == {"a", "b"}  # nothing to check
    finally:
        server.close()


def test_a_prober_reports_once_the_last_port_listens_and_a_cancelled_one_never():
    p1, p2 = free_port(), free_port()
    q: queue.Queue = queue.Queue()
    first = listen_on(p1)
    second = None
    prober = L.Prober("c1", "g-0", "127.0.0.1", [p1, p2], q)
    prober.start()
    try:
        time.sleep(0.5)
        assert q.empty() and not prober.ok  # one of two ports listens: still waiting
        second = listen_on(p2)
        listened = time.monotonic()
        assert q.get(timeout=3) == ("listening", "c1")
        took = time.monotonic() - listened
        assert prober.ok and took < L.INTERVAL + 1.0, took  # (a loaded 2-CPU machine: its period, then some)
        prober.join(1)
        assert not prober.is_alive()
    finally:
        first.close()
        if second:
            second.close()
    cancelled = L.Prober("c2", "g-1", "127.0.0.1", [free_port()], q)
    cancelled.start()
    cancelled.cancel()
    cancelled.join(2)
    assert not cancelled.is_alive() and not cancelled.ok and q.empty()


def test_probers_do_not_wait_for_each_other():
    """Several shards start at once (a scale): each is admitted when it listens, not after the others."""
    q: queue.Queue = queue.Queue()
    ports = [free_port() for _ in range(4)]
    probers = [L.Prober(f"c{i}", f"g-{i}", "127.0.0.1", [p], q) for i, p in enumerate(ports)]
    for p in probers:
        p.start()
    servers = []
    try:
        servers.append(listen_on(ports[2]))
        assert q.get(timeout=3) == ("listening", "c2")
        time.sleep(0.3)
        assert q.empty()
        for p in ports[:2] + ports[3:]:
            servers.append(listen_on(p))
        got = {q.get(timeout=3)[1] for _ in range(3)}
        assert got == {"c0", "c1", "c3"}
    finally:
        for s in servers:
            s.close()
        for p in probers:
            p.cancel()


def test_listening_is_recorded_and_forgotten(tmp_path, monkeypatch):
    monkeypatch.setattr(T, "STATE_DIR", str(tmp_path))
    monkeypatch.setattr(T, "LISTENING", str(tmp_path / "listening"))
    monkeypatch.setattr(T, "LOCK", str(tmp_path / "lock"))
    assert T.listening() == set()
    assert T.note_listening(add={"a", "b"}) == {"a", "b"} == T.listening()
    assert T.note_listening(add={"c"}, drop={"a"}) == {"b", "c"}
    threads = [threading.Thread(target=T.note_listening, kwargs={"add": {f"x{i}"}}) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert T.listening() == {"b", "c"} | {f"x{i}" for i in range(8)}  # writers take turns: none lost
    assert T.note_listening(reset=True) == set() == T.listening()


def test_past_the_bound_a_shard_stays_out_is_tried_slower_and_still_enters_when_it_listens(monkeypatch):
    monkeypatch.setattr(L, "BOUND", 0.3)
    monkeypatch.setattr(L, "SLOW", 0.5)
    tries: list[float] = []
    real = L.accepts

    def counted(address: str, port: int, timeout: float = L.CONNECT_TIMEOUT) -> bool:
        tries.append(time.monotonic())
        return real(address, port, timeout)

    monkeypatch.setattr(L, "accepts", counted)
    port, q = free_port(), queue.Queue()
    prober = L.Prober("c", "g-0", "127.0.0.1", [port], q)
    prober.start()
    server = None
    try:
        time.sleep(1.6)  # 0.3 s of tries every 0.1 s, then every 0.5 s
        assert q.empty() and not prober.ok and prober.is_alive()  # past the bound: still out, still tried
        gaps = [b - a for a, b in zip(tries, tries[1:])]
        assert min(gaps[:2]) < 0.2 and gaps[-1] > 0.4, gaps
        server = listen_on(port)
        assert q.get(timeout=2) == ("listening", "c")
    finally:
        prober.cancel()
        if server:
            server.close()
