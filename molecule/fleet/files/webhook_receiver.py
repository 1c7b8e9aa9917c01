"""A webhook receiver for Alertmanager's notifications, run by the host-lost drill.

Listens on --listen HOST:PORT; every POST body (Alertmanager's webhook JSON: {status,
groupLabels, alerts: [{status, labels, startsAt, endsAt}], ...}) is appended to --out as one
JSON line with the time it arrived: {"received": <unix seconds>, "body": {...}}. Answers 200.
Stops when the --stop file appears or after --max seconds. Usage:

    python webhook_receiver.py --listen 10.231.5.1:9199 --out alerts.jsonl --stop stop-file
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def handler_for(out: Path) -> type[BaseHTTPRequestHandler]:
    """A request handler class that appends each POSTed JSON body to ``out``."""
    lock = threading.Lock()

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            with lock, out.open("a") as file:
                file.write(json.dumps({"received": time.time(), "body": body}) + "\n")
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    return Receiver


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="HOST:PORT")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--stop", required=True, type=Path)
    parser.add_argument("--max", type=float, default=1800.0)
    args = parser.parse_args()
    host, port = args.listen.rsplit(":", 1)
    server = ThreadingHTTPServer((host, int(port)), handler_for(args.out))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    deadline = time.monotonic() + args.max
    while not args.stop.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    server.shutdown()


if __name__ == "__main__":
    main()
