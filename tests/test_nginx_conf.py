"""The balancer's nginx config: port specs, methods, injection attempts, and the real nginx's verdict.

Configs are checked with the host's nginx (``nginx -t``, Debian's nginx + libnginx-mod-stream). Shards
are written as IP addresses, so nginx needs no name service to load them: the check runs in a private
mount namespace whose /etc/hosts and /etc/resolv.conf are empty, where any name in a config would fail.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tesson import ports as tports
from tesson.errors import UsageError
from tesson.frontend import nginx_conf as nc
from tests.conftest import require

GROUP = "t4x"
SHARDS = {f"{GROUP}-{i}": f"10.99.0.{i + 2}" for i in range(3)}
ADDRESSES = list(SHARDS.values())


def P(*specs):
    return tports.parse(list(specs))


def _nginx_usable() -> tuple[bool, str]:
    if shutil.which("nginx") is None:
        return False, "nginx is not installed (apt-get install nginx libnginx-mod-stream)"
    if not Path(nc.DEBIAN_STREAM_MODULE).exists():
        return False, "the nginx stream module is not installed (apt-get install libnginx-mod-stream)"
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False, "checking configs needs root and unshare (a private, empty /etc/hosts and resolv.conf)"
    return True, ""


def nginx_check(conf: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """``nginx -t`` on ``conf`` where no name resolves (empty /etc/hosts and /etc/resolv.conf)."""
    ok, why = _nginx_usable()
    require(ok, why)
    (tmp_path / "nginx.conf").write_text(conf)
    (tmp_path / "empty").write_text("")
    script = ('mount --bind "$1/empty" /etc/hosts && mount --bind "$1/empty" /etc/resolv.conf && '
              'exec nginx -t -q -e stderr -p "$1" -c "$1/nginx.conf"')
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", script, "sh", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )


def assert_nginx_ok(conf: str, tmp_path: Path) -> None:
    r = nginx_check(conf, tmp_path)
    assert r.returncode == 0, f"nginx rejected the config: {r.stderr}\n{conf}"


# -- ports ----------------------------------------------------------------------------------------


def test_listeners_are_one_per_container_port_and_protocol():
    ports = P("8080:80", "127.0.0.1:9090:80", "80/udp", "8000-8001:90-91")
    assert nc.listeners(ports) == [(80, "tcp"), (80, "udp"), (90, "tcp"), (91, "tcp")]


def test_sctp_is_refused_by_the_balancer():
    with pytest.raises(UsageError, match="sctp"):
        nc.render(GROUP, SHARDS, P("80/sctp"))


# -- methods -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method, directive",
    [
        ("least_conn", "least_conn;"),
        ("round_robin", None),
        ("default", None),
        ("rr", None),
        ("random", "random;"),
        ("random two", "random two;"),
        ("random-two-least-conn", "random two least_conn;"),
        ("hash", "hash $remote_addr consistent;"),
    ],
)
def test_every_method_is_accepted_by_nginx(method, directive, tmp_path):
    conf = nc.render(GROUP, SHARDS, P("80", "53/udp"), method=method)
    blocks = re.findall(r"upstream (\w+) \{\n(.*?)\n    \}", conf, re.S)
    assert [b[0] for b in blocks] == ["tcp_80", "udp_53"]
    for _, body in blocks:
        lines = [ln.strip() for ln in body.splitlines() if not ln.strip().startswith("zone ")]
        first = lines[0]
        if directive is None:
            assert first.startswith("server "), body
        else:
            assert first == directive
    assert_nginx_ok(conf, tmp_path)


@pytest.mark.parametrize("method, backups", [("least_conn", True), ("round_robin", True), ("random", False),
                                             ("random_two_least_conn", False), ("hash", False)])
def test_backups_only_where_nginx_allows_them(method, backups):
    conf = nc.render(GROUP, SHARDS, P("80"), method=method)
    assert (" backup " in conf) is backups


def test_default_methods_are_least_conn_for_tcp_and_round_robin_for_udp():
    conf = nc.render(GROUP, SHARDS, P("80", "53/udp"))
    tcp = conf.split("upstream tcp_80 {")[1].split("}")[0]
    udp = conf.split("upstream udp_53 {")[1].split("}")[0]
    assert "least_conn;" in tcp
    assert "least_conn" not in udp and "random" not in udp and "hash" not in udp


@pytest.mark.parametrize("method", ["bogus", "least_conn; include /etc/passwd", "hash $request_uri", "ip_hash", ""])
def test_unknown_methods_are_refused(method):
    with pytest.raises(UsageError, match="unknown balancing method"):
        nc.render(GROUP, SHARDS, P("80"), method=method)


# -- the whole file --------------------------------------------------------------------------------


def test_config_has_one_upstream_and_listener_per_port_with_every_shard(tmp_path):
    conf = nc.render(GROUP, SHARDS, P("8080:80", "127.0.0.1:9000-9001:90-91", "5353:53/udp"), workers=2)
    assert re.findall(r"^\s+listen (.*);$", conf, re.M) == ["80", "90", "91", "53 udp"]
    for port, proto in [(80, "tcp"), (90, "tcp"), (91, "tcp"), (53, "udp")]:
        body = conf.split(f"upstream {proto}_{port} {{")[1].split("}")[0]
        servers = re.findall(r"server (\S+) max_fails=(\d+) fail_timeout=(\w+);", body)
        assert [s[0] for s in servers] == [f"{a}:{port}" for a in ADDRESSES]
        assert all(int(s[1]) >= 1 for s in servers)
        assert f"zone {proto}_{port} " in body  # one view of connections and failures for all workers
        # every shard again as a backup never marked failed: overload cannot empty the upstream
        assert re.findall(r"server (\S+) backup max_fails=0;", body) == [f"{a}:{port}" for a in ADDRESSES]
    # no name anywhere but in comments: nginx needs no DNS to start, whichever shard is down
    for name in SHARDS:
        assert [ln for ln in conf.splitlines() if name in ln] == [f"# shard {name} at {SHARDS[name]}"]
    # runs as a container's only process
    assert re.search(r"^daemon off;$", conf, re.M)
    assert re.search(r"^error_log stderr", conf, re.M)
    assert re.search(r"^worker_processes 2;$", conf, re.M)
    assert f"load_module {nc.DEBIAN_STREAM_MODULE};" in conf
    assert "proxy_next_upstream on;" in conf and "proxy_connect_timeout" in conf
    assert_nginx_ok(conf, tmp_path)


def test_the_checker_does_reject_a_broken_config(tmp_path):
    """The nginx check above is a real check: a config nginx cannot load fails it."""
    conf = nc.render(GROUP, SHARDS, P("80"))
    bad = conf.replace("proxy_next_upstream on;", "proxy_next_upstream on; bogus_directive 1;")
    r = nginx_check(bad, tmp_path)
    assert r.returncode != 0 and "bogus_directive" in r.stderr
    # and a server written as a name fails it here, where nothing resolves (as nginx fails to
    # start in a balancer whose shard is down, when shards are named): the check sees names
    named = conf.replace(f"server {ADDRESSES[1]}:", f"server {GROUP}-1:")
    r = nginx_check(named, tmp_path)
    assert r.returncode != 0 and "host not found" in r.stderr


@pytest.mark.parametrize(
    "group, shards",
    [
        ("web; include /etc/passwd", {"web-0": "10.0.0.2"}),
        ("web}", {"web}-0": "10.0.0.2"}),
        ("web\nstream{", {"web-0": "10.0.0.2"}),
        ("web", {"web-0;server evil:80": "10.0.0.2"}),
        ("web", {"web-0\nserver 6.6.6.6:80;": "10.0.0.2"}),
        ("web", {"web-0": "10.0.0.2:80;server 6.6.6.6"}),
        ("web", {"web-0": "10.0.0.2 backup"}),
        ("web", {"web-0": "web-0"}),
        ("web", {"web-0": ""}),
        ("web", {"other-0": "10.0.0.2"}),
        ("web", ["web-0"]),
        ("web", {}),
    ],
)
def test_names_cannot_inject_directives(group, shards):
    with pytest.raises(UsageError):
        nc.render(group, shards, P("80"))


@pytest.mark.parametrize("workers", [0, -1, "auto; user root", True, 2.5])
def test_workers_must_be_a_small_positive_int(workers):
    with pytest.raises(UsageError):
        nc.render(GROUP, SHARDS, P("80"), workers=workers)


def test_entries_built_by_hand_cannot_inject_either():
    evil = [tports.Port(spec="x", port="80; include /etc/passwd")]  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        nc.render(GROUP, SHARDS, evil)
    with pytest.raises(UsageError):
        nc.render(GROUP, SHARDS, [tports.Port(spec="x", port=80, proto="tcp; x")])
    with pytest.raises(UsageError):
        nc.render(GROUP, SHARDS, [tports.Port(spec="x", port=0)])
    with pytest.raises(UsageError):
        nc.render(GROUP, SHARDS, P("80"), stream_module="/x.so; include /etc/passwd")


def test_no_module_line_when_the_image_has_stream_built_in():
    conf = nc.render(GROUP, SHARDS, P("80"), stream_module=None)
    assert "load_module" not in conf


def test_ipv6_addresses_are_bracketed(tmp_path):
    conf = nc.render(GROUP, {f"{GROUP}-0": "fd00::2", f"{GROUP}-1": "10.99.0.3"}, P("80"))
    assert "server [fd00::2]:80 max_fails" in conf and "server 10.99.0.3:80 max_fails" in conf
    assert_nginx_ok(conf, tmp_path)


def test_the_start_script_marks_the_containers_own_address_down(tmp_path):
    """A balancer restarting while a shard is down can get that shard's address: its copy of the
    config marks that server down (primary and backup), keeps the others, and nginx accepts it."""
    ok, why = _nginx_usable()
    require(ok, why)
    conf = nc.render(GROUP, SHARDS, P("80", "53/udp"), pid_file=str(tmp_path / "pid"))
    (tmp_path / "nginx.conf").write_text(conf)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    own = ADDRESSES[1]
    (bin_dir / "hostname").write_text(f"#!/bin/sh\necho '{own} fd00::9 '\n")  # as hostname -I prints
    (bin_dir / "hostname").chmod(0o755)
    live = tmp_path / "live.conf"
    script = nc.prepare_script(str(tmp_path / "nginx.conf"), str(live)) + f"exec nginx -t -q -e stderr -c {live}"
    r = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30,
                       env={"PATH": f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin"})
    assert r.returncode == 0, r.stderr
    text = live.read_text()
    servers = re.findall(r"^ +server (.*);$", text, re.M)
    down = [s for s in servers if s.endswith(" down")]
    assert down and all(s.startswith(f"{own}:") for s in down)
    assert len(down) == 4  # primary and backup, in both upstreams
    assert len(servers) - len(down) == 8 and not any(s.startswith(f"{own}:") for s in servers if s not in down)
    # nothing else changed
    assert text.replace(" down;", ";") == conf


def test_the_start_script_leaves_a_config_without_its_address_alone(tmp_path):
    conf = nc.render(GROUP, {f"{GROUP}-0": "10.99.0.3", f"{GROUP}-1": "10.99.0.30"}, P("80"))
    (tmp_path / "nginx.conf").write_text(conf)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "hostname").write_text("#!/bin/sh\necho '10.99.0.4'\n")
    (bin_dir / "hostname").chmod(0o755)
    live = tmp_path / "live.conf"
    r = subprocess.run(["sh", "-c", nc.prepare_script(str(tmp_path / "nginx.conf"), str(live))],
                       capture_output=True, text=True, timeout=30, env={"PATH": f"{bin_dir}:/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    assert live.read_text() == conf


def test_start_and_reload_commands_run_nginx_on_the_live_copy():
    start, reload = nc.start_command(), nc.reload_command(also=["/etc/tesson/upstreams.json"])
    for cmd in (start, reload):
        assert cmd[:2] == ["/bin/sh", "-c"]
    assert start[2].startswith(nc.prepare_script()) and start[2].endswith(f"-e stderr -c {nc.LIVE_PATH}")
    # a reload prepares and checks a copy of the staged config, never the files in use
    assert reload[2].startswith(nc.prepare_script(nc.CONFIG_PATH + nc.STAGED, nc.LIVE_PATH + ".next"))
    assert f'nginx -t -q -e stderr -c "{nc.LIVE_PATH}.next"' in reload[2] and " -t " not in start[2]
    with pytest.raises(UsageError):
        nc.prepare_script("/x; rm -rf /", nc.LIVE_PATH)
    with pytest.raises(UsageError):
        nc.reload_command(also=["/etc/x; reboot"])


def test_a_reload_installs_only_a_config_nginx_accepts(tmp_path):
    """A refused config replaces nothing (config, live copy, addresses) and
    leaves no staged file; an accepted one replaces all three, its live copy marked as at start."""
    ok, why = _nginx_usable()
    require(ok, why)
    files = tmp_path / "files"
    files.mkdir()
    config, live, addresses = files / "nginx.conf", files / "live.conf", files / "upstreams.json"
    old = nc.render(GROUP, SHARDS, P("80"), pid_file=str(tmp_path / "pid"))
    config.write_text(old)
    live.write_text(old)
    addresses.write_text("old")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    own = ADDRESSES[1]
    (bin_dir / "hostname").write_text(f"#!/bin/sh\necho '{own}'\n")
    (bin_dir / "hostname").chmod(0o755)
    script = nc.reload_script(str(config), str(live), also=[str(addresses)])

    def reload(conf: str, addr: str) -> subprocess.CompletedProcess:
        Path(str(config) + nc.STAGED).write_text(conf)
        Path(str(addresses) + nc.STAGED).write_text(addr)
        return subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30,
                              env={"PATH": f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin"})

    refused = old.replace("stream {", "stream {\n    no_such_directive on;")
    r = reload(refused, "refused")
    assert r.returncode != 0
    assert 'unknown directive "no_such_directive"' in r.stderr, r.stderr
    assert (config.read_text(), live.read_text(), addresses.read_text()) == (old, old, "old")
    assert sorted(p.name for p in files.iterdir()) == ["live.conf", "nginx.conf", "upstreams.json"]

    new = nc.render(GROUP, {**SHARDS, f"{GROUP}-3": "10.99.0.9"}, P("80"), pid_file=str(tmp_path / "pid"))
    r = reload(new, "new")
    assert r.returncode == 0, r.stderr
    assert (config.read_text(), addresses.read_text()) == (new, "new")
    text = live.read_text()
    assert text.replace(" down;", ";") == new and f"server {own}:80 max_fails=1 fail_timeout=10s down;" in text
    assert sorted(p.name for p in files.iterdir()) == ["live.conf", "nginx.conf", "upstreams.json"]


# -- in the host network -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "specs, host",
    [
        (["8080:80"], True),
        (["127.0.0.1:8080:80", "[::1]:8081:80", "53:53/udp"], True),
        (["8000-8001:80-81"], True),  # two fixed host ports, one per container port
        (["80"], False),  # ephemeral: Docker chooses the port
        (["127.0.0.1::80"], False),
        (["8080:80", "9090"], False),  # one container, one network mode
        (["8000-8010:80"], False),  # a range to choose from
        (["8080-8080:80"], False),  # a range of one: how to keep the bridge network
        ([], False),
    ],
)
def test_the_balancer_is_in_the_host_network_only_with_fixed_host_ports(specs, host):
    assert nc.host_network(P(*specs)) is host


def test_host_listeners_are_the_host_addresses_and_ports(tmp_path):
    ports = P("8080:80", "127.0.0.1:9090:80", "[::1]:5353:53/udp", "53:53/udp", "0.0.0.0:7070:70")
    assert nc.host_listeners(ports) == {
        (80, "tcp"): [("0.0.0.0", 8080, False), ("::", 8080, True), ("127.0.0.1", 9090, False)],
        (53, "udp"): [("::1", 5353, False), ("0.0.0.0", 53, False), ("::", 53, True)],
        (70, "tcp"): [("0.0.0.0", 7070, False)],
    }
    conf = nc.render(GROUP, SHARDS, ports, host=True, pid_file=str(tmp_path / "pid"))
    assert re.findall(r"^\s+listen (.*)$", conf, re.M) == [
        "0.0.0.0:8080;", f"[::]:8080 ipv6only=on; {nc.V6_ANY}", "127.0.0.1:9090;",
        "[::1]:5353 udp;", "0.0.0.0:53 udp;", f"[::]:53 udp ipv6only=on; {nc.V6_ANY}",
        "0.0.0.0:7070;",
    ]
    # the upstreams are the same as in the bridge network: the shards' addresses, container ports
    assert conf.split("stream {")[1].count("server 10.99.0.2:80 ") == 2
    assert nc.listening(conf) == [("0.0.0.0", 8080, 80, "tcp"), ("::", 8080, 80, "tcp"), ("127.0.0.1", 9090, 80, "tcp"),
                                  ("::1", 5353, 53, "udp"), ("0.0.0.0", 53, 53, "udp"), ("::", 53, 53, "udp"),
                                  ("0.0.0.0", 7070, 70, "tcp")]
    assert nc.listening(nc.render(GROUP, SHARDS, ports)) == []  # bridge: Docker publishes, nginx listens on 80
    assert_nginx_ok(conf, tmp_path)


@pytest.mark.parametrize("specs", [["8080:80", "8080:90"], ["127.0.0.1:8080:80", "127.0.0.1:8080:90"],
                                   ["[::1]:53:53/udp", "[::1]:53:54/udp"]])
def test_one_host_port_for_two_container_ports_is_refused(specs):
    with pytest.raises(UsageError, match="published twice"):
        nc.host_listeners(P(*specs))
    assert nc.host_listeners(P("8080:80", "8080:80/udp", "127.0.0.2:8080:90"))  # other proto, other address: fine


def test_host_listeners_need_fixed_ports():
    with pytest.raises(UsageError, match="no fixed host port"):
        nc.host_listeners(P("80"))


def test_the_start_script_drops_the_ipv6_listener_on_a_host_without_ipv6(tmp_path):
    """Where the kernel has no IPv6 (no /proc/net/if_inet6) the every-address IPv6 listeners go,
    and only they: an address the user named stays (nginx then says why it cannot listen)."""
    ok, why = _nginx_usable()
    require(ok, why)
    conf = nc.render(GROUP, SHARDS, P("8080:80", "[::1]:8081:80", "53:53/udp"), host=True, pid_file=str(tmp_path / "pid"))
    (tmp_path / "nginx.conf").write_text(conf)
    for probe, kept in ((tmp_path / "no-such-file", False), (tmp_path / "nginx.conf", True)):
        live = tmp_path / "live.conf"
        script = nc.prepare_script(str(tmp_path / "nginx.conf"), str(live), str(probe))
        r = subprocess.run(["sh", "-c", script + f"exec nginx -t -q -e stderr -c {live}"], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        text = live.read_text()
        if kept:
            assert text == conf
        else:
            assert nc.V6_ANY not in text and "[::1]:8081;" in text
            assert text.splitlines() == [ln for ln in conf.splitlines() if not ln.endswith(nc.V6_ANY)]
