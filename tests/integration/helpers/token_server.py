"""A small Bearer token service of the tests' own, as distribution's token auth expects one
(docs/spec/auth/token.md): GET /token?service=…&scope=repository:NAME:ACTIONS with Basic
credentials answers {"token", "expires_in", "issued_at"}, an ES256 JWT whose x5c header carries a
certificate from the registry's rootcertbundle. Wrong credentials get 401. It counts the tokens it
issued and the scopes asked for. Raises RuntimeError on failure."""
import base64
import json
import ssl
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import jwt

from tls import free_port

ISSUER = "ballast-test-issuer"
SERVICE = "ballast-test-registry"


class TokenServer:
    def __init__(self, directory: Path, pki: Path, users: dict[str, str], expires_in: int = 300):
        self.dir = directory
        self.users = users
        self.expires_in = expires_in
        self.scopes: list[str] = []
        self.issued = 0
        key, cert = directory / "token.key", directory / "token.pem"
        r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                            "-nodes", "-days", "30", "-subj", "/CN=ballast test token signer", "-keyout", str(key),
                            "-out", str(cert)], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("openssl: " + r.stderr)
        self.root_bundle = cert
        self.key = key.read_bytes()
        der = subprocess.run(["openssl", "x509", "-in", str(cert), "-outform", "DER"], capture_output=True).stdout
        self.x5c = [base64.b64encode(der).decode()]
        self.port = free_port()
        self.realm = f"https://127.0.0.1:{self.port}/token"
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                url = urlparse(self.path)
                q = parse_qs(url.query)
                creds = None
                h = self.headers.get("Authorization", "")
                if h.startswith("Basic "):
                    creds = base64.b64decode(h[6:]).decode(errors="replace").split(":", 1)
                if url.path != "/token" or q.get("service") != [SERVICE] or not creds or \
                        server.users.get(creds[0]) != creds[1]:
                    self.send_response(401)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(b'{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}')
                    return
                access = []
                for scope in q.get("scope", []):
                    server.scopes.append(scope)
                    kind, name, actions = scope.split(":")  # repository:NAME:pull,push
                    access.append({"type": kind, "name": name, "actions": actions.split(",")})
                now = int(time.time())
                claims = {"iss": ISSUER, "sub": creds[0], "aud": SERVICE, "exp": now + server.expires_in,
                          "nbf": now - 10, "iat": now, "jti": str(uuid.uuid4()), "access": access}
                token = jwt.encode(claims, server.key, algorithm="ES256", headers={"x5c": server.x5c})
                server.issued += 1
                body = json.dumps({"token": token, "expires_in": server.expires_in,
                                   "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(pki / "server.pem"), str(pki / "server.key"))
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def registry_auth(self) -> str:
        """The registry config's auth section for this service."""
        return (f"auth:\n  token:\n    realm: {self.realm}\n    service: {SERVICE}\n    issuer: {ISSUER}\n"
                f"    rootcertbundle: {self.root_bundle}\n")

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
