"""The update server nodes in QEMU reach: nginx on the host's loopback, seen by the guest as
https://10.0.2.2:PORT (QEMU user networking), with a test PKI, serving signed bundles made from
the image's squashfs under any version string; and, when asked, Debian's docker-registry beside
it (oci://10.0.2.2:PORT/...). Shared by the e2e tests and `make demo`."""
import os
import subprocess
from pathlib import Path

import tls

HOST_FROM_GUEST = "10.0.2.2"


class Web:
    def __init__(self, image: Path, work: Path):
        self.image = image
        (work / "pki").mkdir()
        self.pki = tls.make_pki(work / "pki", ips=("127.0.0.1", HOST_FROM_GUEST))
        # /slow/: the same files at 8 MB/s, so a power cut can land in the middle of a write.
        d = work / "web"
        d.mkdir()
        self.nginx = tls.Nginx(d, self.pki, server_extra=f"location /slow/ {{ alias {d}/www/; limit_rate 8m; }}")
        self.docroot = self.nginx.docroot
        self.guest_url = f"https://{HOST_FROM_GUEST}:{self.nginx.port}"
        self.agentctl = image / "agentctl-host" / "usr" / "bin" / "agentctl"
        self.compatible = (image / "root" / "usr" / "lib" / "ballast" / "compatible").read_text().strip()
        self.work = work
        self.registry = None

    def bundle(self, version: str, squashfs: Path | None = None, slow: bool = False) -> str:
        """A signed bundle of the image's squashfs (or another one) as VERSION; its guest URL."""
        out = self.docroot / f"ballast-{version}.tar"
        if not out.exists():
            subprocess.run([str(self.agentctl), "bundle", "create",
                            "--image", str(squashfs or self.image / "rootfs.sqfs"),
                            "--version", version, "--compatible", self.compatible,
                            "--key", str(self.image / "pki" / "s.key"),
                            "--cert", str(self.image / "pki" / "s.pem"), "-o", str(out)],
                           check=True, capture_output=True)
        return f"{self.guest_url}/{'slow/' if slow else ''}{out.name}"

    def changed_image(self, name: str, payload: int = 2 << 20) -> Path:
        """The image's squashfs with one new folder appended (mksquashfs appends in place: the
        old data stays where it was, the tables are rewritten): a small release for a delta."""
        out = self.work / f"{name}.sqfs"
        if not out.exists():
            src = self.work / name / "e2e-delta"
            src.mkdir(parents=True, exist_ok=True)
            (src / "payload").write_bytes(os.urandom(payload))
            tmp = out.with_suffix(".tmp")
            subprocess.run(["cp", "--sparse=never", str(self.image / "rootfs.sqfs"), str(tmp)], check=True)
            subprocess.run(["mksquashfs", str(src), str(tmp), "-keep-as-directory", "-no-progress", "-quiet"],
                           check=True, capture_output=True)
            tmp.rename(out)
        return out

    def push(self, version: str, squashfs: Path) -> str:
        """A signed bundle of `squashfs` as VERSION, pushed to the registry (started on first use);
        its oci:// reference as the guest sees it."""
        from registry import Registry
        if self.registry is None:
            self.registry = Registry(self.work / "registry", self.pki)
        tar = self.work / f"oci-{version}.tar"
        subprocess.run([str(self.agentctl), "bundle", "create", "--image", str(squashfs), "--version", version,
                        "--compatible", self.compatible, "--key", str(self.image / "pki" / "s.key"),
                        "--cert", str(self.image / "pki" / "s.pem"), "-o", str(tar)], check=True, capture_output=True)
        subprocess.run([str(self.agentctl), "bundle", "push", str(tar), f"{self.registry.host}/ballast/os:{version}",
                        "--ca-file", str(self.pki / "ca.pem")], check=True, capture_output=True)
        return f"oci://{HOST_FROM_GUEST}:{self.registry.port}/ballast/os:{version}"

    def trust(self, vm, extra_settings: str = ""):
        """Makes a booted node trust this server: its CA and agent.yaml http.ca_file (plus
        `extra_settings`, more agent.yaml), in /etc, so kept across reboots and upgrades."""
        vm.ssh("cat > /etc/ballast/e2e-ca.pem", input=(self.pki / "ca.pem").read_text())
        vm.ssh("cat > /etc/ballast/agent.yaml",
               input="http:\n  ca_file: /etc/ballast/e2e-ca.pem\n" + extra_settings)

    def stop(self):
        self.nginx.stop()
        if self.registry:
            self.registry.stop()
