#!/usr/bin/env python3
"""A local HTTP receiver for the demo (scripts/run-local.sh): prints each request it gets
(method, path, whether it carried basic auth, and the JSON body) and answers 200.

    python3 scripts/receiver.py 8765
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace")
        try:
            body = json.dumps(json.loads(body))
        except ValueError:
            pass
        auth = self.headers.get("authorization", "")
        kind = auth.split(" ")[0] if auth else "no"
        print(f"receiver: {self.command} {self.path} ({kind} auth) {body}", flush=True)
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"ok":true}')

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
