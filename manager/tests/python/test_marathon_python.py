"""Drives a running mdo manager with the PyPI `marathon` client
(marathon-python). The manager URL comes from MARATHON_URL (set by
scripts/pytest-manager.sh, which starts etcd and the manager)."""

import collections
import collections.abc
import http.server
import json
import os
import threading
import time

import pytest
from marathon import MarathonApp, MarathonClient
from marathon.models.events import MarathonStatusUpdateEvent

# marathon-python 0.13 still uses collections.Iterable (removed in Python
# 3.10) when it serialises nested objects such as health checks.
if not hasattr(collections, "Iterable"):
    collections.Iterable = collections.abc.Iterable

URL = os.environ.get("MARATHON_URL", "http://127.0.0.1:8080")
DEADLINE = 30


def eventually(what, check, timeout=DEADLINE):
    end = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture()
def client():
    c = MarathonClient(URL)
    yield c
    for app in c.list_apps():
        c.delete_app(app.id, force=True)
    eventually("apps deleted", lambda: not c.list_apps() and not c.list_tasks())


def running(c, app_id):
    return [t for t in c.list_tasks(app_id) if t.state == "TASK_RUNNING"]


def no_deployments(c):
    eventually("no deployments", lambda: not c.list_deployments())


def test_info_ping_leader(client):
    info = client.get_info()
    assert info.name == "marathon"
    assert info.marathon_config is not None
    assert info.http_config is not None
    assert client.get_leader()
    assert b"pong" in client.ping() if isinstance(client.ping(), bytes) else "pong" in str(client.ping())


def test_app_lifecycle(client):
    app = MarathonApp(cmd="exec sleep 1000", cpus=0.01, mem=16, instances=2)
    created = client.create_app("/py/web", app)
    assert created.id == "/py/web"
    tasks = eventually("2 running", lambda: len(running(client, "/py/web")) == 2 and running(client, "/py/web"))
    assert all(t.id.startswith("py_web.instance-") for t in tasks)

    apps = client.list_apps(embed_tasks=True)
    assert [a.id for a in apps] == ["/py/web"]
    assert len(apps[0].tasks) == 2
    got = client.get_app("/py/web", embed_tasks=True)
    assert got.instances == 2 and got.tasks_running == 2

    # /v2/tasks with service ports, and list_endpoints (indexes servicePorts).
    all_tasks = client.list_tasks()
    assert all(t.service_ports for t in all_tasks)
    assert client.list_endpoints()

    no_deployments(client)
    client.scale_app("/py/web", instances=3)
    eventually("3 running", lambda: len(running(client, "/py/web")) == 3)
    no_deployments(client)

    # Kill without scale: replaced; with scale: instances drop.
    victim = running(client, "/py/web")[0].id
    killed = client.kill_task("/py/web", victim)
    assert killed.id == victim
    eventually("replacement", lambda: len(running(client, "/py/web")) == 3 and victim not in [t.id for t in running(client, "/py/web")])
    no_deployments(client)
    victim = running(client, "/py/web")[0].id
    client.kill_task("/py/web", victim, scale=True)
    eventually("scaled to 2", lambda: client.get_app("/py/web").instances == 2 and len(running(client, "/py/web")) == 2)
    no_deployments(client)
    assert client.kill_given_tasks([running(client, "/py/web")[0].id], scale=True)
    eventually("scaled to 1", lambda: client.get_app("/py/web").instances == 1 and len(running(client, "/py/web")) == 1)
    no_deployments(client)
    killed = client.kill_tasks("/py/web")
    assert len(killed) == 1

    # Restart: new task ids.
    no_deployments(client)
    before = {t.id for t in running(client, "/py/web")} or {killed[0].id}
    client.restart_app("/py/web")
    eventually("restarted", lambda: running(client, "/py/web") and not ({t.id for t in running(client, "/py/web")} & before))
    no_deployments(client)

    versions = client.list_versions("/py/web")
    assert len(versions) >= 3
    assert client.get_version("/py/web", versions[-1]).cmd == "exec sleep 1000"

    assert client.list_queue() == []
    client.delete_app("/py/web")
    eventually("deleted", lambda: not client.list_apps() and not client.list_tasks())


def test_deployments_listed_and_cancelled(client):
    app = MarathonApp(cmd="exec sleep 1000", cpus=0.01, mem=8, instances=1,
                      health_checks=[{"protocol": "COMMAND", "command": {"value": "false"}, "gracePeriodSeconds": 300, "intervalSeconds": 1}])
    client.create_app("/py/stuck", app)
    deployments = eventually("a deployment", client.list_deployments)
    assert deployments[0].affected_apps == ["/py/stuck"]
    assert deployments[0].current_step == 1
    assert client.delete_deployment(deployments[0].id, force=True) == {}
    eventually("gone", lambda: not client.list_deployments())


class _Sink(http.server.BaseHTTPRequestHandler):
    received = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        _Sink.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_event_subscriptions_and_event_stream(client):
    server = http.server.HTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/callback"
    try:
        client.create_event_subscription(url)
        assert url in client.list_event_subscriptions()

        seen = []

        def read():
            # requests reads the stream in 512-byte chunks: the (large)
            # deployment_success that follows TASK_RUNNING pushes it through.
            for event in client.event_stream(event_types=["status_update_event", "deployment_success"]):
                seen.append(event)
                if isinstance(event, MarathonStatusUpdateEvent) and event.task_status == "TASK_RUNNING":
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        eventually("stream attached", lambda: client.get_metrics()["gauges"].get(
            "marathon.http.event-streams.active.gauge", {}).get("value", 0) >= 1)
        client.create_app("/py/events", MarathonApp(cmd="exec sleep 1000", cpus=0.01, mem=8))
        reader.join(DEADLINE)
        assert not reader.is_alive(), f"no TASK_RUNNING on the event stream; saw {seen}"
        states = [e.task_status for e in seen if isinstance(e, MarathonStatusUpdateEvent)]
        assert states == ["TASK_STAGING", "TASK_STARTING", "TASK_RUNNING"], states
        eventually("callback delivered", lambda: any(
            e.get("eventType") == "status_update_event" and e.get("taskStatus") == "TASK_RUNNING" for e in _Sink.received))
        client.delete_event_subscription(url)
        assert url not in client.list_event_subscriptions()
    finally:
        server.shutdown()
