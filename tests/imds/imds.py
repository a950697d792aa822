#!/usr/bin/env python3
"""A stand-in for the EC2 instance metadata service (IMDSv2 only), for kiln's tests.

    python3 tests/imds/imds.py --listen 127.0.0.1:0 [--role web-role] [--region eu-west-1]
                               [--expires-in 3600] [--keys keys.json] [--log requests.jsonl]

prints "ready PORT" once listening and stops on SIGTERM/SIGINT (exit 0).
Python standard library only. tests/imds/README.md describes it in full.

What it does, as the real service does (EC2 user guide, "Use IMDSv2"):
  PUT /latest/api/token        needs X-aws-ec2-metadata-token-ttl-seconds (1-21600)
                               and answers a session token valid that long;
                               a PUT with X-Forwarded-For is refused (403), as
                               EC2 refuses tokens to proxied requests;
  GET /latest/meta-data/...    needs X-aws-ec2-metadata-token with a live token,
                               else 401 (IMDSv1, no token, is refused);
      placement/region         the region;
      iam/security-credentials/        the role's name (404 without a role);
      iam/security-credentials/ROLE    its keys as JSON, expiring --expires-in
                                       seconds after they are served; every
                                       request serves the next key pair (from
                                       --keys, round robin, or made up:
                                       ASIAIMDSTEST0000001, ...), so a test
                                       sees which fetch a signature used.
Control (same port, no token needed):
  GET  /__imds/stats    {"token_puts", "token_refused", "no_token", "bad_token",
                         "credential_gets", "region_gets", "served": [AccessKeyId, ...]}
  POST /__imds/config   JSON with any of role (null: no role), region,
                        expires_in, fail_next (answer the next N metadata
                        GETs with 500), delay_ms (before every answer)
"""

import argparse
import datetime
import http.server
import json
import secrets
import signal
import sys
import threading
import time

TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
ROLE_PREFIX = "/latest/meta-data/iam/security-credentials/"


def iso(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class State:
    def __init__(self, args):
        self.lock = threading.Lock()
        self.role = args.role
        self.region = args.region
        self.expires_in = args.expires_in
        self.fail_next = 0
        self.delay_ms = 0
        self.keys = []
        if args.keys:
            with open(args.keys) as f:
                self.keys = json.load(f)
        self.next_key = 0
        self.tokens = {}
        self.stats = {"token_puts": 0, "token_refused": 0, "no_token": 0, "bad_token": 0,
                      "credential_gets": 0, "region_gets": 0, "served": []}
        self.log = open(args.log, "a") if args.log else None

    def new_keys(self):
        with self.lock:
            n = self.next_key
            self.next_key += 1
            if self.keys:
                k = self.keys[n % len(self.keys)]
                key_id, secret = k["AccessKeyId"], k["SecretAccessKey"]
            else:
                key_id = "ASIAIMDSTEST%07d" % (n + 1)
                secret = "imds-secret-%d-%s" % (n + 1, secrets.token_hex(8))
            self.stats["served"].append(key_id)
            self.stats["credential_gets"] += 1
            now = time.time()
            return {"Code": "Success", "LastUpdated": iso(now), "Type": "AWS-HMAC",
                    "AccessKeyId": key_id, "SecretAccessKey": secret,
                    "Token": "imds-session-token-%d" % (n + 1),
                    "Expiration": iso(now + self.expires_in)}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "EC2ws"

    def log_message(self, fmt, *a):  # quiet; --log has the requests
        pass

    @property
    def st(self):
        return self.server.state

    def reply(self, status, body=b"", ctype="text/plain"):
        if isinstance(body, str):
            body = body.encode()
        delay = self.st.delay_ms
        if delay:
            time.sleep(delay / 1000.0)
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        if self.st.log:
            with self.st.lock:
                self.st.log.write(json.dumps({"time": iso(time.time()), "method": self.command,
                                              "path": self.path, "status": status,
                                              "token": bool(self.headers.get(TOKEN_HEADER))}) + "\n")
                self.st.log.flush()

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_PUT(self):
        self.body()
        st = self.st
        if self.path != "/latest/api/token":
            return self.reply(404, "Not Found")
        ttl = self.headers.get(TTL_HEADER)
        if self.headers.get("X-Forwarded-For"):
            with st.lock:
                st.stats["token_refused"] += 1
            return self.reply(403, "Forbidden")
        try:
            ttl = int(ttl)
        except (TypeError, ValueError):
            ttl = 0
        if not 1 <= ttl <= 21600:
            with st.lock:
                st.stats["token_refused"] += 1
            return self.reply(400, "Bad Request")
        token = secrets.token_urlsafe(40)
        with st.lock:
            st.tokens[token] = time.monotonic() + ttl
            st.stats["token_puts"] += 1
        self.reply(200, token)

    def token_ok(self):
        st = self.st
        token = self.headers.get(TOKEN_HEADER)
        with st.lock:
            if not token:
                st.stats["no_token"] += 1
                return False
            until = st.tokens.get(token)
            if until is None or until < time.monotonic():
                st.stats["bad_token"] += 1
                return False
        return True

    def do_GET(self):
        st = self.st
        if self.path == "/__imds/stats":
            with st.lock:
                stats = json.dumps(st.stats)
            return self.reply(200, stats, "application/json")
        if not self.path.startswith("/latest/"):
            return self.reply(404, "Not Found")
        if not self.token_ok():
            return self.reply(401, "Unauthorized")
        with st.lock:
            if st.fail_next > 0:
                st.fail_next -= 1
                fail = True
            else:
                fail = False
        if fail:
            return self.reply(500, "Internal Server Error")
        if self.path == "/latest/meta-data/placement/region":
            with st.lock:
                st.stats["region_gets"] += 1
            return self.reply(200, st.region)
        if self.path == ROLE_PREFIX:
            if not st.role:
                return self.reply(404, "Not Found")
            return self.reply(200, st.role)
        if self.path.startswith(ROLE_PREFIX):
            if not st.role or self.path[len(ROLE_PREFIX):] != st.role:
                return self.reply(404, "Not Found")
            return self.reply(200, json.dumps(st.new_keys(), indent=2), "text/plain")
        return self.reply(404, "Not Found")

    def do_POST(self):
        st = self.st
        data = self.body()
        if self.path != "/__imds/config":
            return self.reply(404, "Not Found")
        try:
            cfg = json.loads(data or b"{}")
            if not isinstance(cfg, dict):
                raise ValueError("not an object")
            for k in cfg:
                if k not in ("role", "region", "expires_in", "fail_next", "delay_ms"):
                    raise ValueError("unknown key %r" % k)
            with st.lock:
                for k, v in cfg.items():
                    setattr(st, k, v)
                now = json.dumps({"role": st.role, "region": st.region, "expires_in": st.expires_in})
        except ValueError as e:
            return self.reply(400, json.dumps({"error": str(e)}), "application/json")
        self.reply(200, now, "application/json")


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--role", default="kiln-test-role")
    ap.add_argument("--region", default="eu-west-1")
    ap.add_argument("--expires-in", type=int, default=3600)
    ap.add_argument("--keys", help="JSON list of {AccessKeyId, SecretAccessKey} to serve in turn")
    ap.add_argument("--log", help="append one JSON line per request")
    args = ap.parse_args()
    host, port = args.listen.rsplit(":", 1)
    srv = Server((host, int(port)), Handler)
    srv.state = State(args)

    def stop(signo, frame):
        threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("ready %d" % srv.server_address[1], flush=True)
    srv.serve_forever()
    srv.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
