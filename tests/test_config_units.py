"""The -c config without a daemon: host power, the balancer's refusals, the digest kept in labels and
reading the config back from a shard's inspect (issue 10)."""

from __future__ import annotations

import pytest

from tesson import config
from tesson import labels as L
from tesson.errors import UsageError


@pytest.mark.parametrize(
    "host, needle",
    [
        ({"Binds": ["/var/run:/r"]}, "/var/run/docker.sock"),
        ({"Binds": ["//etc/:/e:ro"]}, "/etc"),
        ({"Mounts": [{"Type": "volume", "Target": "/h",
                      "VolumeOptions": {"DriverConfig": {"Options": {"o": "bind", "device": "/"}}}}]}, "host's /"),
        ({"UTSMode": "host"}, "UTSMode"),
        ({"SecurityOpt": ["apparmor:unconfined"]}, "apparmor"),
        ({"MaskedPaths": []}, "MaskedPaths"),
    ],
)
def test_host_power_is_found_however_it_is_spelt(host, needle):
    found = config.host_power({"HostConfig": host})
    assert found and any(needle in f for f in found), found
    with pytest.raises(UsageError, match="--allow-privileged"):
        config.check_power({"HostConfig": host})
    config.check_power({"HostConfig": host}, allowed=True)


@pytest.mark.parametrize(
    "host",
    [{"Binds": ["data:/data", "/srv/web:/www:ro"]}, {"NetworkMode": "bridge"}, {"SecurityOpt": ["no-new-privileges"]},
     {"Mounts": [{"Type": "bind", "Source": "/srv/x", "Target": "/x"}]}, {"CapDrop": ["ALL"]}],
)
def test_ordinary_configs_need_no_privilege(host):
    assert config.host_power({"HostConfig": host}) == []


def test_the_digest_and_field_names_say_nothing_of_the_values():
    body = {"Env": ["TOKEN=abc"], "HostConfig": {"Memory": 5}}
    d = config.digest(body)
    assert d.startswith("sha256:") and "abc" not in d
    assert d == config.digest({"HostConfig": {"Memory": 5}, "Env": ["TOKEN=abc"]})  # key order is not the config
    assert config.fields(body) == ["Env", "HostConfig.Memory"]
    assert config.digest({}) == ""


class _Shard:
    def __init__(self, index, id, up=True, name=None):
        self.index, self.id, self.up, self.name = index, id, up, name or f"g-{index}"


class _Spec:
    def __init__(self, body, port_specs=()):
        self.config, self.config_digest, self.config_fields = None, config.digest(body), config.fields(body)
        self.port_specs, self.image = list(port_specs), "img"


class _Group:
    def __init__(self, body, shards, port_specs=()):
        self.name, self.spec, self.shards, self.extra = "g", _Spec(body, port_specs), shards, []


class _Client:
    def __init__(self, inspect, image):
        self._inspect, self._image = inspect, image

    def inspect_container(self, cid):
        return self._inspect[cid]

    def inspect_image(self, ref):
        return {"Config": self._image}


def test_recover_reads_the_config_back_from_a_survivor_as_docker_shows_it():
    body = {"Env": ["TOKEN=s3cr3t", "PATH=/usr/bin", "GOMAXPROCS=2"], "Labels": {"team": "blue"},
            "User": "65534", "HostConfig": {"Memory": 64, "PortBindings": {"9000/tcp": [{"HostIp": "", "HostPort": "9000"}]}}}
    image = {"Env": ["PATH=/usr/bin", "LANG=C"], "Labels": {"maintainer": "x"}}
    inspect = {
        "Image": "sha256:img",
        "Config": {
            "Env": ["TOKEN=s3cr3t", "PATH=/usr/bin", "GOMAXPROCS=2", "TESSON_GROUP=g", "TESSON_UID=0",
                    "TESSON_CPUS=0-1", "TESSON_NCPUS=2", "LANG=C"],
            "Labels": {"team": "blue", "maintainer": "x", L.GROUP: "g", L.CONFIG: config.digest(body)},
            "User": "65534", "Cmd": ["httpd"],
        },
        "HostConfig": {"Memory": 64, "CpusetCpus": "0-1", "PortBindings": {
            "9000/tcp": [{"HostIp": "", "HostPort": "9000"}], "80/tcp": [{"HostIp": "", "HostPort": ""}]}},
    }
    grp = _Group(body, [_Shard(0, "gone", up=False), _Shard(1, "c1")], port_specs=["80"])
    client = _Client({"c1": inspect, "gone": {"Config": {"Labels": {L.CONFIG: "sha256:other"}}}}, image)
    got = config.recover(client, grp)
    assert got["Env"] == body["Env"] and got["Labels"] == {"team": "blue"} and got["User"] == "65534"
    assert got["HostConfig"]["Memory"] == 64
    assert got["HostConfig"]["PortBindings"] == {"9000/tcp": [{"HostIp": "", "HostPort": "9000"}]}  # -p 80 taken out
    assert "Cmd" not in got
    assert got == body  # the reading whose digest is the label's: PATH and GOMAXPROCS were the config's


def test_recover_falls_back_to_the_likeliest_reading_when_docker_normalised_a_value():
    body = {"Env": ["TOKEN=t"], "HostConfig": {"RestartPolicy": {"Name": "always"}}}
    inspect = {"Config": {"Env": ["TOKEN=t", "TESSON_NCPUS=1", "GOMAXPROCS=1", "PATH=/bin"],
                          "Labels": {L.CONFIG: config.digest(body)}},
               "HostConfig": {"RestartPolicy": {"Name": "always", "MaximumRetryCount": 0}}}
    got = config.recover(_Client({"c": inspect}, {"Env": ["PATH=/bin"]}), _Group(body, [_Shard(0, "c")]))
    assert got == {"Env": ["TOKEN=t"], "HostConfig": {"RestartPolicy": {"Name": "always", "MaximumRetryCount": 0}}}


def test_recover_without_a_survivor_says_so():
    grp = _Group({"Env": ["A=1"]}, [_Shard(0, "", up=False)])
    with pytest.raises(Exception, match="no shard is left to recover it from"):
        config.recover(_Client({}, {}), grp)
