#!/usr/bin/env python3
"""bench/local-flow-trace.py: where a local rollout's time goes, batch by batch.

    local-flow-trace.py sample STATE_DIR LB_NAME OUT.jsonl   (until SIGTERM)
    local-flow-trace.py report EVENTS.json OUT.jsonl RISE INTERVAL_S

`sample` watches, from outside kiln, what the engine can only poll for: every
100 ms it reads HAProxy's `show stat` over the balancer's admin socket (a
server appears = registered, UP, DRAIN, gone), and for each instance it has
not yet seen answer, tries its sshd (TCP connect to port 22) and its
application (GET / with Host: localhost on port 80; any answer below 500).
Each probe stops at its first success, so the sampler costs the instance one
SSH connection and a few refused HTTP connects. Records are one JSON object a
line with the wall time in ms.

`report` joins them with the rollout's --json events (the engine's view:
launched, running seen, registered, healthy seen, deregistered, drained) and
prints, per batch, the time from one milestone to the next, so that what is
the machine's (boot, HAProxy's rise) and what is kiln's (seeing a change late)
are told apart.
"""
import datetime
import json
import os
import re
import signal
import socket
import sys
import time


def now_ms():
    return int(time.time() * 1000)


def haproxy(sock_path, cmd):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1.0)
    s.connect(sock_path)
    s.sendall(cmd.encode() + b"\n")
    out = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        out += b
    s.close()
    return out.decode(errors="replace")


def tcp_open(ip, port):
    try:
        with socket.create_connection((ip, port), timeout=0.3):
            return True
    except OSError:
        return False


def http_ok(ip):
    try:
        with socket.create_connection((ip, 80), timeout=0.5) as s:
            s.settimeout(0.5)
            s.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
            line = s.recv(64).decode(errors="replace")
            m = re.match(r"HTTP/1\.\d (\d+)", line)
            return bool(m) and int(m.group(1)) < 500
    except OSError:
        return False


def sample(state, lb, out_path):
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    inst_dir = os.path.join(state, "local", "instances")
    sock = os.path.join(state, "local", "lb", lb, "admin.sock")
    seen, ssh_up, app_up, srv = set(), set(), set(), {}
    with open(out_path, "a", buffering=1) as out:
        def rec(**kw):
            kw["t"] = now_ms()
            out.write(json.dumps(kw) + "\n")
        while not stop:
            t0 = time.time()
            try:
                ids = os.listdir(inst_dir)
            except OSError:
                ids = []
            for i in ids:
                try:
                    doc = json.load(open(os.path.join(inst_dir, i, "instance.json")))
                except (OSError, ValueError):
                    continue
                if doc.get("state") not in ("pending", "running"):
                    continue
                ip = doc.get("private_ip", "")
                if i not in seen:
                    seen.add(i)
                    rec(ev="instance", id=i, state=doc.get("state"))
                if i not in ssh_up and ip and tcp_open(ip, 22):
                    ssh_up.add(i)
                    rec(ev="ssh", id=i)
                if i not in app_up and ip and http_ok(ip):
                    app_up.add(i)
                    rec(ev="app", id=i)
            try:
                rows = haproxy(sock, "show stat").splitlines()
            except OSError:
                rows = []
            now = {}
            if rows and rows[0].startswith("# "):
                head = rows[0][2:].split(",")
                for r in rows[1:]:
                    f = dict(zip(head, r.split(",")))
                    if f.get("pxname") == "be" and f.get("svname", "").startswith("i-"):
                        now[f["svname"]] = f.get("status", "")
                for i, st in now.items():
                    if srv.get(i) != st:
                        rec(ev="lb", id=i, status=st)
                for i in set(srv) - set(now):
                    rec(ev="lb", id=i, status="GONE")
                srv = now
            time.sleep(max(0.0, 0.1 - (time.time() - t0)))


def report(events_path, samples_path, rise, interval):
    evs = [json.loads(l) for l in open(events_path) if l.startswith("{") and '"time"' in l]
    ms = lambda e: int(datetime.datetime.fromisoformat(e["time"].replace("Z", "+00:00")).timestamp() * 1000)
    smp = [json.loads(l) for l in open(samples_path)] if os.path.exists(samples_path) else []
    first = {}
    for s in smp:
        key = (s["ev"], s["id"], s.get("status", ""))
        first.setdefault(key, s["t"])

    def lb_first(i, prefix):
        c = [s["t"] for s in smp if s["ev"] == "lb" and s["id"] == i and s["status"].startswith(prefix)]
        return min(c) if c else None

    batches, cur = [], None
    for e in evs:
        m = e.get("message", "")
        if re.match(r"batch \d+/\d+: launching", m):
            cur = {"start": ms(e)}
            batches.append(cur)
        elif cur is None:
            continue
        elif e["event"] == "resource" and e.get("action") == "launched" and e.get("kind") == "instance":
            cur.setdefault("id", e["id"])
            cur.setdefault("launched", ms(e))
        elif e["event"] == "instance" and e.get("state") == "running" and e.get("id") == cur.get("id"):
            cur.setdefault("running", ms(e))
        elif e["event"] == "resource" and e.get("action") == "registered" and e.get("id") == cur.get("id"):
            cur.setdefault("registered", ms(e))
        elif e["event"] == "health" and e.get("health") == "healthy" and e.get("id") == cur.get("id"):
            cur.setdefault("healthy", ms(e))
        elif e["event"] == "resource" and e.get("action") == "deregistered":
            cur.setdefault("deregistered", ms(e))
            cur.setdefault("old", e["id"])
        elif "drained and removed" in m or "drain timeout" in m:
            cur.setdefault("drained", ms(e))
        elif m.startswith("terminating") or m.startswith("batch ") and "launching" in m:
            pass
    end = ms(evs[-1])
    for i, b in enumerate(batches):
        b["end"] = batches[i + 1]["start"] if i + 1 < len(batches) else next(
            (ms(e) for e in evs if e.get("message", "").startswith("terminating")), end)
        iid = b.get("id")
        b["ssh"] = first.get(("ssh", iid, ""))
        b["app"] = first.get(("app", iid, ""))
        b["lb_up"] = lb_first(iid, "UP")
        old = b.get("old")
        b["lb_drain"] = lb_first(old, "DRAIN") if old else None
        b["lb_gone"] = lb_first(old, "GONE") if old else None
        if b["lb_gone"] is None and old:
            b["lb_gone"] = lb_first(old, "MAINT")

    def d(b, a, z):
        if b.get(a) is None or b.get(z) is None:
            return "  -  "
        return "%5.2f" % ((b[z] - b[a]) / 1000.0)

    cols = [
        ("launch call", "start", "launched"),
        ("boot>sshd", "launched", "ssh"),
        ("sshd>seen running", "ssh", "running"),
        ("running>registered", "running", "registered"),
        ("launch>app answers", "launched", "app"),
        ("registered>app", "registered", "app"),
        ("app>HAProxy UP", "app", "lb_up"),
        ("registered>UP", "registered", "lb_up"),
        ("UP>seen healthy", "lb_up", "healthy"),
        ("healthy>deregistered", "healthy", "deregistered"),
        ("drain (HAProxy)", "lb_drain", "lb_gone"),
        ("deregistered>seen drained", "deregistered", "drained"),
        ("drained>next batch", "drained", "end"),
        ("batch total", "start", "end"),
    ]
    print("    %-26s %s" % ("per batch, s", " ".join("%5d" % (i + 1) for i in range(len(batches)))))
    for name, a, z in cols:
        print("    %-26s %s" % (name, " ".join(d(b, a, z) for b in batches)))
    crit = rise * interval
    over = [((b["end"] - b["start"]) / 1000.0 - crit - ((b.get("drained") or 0) - (b.get("deregistered") or 0)) / 1000.0)
            for b in batches]
    print("    %-26s %s" % ("over rise x interval+drain", " ".join("%5.2f" % o for o in over)))


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "sample":
        sample(sys.argv[2], sys.argv[3], sys.argv[4])
    elif len(sys.argv) == 6 and sys.argv[1] == "report":
        report(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        sys.exit(__doc__)
