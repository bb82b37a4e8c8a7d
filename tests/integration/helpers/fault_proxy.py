"""A fault-injecting https reverse proxy in front of a registry, for the faults a real link and a
real registry produce: a connection dropped in the middle of an upload (after the registry got
part of it), and a 401 in the middle of a transfer (a token that expired). Requests are
forwarded with their Host header, so the registry's Location headers point back at the proxy.
`faults` is consumed in order, one per matching request of 64 KiB or more; `log` records
(method, path, status), -1 for a dropped connection, and `ranges` and `sizes` each request's
Range header and answer's length at the same index."""
import http.client
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tls import free_port


class FaultProxy:
    def __init__(self, upstream_port: int, pki: Path):
        # (method, "drop-half" | "401" | "pass" | "foreign-location" | "corrupt")
        self.faults: list[tuple[str, str]] = []
        self.log: list[tuple[str, str, int]] = []
        self.challenge = ""  # the registry's, replayed by an injected 401
        self.ranges: list[str] = []  # each forwarded request's Range header
        self.sizes: list[int] = []  # each forwarded answer's body length
        # Like a pull-through cache on a miss: every GET answered whole (200), Range ignored.
        self.ignore_ranges = False
        # Like a server that does not do ranges: a GET with a Range header gets this status.
        self.refuse_ranges: int | None = None
        # Registries that lie: blobs cut to this many bytes (ranges past it: 416), any GET whose
        # path ends with `corrupt_path` with one byte changed, manifests replaced by this body.
        self.truncate_at: int | None = None
        self.corrupt_path: str | None = None
        self.manifest_body: bytes | None = None
        self.lock = threading.Lock()  # handlers run on threads of their own
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        upstream_ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def forward(self, method, body, headers):
                conn = http.client.HTTPSConnection("127.0.0.1", upstream_port, context=upstream_ctx, timeout=30)
                conn.request(method, self.path, body=body, headers=headers)
                return conn, conn.getresponse()

            def handle_any(self):
                method = self.command
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("content-length", "connection")}
                fault = None
                # Faults hit uploads of real size only (the image), not the 2-byte config.
                if proxy.faults and proxy.faults[0][0] == method and length >= 64 * 1024:
                    fault = proxy.faults.pop(0)[1]
                # A token that expires in the middle of a download: the next ranged blob GET.
                if (proxy.faults and proxy.faults[0] == ("GET", "401") and method == "GET"
                        and "/blobs/" in self.path and self.headers.get("Range")):
                    fault = proxy.faults.pop(0)[1]
                # An upload whose Location names another host (always the first POST).
                if proxy.faults and proxy.faults[0] == ("POST", "foreign-location") and method == "POST":
                    fault = proxy.faults.pop(0)[1]
                if fault == "pass":
                    fault = None
                if fault == "401":
                    proxy.record(method, self.path, 401, headers.get("Range", ""))
                    msg = b'{"errors":[{"code":"UNAUTHORIZED","message":"token expired"}]}'
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", proxy.challenge)
                    self.send_header("Content-Length", str(len(msg)))
                    self.end_headers()
                    self.wfile.write(msg)
                    return
                if fault == "drop-half" and body:
                    # The registry gets the first half, the client a dropped connection.
                    half = body[: len(body) // 2]
                    start = int(self.headers.get("Content-Range", "0-0").split("-")[0])
                    headers["Content-Range"] = f"{start}-{start + len(half) - 1}"
                    conn, up = self.forward(method, half, headers)
                    up.read()
                    conn.close()
                    proxy.record(method, self.path, -1)
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if proxy.ignore_ranges:
                    headers.pop("Range", None)
                if method == "GET" and self.lie(headers):
                    return
                conn, up = self.forward(method, body, headers)
                data = up.read()
                if method == "GET" and proxy.corrupt_path and self.path.endswith(proxy.corrupt_path):
                    data = data[:-1] + bytes([data[-1] ^ 0xFF])
                entry = proxy.record(method, self.path, up.status, headers.get("Range", ""), len(data))
                if method == "GET" and proxy.faults[:1] == [("GET", "corrupt")] and "Range" in headers:
                    # A range of a blob with one byte changed: a registry that lies.
                    proxy.faults.pop(0)
                    data = data[:-1] + bytes([data[-1] ^ 0xFF])
                if method == "GET" and proxy.faults[:1] == [("GET", "drop-half")] and len(data) >= 64 * 1024:
                    # A download of real size: half the body, then the connection is gone.
                    proxy.faults.pop(0)
                    self.send_response(up.status)
                    for k, v in up.getheaders():
                        if k.lower() in ("content-type", "content-range", "docker-content-digest"):
                            self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    proxy.log[entry] = (method, self.path, -1)
                    self.close_connection = True
                    self.connection.shutdown(2)
                    conn.close()
                    return
                if up.status == 401:
                    proxy.challenge = up.getheader("WWW-Authenticate")
                self.send_response(up.status)
                for k, v in up.getheaders():
                    if k.lower() not in ("content-length", "connection", "transfer-encoding", "date", "server"):
                        if fault == "foreign-location" and k.lower() == "location":
                            v = "https://127.0.0.2:9" + v[v.index("/v2/"):]
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if method != "HEAD":
                    self.wfile.write(data)
                conn.close()

            def answer(self, status, data, extra=()):
                proxy.record("GET", self.path, status, self.headers.get("Range", ""), len(data))
                self.send_response(status)
                for k, v in extra:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def lie(self, headers):
                """Answers the GET itself when a refusal or a lie is set up for it."""
                rng = headers.get("Range", "")
                if proxy.refuse_ranges and rng:
                    self.answer(proxy.refuse_ranges, b"")
                    return True
                if proxy.manifest_body is not None and "/manifests/" in self.path:
                    self.answer(200, proxy.manifest_body,
                                [("Content-Type", "application/vnd.oci.image.manifest.v1+json")])
                    return True
                if proxy.truncate_at is not None and "/blobs/" in self.path:
                    conn, up = self.forward("GET", None, {k: v for k, v in headers.items() if k != "Range"})
                    whole = up.read()
                    conn.close()
                    if len(whole) <= proxy.truncate_at:
                        return False
                    blob = whole[:proxy.truncate_at]
                    if not rng:
                        self.answer(200, blob)
                        return True
                    first, _, last = rng[len("bytes="):].partition("-")
                    first, last = int(first), int(last) if last else len(blob) - 1
                    if first >= len(blob):
                        self.answer(416, b"", [("Content-Range", f"bytes */{len(blob)}")])
                    else:
                        last = min(last, len(blob) - 1)
                        self.answer(206, blob[first:last + 1], [("Content-Range", f"bytes {first}-{last}/{len(blob)}")])
                    return True
                return False

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(pki / "server.pem"), str(pki / "server.key"))
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def record(self, method, path, status, rng="", size=0):
        """One request in `log`, `ranges` and `sizes` at the same index; returns it."""
        with self.lock:
            self.log.append((method, path, status))
            self.ranges.append(rng)
            self.sizes.append(size)
            return len(self.log) - 1

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
