"""A small JSON greeting service on the standard library's HTTP server."""

import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


def greeting(path):
    name = path.strip("/") or "world"
    return {"greeting": f"hello, {name}", "python": sys.version.split()[0]}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps(greeting(self.path)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    if "--self-test" in sys.argv:
        assert greeting("/kiln")["greeting"] == "hello, kiln"
        print("self-test ok:", json.dumps(greeting("/kiln")["greeting"]))
        sys.exit(0)
    HTTPServer(("0.0.0.0", 8000), Handler).serve_forever()
