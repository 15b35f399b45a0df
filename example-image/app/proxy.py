"""The demo's proxy: spreads GET / over every ingestor, round robin.

The upstream list is rendered from guestutils at start and re-rendered by the
watcher's service_change (watch_methods.py) whenever ingestors come or go.
GET /upstreams shows the current list.
"""

import itertools
import json
import os
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import guestutils
import upstreams

PORT = guestutils.get_port("http", 8080)
_lock = threading.Lock()
_counter = itertools.count()


def current():
    return upstreams.load()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        nodes = current()
        if self.path == "/upstreams":
            return self.reply(200, json.dumps(nodes) + "\n", "application/json")
        if not nodes:
            return self.reply(503, "no ingestor registered yet\n")
        with _lock:
            n = next(_counter)
        # Try each upstream once, starting with the next in turn.
        for i in range(len(nodes)):
            target = nodes[(n + i) % len(nodes)]
            try:
                with urllib.request.urlopen(f"http://{target}/", timeout=2) as r:
                    return self.reply(200, r.read().decode())
            except OSError:
                continue
        return self.reply(502, "no ingestor answered\n")

    def reply(self, status, text, ctype="text/plain"):
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass


def initial_render():
    # The ingestors may register after the proxy starts: wait up to 60 s.
    deadline = time.time() + 60
    while True:
        try:
            nodes = upstreams.render()
            if nodes or time.time() > deadline:
                return nodes
        except guestutils.GuestUtilsError as e:
            if time.time() > deadline:
                print(f"guestutils: {e}", flush=True)
                return []
        time.sleep(0.5)


if __name__ == "__main__":
    print(f"proxy {guestutils.get_container_name()} on :{PORT}, upstreams {initial_render()}", flush=True)
    ThreadingHTTPServer(("0.0.0.0", PORT), Handler).serve_forever()
