"""A loopback HTTP server for tests: serves bytes with Range support and injected faults.

Real sockets on 127.0.0.1, a real HTTP/1.1 server (http.server). Faults per path:
``drop_after=N`` closes the connection after N body bytes (``drop_times`` times),
``status=404`` answers that status, ``corrupt=True`` flips bytes. Every request is
recorded (path and Range header) so tests can assert that a resume really used Range.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Fault:
    drop_after: int | None = None
    drop_times: int = 1
    status: int | None = None
    corrupt: bool = False
    ignore_range: bool = False


@dataclass
class Request:
    path: str
    range: str | None
    accept: str | None


@dataclass
class FileServer:
    files: dict[str, bytes] = field(default_factory=dict)
    content_types: dict[str, str] = field(default_factory=dict)
    faults: dict[str, Fault] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)

    def start(self) -> FileServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                server.requests.append(Request(path, self.headers.get("Range"), self.headers.get("Accept")))
                fault = server.faults.get(path, Fault())
                if fault.status:
                    self._plain(fault.status, b"fault")
                    return
                body = server.files.get(path)
                if body is None and not path.endswith("/") and path + "/" in server.files:
                    body = server.files[path + "/"]
                if body is None:
                    self._plain(404, b"not found")
                    return
                if fault.corrupt:
                    body = bytes(b ^ 0xFF for b in body[:64]) + body[64:]
                start = 0
                status = 200
                match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if match and not fault.ignore_range:
                    start = int(match.group(1))
                    if start >= len(body):
                        self._plain(416, b"range not satisfiable")
                        return
                    status = 206
                chunk = body[start:]
                self.send_response(status)
                self.send_header("Content-Type", server.content_types.get(path, "application/octet-stream"))
                self.send_header("Content-Length", str(len(chunk)))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.end_headers()
                if fault.drop_after is not None and fault.drop_times > 0:
                    fault.drop_times -= 1
                    self.wfile.write(chunk[: fault.drop_after])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.wfile.write(chunk)

            def _plain(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def ranges_for(self, path: str) -> list[str | None]:
        return [r.range for r in self.requests if r.path == path]
