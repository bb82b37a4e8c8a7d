"""A test TLS PKI (openssl) and an nginx serving a folder over https, shared by the integration
and e2e layers. Raises RuntimeError on failure; the fixtures turn that into a test failure."""
import socket
import subprocess
import time
from pathlib import Path


def _run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {r.stdout}{r.stderr}")


def make_pki(d: Path, ips=("127.0.0.1",), names=()) -> Path:
    """ca.pem/ca.key, an unrelated otherca.pem, and server.pem/server.key for `ips`, localhost
    and `names`."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "otherca"):
        _run(["openssl", "req", "-x509", *ec, "-days", "30", "-subj", f"/CN=Ballast test {ca}",
              "-keyout", str(d / f"{ca}.key"), "-out", str(d / f"{ca}.pem"),
              "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    _run(["openssl", "req", *ec, "-subj", "/CN=localhost", "-keyout", str(d / "server.key"),
          "-out", str(d / "server.csr")])
    san = ",".join([f"IP:{ip}" for ip in ips] + ["DNS:localhost"] + [f"DNS:{n}" for n in names])
    (d / "server.ext").write_text(f"subjectAltName={san}\nextendedKeyUsage=serverAuth\n")
    _run(["openssl", "x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.pem"), "-CAkey",
          str(d / "ca.key"), "-CAcreateserial", "-days", "30", "-extfile", str(d / "server.ext"),
          "-out", str(d / "server.pem")])
    return d


def wait_listening(port: int, proc, timeout: float = 20) -> bool:
    """Whether `proc` came to listen on 127.0.0.1:`port` before it exited or `timeout` passed."""
    def up():
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    deadline = time.monotonic() + timeout
    while not up() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    return proc.poll() is None and up()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Nginx:
    """nginx on 127.0.0.1:<free port> serving `directory/www` with the PKI's server certificate."""

    def __init__(self, directory: Path, pki: Path, server_extra: str = ""):
        self.dir = directory
        self.docroot = directory / "www"
        self.docroot.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        (directory / "nginx.conf").write_text(f"""
daemon off;
master_process off;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 64; }}
http {{
  access_log {directory}/access.log;
  client_body_temp_path {directory}/tmp;
  proxy_temp_path {directory}/tmp;
  fastcgi_temp_path {directory}/tmp;
  uwsgi_temp_path {directory}/tmp;
  scgi_temp_path {directory}/tmp;
  server {{
    listen 127.0.0.1:{self.port} ssl;
    ssl_certificate {pki}/server.pem;
    ssl_certificate_key {pki}/server.key;
    root {self.docroot};
    {server_extra}
  }}
}}
""")
        (directory / "tmp").mkdir(exist_ok=True)
        self.start()

    def start(self):
        """Starts (or starts again, on the same port) the server."""
        self.proc = subprocess.Popen(["nginx", "-c", str(self.dir / "nginx.conf"), "-p", str(self.dir)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        if not wait_listening(self.port, self.proc):
            raise RuntimeError("nginx did not start: " + self.proc.stderr.read().decode())

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
