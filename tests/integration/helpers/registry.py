"""Debian's docker-registry (distribution 2.8) on 127.0.0.1:<free port>, with TLS from the test PKI
and filesystem storage, and optionally htpasswd Basic auth: the real registry the OCI tests push to
and pull from. Raises RuntimeError on failure; the fixtures turn that into a test failure."""
import base64
import json
import os
import subprocess
from pathlib import Path

from tls import free_port, wait_listening


class Registry:
    def __init__(self, directory: Path, pki: Path, users: dict[str, str] | None = None, auth: str = "",
                 upstream: str | None = None):
        """`users`: htpasswd Basic auth; `auth`: another auth section (a token service's);
        `upstream` (host): a pull-through cache of that registry (one without auth: the cache in
        distribution 2.8 sends its credentials to token services only)."""
        self.dir = directory
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        # skopeo's --cert-dir: the CA that signed the registry's certificate, as ca.crt.
        self.cert_dir = directory / "certs"
        self.cert_dir.mkdir(parents=True, exist_ok=True)
        (self.cert_dir / "ca.crt").write_bytes((pki / "ca.pem").read_bytes())
        (directory / "config.yml").write_text(f"""version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {directory}/data
  delete:
    enabled: true
{auth or self._auth(directory, users)}{self._proxy(upstream)}http:
  addr: {self.host}
  tls:
    certificate: {pki}/server.pem
    key: {pki}/server.key
""")
        self.log = open(directory / "registry.log", "w")
        # Go reads SSL_CERT_FILE: a cache trusts the upstream's test certificate.
        env = dict(os.environ, SSL_CERT_FILE=str(pki / "ca.pem"))
        self.proc = subprocess.Popen(["docker-registry", "serve", str(directory / "config.yml")],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env)
        if not wait_listening(self.port, self.proc):
            raise RuntimeError("docker-registry did not start: " + (directory / "registry.log").read_text())

    @staticmethod
    def _proxy(upstream):
        if not upstream:
            return ""
        return f"proxy:\n  remoteurl: https://{upstream}\n"

    @staticmethod
    def _auth(directory: Path, users):
        if not users:
            return ""
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt  # bcrypt through libxcrypt: what distribution's htpasswd reads
        lines = [f"{u}:{crypt.crypt(p, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 4))}" for u, p in users.items()]
        (directory / "htpasswd").write_text("\n".join(lines) + "\n")
        return f"auth:\n  htpasswd:\n    realm: ballast-tests\n    path: {directory}/htpasswd\n"

    def auth_file(self, path: Path, user: str, password: str, key: str | None = None) -> Path:
        """A containers-auth.json with one entry (for this registry unless `key` is given)."""
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        path.write_text(json.dumps({"auths": {key or self.host: {"auth": token}}}))
        return path

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.log.close()
