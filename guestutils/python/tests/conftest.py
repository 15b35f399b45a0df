"""A real etcd per test (free ports, temp dir, killed afterwards) and helpers
that write registry records in the documented schema through etcd's JSON
gateway, so the tests need nothing but the wheel and pytest."""

import base64
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest

# Everything guestutils reads; cleared before each test so the machine's own
# environment cannot leak in.
CONTRACT_VARS = [
    "CONTAINER_NAME", "MESOS_TASK_ID", "CONTAINER_HOST_ADDRESS", "HOST",
    "CONTAINER_INTERNAL_ADDRESS", "SERVICE_NAME", "SERVICE_GROUP", "LABELS",
    "MARATHON_APP_ID", "MARATHON_APP_LABEL_SERVICE_NAME",
    "MARATHON_APP_LABEL_SERVICE_GROUP", "ETCD_ENDPOINTS", "ETCD_HOST_ADDRESS",
    "ETCD_PORT", "REGISTRY_PREFIX", "ETCD_USER", "ETCD_PASSWORD", "ETCD_CA", "ETCD_CACERT",
    "ETCD_CERT", "ETCD_KEY",
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _b64(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode()


class Etcd:
    def __init__(self, port):
        self.port = port
        self.endpoint = "http://127.0.0.1:%d" % port

    def _post(self, path, body):
        req = urllib.request.Request(
            self.endpoint + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def put(self, key, value):
        self._post("/v3/kv/put", {"key": _b64(key), "value": _b64(value)})

    def delete(self, key):
        self._post("/v3/kv/deleterange", {"key": _b64(key)})

    def put_instance(self, service, container, host, labels=(), ports=None,
                     internal_address="172.17.0.2", healthy=None,
                     prefix="/services"):
        labels = sorted(set(labels))
        group = ".".join(labels) if labels else "default"
        record = {
            "schema": 1,
            "service": service,
            "group": group,
            "labels": labels,
            "container": container,
            "app_id": "/%s/%s" % (group, service),
            "app_version": "2026-11-22T10:00:00.000Z",
            "node": "node-1",
            "host": host,
            "internal_address": internal_address,
            "ports": {
                name: {"external": ext, "exposed": exp, "protocol": "tcp"}
                for name, (ext, exp) in (ports or {}).items()
            },
            "state": "TASK_RUNNING",
            "healthy": healthy,
            "started_at": "2026-11-22T10:00:01.000Z",
            "owner": "default",
        }
        key = "%s/%s/%s/containers/%s" % (prefix, service, group, container)
        self.put(key, json.dumps(record))
        return key


def _healthy(endpoint):
    try:
        with urllib.request.urlopen(endpoint + "/health", timeout=0.5) as r:
            return r.status == 200 and b"true" in r.read()
    except OSError:
        return False


@pytest.fixture
def etcd(tmp_path):
    binary = os.environ.get("ETCD_BIN") or shutil.which("etcd") or "/usr/bin/etcd"
    if not os.path.exists(binary):
        pytest.fail("etcd binary not found (apt-get install etcd-server or set ETCD_BIN)")
    client, peer = free_port(), free_port()
    log = open(tmp_path / "etcd.log", "wb")
    proc = subprocess.Popen(
        [
            binary,
            "--name", "pytest",
            "--data-dir", str(tmp_path / "data"),
            "--listen-client-urls", "http://127.0.0.1:%d" % client,
            "--advertise-client-urls", "http://127.0.0.1:%d" % client,
            "--listen-peer-urls", "http://127.0.0.1:%d" % peer,
            "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % peer,
            "--initial-cluster", "pytest=http://127.0.0.1:%d" % peer,
            "--log-level", "warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = Etcd(client)
    try:
        deadline = time.monotonic() + 20
        while not _healthy(server.endpoint):
            if proc.poll() is not None:
                pytest.fail("etcd exited: %s" % (tmp_path / "etcd.log").read_text())
            if time.monotonic() > deadline:
                pytest.fail("etcd not healthy within 20 s")
            time.sleep(0.02)  # polling with a deadline, not synchronisation
        yield server
    finally:
        proc.kill()
        proc.wait()
        log.close()


@pytest.fixture
def task_env(monkeypatch, etcd):
    """A clean task environment pointing at the test's etcd."""
    for name in list(os.environ):
        if name in CONTRACT_VARS or name.startswith("PORT"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ETCD_ENDPOINTS", etcd.endpoint)
    return monkeypatch
