"""The real stack on free ports for the dashboard's browser tests and the
screenshot script: etcd, the manager (command tasks), the subscriber and
one or more deployers, each a real binary from target/debug. Everything
started here is stopped by Stack.stop(); readiness is polled with deadlines.
"""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
BIN = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "debug")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def eventually(what, check, timeout=30.0, interval=0.1):
    """Polls check() until it returns something truthy; fails after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
            last = value
        except Exception as e:  # noqa: BLE001 - reported at the deadline
            last = e
        time.sleep(interval)
    if callable(what):
        what = what()
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def http(method, url, body=None, token=None, content_type="application/json"):
    """One request; returns (status, parsed JSON or text)."""
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else (body if isinstance(body, str) else json.dumps(body)).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", content_type)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            status, text = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


class Stack:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="mdo-dashboard-")
        self.procs = []
        self.etcd = None
        self.manager = None
        self.subscriber = None
        # The first deployer's port, known before the subscriber links to it.
        self.deployer_port = free_port()

    def _spawn(self, name, args, env=None):
        log = open(os.path.join(self.dir, name + ".log"), "w")
        full_env = dict(os.environ, RUST_LOG="info")
        for k in ("MDO_AUTH_TOKEN", "MARATHON_TOKEN", "ETCD_USER", "ETCD_PASSWORD"):
            full_env.pop(k, None)
        full_env.update(env or {})
        p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=full_env)
        self.procs.append((name, p))
        return p

    def log(self, name):
        try:
            with open(os.path.join(self.dir, name + ".log")) as f:
                return f.read()
        except OSError:
            return ""

    def _wait_http(self, name, proc, url):
        def up():
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited ({proc.returncode}):\n{self.log(name)[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    return r.status < 500
            except urllib.error.HTTPError as e:
                return e.code < 500
            except OSError:
                return False
        eventually(f"{name} at {url}", up, timeout=60)

    def start(self):
        client, peer = free_port(), free_port()
        self.etcd = f"http://127.0.0.1:{client}"
        p = self._spawn("etcd", [
            "etcd", "--name", "dash", "--data-dir", os.path.join(self.dir, "etcd"),
            "--listen-client-urls", self.etcd, "--advertise-client-urls", self.etcd,
            "--listen-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"dash=http://127.0.0.1:{peer}",
        ])
        self._wait_http("etcd", p, self.etcd + "/health")
        port = free_port()
        self.manager = f"http://127.0.0.1:{port}"
        base = 42000 + (port % 100) * 100
        p = self._spawn("manager", [
            os.path.join(BIN, "manager"), "--listen", f"127.0.0.1:{port}",
            "--etcd-endpoints", self.etcd, "--data-dir", os.path.join(self.dir, "manager"),
            "--docker", "off", "--node-cpus", "64", "--node-mem", "65536",
            "--port-range", f"{base}-{base + 99}", "--drain-delay", "0",
        ])
        self._wait_http("manager", p, self.manager + "/ping")
        port = free_port()
        self.subscriber = f"http://127.0.0.1:{port}"
        p = self._spawn("subscriber", [
            os.path.join(BIN, "subscriber"), "--listen", f"127.0.0.1:{port}",
            "--marathon-url", self.manager, "--etcd-endpoints", self.etcd,
            "--dashboard-url", f"http://127.0.0.1:{self.deployer_port}/",
        ])
        self._wait_http("subscriber", p, self.subscriber + "/health")
        return self

    def deployer(self, token=None, name="deployer", port=None):
        """Starts a deployer (its own process); returns its URL."""
        port = port or free_port()
        env = {"MDO_AUTH_TOKEN": token} if token else {}
        p = self._spawn(name, [
            os.path.join(BIN, "deployer"), "serve", "--listen", f"127.0.0.1:{port}",
            "--marathon-url", self.manager, "--etcd-endpoints", self.etcd,
            "--registry-view-url", self.subscriber + "/info",
        ], env=env)
        url = f"http://127.0.0.1:{port}"
        self._wait_http(name, p, url + "/ping")
        return url

    def apps(self):
        return http("GET", self.manager + "/v2/apps?embed=apps.tasks")[1]["apps"]

    def app(self, app_id):
        status, body = http("GET", self.manager + "/v2/apps" + app_id)
        return body["app"] if status == 200 else None

    def records(self):
        req = urllib.request.Request(self.subscriber + "/info", headers={"Accept": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read().decode())["instances"]

    def kill(self, name):
        """Stops one process started here (SIGTERM, then waits)."""
        for n, p in self.procs:
            if n == name and p.poll() is None:
                p.terminate()
                p.wait(timeout=15)

    def stop(self):
        if self.manager:
            try:
                for a in self.apps():
                    http("DELETE", f"{self.manager}/v2/apps{a['id']}?force=true")
                eventually("every task stopped",
                           lambda: not http("GET", self.manager + "/v2/tasks")[1]["tasks"], timeout=30)
            except Exception:  # noqa: BLE001 - best effort before killing
                pass
        for _, p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        for _, p in reversed(self.procs):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
