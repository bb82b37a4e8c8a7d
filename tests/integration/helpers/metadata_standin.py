#!/usr/bin/python3
"""CLOUD METADATA SERVICE STAND-IN for tests: one platform's metadata API, as that platform
documents it (and cloud-init reads it), served on the platform's own address inside a network
namespace of the tests' own (no cloud is reachable from this machine).

    metadata_standin.py CONFIG.json

CONFIG: {"platform": "aws" | "gcp" | "azure" | "openstack" | "digitalocean" | "hetzner" |
"vultr" | "scaleway" | "equinix", "instance_id", "hostname", "keys": [...], "user_data": base64
of the bytes the platform hands out, or null for none, "delay": seconds before each answer,
"log": file for one JSON line per request, "tls": {"cert", "key"} (equinix: https), "wire":
false for an Azure without its wireserver, "imds": false for a platform without its metadata
service (Azure's wireserver alone), "token_status": what AWS answers the token PUT,
"network": the platform's own network description (openstack: network_data.json; hetzner:
{"network-config", "private-networks"}; digitalocean: {"interfaces", "dns"}; vultr:
{"interfaces"}), served where and as the platform serves it}.

What each platform checks is checked here too: AWS IMDSv2's session token (PUT, then the token
header; 401 without it), GCE's `Metadata-Flavor: Google` request header (403 without it, the
header on every answer), Azure's `Metadata: true` and api-version, Vultr's `Metadata-Token`,
Scaleway's privileged source port for user-data (403 from a port >= 1024). Azure's wireserver
(168.63.129.16) hands out a goal state and takes the health report that says the VM is Ready,
checking its ids, as provisioning does.
"""
import base64
import json
import socketserver
import ssl
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

CFG = json.load(open(sys.argv[1]))
PLATFORM = CFG["platform"]
UD = base64.b64decode(CFG["user_data"]) if CFG.get("user_data") is not None else None
IID, HOST, KEYS = CFG.get("instance_id", "i-0standin"), CFG.get("hostname", "standin"), CFG.get("keys", [])
TOKEN = "AQAEAstandin-token=="
NET = CFG.get("network")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def record(self, body=b""):
        if CFG.get("log"):
            with open(CFG["log"], "a") as f:
                f.write(json.dumps({"method": self.command, "path": self.path, "port": self.client_address[1],
                                    "headers": {k.lower(): v for k, v in self.headers.items()},
                                    "body": body.decode(errors="replace")}) + "\n")

    def send(self, code, body=b"", ctype="text/plain", extra=()):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_PUT(self):
        self.handle_any()

    def do_GET(self):
        self.handle_any()

    def do_POST(self):
        self.handle_any()

    def handle_any(self):
        n = int(self.headers.get("Content-Length") or 0)
        self.body = self.rfile.read(n) if n else b""
        self.record(self.body)
        time.sleep(CFG.get("delay", 0))
        getattr(self, "serve_" + PLATFORM)(self.path)

    # ---- AWS: IMDSv2 -----------------------------------------------------------------------
    def serve_aws(self, path):
        if path == "/latest/api/token":
            if CFG.get("token_status"):  # 403: IMDS turned off for the instance
                return self.send(CFG["token_status"])
            if self.command != "PUT" or not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                return self.send(400 if self.command == "PUT" else 405)
            return self.send(200, TOKEN)
        if self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
            return self.send(401)
        md = {"/latest/meta-data/instance-id": IID, "/latest/meta-data/local-hostname": HOST,
              "/latest/meta-data/public-keys/": "\n".join(f"{i}=key{i}" for i in range(len(KEYS)))}
        for i, k in enumerate(KEYS):
            md[f"/latest/meta-data/public-keys/{i}/openssh-key"] = k + "\n"
        if path == "/latest/user-data":
            return self.send(200, UD, "application/octet-stream") if UD is not None else self.send(404)
        return self.send(200, md[path]) if path in md else self.send(404)

    # ---- GCE ------------------------------------------------------------------------------
    def serve_gcp(self, path):
        flavor = (("Metadata-Flavor", "Google"),)
        if self.headers.get("Metadata-Flavor") != "Google":
            return self.send(403, "Missing Metadata-Flavor:Google header.", extra=flavor)
        base = "/computeMetadata/v1"
        md = {f"{base}/instance/id": IID, f"{base}/instance/hostname": HOST + ".c.project.internal",
              f"{base}/instance/attributes/ssh-keys": "\n".join(f"user{i}:{k}" for i, k in enumerate(KEYS)),
              f"{base}/project/attributes/ssh-keys": "projectuser:ssh-ed25519 AAAAproject project"}
        if CFG.get("block_project_keys"):
            md[f"{base}/instance/attributes/block-project-ssh-keys"] = "true"
        if UD is not None:
            md[f"{base}/instance/attributes/user-data"] = base64.b64encode(UD).decode()
            md[f"{base}/instance/attributes/user-data-encoding"] = "base64"
        return self.send(200, md[path], extra=flavor) if path in md else self.send(404, extra=flavor)

    # ---- Azure IMDS -----------------------------------------------------------------------
    def serve_azure(self, path):
        if self.headers.get("Metadata") != "true":
            return self.send(400, json.dumps({"error": "Bad request. Required metadata header not specified"}))
        if not path.startswith("/metadata/instance?api-version="):
            return self.send(404)
        doc = {"compute": {"vmId": IID, "name": HOST, "osProfile": {"computerName": HOST, "adminUsername": "azureuser"},
                           "publicKeys": [{"keyData": k, "path": "/home/azureuser/.ssh/authorized_keys"} for k in KEYS],
                           "userData": base64.b64encode(UD).decode() if UD is not None else ""},
               "network": {"interface": []}}
        return self.send(200, json.dumps(doc), "application/json")

    # ---- OpenStack ------------------------------------------------------------------------
    def serve_openstack(self, path):
        if path == "/openstack/latest/meta_data.json":
            return self.send(200, json.dumps({"uuid": IID, "hostname": HOST + ".novalocal", "name": HOST,
                                              "public_keys": {f"key{i}": k for i, k in enumerate(KEYS)}}),
                             "application/json")
        if path == "/openstack/latest/user_data":
            return self.send(200, UD, "application/octet-stream") if UD is not None else self.send(404)
        if path == "/openstack/latest/network_data.json" and NET is not None:
            return self.send(200, json.dumps(NET), "application/json")
        return self.send(404)

    # ---- DigitalOcean ---------------------------------------------------------------------
    def serve_digitalocean(self, path):
        if path != "/metadata/v1.json":
            return self.send(404)
        return self.send(200, json.dumps({"droplet_id": int(IID), "hostname": HOST, "public_keys": KEYS,
                                          "user_data": UD.decode() if UD is not None else None, **(NET or {})}),
                         "application/json")

    # ---- Hetzner --------------------------------------------------------------------------
    def serve_hetzner(self, path):
        if path == "/hetzner/v1/metadata":
            keys = "".join(f"\n- {k}" for k in KEYS) or " []"
            net = f"network-config: {json.dumps(NET['network-config'])}\n" if NET else ""
            return self.send(200, f"hostname: {HOST}\ninstance-id: {IID}\npublic-keys:{keys}\n{net}", "text/yaml")
        if path == "/hetzner/v1/metadata/private-networks" and NET:
            return self.send(200, json.dumps(NET.get("private-networks", [])), "text/yaml")
        if path == "/hetzner/v1/userdata":
            return self.send(200, UD, "text/plain") if UD is not None else self.send(204)
        return self.send(404)

    # ---- Vultr ----------------------------------------------------------------------------
    def serve_vultr(self, path):
        if self.headers.get("Metadata-Token") != "cloudinit":
            return self.send(401)
        if path != "/v1.json":
            return self.send(404)
        return self.send(200, json.dumps({"instance-v2-id": IID, "hostname": HOST, "public-keys": KEYS,
                                          "user-data": UD.decode() if UD is not None else "", **(NET or {})}),
                         "application/json")

    # ---- Scaleway -------------------------------------------------------------------------
    def serve_scaleway(self, path):
        if path == "/conf?format=json":
            return self.send(200, json.dumps({"id": IID, "hostname": HOST,
                                              "ssh_public_keys": [{"key": k, "fingerprint": "x"} for k in KEYS]}),
                             "application/json")
        if path == "/user_data/cloud-init":
            if self.client_address[1] >= 1024:
                return self.send(403, "source port must be privileged")
            return self.send(200, UD, "text/plain") if UD is not None else self.send(404)
        return self.send(404)

    # ---- Equinix Metal --------------------------------------------------------------------
    def serve_equinix(self, path):
        if path == "/metadata":
            return self.send(200, json.dumps({"id": IID, "hostname": HOST, "ssh_keys": KEYS}), "application/json")
        if path == "/userdata":
            return self.send(200, UD, "text/plain") if UD is not None else self.send(404)
        return self.send(404)


GOAL_STATE = """<?xml version="1.0" encoding="utf-8"?>
<GoalState xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:noNamespaceSchemaLocation="goalstate10.xsd">
  <Version>2012-11-30</Version>
  <Incarnation>7</Incarnation>
  <Machine><ExpectedState>Started</ExpectedState></Machine>
  <Container>
    <ContainerId>56a7a8b9-0000-4b1c-9d2e-standin00001</ContainerId>
    <RoleInstanceList>
      <RoleInstance>
        <InstanceId>896c0f3e-standin._node</InstanceId>
        <State>Started</State>
      </RoleInstance>
    </RoleInstanceList>
  </Container>
</GoalState>
"""


class WireHandler(Handler):
    """Azure's wireserver: goal state, then the health report."""

    def serve_azure(self, path):
        if self.headers.get("x-ms-version") != "2012-11-30":
            return self.send(400)
        if path == "/machine/?comp=goalstate" and self.command == "GET":
            return self.send(200, GOAL_STATE, "text/xml")
        if path == "/machine?comp=health" and self.command == "POST":
            body = self.body.decode()
            ok = (re.search(r"<GoalStateIncarnation>7</GoalStateIncarnation>", body) and
                  "<ContainerId>56a7a8b9-0000-4b1c-9d2e-standin00001</ContainerId>" in body and
                  "<InstanceId>896c0f3e-standin._node</InstanceId>" in body and
                  "<State>Ready</State>" in body)
            return self.send(200 if ok else 400)
        return self.send(404)


class Server(socketserver.ThreadingMixIn, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    servers = []
    if CFG.get("imds", True):
        addr = "169.254.42.42" if PLATFORM == "scaleway" else "169.254.169.254"
        port = 443 if CFG.get("tls") else 80
        httpd = Server((addr, port), Handler)
        if CFG.get("tls"):
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(CFG["tls"]["cert"], CFG["tls"]["key"])
            httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
        servers.append(httpd)
    if PLATFORM == "azure" and CFG.get("wire", True):
        servers.append(Server(("168.63.129.16", 80), WireHandler))
    for srv in servers:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    print("listening", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
