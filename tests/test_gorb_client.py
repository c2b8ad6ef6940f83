"""The Gorb URI and client (tesson.gorb_client), against the stand-in running as a container.

The stand-in (tests/gorb_standin) follows ../shared/gorb-api.md; the first tests check that it
does, so the later ones (and tests/test_gorb_run.py) can trust what it answers.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from tesson import gorb_client as g
from tesson.errors import UsageError
from tests.conftest import ROOT, require
from tests.gorb_standin.fixtures import *  # noqa: F403

# --- the URI -------------------------------------------------------------------------------------


def test_uri_names_device_host_port_and_the_device_address():
    uri = g.parse_uri("lo://127.0.0.1:4672")
    assert (uri.device, uri.host, uri.port, uri.address) == ("lo", "127.0.0.1", 4672, "127.0.0.1")
    assert uri.url == "http://127.0.0.1:4672"
    assert str(uri) == "lo://127.0.0.1:4672"
    v6 = g.parse_uri("lo://[fd00::1]:80", check_device=False)
    assert (v6.host, v6.port, v6.url) == ("fd00::1", 80, "http://[fd00::1]:80")


@pytest.mark.parametrize(
    "text, says, names",
    [
        ("1.2.3.4:4672", "no DEVICE://", None),
        ("eth0://1.2.3.4", "no port", None),
        ("http://x", "no port", None),
        ("lo://1.2.3.4:", "no port", None),
        ("lo://:4672", "no host", None),
        ("lo://1.2.3.4:0", "out of range", None),
        ("lo://1.2.3.4:65536", "out of range", None),
        ("lo://1.2.3.4:http", "not a number", None),
        ("lo://1.2.3.4:4672/api", "no path", None),
        ("lo://fd00::1:4672", "brackets", None),
        # a well-formed URI whose device is missing: the message names the device, not the URI
        ("t5nodevice://1.2.3.4:4672", "does not exist on this host", "network device 't5nodevice'"),
    ],
)
def test_bad_uri_is_a_usage_error_naming_the_mistake(text, says, names):
    with pytest.raises(UsageError) as e:
        g.parse_uri(text)
    assert e.value.exit_code == 2
    assert says in str(e.value)
    assert (names or f"invalid Gorb URI {text!r}") in str(e.value)
    assert "\n" not in str(e.value)


def test_http_scheme_gets_a_hint_that_it_names_a_device():
    with pytest.raises(UsageError, match="names the network device"):
        g.parse_uri("http://x")


def test_device_without_ipv4_is_refused():
    # In a fresh network namespace the loopback device exists but is down, without any address.
    require(shutil.which("unshare") is not None and os.geteuid() == 0, "needs root and unshare(1)")
    code = "from tesson import gorb_client; gorb_client.parse_uri('lo://10.0.0.1:4672')"
    r = subprocess.run(["unshare", "-n", sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode != 0
    assert "has no IPv4 address" in r.stderr


def test_tesson_import_does_not_load_requests_or_psutil():
    code = "import sys, tesson.gorb_client, tesson.cli, tesson.frontend.gorb; print(sorted(m for m in ('requests', 'psutil', 'urllib3') if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_names_replace_slash_and_colon():
    assert g.service_name("reg/web:1.2", 80, "TCP") == "reg-web-1.2-80-tcp"
    assert g.backend_name("web-3", 53, "udp") == "web-3-53-udp"


# --- the stand-in follows gorb-api.md ---------------------------------------------------------------


def test_standin_validates_services_as_gorb_does(gorb):
    cases = [
        ({"protocol": "tcp"}, 400),  # port required
        ({"port": 0}, 400),
        ({"port": 70000}, 400),
        ({"port": "80"}, 400),
        ({"port": 80, "protocol": "sctp"}, 400),
        ({"port": 80, "method": "fastest"}, 400),
        ({"port": 80, "flags": "sh-port|bogus"}, 400),
        ({"port": 80, "host": "t5-no-such-host.invalid"}, 400),
    ]
    for body, status in cases:
        got, payload = gorb.call("PUT", "/service/t5-bad", body)
        assert (got, isinstance(payload, dict) and "error" in payload) == (status, True), body
    status, payload = gorb.call("PUT", "/service/t5-u", {"port": 53, "protocol": "UDP", "method": "rr", "flags": "sh-port|sh-fallback"})
    assert status == 200 and payload is None
    assert gorb.call("PUT", "/service/t5-u", {"port": 53})[0] == 409
    opts = gorb.call("GET", "/service/t5-u")[1]["options"]
    assert (opts["protocol"], opts["method"], opts["port"]) == ("udp", "rr", 53)
    assert gorb.call("GET", "/service")[1] == ["t5-u"]
    # not JSON at all
    req_status = gorb.call("PUT", "/service/t5-x", None)[0]
    assert req_status == 400


def test_standin_validates_backends_and_keeps_names_unique(gorb):
    assert gorb.call("PUT", "/service/t5-a", {"port": 80, "host": "127.0.0.1"})[0] == 200
    assert gorb.call("PUT", "/service/t5-b", {"port": 81, "host": "127.0.0.1"})[0] == 200
    assert gorb.call("PUT", "/service/t5-none/r", {"host": "127.0.0.1", "port": 1})[0] == 404
    assert gorb.call("PUT", "/service/t5-a/r", {"port": 1})[0] == 400
    assert gorb.call("PUT", "/service/t5-a/r", {"host": "127.0.0.1"})[0] == 400
    assert gorb.call("PUT", "/service/t5-a/r", {"host": "::1", "port": 1})[0] == 400  # address family
    assert gorb.call("PUT", "/service/t5-a/r", {"host": "127.0.0.1", "port": 1, "pulse": {"type": "icmp"}})[0] == 400
    assert gorb.call("PUT", "/service/t5-a/r", {"host": "127.0.0.1", "port": 1, "method": "magic"})[0] == 400
    assert gorb.call("PUT", "/service/t5-a/r", {"host": "127.0.0.1", "port": 1, "weight": 0})[0] == 200
    # the same backend name under another service: names are unique across the daemon
    assert gorb.call("PUT", "/service/t5-b/r", {"host": "127.0.0.1", "port": 2})[1] == {"error": "specified object already exists"}
    rs = gorb.call("GET", "/service/t5-a/r")[1]
    assert rs["options"]["weight"] == 100 and rs["options"]["pulse"]["type"] == "tcp"
    assert set(rs["metrics"]) == {"status", "health", "uptime"} and rs["metrics"]["status"] == 0
    assert gorb.call("PATCH", "/service/t5-a/r", {"weight": 7})[0] == 200
    assert gorb.call("GET", "/service/t5-a/r")[1]["options"]["weight"] == 7
    assert gorb.call("GET", "/service/t5-b/r")[0] == 404  # r belongs to t5-a
    # DELETE of a service takes its backends: the name is free again
    assert gorb.call("DELETE", "/service/t5-a")[0] == 200
    assert gorb.call("GET", "/service/t5-a/r")[0] == 404
    assert gorb.call("PUT", "/service/t5-b/r", {"host": "127.0.0.1", "port": 2})[0] == 200
    assert gorb.call("DELETE", "/service/t5-a")[1] == {"error": "unable to locate specified object"}
    status, text = gorb.call("GET", "/metrics")
    assert status == 200 and 'name="r"' in text and "t5-a" not in text


# --- the client ------------------------------------------------------------------------------------


def test_client_paths_bodies_and_order(gorb):
    c = g.GorbClient(gorb.url)
    assert c.create_service("t5-web-80-tcp", {"port": 80, "protocol": "tcp", "host": "127.0.0.1"}) is True
    assert c.create_service("t5-web-80-tcp", {"port": 80, "protocol": "tcp"}, exist_ok=True) is False
    c.create_backend("t5-web-80-tcp", "t5-web-0-80-tcp", {"host": "127.0.0.1", "port": 32768})
    assert c.list_services() == ["t5-web-80-tcp"]
    assert c.service("t5-web-80-tcp")["backends"] == ["t5-web-0-80-tcp"]
    assert c.backend("t5-web-80-tcp", "t5-web-0-80-tcp")["metrics"]["status"] == 0
    assert c.backend("t5-web-80-tcp", "t5-nope") is None
    assert c.remove_service("t5-web-80-tcp") is True
    assert c.remove_service("t5-web-80-tcp", missing_ok=True) is False
    assert gorb.calls() == [
        ("PUT", "/service/t5-web-80-tcp", {"port": 80, "protocol": "tcp", "host": "127.0.0.1"}),
        ("PUT", "/service/t5-web-80-tcp", {"port": 80, "protocol": "tcp"}),
        ("PUT", "/service/t5-web-80-tcp/t5-web-0-80-tcp", {"host": "127.0.0.1", "port": 32768}),
        ("GET", "/service", None),
        ("GET", "/service/t5-web-80-tcp", None),
        ("GET", "/service/t5-web-80-tcp/t5-web-0-80-tcp", None),
        ("GET", "/service/t5-web-80-tcp/t5-nope", None),
        ("DELETE", "/service/t5-web-80-tcp", None),
        ("DELETE", "/service/t5-web-80-tcp", None),
    ]


def test_client_error_quotes_gorbs_message(gorb):
    c = g.GorbClient(gorb.url)
    with pytest.raises(g.GorbError) as e:
        c.create_service("t5-x", {"port": 80, "protocol": "sctp"})
    assert e.value.status == 400 and e.value.message == "specified protocol is unknown"
    assert "specified protocol is unknown" in str(e.value) and "PUT /service/t5-x" in str(e.value)
    assert e.value.exit_code == 1
    with pytest.raises(g.GorbError) as e:
        c.remove_backend("t5-x", "t5-y")
    assert e.value.status == 404 and "unable to locate specified object" in str(e.value)


def test_server_errors_and_dropped_answers_are_not_retried(gorb):
    c = g.GorbClient(gorb.url)
    gorb.fail_after(0, mode="500", times=1)
    with pytest.raises(g.GorbError) as e:
        c.create_service("t5-a", {"port": 80})
    assert e.value.status == 500 and "error while calling into IPVS" in str(e.value)
    gorb.fail_after(0, mode="drop", times=1)
    with pytest.raises(g.GorbUnreachable) as e:
        c.create_service("t5-b", {"port": 81})
    assert "unreachable" in str(e.value) and gorb.url in str(e.value)
    # each went out exactly once; after the faults Gorb answers again
    assert [(m, p) for m, p, _ in gorb.calls()] == [("PUT", "/service/t5-a"), ("PUT", "/service/t5-b")]
    assert c.create_service("t5-b", {"port": 81}) is True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_gorb_is_named_and_connection_errors_are_retried_a_little():
    port = _free_port()
    c = g.GorbClient(f"http://127.0.0.1:{port}", connect_retries=2, backoff=0.5)
    t0 = time.monotonic()
    with pytest.raises(g.GorbUnreachable) as e:
        c.list_services()
    assert f"Gorb at http://127.0.0.1:{port} is unreachable" in str(e.value)
    assert "connection refused" in str(e.value)
    assert 0.8 < time.monotonic() - t0 < 10  # retried: 0 s, then 1 s of backoff

    # A Gorb that comes up while the client is retrying is reached.
    class Ok(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"[]")

        def log_message(self, *a):
            pass

    server_box = {}

    def late():
        time.sleep(0.3)
        server_box["s"] = HTTPServer(("127.0.0.1", port), Ok)
        server_box["s"].handle_request()

    th = threading.Thread(target=late, daemon=True)
    th.start()
    try:
        assert g.GorbClient(f"http://127.0.0.1:{port}", connect_retries=2, backoff=0.5).list_services() == []
    finally:
        th.join(5)
        if "s" in server_box:
            server_box["s"].server_close()
    with pytest.raises(g.GorbUnreachable):
        g.GorbClient(f"http://127.0.0.1:{port}", connect_retries=0).list_services()


def test_read_timeout_names_gorb_as_unreachable():
    with socket.socket() as listener:  # accepts (through the backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        c = g.GorbClient(f"http://127.0.0.1:{port}", read_timeout=0.5)
        t0 = time.monotonic()
        with pytest.raises(g.GorbUnreachable, match=r"no answer within 0.5s"):
            c.create_service("t5-x", {"port": 80})
        assert time.monotonic() - t0 < 5  # not retried for long
