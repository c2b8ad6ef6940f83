"""The kernel door admits a shard without a Docker healthcheck only once it accepts connections, on
the real daemon and kernel: shards of the test image whose httpd starts a few seconds after the
container (``sleep`` before ``/start``) are not in the kernel's map (``nft -j list table``) until
they listen, then are, and requests through the door meanwhile are never refused.

Groups ``t11-...`` (the fixtures of tests/test_kernel_lb.py), host ports 28360-28369, loopback
clients only. The scale and update paths, with wrk: tests/test_change.py.
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.request

import pytest

from tests import test_kernel_lb as KL
from tests.conftest import tesson_cmd
from tests.test_kernel_lb import address, leftovers, ps_json, run_ok, table

pytestmark = pytest.mark.docker

group, kernel_image = KL.group, KL.kernel_image  # the fixtures of tests/test_kernel_lb.py

LATE = 4.0  # seconds shards 1.. sleep before their httpd starts (shard 0 listens at once)
SLOW_START = f'if [ "$TESSON_UID" != 0 ]; then sleep {LATE}; fi; exec /start'


class Traffic:
    """GET /cgi-bin/id through the door, a new connection each, until stopped: who answered, and
    every failure (a refused connection among them) with when it happened."""

    def __init__(self, port: int) -> None:
        self.port, self.answers, self.failures = port, [], []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/cgi-bin/id", timeout=3) as r:
                    text = r.read().decode()
                uid = dict(ln.split("=", 1) for ln in text.splitlines() if "=" in ln).get("uid", "?")
                self.answers.append((time.monotonic(), uid))
            except OSError as e:
                self.failures.append((time.monotonic(), repr(e)))
            time.sleep(0.01)

    def stop(self) -> tuple[list, list]:
        self._stop.set()
        self._thread.join(10)
        return self.answers, self.failures


def first_accept(addr: str, port: int, out: dict, within: float = 30.0) -> threading.Thread:
    """A thread that tries ``addr:port`` every 5 ms and puts when it first accepts in ``out["at"]``."""
    def watch() -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                socket.create_connection((addr, port), timeout=0.2).close()
                out["at"] = time.monotonic()
                return
            except OSError:
                time.sleep(0.005)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


def admitted_after_it_listens(name: str, addr: str, within: float = 20.0) -> float:
    """Watch the kernel's map (every ~10 ms) until ``addr`` is in it; assert it was not in before
    ``addr:8080`` accepted; return how long after that it entered (the admission delay)."""
    seen: dict = {}
    watcher = first_accept(addr, 8080, seen, within)
    deadline = time.monotonic() + within
    while addr not in (table(name) or {}).get("backends", []):
        assert time.monotonic() < deadline, (table(name), seen)
        time.sleep(0.01)
    entered = time.monotonic()
    watcher.join(within)
    assert "at" in seen, "the shard entered the map but never accepted a connection"
    assert entered >= seen["at"], f"in the map {seen['at'] - entered:.3f}s before it listened"
    return entered - seen["at"]


def test_a_late_listener_enters_the_map_once_it_listens_and_the_door_refuses_nothing(group, docker_client, shard_image,
                                                                                      kernel_image):
    port = 28360
    run_ok("-g", group, "-u", "pu", "-n", "2", "-p", f"127.0.0.1:{port}:8080", "--lb", "kernel", "--lb-image", kernel_image,
           shard_image, "sh", "-c", SLOW_START)
    traffic = Traffic(port)
    a0, a1 = address(docker_client, f"{group}-0", group), address(docker_client, f"{group}-1", group)
    # at the agent's start: shard 1 runs but does not listen yet, so it is out
    assert not _accepts(a1), "shard 1 listened before the test looked: the premise of this test failed"
    assert table(group)["backends"] == [a0]
    fe = ps_json(group)["frontend"]
    assert fe["in_rotation"] == [f"{group}-0"] and fe["not_listening"] == [f"{group}-1"], fe
    assert fe["status"] == f"running, 1/2 shards in rotation ({group}-1 not listening yet)", fe
    first_delay = admitted_after_it_listens(group, a1)
    time.sleep(0.5)
    answers, failures = traffic.stop()
    assert failures == [], failures[:5]
    assert {"0", "1"} <= {uid for _, uid in answers}, answers[-10:]  # shard 1 answers once in
    assert ps_json(group)["frontend"]["not_listening"] == []

    # its start event: stopped (out of the map), started again, out until it listens again
    docker_client.stop(f"{group}-1", timeout=1)
    deadline = time.monotonic() + 5
    while table(group)["backends"] != [a0]:
        assert time.monotonic() < deadline, table(group)
        time.sleep(0.02)
    traffic = Traffic(port)
    docker_client.start(f"{group}-1")
    a1 = address(docker_client, f"{group}-1", group)
    time.sleep(1.0)  # the start event and the agent's looks again after it (0.3 s)
    assert table(group)["backends"] == [a0] and not _accepts(a1)
    assert ps_json(group)["frontend"]["not_listening"] == [f"{group}-1"]
    second_delay = admitted_after_it_listens(group, a1)
    time.sleep(0.5)
    answers, failures = traffic.stop()
    assert failures == [], failures[:5]
    assert {"0", "1"} <= {uid for _, uid in answers}
    print(f"admission delay after the shard listened: {first_delay:.3f}s (agent start), {second_delay:.3f}s (start event)")
    assert first_delay < 1.0 and second_delay < 1.0, (first_delay, second_delay)

    r = tesson_cmd("stop", "-g", group, "--purge", "-t", "1")
    assert r.returncode == 0, r.stderr
    assert leftovers(docker_client, group) == ([], [], False, [])


def test_a_udp_only_group_admits_its_shards_as_they_start(group, docker_client, shard_image, kernel_image):
    """No handshake to check: a shard is in as soon as it runs, as before (it listens or not)."""
    port = 28361
    run_ok("-g", group, "-u", "pu", "-n", "2", "-p", f"127.0.0.1:{port}:8080/udp", "--lb", "kernel",
           "--lb-image", kernel_image, shard_image, "sh", "-c", SLOW_START)
    a0, a1 = address(docker_client, f"{group}-0", group), address(docker_client, f"{group}-1", group)
    assert table(group)["backends"] == [a0, a1]
    assert ps_json(group)["frontend"]["not_listening"] == []
    r = tesson_cmd("stop", "-g", group, "--purge", "-t", "1")
    assert r.returncode == 0, r.stderr


def _accepts(addr: str) -> bool:
    try:
        socket.create_connection((addr, 8080), timeout=0.3).close()
        return True
    except OSError:
        return False
