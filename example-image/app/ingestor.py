"""The demo's ingestor: answers GET / with its own container name."""

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import guestutils

NAME = guestutils.get_container_name()
PORT = guestutils.get_port("api", 8000)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = (NAME + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass


if __name__ == "__main__":
    print(f"ingestor {NAME} listening on :{PORT}", flush=True)
    ThreadingHTTPServer(("0.0.0.0", PORT), Handler).serve_forever()
