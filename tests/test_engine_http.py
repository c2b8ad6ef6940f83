"""tesson.engine_http and tesson.engine_lite against a daemon that misbehaves: a fake Engine API on a
unix socket in a tmp dir (a thread), answering what each test scripts. An answer cut short (a
chunked body without its final chunk, a body shorter than its Content-Length) raises ConnectionLost
and the verbs say so in one line; a complete answer on a connection the daemon keeps open returns at
once; the request always says ``Connection: close`` unless it upgrades; run --dry-run's listing is
one unversioned request. No Docker daemon is needed."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from tests.conftest import tesson_cmd

PING = b"HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Length: 2\r\n\r\nOK"
LISTING = json.dumps([{"Id": "a" * 64, "Names": ["/x"], "Labels": {}}]).encode()


def whole(body: bytes, status: str = "200 OK") -> bytes:
    return f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


def chunked(*parts: bytes, final: bool = True) -> bytes:
    out = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    out += b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in parts)
    return out + (b"0\r\n\r\n" if final else b"")


class FakeDaemon:
    """Answers each request with ``script(method, target)``: ``(bytes, keep_open)``; keep_open holds
    the connection until close(). Requests are kept as (method, target, {header: value})."""

    def __init__(self, path: str, script) -> None:
        self.path, self.script, self.requests, self.held = path, script, [], []
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(path)
        self.srv.listen(16)
        self.srv.settimeout(0.1)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.done.is_set():
            try:
                conn, _ = self.srv.accept()
            except (socket.timeout, OSError):
                continue
            conn.settimeout(5)
            try:
                head = b""
                while b"\r\n\r\n" not in head:
                    got = conn.recv(4096)
                    if not got:
                        break
                    head += got
                line, *fields = head.split(b"\r\n\r\n")[0].decode().split("\r\n")
                method, target, _ = line.split(" ")
                self.requests.append((method, target, dict(f.split(": ", 1) for f in fields)))
                data, keep = self.script(method, target)
                conn.sendall(data)
            except OSError:
                keep = False
            if keep:
                self.held.append(conn)
            else:
                conn.close()

    def close(self) -> None:
        self.done.set()
        self.thread.join(5)
        for conn in self.held:
            conn.close()
        self.srv.close()


@pytest.fixture
def daemon(tmp_path):
    made = []

    def start(script) -> FakeDaemon:
        d = FakeDaemon(str(tmp_path / f"d{len(made)}.sock"), script)
        made.append(d)
        return d

    yield start
    for d in made:
        d.close()


def _pinged(answer):
    """A script: /_ping as the daemon answers it, everything else ``answer`` (closed after)."""
    return lambda method, target: (PING, False) if target.endswith("/_ping") else (answer, False)


def test_a_cut_answer_raises(daemon):
    from tesson import engine_lite as E

    for answer in (chunked(LISTING[:10], final=False),  # no final chunk
                   chunked(LISTING)[:-30],  # cut inside a chunk
                   whole(LISTING)[:-5],  # shorter than its Content-Length
                   b"HTTP/1.1 200 OK\r\nContent-Le"):  # cut inside the head
        d = daemon(_pinged(answer))
        with pytest.raises(E.ConnectionLost, match="the daemon's answer was cut short"):
            E.Client(d.path, 10).containers(all=True)
    with pytest.raises(E.ConnectionLost, match="cut short"):
        E.dechunk(b"3\r\nab")
    d = daemon(_pinged(whole(b"[{\"Id\": ")))  # complete, but not JSON: the same one-line kind
    with pytest.raises(E.ConnectionLost, match=r"answer to /v1.41/containers/json is not JSON"):
        E.Client(d.path, 10).containers(all=True)


def test_a_complete_answer_on_a_connection_kept_open_returns_at_once(daemon):
    from tesson import engine_lite as E

    for answer in (whole(LISTING), chunked(LISTING[:7], LISTING[7:])):
        d = daemon(lambda method, target, answer=answer: (PING if target.endswith("/_ping") else answer, True))
        start = time.monotonic()
        assert E.Client(d.path, 10).containers(all=True) == json.loads(LISTING)
        assert time.monotonic() - start < 2  # not the 10 s timeout


def test_a_complete_chunked_answer(daemon):
    from tesson import engine_lite as E

    answer = chunked(LISTING[:1], LISTING[1:20], LISTING[20:])
    ext = answer.replace(b"\r\n1\r\n", b"\r\n1;name=value\r\n").replace(b"0\r\n\r\n", b"0\r\nTrailer: t\r\n\r\n")
    for body in (answer, ext):
        d = daemon(_pinged(body))
        assert E.Client(d.path, 10).containers(all=True) == json.loads(LISTING)
    d = daemon(lambda method, target: (b"HTTP/1.1 101 UPGRADED\r\nContent-Type: x\r\n\r\n\x01\x00\x00\x00\x00\x00\x00\x02hi", False))
    status, _, body = E.Client(d.path, 10, "1.41").request("POST", "/x", b"{}", {"Connection": "Upgrade", "Upgrade": "tcp"})
    assert (status, body) == (101, b"\x01\x00\x00\x00\x00\x00\x00\x02hi")  # read to the close


def test_connection_close_is_always_sent_unless_upgrading(daemon):
    from tesson import engine_lite as E

    d = daemon(lambda method, target: (whole(b"{}"), False))
    client = E.Client(d.path, 10, "1.41")
    client.request("GET", "/a", headers={"Connection": "keep-alive", "Accept": "x"})
    client.get_archive("c", "/etc")
    client.request("POST", "/b", b"{}", {"Connection": "Upgrade", "Upgrade": "tcp"})
    got = [r[2] for r in d.requests]
    assert got[0]["Connection"] == "close" and got[0]["Accept"] == "x"
    assert got[1]["Connection"] == "close" and got[1]["Accept-Encoding"] == "identity"
    assert got[2]["Connection"] == "Upgrade" and got[2]["Upgrade"] == "tcp"
    assert all(sum(k.lower() == "connection" for k in h) == 1 for h in got)


def test_exec_inspect_takes_what_docker_py_takes(daemon):
    from tesson import engine_lite as E

    d = daemon(lambda method, target: (whole(b'{"ExitCode": 0}'), False))
    client = E.Client(d.path, 10, "1.41")
    for bad in (None, {"Id": None}, ""):
        with pytest.raises(ValueError):  # docker-py: ValueError too (no AttributeError)
            client.exec_inspect(bad)
    assert client.exec_inspect({"Id": "e1"}) == client.exec_inspect("e1") == {"ExitCode": 0}
    assert [r[1] for r in d.requests] == ["/v1.41/exec/e1/json"] * 2


def test_the_dry_run_listing_is_one_unversioned_request(daemon, monkeypatch):
    from tesson import daemon_claims

    d = daemon(lambda method, target: (whole(LISTING), False))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{d.path}")
    assert daemon_claims.list_containers() == (json.loads(LISTING), "")
    assert [(m, t.split("?")[0]) for m, t, _ in d.requests] == [("GET", "/containers/json")]
    # a daemon that no longer serves unversioned paths: the versioned listing
    gone = daemon(lambda method, target: (PING, False) if target == "/_ping" else
                  (whole(LISTING), False) if target.startswith("/v1.41/") else
                  (whole(b'{"message":"page not found"}', "404 Not Found"), False))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{gone.path}")
    assert daemon_claims.list_containers() == (json.loads(LISTING), "")
    assert [t.split("?")[0] for _, t, _ in gone.requests] == ["/containers/json", "/_ping", "/v1.41/containers/json"]
    cut = daemon(lambda method, target: (chunked(LISTING[:9], final=False), False))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{cut.path}")
    assert daemon_claims.list_containers() == (None, f"{cut.path}: {cut.path}: the daemon's answer was cut short")


def test_the_listing_is_asked_when_made_and_read_when_wanted(daemon, monkeypatch):
    """run --dry-run makes its Listing before it reads the topology: the request must be on the
    daemon's side by then (so the daemon lists meanwhile), and the answer read only by result()."""
    from tesson import daemon_claims

    answered = threading.Event()

    def script(method, target):
        answered.set()
        return whole(LISTING), False

    d = daemon(script)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{d.path}")
    listing = daemon_claims.Listing()
    assert answered.wait(5), "the request was not sent when the Listing was made"
    assert [(m, t.split("?")[0]) for m, t, _ in d.requests] == [("GET", "/containers/json")]
    assert listing.result() == (json.loads(LISTING), "")
    assert len(d.requests) == 1
    # no daemon at the path: the Listing says why at once and result() gives it
    monkeypatch.setenv("DOCKER_HOST", f"unix://{d.path}.missing")
    assert daemon_claims.Listing().result() == (None, f"{d.path}.missing: No such file or directory")


def test_the_verbs_say_a_cut_answer_in_one_line(daemon):
    d = daemon(_pinged(chunked(LISTING[:9], final=False)))
    env = {"DOCKER_HOST": f"unix://{d.path}"}
    for args in (["ls"], ["ls", "--format", "json"], ["logs", "somegroup"], ["ps"]):
        r = tesson_cmd(*args, env=env, timeout=60)
        assert r.returncode == 1, (args, r.stderr)
        assert r.stderr == (f"tesson: lost the Docker daemon at DOCKER_HOST=unix://{d.path}: "
                            f"{d.path}: the daemon's answer was cut short\n"), args
        assert r.stdout == "", args
    r = tesson_cmd("run", "--dry-run", "img", env=env, timeout=60)  # (it asks the daemon through docker-py too)
    assert r.returncode == 1 and r.stdout == "", r.stderr
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith("tesson: ") and "internal error" not in r.stderr, r.stderr
    assert "daemon" in r.stderr and ("cut short" in r.stderr or "ended prematurely" in r.stderr), r.stderr


def test_one_home_for_the_socket_path(monkeypatch):
    from tesson import docker_client, engine_lite
    from tesson.frontend import kernel_agentctl

    assert engine_lite.unix_path("unix:///run/d.sock") == "/run/d.sock"
    for other in ("unix://rel.sock", "tcp://127.0.0.1:2375", "unix:///x?y", ""):
        assert engine_lite.unix_path(other) is None, other
    assert docker_client.DEFAULT_HOST == "unix://" + engine_lite.DEFAULT_SOCKET
    assert kernel_agentctl.SOCKET_IN_AGENT == engine_lite.DEFAULT_SOCKET
    monkeypatch.delenv("TESSON_DOCKER_SOCKET", raising=False)
    for host, want in (("unix:///run/d.sock", "/run/d.sock"), ("tcp://127.0.0.1:2375", engine_lite.DEFAULT_SOCKET),
                       ("", engine_lite.DEFAULT_SOCKET)):
        monkeypatch.setenv("DOCKER_HOST", host)
        assert kernel_agentctl.docker_socket() == want, host
    monkeypatch.setenv("TESSON_DOCKER_SOCKET", "/s.sock")
    assert kernel_agentctl.docker_socket() == "/s.sock"
