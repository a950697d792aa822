#!/usr/bin/env python3
"""kiln's test front: a fault-injecting HTTP front between kiln and moto_server.

moto (5.2.1) emulates EC2, ELB, ELBv2, SSM and STS, but it has no faults, no
delays, no real health checks, no throttling and no RunInstances ClientToken
idempotency. kiln's end-to-end suites and benchmarks run through this front,
which forwards every request to moto and adds those behaviours as configured
per scenario. Python 3.11 standard library only (it runs with the pyenv
python3 that also runs moto). tests/front/README.md documents every
configuration key, the control API and how to run it by hand.

    python3 tests/front/front.py --listen 127.0.0.1:0 \\
        --upstream http://127.0.0.1:MOTOPORT [--config FILE] [--log FILE]

prints "ready PORT" once listening and stops cleanly on SIGTERM/SIGINT.
Control API on the same port (never forwarded): POST/PATCH/GET /__front/config,
GET /__front/stats, POST /__front/reset, POST /__front/clock, GET /__front/state.

Service comes from the SigV4 credential scope (Authorization header or
X-Amz-Credential); action from the form body / query string `Action=`
(Query protocol) or from `X-Amz-Target` (JSON protocol). Classic ELB and
ELBv2 share the scope "elasticloadbalancing"; their action names tell them
apart where the front cares (RegisterTargets vs RegisterInstancesWithLoadBalancer).

Throttling buckets ("buckets", issue 6)
---------------------------------------
EC2 throttles per account and region with token buckets (EC2 developer guide,
"Request throttling for the Amazon EC2 API"): a request takes one token from its
bucket; an empty bucket answers RequestLimitExceeded (HTTP 503); buckets refill at
a fixed rate per second up to their size. The front maps an EC2 action to a
bucket, first match wins:

  1. an entry named after the action itself ("RunInstances", "CreateTags", ...);
  2. "resource_intensive", if configured, for the actions listed in the
     `resource_intensive_actions` key (default: our reading of EC2's
     resource-intensive list, which names actions such as
     AuthorizeSecurityGroupIngress, CreateKeyPair, RequestSpotInstances; the
     full table could not be fetched here, so the list is configurable);
  3. non-mutating actions (names starting Describe, Get, List or Search):
     "unfiltered", if configured, when the request has no Filter.*, no id list
     and no MaxResults/NextToken (EC2's "unfiltered and unpaginated
     non-mutating" class), otherwise "describe";
  4. every other action: "mutating".

Other services are only throttled by entries named "service:Action" or
"service:*" (e.g. "elasticloadbalancing:DescribeTargetHealth"), answered in that
service's own throttling shape. With `bucket_scope` "class" (the default) all
actions that map to one class share its bucket, as issue 6 describes kiln's
client-side buckets; with "action" each action gets its own bucket of its
class's size, as EC2's current documentation describes ("each API is evaluated
individually"), which is the more lenient of the two. `resource_buckets`
adds EC2's resource-rate buckets, costing one token per instance:
RunInstances costs MaxCount, Start/Stop/TerminateInstances one per InstanceId
(EC2 documents 1000/2, 1000/2, 1000/20, 1000/20).
"""

import argparse
import collections
import copy
import datetime
import http.client
import http.server
import json
import random
import re
import signal
import socket
import struct
import sys
import threading
import time
import urllib.parse
import uuid
from xml.sax.saxutils import escape as xml_escape

# ---------------------------------------------------------------- config

FAULTS_BEFORE = ("throttle", "500", "503", "drop", "reset", "latency")
FAULTS_AFTER = ("lost_response",)

# Our reading of EC2's "resource-intensive actions" (see the module docstring).
RESOURCE_INTENSIVE_DEFAULT = [
    "AcceptVpcPeeringConnection", "AuthorizeSecurityGroupIngress",
    "CancelSpotFleetRequests", "CreateKeyPair", "CreateManagedPrefixList",
    "DeleteManagedPrefixList", "ModifyImageAttribute", "ModifyManagedPrefixList",
    "ModifySnapshotAttribute", "RequestSpotFleet", "RequestSpotInstances",
]

DEFAULTS = {
    "seed": 0,
    "fault_rate": 0.0,
    "faults_before": ["throttle", "500", "drop", "latency"],
    "faults_after": ["lost_response"],
    "fault_split": 0.5,
    "fault_actions": None,
    "fault_script": [],
    "latency_ms": 300,
    "base_latency_ms": 0,
    "client_token_idempotency": True,
    "dependency_violation_s": 0,
    "pending_s": 0,
    "image_pending_s": 0,
    "stopping_s": 0,
    "shutting_down_s": 0,
    "health": {
        "initial_s": 0,
        "unhealthy_instances": [],
        "unhealthy_images": [],
        "draining_s": 0,
    },
    "buckets": {},
    "bucket_scope": "class",
    "resource_buckets": {},
    "resource_intensive_actions": RESOURCE_INTENSIVE_DEFAULT,
    "max_body_bytes": 64 << 20,
    "upstream_timeout_s": 60,
}


class ConfigError(ValueError):
    pass


def _number(v, key, lo=0.0, hi=None):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(f"config key '{key}' must be a number")
    if v < lo or (hi is not None and v > hi):
        rng = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ConfigError(f"config key '{key}' must be {rng}")
    return v


def _strings(v, key, allowed=None):
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        raise ConfigError(f"config key '{key}' must be a list of strings")
    if allowed is not None:
        for s in v:
            if s not in allowed:
                raise ConfigError(f"config key '{key}': unknown kind '{s}' "
                                  f"(one of {', '.join(allowed)})")
    return list(v)


def _bucket_map(v, key):
    if not isinstance(v, dict):
        raise ConfigError(f"config key '{key}' must be an object")
    out = {}
    for name, pair in v.items():
        if (not isinstance(pair, list) or len(pair) != 2):
            raise ConfigError(f"config key '{key}.{name}' must be [burst, refill_per_s]")
        burst = _number(pair[0], f"{key}.{name}[0]", lo=1)
        rate = _number(pair[1], f"{key}.{name}[1]", lo=0)
        out[name] = [burst, rate]
    return out


def _script(v, key):
    if not isinstance(v, list):
        raise ConfigError(f"config key '{key}' must be a list")
    out = []
    for i, r in enumerate(v):
        where = f"{key}[{i}]"
        if not isinstance(r, dict):
            raise ConfigError(f"{where} must be an object")
        extra = set(r) - {"action", "fault", "count", "skip"}
        if extra:
            raise ConfigError(f"{where}: unknown key '{sorted(extra)[0]}'")
        action = r.get("action", "*")
        fault = r.get("fault")
        if not isinstance(action, str):
            raise ConfigError(f"{where}.action must be a string")
        if fault not in FAULTS_BEFORE + FAULTS_AFTER:
            raise ConfigError(f"{where}.fault must be one of "
                              f"{', '.join(FAULTS_BEFORE + FAULTS_AFTER)}")
        out.append({"action": action, "fault": fault,
                    "count": int(_number(r.get("count", 1), where + ".count")),
                    "skip": int(_number(r.get("skip", 0), where + ".skip"))})
    return out


def _health(v, key, base):
    if not isinstance(v, dict):
        raise ConfigError(f"config key '{key}' must be an object")
    out = copy.deepcopy(base)
    for k, x in v.items():
        if k not in DEFAULTS["health"]:
            raise ConfigError(f"unknown config key '{key}.{k}'")
        if k in ("initial_s", "draining_s"):
            out[k] = _number(x, f"{key}.{k}")
        else:
            out[k] = _strings(x, f"{key}.{k}")
    return out


def _bool(v, key):
    if not isinstance(v, bool):
        raise ConfigError(f"config key '{key}' must be true or false")
    return v


def parse_config(obj, base=None):
    """Validate obj over base (DEFAULTS when None): keys absent keep base's values."""
    if not isinstance(obj, dict):
        raise ConfigError("config must be a JSON object")
    cfg = copy.deepcopy(base if base is not None else DEFAULTS)
    for k, v in obj.items():
        if k not in DEFAULTS:
            raise ConfigError(f"unknown config key '{k}'")
        if k == "seed":
            if isinstance(v, bool) or not isinstance(v, int):
                raise ConfigError("config key 'seed' must be an integer")
            cfg[k] = v
        elif k in ("fault_rate", "fault_split"):
            cfg[k] = _number(v, k, 0.0, 1.0)
        elif k == "faults_before":
            cfg[k] = _strings(v, k, FAULTS_BEFORE)
        elif k == "faults_after":
            cfg[k] = _strings(v, k, FAULTS_AFTER)
        elif k == "fault_actions":
            cfg[k] = None if v is None else _strings(v, k)
        elif k == "fault_script":
            cfg[k] = _script(v, k)
        elif k in ("buckets", "resource_buckets"):
            cfg[k] = _bucket_map(v, k)
        elif k == "bucket_scope":
            if v not in ("class", "action"):
                raise ConfigError("config key 'bucket_scope' must be 'class' or 'action'")
            cfg[k] = v
        elif k == "resource_intensive_actions":
            cfg[k] = _strings(v, k)
        elif k == "client_token_idempotency":
            cfg[k] = _bool(v, k)
        elif k == "health":
            cfg[k] = _health(v, k, cfg["health"] if base is not None else DEFAULTS["health"])
        elif k in ("max_body_bytes", "upstream_timeout_s"):
            cfg[k] = _number(v, k, lo=1)
        else:  # the remaining keys are durations (ms or s)
            cfg[k] = _number(v, k)
    return cfg


# ---------------------------------------------------------------- small helpers


class BoundedDict(collections.OrderedDict):
    """Insertion-ordered dict that forgets its oldest entries past `limit`:
    every table of simulated state is one of these, so memory stays bounded
    however long a benchmark runs."""

    def __init__(self, limit):
        super().__init__()
        self.limit = limit

    def __setitem__(self, key, value):
        if key in self:
            self.move_to_end(key)
        super().__setitem__(key, value)
        while len(self) > self.limit:
            self.popitem(last=False)


class Bucket:
    """EC2-style token bucket; `now` is the front's clock (see Front.now)."""

    def __init__(self, burst, rate, now):
        self.burst = float(burst)
        self.rate = float(rate)
        self.tokens = float(burst)
        self.t = now

    def take(self, n, now):
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.t) * self.rate)
        self.t = now
        n = min(float(n), self.burst)  # a request bigger than the bucket waits for a full one
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False

    def level(self, now):
        return min(self.burst, self.tokens + max(0.0, now - self.t) * self.rate)


_SCOPE = re.compile(r"Credential=([^/,\s]+)/(\d{8})/([^/,\s]+)/([^/,\s]+)/aws4_request")


def service_of(headers, query):
    auth = headers.get("Authorization", "")
    m = _SCOPE.search(auth)
    if m:
        return m.group(4)
    cred = query.get("X-Amz-Credential")
    if cred:
        parts = cred.split("/")
        if len(parts) >= 5:
            return parts[3]
    return None


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def http_date():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%a, %d %b %Y %H:%M:%S GMT")


# Instance state codes (EC2 InstanceState).
STATE_CODE = {"pending": 0, "running": 16, "shutting-down": 32, "terminated": 48,
              "stopping": 64, "stopped": 80}

# ---------------------------------------------------------------- XML scanning
#
# moto's replies are rewritten in place, element by element, rather than parsed
# and re-serialised: ElementTree would rename the default namespace to ns0:
# prefixes and change bytes nobody asked to change. These bodies are well-formed
# machine output (no CDATA, no comments in the parts we touch), so a tag scanner
# that tracks depth finds exact element boundaries.

_TAG = re.compile(r"<(/?)([A-Za-z_][\w.:-]*)(?:\s[^>]*?)?(/?)>")


class El:
    __slots__ = ("name", "start", "cstart", "cend", "end")

    def __init__(self, name, start, cstart, cend, end):
        self.name, self.start, self.cstart, self.cend, self.end = name, start, cstart, cend, end


def _local(name):
    return name.rsplit(":", 1)[-1]


def _close_of(text, name, pos, end):
    """(start, end) of the tag closing the element `name` opened just before pos.
    Skips the subtree with C-speed str.find instead of visiting every tag in it:
    a 1000-instance DescribeInstances reply holds a quarter of a million tags."""
    close = "</" + name + ">"
    opening = "<" + name
    depth = 1
    while True:
        c = text.find(close, pos, end)
        if c < 0:
            return end, end  # not well-formed: treat the rest as content
        o = text.find(opening, pos, c)
        while o >= 0:
            nxt = text[o + len(opening):o + len(opening) + 1]
            if nxt in (">", " ", "\t", "\n", "\r", "/"):
                gt = text.find(">", o, c)
                if gt >= 0 and text[gt - 1] != "/":
                    depth += 1
                pos = o + len(opening)
                o = text.find(opening, pos, c)
            else:
                o = text.find(opening, o + len(opening), c)
        depth -= 1
        if depth == 0:
            return c, c + len(close)
        pos = c + len(close)


def children(text, start, end):
    """Direct child elements within text[start:end] (an element's content)."""
    out = []
    pos = start
    while True:
        m = _TAG.search(text, pos, end)
        if m is None:
            break
        closing, name, selfclose = m.group(1), m.group(2), m.group(3)
        if closing:  # a stray closing tag: the region ends here
            break
        if selfclose:
            out.append(El(_local(name), m.start(), m.end(), m.end(), m.end()))
            pos = m.end()
            continue
        cend, eend = _close_of(text, name, m.end(), end)
        out.append(El(_local(name), m.start(), m.end(), cend, eend))
        pos = eend
    return out


def root_of(text):
    kids = children(text, 0, len(text))
    return kids[0] if kids else None


def child(text, el, name):
    if el is None:
        return None
    for c in children(text, el.cstart, el.cend):
        if c.name == name:
            return c
    return None


def kids(text, el):
    """{name: first direct child of that name}: one scan for several lookups."""
    out = {}
    if el is not None:
        for c in children(text, el.cstart, el.cend):
            out.setdefault(c.name, c)
    return out


def path(text, el, *names):
    for n in names:
        el = child(text, el, n)
        if el is None:
            return None
    return el


def text_of(text, el):
    if el is None:
        return None
    return text[el.cstart:el.cend]


def apply_edits(text, edits):
    """edits: (start, end, replacement), non-overlapping."""
    if not edits:
        return text
    out = []
    pos = 0
    for s, e, r in sorted(edits, key=lambda x: x[0]):
        out.append(text[pos:s])
        out.append(r)
        pos = e
    out.append(text[pos:])
    return "".join(out)


# ---------------------------------------------------------------- request params


def indexed_values(params, prefix, suffix=""):
    """Values of params named PREFIX.N[SUFFIX] (Query-protocol lists), in N order."""
    out = []
    pat = re.compile(re.escape(prefix) + r"\.(\d+)" + re.escape(suffix) + r"$")
    for k, v in params:
        m = pat.match(k)
        if m:
            out.append((int(m.group(1)), v))
    return [v for _, v in sorted(out)]


def filter_values(params, filter_name):
    """Values of the EC2 Filter named filter_name, or None when absent."""
    found = None
    names = {}
    for k, v in params:
        m = re.match(r"Filter\.(\d+)\.Name$", k)
        if m:
            names[m.group(1)] = v
    for idx, n in names.items():
        if n == filter_name:
            found = (found or []) + indexed_values(params, f"Filter.{idx}.Value")
    return found


def widen_filter(params, filter_name, extra):
    """Add values to a Filter (so moto returns what the front will then relabel)."""
    names = {}
    for k, v in params:
        m = re.match(r"Filter\.(\d+)\.Name$", k)
        if m and v == filter_name:
            names[m.group(1)] = True
    out = list(params)
    for idx in names:
        have = indexed_values(params, f"Filter.{idx}.Value")
        nums = [int(re.match(rf"Filter\.{idx}\.Value\.(\d+)$", k).group(1))
                for k, _ in params if re.match(rf"Filter\.{idx}\.Value\.(\d+)$", k)]
        n = max(nums, default=0)
        for x in extra:
            if x not in have:
                n += 1
                out.append((f"Filter.{idx}.Value.{n}", x))
    return out


# ---------------------------------------------------------------- error bodies


def error_reply(shape, kind_code, status, message, sender=True):
    rid = str(uuid.uuid4())
    if shape == "json":
        body = json.dumps({"__type": kind_code, "message": message}).encode()
        headers = [("Content-Type", "application/x-amz-json-1.1"),
                   ("x-amzn-RequestId", rid), ("x-amzn-ErrorType", kind_code)]
    elif shape == "ec2":
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
                f"<Code>{xml_escape(kind_code)}</Code><Message>{xml_escape(message)}</Message>"
                f"</Error></Errors><RequestID>{rid}</RequestID></Response>").encode()
        headers = [("Content-Type", "text/xml;charset=UTF-8")]
    else:
        typ = "Sender" if sender else "Receiver"
        body = ("<ErrorResponse><Error>"
                f"<Type>{typ}</Type><Code>{xml_escape(kind_code)}</Code>"
                f"<Message>{xml_escape(message)}</Message></Error>"
                f"<RequestId>{rid}</RequestId></ErrorResponse>").encode()
        headers = [("Content-Type", "text/xml"), ("x-amzn-RequestId", rid)]
    return status, headers, body


def shape_of(req):
    if req.target:
        return "json"
    if req.service == "ec2":
        return "ec2"
    return "query"


def throttle_reply(req):
    shape = shape_of(req)
    if shape == "ec2":
        return error_reply(shape, "RequestLimitExceeded", 503, "Request limit exceeded.")
    if shape == "json":
        return error_reply(shape, "ThrottlingException", 400, "Rate exceeded")
    return error_reply(shape, "Throttling", 400, "Rate exceeded")


def internal_reply(req, status):
    shape = shape_of(req)
    if status == 503:
        code = {"ec2": "Unavailable", "json": "ServiceUnavailable"}.get(shape, "ServiceUnavailable")
        msg = "The server is overloaded and can't handle the request."
    else:
        code = {"ec2": "InternalError", "json": "InternalServerError"}.get(shape, "InternalFailure")
        msg = "An internal error has occurred."
    return error_reply(shape, code, status, msg, sender=False)


# ---------------------------------------------------------------- the front


class Request:
    """What the front knows about one AWS request."""

    def __init__(self, method, path, headers, body):
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        split = urllib.parse.urlsplit(path)
        self.query = dict(urllib.parse.parse_qsl(split.query, keep_blank_values=True))
        self.service = service_of(headers, self.query) or "unknown"
        self.target = headers.get("X-Amz-Target")
        self.params = []
        self.action = None
        if self.target:
            self.action = self.target.rsplit(".", 1)[-1]
        else:
            ctype = headers.get("Content-Type", "")
            if body and "x-www-form-urlencoded" in ctype:
                try:
                    self.params = urllib.parse.parse_qsl(body.decode("utf-8"),
                                                         keep_blank_values=True)
                except UnicodeDecodeError:
                    self.params = []
            if not self.params and split.query:
                self.params = urllib.parse.parse_qsl(split.query, keep_blank_values=True)
            for k, v in self.params:
                if k == "Action":
                    self.action = v
                    break
        self.action = self.action or "-"
        self.key = f"{self.service}:{self.action}"
        self.pmap = {}
        for k, v in self.params:
            self.pmap.setdefault(k, v)


class Front:
    def __init__(self, upstream, cfg):
        u = urllib.parse.urlsplit(upstream)
        if u.scheme != "http" or not u.hostname:
            raise ValueError(f"upstream must be http://HOST:PORT, not '{upstream}'")
        self.up_host = u.hostname
        self.up_port = u.port or 80
        self.lock = threading.RLock()
        self.log_lock = threading.Lock()
        self.log_file = None
        self.inflight = threading.BoundedSemaphore(64)
        self.clock_offset = 0.0
        self.set_config(cfg)
        self.reset()

    # ---- configuration and state

    def now(self):
        """The clock of every simulated window and bucket: monotonic time plus
        what POST /__front/clock has added, so a test can jump past a window
        instead of sleeping through it."""
        return time.monotonic() + self.clock_offset

    def advance(self, seconds):
        with self.lock:
            self.clock_offset += seconds
            return self.clock_offset

    def set_config(self, cfg):
        with self.lock:
            self.cfg = cfg
            self.rng = random.Random(cfg["seed"])
            self.script = [dict(r, seen=0, used=0) for r in cfg["fault_script"]]
            self.buckets = {}
            self.rbuckets = {}

    def reset(self):
        with self.lock:
            self.stats = {"requests": collections.Counter(), "forwarded": collections.Counter(),
                          "faults": collections.Counter(), "throttled_by_action": collections.Counter(),
                          "bucket_tokens": collections.Counter(), "throttled": 0, "total": 0, "total_forwarded": 0,
                          "client_token_replays": 0}
            self.rng = random.Random(self.cfg["seed"])
            self.script = [dict(r, seen=0, used=0) for r in self.cfg["fault_script"]]
            self.buckets = {}
            self.rbuckets = {}
            self.clock_offset = 0.0
            lim = 200000
            self.launched = BoundedDict(lim)      # instance id -> monotonic launch time
            self.stopped = BoundedDict(lim)       # instance id -> time of StopInstances
            self.terminated = BoundedDict(lim)    # instance id -> time of TerminateInstances
            self.image_of = BoundedDict(lim)      # instance id -> AMI id
            self.image_created = BoundedDict(lim)  # AMI id -> time of CreateImage/CopyImage
            self.sg_first = BoundedDict(lim)      # group id/name -> first DeleteSecurityGroup
            self.tokens = BoundedDict(50000)      # (action, token) -> {lock, reply, sig}
            self.token_bytes = 0
            # ELBv2: target group ARN -> {target id: {"port", "t"}}; classic: LB name -> {...}
            self.tg_reg = BoundedDict(10000)
            self.tg_drain = BoundedDict(10000)
            self.tg_port = BoundedDict(10000)     # target group ARN -> its port
            self.lb_reg = BoundedDict(10000)
            self.lb_drain = BoundedDict(10000)
            self.lb_gone = BoundedDict(10000)     # classic: deregistered and drained

    def snapshot_stats(self):
        with self.lock:
            s = self.stats
            return {"requests": dict(s["requests"]), "forwarded": dict(s["forwarded"]),
                    "faults": dict(s["faults"]), "throttled": s["throttled"],
                    "throttled_by_action": dict(s["throttled_by_action"]),
                    "bucket_tokens": {k: round(v, 3) for k, v in s["bucket_tokens"].items()},
                    "total": s["total"], "total_forwarded": s["total_forwarded"],
                    "client_token_replays": s["client_token_replays"]}

    def snapshot_state(self):
        with self.lock:
            now = self.now()
            return {
                "buckets": {"/".join(k) if isinstance(k, tuple) else k: round(b.level(now), 3)
                            for k, b in self.buckets.items()},
                "resource_buckets": {k: round(b.level(now), 3) for k, b in self.rbuckets.items()},
                "instances_launched": len(self.launched),
                "client_tokens": len(self.tokens),
                "client_token_bytes": self.token_bytes,
                "target_groups": {arn: {t: {"port": r["port"], "age_s": round(now - r["t"], 3)}
                                        for t, r in regs.items()}
                                  for arn, regs in self.tg_reg.items()},
                "draining": {arn: {t: round(now - r["t"], 3) for t, r in d.items()}
                             for arn, d in self.tg_drain.items()},
                "classic": {lb: sorted(regs) for lb, regs in self.lb_reg.items()},
                "classic_draining": {lb: {t: round(now - r["t"], 3) for t, r in d.items()}
                                     for lb, d in self.lb_drain.items()},
            }

    def open_log(self, path):
        self.log_file = open(path, "a", buffering=1, encoding="utf-8")

    def log(self, req, fault, status, t0, forwarded, extra=None):
        if not self.log_file:
            return
        rec = {"time": now_iso(), "service": req.service, "action": req.action,
               "fault": fault, "status": status,
               "ms": round((time.monotonic() - t0) * 1000.0, 2), "forwarded": forwarded}
        if extra:
            rec.update(extra)
        line = json.dumps(rec, separators=(",", ":")) + "\n"
        with self.log_lock:
            try:
                self.log_file.write(line)
            except (OSError, ValueError):
                pass

    # ---- decisions

    def _matches(self, pattern, req):
        if pattern == "*":
            return True
        if ":" in pattern:
            svc, act = pattern.split(":", 1)
            return svc == req.service and act in ("*", req.action)
        return pattern == req.action

    def pick_fault(self, req):
        with self.lock:
            fired = None
            for r in self.script:
                if self._matches(r["action"], req):
                    r["seen"] += 1
                    if fired is None and r["seen"] > r["skip"] and r["used"] < r["count"]:
                        r["used"] += 1
                        fired = r["fault"]
            if fired:
                return fired
            cfg = self.cfg
            if cfg["fault_rate"] <= 0:
                return None
            allow = cfg["fault_actions"]
            if allow is not None and not any(self._matches(p, req) for p in allow):
                return None
            if self.rng.random() >= cfg["fault_rate"]:
                return None
            before, after = cfg["faults_before"], cfg["faults_after"]
            side = before if self.rng.random() < cfg["fault_split"] else after
            side = side or before or after
            if not side:
                return None
            return self.rng.choice(side)

    def _bucket_class(self, req):
        buckets = self.cfg["buckets"]
        if req.service != "ec2":
            for name in (req.key, f"{req.service}:*"):
                if name in buckets:
                    return name
            return None
        a = req.action
        for name in (a, req.key):
            if name in buckets:
                return name
        if "resource_intensive" in buckets and a in self.cfg["resource_intensive_actions"]:
            return "resource_intensive"
        if a.startswith(("Describe", "Get", "List", "Search")):
            if "unfiltered" in buckets:
                filtered = any(k.startswith("Filter.") or k in ("MaxResults", "NextToken")
                               or re.search(r"Id(s)?(\.\d+)?$", k) or re.search(r"\.\d+$", k)
                               for k, _ in req.params)
                if not filtered:
                    return "unfiltered"
            return "describe" if "describe" in buckets else None
        return "mutating" if "mutating" in buckets else None

    def _resource_cost(self, req):
        a = req.action
        if a == "RunInstances":
            try:
                return max(1, int(req.pmap.get("MaxCount", "1")))
            except ValueError:
                return 1
        if a in ("StartInstances", "StopInstances", "TerminateInstances"):
            return max(1, len(indexed_values(req.params, "InstanceId")))
        return 1

    def take_tokens(self, req):
        """False when a configured bucket is empty (the request is throttled)."""
        with self.lock:
            cls = self._bucket_class(req)
            if cls is not None:
                burst, rate = self.cfg["buckets"][cls]
                key = (cls, req.action) if self.cfg["bucket_scope"] == "action" else cls
                b = self.buckets.get(key)
                if b is None:
                    b = self.buckets[key] = Bucket(burst, rate, self.now())
                if not b.take(1, self.now()):
                    return False, cls
                # what each bucket gave, so a benchmark can compute the least time
                # the buckets allow for the calls a run made
                self.stats["bucket_tokens"]["/".join(key) if isinstance(key, tuple) else key] += 1
            if req.service == "ec2" and req.action in self.cfg["resource_buckets"]:
                b = self.rbuckets.get(req.action)
                if b is None:
                    burst, rate = self.cfg["resource_buckets"][req.action]
                    b = self.rbuckets[req.action] = Bucket(burst, rate, self.now())
                cost = self._resource_cost(req)
                if not b.take(cost, self.now()):
                    return False, "resource:" + req.action
                self.stats["bucket_tokens"]["resource:" + req.action] += min(float(cost), b.burst)
            return True, cls

    # ---- forwarding

    HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
           "trailer", "upgrade", "expect", "content-length", "host"}

    def forward(self, method, path, headers, body):
        """Send to moto; returns (status, reason, headers, body). Raises OSError/HTTPException."""
        conn = http.client.HTTPConnection(self.up_host, self.up_port,
                                          timeout=self.cfg["upstream_timeout_s"])
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            host = headers.get("Host") or f"{self.up_host}:{self.up_port}"
            conn.putheader("Host", host)
            for k, v in headers.items():
                if k.lower() not in self.HOP:
                    conn.putheader(k, v)
            if body or method in ("POST", "PUT", "PATCH"):
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body if body else None)
            resp = conn.getresponse()
            cap = self.cfg["max_body_bytes"]
            chunks, n = [], 0
            while True:
                c = resp.read(65536)
                if not c:
                    break
                n += len(c)
                if n > cap:
                    raise http.client.HTTPException("upstream body larger than max_body_bytes")
                chunks.append(c)
            rh = [(k, v) for k, v in resp.getheaders()
                  if k.lower() not in self.HOP and k.lower() not in ("date", "server")]
            return resp.status, resp.reason, rh, b"".join(chunks)
        finally:
            conn.close()

    # ---- the pipeline

    def process(self, req):
        """Returns (reply, after, fault, forwarded, extra): reply = (status, headers, body)
        or None, after = None | "drop" | "reset"."""
        with self.lock:
            self.stats["requests"][req.key] += 1
            self.stats["total"] += 1
        cfg = self.cfg

        ok, cls = self.take_tokens(req)
        if not ok:
            with self.lock:
                self.stats["throttled"] += 1
                self.stats["throttled_by_action"][req.key] += 1
            return throttle_reply(req), None, "bucket", False, {"bucket": cls}

        fault = self.pick_fault(req)
        if fault:
            with self.lock:
                self.stats["faults"][fault] += 1
        if fault == "throttle":
            return throttle_reply(req), None, fault, False, None
        if fault in ("500", "503"):
            return internal_reply(req, int(fault)), None, fault, False, None
        if fault in ("drop", "reset"):
            return None, fault, fault, False, None
        if fault == "latency":
            time.sleep(cfg["latency_ms"] / 1000.0)
        if cfg["base_latency_ms"]:
            time.sleep(cfg["base_latency_ms"] / 1000.0)

        after = "drop" if fault == "lost_response" else None

        if req.service == "ec2" and req.action == "DeleteSecurityGroup":
            dv = self.dependency_violation(req)
            if dv:
                with self.lock:
                    self.stats["faults"]["dependency_violation"] += 1
                return dv, after, fault or "dependency_violation", False, None

        token = req.pmap.get("ClientToken") if req.service == "ec2" else None
        if token and cfg["client_token_idempotency"]:
            return self.idempotent(req, token, after, fault)

        reply, forwarded = self.forward_and_simulate(req)
        return reply, after, fault, forwarded, None

    def forward_and_simulate(self, req):
        body = self.rewrite_request(req)
        with self.inflight:
            try:
                status, reason, headers, rbody = self.forward(req.method, req.path,
                                                              req.headers, body)
            except (OSError, http.client.HTTPException) as e:
                st, h, b = internal_reply(req, 503)
                return (st, h + [("X-Front-Upstream-Error", str(e)[:200])], b), False
        with self.lock:
            self.stats["forwarded"][req.key] += 1
            self.stats["total_forwarded"] += 1
        if status == 200:
            try:
                rbody = self.simulate(req, rbody)
            except Exception as e:  # a rewrite bug must not take the request down
                sys.stderr.write(f"front: simulating {req.key} failed: {e!r}\n")
        return (status, headers, rbody), True

    def idempotent(self, req, token, after, fault):
        key = (req.action, token)
        sig = sorted(req.params)
        with self.lock:
            entry = self.tokens.get(key)
            if entry is None:
                entry = {"lock": threading.Lock(), "reply": None, "sig": None}
                self.tokens[key] = entry
        with entry["lock"]:
            if entry["reply"] is not None:
                if entry["sig"] != sig:
                    return (error_reply("ec2", "IdempotentParameterMismatch", 400,
                                        f"Idempotent parameter mismatch for token '{token}'"),
                            after, fault, False, None)
                with self.lock:
                    self.stats["client_token_replays"] += 1
                return entry["reply"], after, fault, False, {"replay": True}
            reply, forwarded = self.forward_and_simulate(req)
            if reply[0] == 200:
                entry["reply"] = reply
                entry["sig"] = sig
                with self.lock:
                    self.token_bytes += len(reply[2])
                    # Bound the cache by bytes as well as entries.
                    while self.token_bytes > 64 << 20 and len(self.tokens) > 1:
                        _, old = self.tokens.popitem(last=False)
                        if old["reply"] is not None:
                            self.token_bytes -= len(old["reply"][2])
            return reply, after, fault, forwarded, None

    def dependency_violation(self, req):
        window = self.cfg["dependency_violation_s"]
        if window <= 0:
            return None
        group = req.pmap.get("GroupId") or req.pmap.get("GroupName") or "?"
        now = self.now()
        with self.lock:
            first = self.sg_first.get(group)
            if first is None:
                self.sg_first[group] = first = now
        if now - first < window:
            return error_reply("ec2", "DependencyViolation", 400,
                               f"resource {group} has a dependent object")
        return None

    # ---- request rewriting: widen state filters so moto returns what we relabel

    def rewrite_request(self, req):
        body = req.body
        if req.service != "ec2" or req.target or not req.params:
            return body
        cfg = self.cfg
        extra = None
        if req.action in ("DescribeInstances", "DescribeInstanceStatus"):
            want = filter_values(req.params, "instance-state-name")
            if want is not None:
                extra = []
                if cfg["pending_s"] and "pending" in want:
                    extra.append("running")
                if cfg["stopping_s"] and "stopping" in want:
                    extra.append("stopped")
                if cfg["shutting_down_s"] and "shutting-down" in want:
                    extra.append("terminated")
                fname = "instance-state-name"
        elif req.action == "DescribeImages":
            want = filter_values(req.params, "state")
            if want is not None and cfg["image_pending_s"] and "pending" in want:
                extra = ["available"]
                fname = "state"
        if not extra or "x-www-form-urlencoded" not in req.headers.get("Content-Type", ""):
            return body
        params = widen_filter(req.params, fname, extra)
        return urllib.parse.urlencode(params, quote_via=urllib.parse.quote).encode()

    # ---- reply simulation

    def simulate(self, req, body):
        if req.service == "ec2":
            fn = {
                "RunInstances": self.sim_run_instances,
                "DescribeInstances": self.sim_describe_instances,
                "DescribeInstanceStatus": self.sim_describe_instance_status,
                "StopInstances": self.sim_stop_instances,
                "TerminateInstances": self.sim_terminate_instances,
                "CreateImage": self.sim_create_image,
                "CopyImage": self.sim_create_image,
                "DescribeImages": self.sim_describe_images,
            }.get(req.action)
        elif req.service == "elasticloadbalancing":
            fn = {
                "CreateTargetGroup": self.sim_target_groups,
                "DescribeTargetGroups": self.sim_target_groups,
                "RegisterTargets": self.sim_register_targets,
                "DeregisterTargets": self.sim_deregister_targets,
                "DescribeTargetHealth": self.sim_describe_target_health,
                "RegisterInstancesWithLoadBalancer": self.sim_register_instances,
                "DeregisterInstancesFromLoadBalancer": self.sim_deregister_instances,
                "DescribeInstanceHealth": self.sim_describe_instance_health,
            }.get(req.action)
        else:
            fn = None
        if fn is None:
            return body
        text = body.decode("utf-8")
        with self.lock:
            out = fn(req, text)
        return body if out is None else out.encode("utf-8")

    def _sim_instance_state(self, iid, state, now):
        cfg = self.cfg
        if state == "running":
            t = self.launched.get(iid)
            if t is not None and now - t < cfg["pending_s"]:
                return "pending"
        elif state == "stopped":
            t = self.stopped.get(iid)
            if t is not None and now - t < cfg["stopping_s"]:
                return "stopping"
        elif state == "terminated":
            t = self.terminated.get(iid)
            if t is not None and now - t < cfg["shutting_down_s"]:
                return "shutting-down"
        return state

    def _learn_instances(self, text, iset, now, launched):
        for it in children(text, iset.cstart, iset.cend):
            k = kids(text, it)
            iid = text_of(text, k.get("instanceId"))
            img = text_of(text, k.get("imageId"))
            if iid and img:
                self.image_of[iid] = img
            if iid and launched and iid not in self.launched:
                self.launched[iid] = now

    def sim_run_instances(self, req, text):
        root = root_of(text)
        iset = child(text, root, "instancesSet")
        if iset is not None:
            self._learn_instances(text, iset, self.now(), True)
        return None

    def _rewrite_state(self, text, st_el, new, edits):
        k = kids(text, st_el)
        code = k.get("code")
        name = k.get("name")
        if code is not None:
            edits.append((code.cstart, code.cend, str(STATE_CODE[new])))
        if name is not None:
            edits.append((name.cstart, name.cend, new))

    def _state_sim_active(self):
        c = self.cfg
        return (c["pending_s"] or c["stopping_s"] or c["shutting_down_s"]
                or c["health"]["unhealthy_images"])

    def _any_in_window(self, now):
        """Whether some instance is inside a simulated-state window. The tables
        are in time order, so only the newest entries are looked at."""
        c = self.cfg
        for table, window in ((self.launched, c["pending_s"]), (self.stopped, c["stopping_s"]),
                              (self.terminated, c["shutting_down_s"])):
            for t in reversed(table.values()):
                if now - t < window:
                    return True
                break
        return False

    def sim_describe_instances(self, req, text):
        if not self._state_sim_active():
            return None
        now = self.now()
        want = filter_values(req.params, "instance-state-name")
        if (want is None and not self.cfg["health"]["unhealthy_images"]
                and not self._any_in_window(now)):
            return None  # nothing to relabel or learn: leave a big reply alone
        root = root_of(text)
        rset = child(text, root, "reservationSet")
        if rset is None:
            return None
        edits = []
        for res in children(text, rset.cstart, rset.cend):
            iset = child(text, res, "instancesSet")
            if iset is None:
                continue
            inner, kept, dropped = [], 0, 0
            for it in children(text, iset.cstart, iset.cend):
                k = kids(text, it)
                iid = text_of(text, k.get("instanceId"))
                img = text_of(text, k.get("imageId"))
                if iid and img:
                    self.image_of[iid] = img
                st = k.get("instanceState")
                state = text_of(text, child(text, st, "name"))
                new = self._sim_instance_state(iid, state, now)
                if want is not None and new not in want:
                    inner.append((it.start, it.end, ""))
                    dropped += 1
                    continue
                kept += 1
                if new != state:
                    self._rewrite_state(text, st, new, inner)
            if dropped and not kept:
                edits.append((res.start, res.end, ""))
            else:
                edits.extend(inner)
        return apply_edits(text, edits) if edits else None

    def sim_describe_instance_status(self, req, text):
        if not (self.cfg["pending_s"] or self.cfg["stopping_s"] or self.cfg["shutting_down_s"]):
            return None
        now = self.now()
        include_all = req.pmap.get("IncludeAllInstances", "false").lower() == "true"
        want = filter_values(req.params, "instance-state-name")
        root = root_of(text)
        sset = child(text, root, "instanceStatusSet")
        if sset is None:
            return None
        edits = []
        for it in children(text, sset.cstart, sset.cend):
            k = kids(text, it)
            iid = text_of(text, k.get("instanceId"))
            st = k.get("instanceState")
            state = text_of(text, child(text, st, "name"))
            new = self._sim_instance_state(iid, state, now)
            if (want is not None and new not in want) or (new != "running" and not include_all):
                edits.append((it.start, it.end, ""))
            elif new != state:
                self._rewrite_state(text, st, new, edits)
        return apply_edits(text, edits) if edits else None

    def sim_stop_instances(self, req, text):
        now = self.now()
        for iid in indexed_values(req.params, "InstanceId"):
            self.stopped[iid] = now
        return None

    def sim_terminate_instances(self, req, text):
        now = self.now()
        for iid in indexed_values(req.params, "InstanceId"):
            if iid not in self.terminated:
                self.terminated[iid] = now
            # AWS deregisters a terminated instance from its target groups, which
            # then drain it; moto just drops it from the group.
            for arn, regs in self.tg_reg.items():
                r = regs.pop(iid, None)
                if r is not None:
                    self._drain_table(self.tg_drain, arn)[iid] = {"port": r["port"], "t": now}
        return None

    def sim_create_image(self, req, text):
        ami = text_of(text, child(text, root_of(text), "imageId"))
        if ami:
            self.image_created[ami] = self.now()
        return None

    def sim_describe_images(self, req, text):
        window = self.cfg["image_pending_s"]
        if not window:
            return None
        now = self.now()
        want = filter_values(req.params, "state")
        root = root_of(text)
        iset = child(text, root, "imagesSet")
        if iset is None:
            return None
        edits = []
        for it in children(text, iset.cstart, iset.cend):
            k = kids(text, it)
            ami = text_of(text, k.get("imageId"))
            st = k.get("imageState")
            state = text_of(text, st)
            new = state
            t = self.image_created.get(ami)
            if state == "available" and t is not None and now - t < window:
                new = "pending"
            if want is not None and new not in want:
                edits.append((it.start, it.end, ""))
            elif new != state:
                edits.append((st.cstart, st.cend, new))
        return apply_edits(text, edits) if edits else None

    # ---- load balancer health

    def _drain_table(self, table, key):
        d = table.get(key)
        if d is None:
            d = table[key] = {}
        return d

    def _reg_table(self, table, key):
        return self._drain_table(table, key)

    def _expire_drains(self, table, key, now):
        d = table.get(key)
        if not d:
            return {}
        window = self.cfg["health"]["draining_s"]
        for t in [t for t, r in d.items() if now - r["t"] >= window]:
            del d[t]
        return d

    def _health_verdict(self, target, reg_t, now):
        """None (leave moto's healthy), "initial" or "unhealthy"."""
        h = self.cfg["health"]
        if reg_t is not None and h["initial_s"]:
            start = reg_t
            launched = self.launched.get(target)
            if launched is not None:
                start = max(start, launched + self.cfg["pending_s"])
            if now - start < h["initial_s"]:
                return "initial"
        if target in h["unhealthy_instances"]:
            return "unhealthy"
        img = self.image_of.get(target)
        if img is not None and img in h["unhealthy_images"]:
            return "unhealthy"
        return None

    def sim_target_groups(self, req, text):
        # A group's port is the port of targets registered without one; the
        # draining entries the front adds to DescribeTargetHealth carry it.
        root = root_of(text)
        for res in ("CreateTargetGroupResult", "DescribeTargetGroupsResult"):
            groups = path(text, root, res, "TargetGroups")
            if groups is None:
                continue
            for m in children(text, groups.cstart, groups.cend):
                k = kids(text, m)
                arn = text_of(text, k.get("TargetGroupArn"))
                port = text_of(text, k.get("Port"))
                if arn and port:
                    self.tg_port[arn] = port
        return None

    def sim_register_targets(self, req, text):
        arn = req.pmap.get("TargetGroupArn")
        now = self.now()
        regs = self._reg_table(self.tg_reg, arn)
        drains = self._drain_table(self.tg_drain, arn)
        ids = indexed_values(req.params, "Targets.member", ".Id")
        ports = dict(zip(ids, indexed_values(req.params, "Targets.member", ".Port")))
        for t in ids:
            drains.pop(t, None)
            if t not in regs:
                regs[t] = {"port": ports.get(t) or self.tg_port.get(arn), "t": now}
        return None

    def sim_deregister_targets(self, req, text):
        arn = req.pmap.get("TargetGroupArn")
        now = self.now()
        regs = self._reg_table(self.tg_reg, arn)
        drains = self._drain_table(self.tg_drain, arn)
        ids = indexed_values(req.params, "Targets.member", ".Id")
        ports = dict(zip(ids, indexed_values(req.params, "Targets.member", ".Port")))
        for t in ids:
            r = regs.pop(t, None)
            port = ports.get(t) or (r["port"] if r else None) or self.tg_port.get(arn)
            if self.cfg["health"]["draining_s"] and t not in drains:
                drains[t] = {"port": port, "t": now}
        return None

    def sim_describe_target_health(self, req, text):
        arn = req.pmap.get("TargetGroupArn")
        now = self.now()
        drains = self._expire_drains(self.tg_drain, arn, now)
        regs = self.tg_reg.get(arn) or {}
        asked = indexed_values(req.params, "Targets.member", ".Id")
        root = root_of(text)
        descs = path(text, root, "DescribeTargetHealthResult", "TargetHealthDescriptions")
        if descs is None:
            return None
        edits, seen = [], set()
        for m in children(text, descs.cstart, descs.cend):
            k = kids(text, m)
            tk = kids(text, k.get("Target"))
            tid = text_of(text, tk.get("Id"))
            port = text_of(text, tk.get("Port"))
            if port and tid in regs and not regs[tid]["port"]:
                regs[tid]["port"] = port
            if port and tid in drains and not drains[tid]["port"]:
                drains[tid]["port"] = port
            seen.add(tid)
            th = k.get("TargetHealth")
            state = text_of(text, child(text, th, "State"))
            new = None
            if tid in drains and state in ("unused", "draining", None):
                new = ("draining", "Target.DeregistrationInProgress",
                       "Target deregistration is in progress")
            elif state == "draining" and tid in self.terminated and tid not in drains:
                # moto keeps a terminated target "draining" forever when asked by id.
                new = ("unused", "Target.NotRegistered",
                       "Target is not registered to the target group")
            elif state == "healthy":
                v = self._health_verdict(tid, regs[tid]["t"] if tid in regs else None, now)
                if v == "initial":
                    new = ("initial", "Elb.RegistrationInProgress",
                           "Target registration is in progress")
                elif v == "unhealthy":
                    new = ("unhealthy", "Target.FailedHealthChecks", "Health checks failed")
            if new and th is not None:
                edits.append((th.cstart, th.cend,
                              f"<State>{new[0]}</State><Reason>{new[1]}</Reason>"
                              f"<Description>{new[2]}</Description>"))
        if not asked:
            add = []
            for tid, r in drains.items():
                if tid in seen:
                    continue
                port = r["port"]
                ptag = f"<Port>{xml_escape(str(port))}</Port>" if port else ""
                add.append(f"<member><Target><Id>{xml_escape(tid)}</Id>{ptag}</Target>"
                           f"<HealthCheckPort>{xml_escape(str(port or 'traffic-port'))}"
                           "</HealthCheckPort><TargetHealth><State>draining</State>"
                           "<Reason>Target.DeregistrationInProgress</Reason>"
                           "<Description>Target deregistration is in progress</Description>"
                           "</TargetHealth></member>")
            if add:
                if descs.cstart == descs.cend and text[descs.start:descs.end].endswith("/>"):
                    edits.append((descs.start, descs.end,
                                  "<TargetHealthDescriptions>" + "".join(add)
                                  + "</TargetHealthDescriptions>"))
                else:
                    edits.append((descs.cend, descs.cend, "".join(add)))
        return apply_edits(text, edits) if edits else None

    # Classic ELB. Draining follows what classic ELB documents for connection
    # draining: a deregistered instance reports InService "Instance deregistration
    # currently in progress" for the draining time, then disappears from the list
    # (asked by id: OutOfService "Instance is not currently registered with the
    # LoadBalancer"; moto would say "Unknown").

    def sim_register_instances(self, req, text):
        lb = req.pmap.get("LoadBalancerName")
        now = self.now()
        regs = self._reg_table(self.lb_reg, lb)
        drains = self._drain_table(self.lb_drain, lb)
        gone = self._drain_table(self.lb_gone, lb)
        for iid in indexed_values(req.params, "Instances.member", ".InstanceId"):
            drains.pop(iid, None)
            gone.pop(iid, None)
            if iid not in regs:
                regs[iid] = {"port": None, "t": now}
        return None

    def sim_deregister_instances(self, req, text):
        lb = req.pmap.get("LoadBalancerName")
        now = self.now()
        regs = self._reg_table(self.lb_reg, lb)
        drains = self._drain_table(self.lb_drain, lb)
        gone = self._drain_table(self.lb_gone, lb)
        for iid in indexed_values(req.params, "Instances.member", ".InstanceId"):
            regs.pop(iid, None)
            gone[iid] = {"port": None, "t": now}
            if self.cfg["health"]["draining_s"] and iid not in drains:
                drains[iid] = {"port": None, "t": now}
        return None

    def sim_describe_instance_health(self, req, text):
        lb = req.pmap.get("LoadBalancerName")
        now = self.now()
        drains = self._expire_drains(self.lb_drain, lb, now)
        regs = self.lb_reg.get(lb) or {}
        gone = self.lb_gone.get(lb) or {}
        asked = indexed_values(req.params, "Instances.member", ".InstanceId")
        root = root_of(text)
        states = path(text, root, "DescribeInstanceHealthResult", "InstanceStates")
        if states is None:
            return None

        def member(iid, state, code, desc):
            return (f"<InstanceId>{xml_escape(iid)}</InstanceId><State>{state}</State>"
                    f"<ReasonCode>{code}</ReasonCode><Description>{desc}</Description>")

        edits, seen = [], set()
        for m in children(text, states.cstart, states.cend):
            k = kids(text, m)
            iid = text_of(text, k.get("InstanceId"))
            state = text_of(text, k.get("State"))
            seen.add(iid)
            new = None
            if iid in drains and state != "InService":
                new = member(iid, "InService", "N/A", "Instance deregistration currently in progress.")
            elif iid in gone and state == "Unknown":
                new = member(iid, "OutOfService", "ELB",
                             "Instance is not currently registered with the LoadBalancer.")
            elif state == "InService":
                v = self._health_verdict(iid, regs[iid]["t"] if iid in regs else None, now)
                if v == "initial":
                    new = member(iid, "OutOfService", "ELB",
                                 "Instance registration is still in progress.")
                elif v == "unhealthy":
                    new = member(iid, "OutOfService", "Instance",
                                 "Instance has failed at least the UnhealthyThreshold number "
                                 "of health checks consecutively.")
            if new:
                edits.append((m.cstart, m.cend, new))
        if not asked:
            add = "".join("<member>" + member(iid, "InService", "N/A",
                                                "Instance deregistration currently in progress.")
                          + "</member>" for iid in drains if iid not in seen)
            if add:
                if states.cstart == states.cend and text[states.start:states.end].endswith("/>"):
                    edits.append((states.start, states.end,
                                  "<InstanceStates>" + add + "</InstanceStates>"))
                else:
                    edits.append((states.cend, states.cend, add))
        return apply_edits(text, edits) if edits else None


# ---------------------------------------------------------------- HTTP


class BodyError(Exception):
    def __init__(self, status, msg):
        super().__init__(msg)
        self.status = status


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kiln-front/1"
    timeout = 120  # idle keep-alive connections do not hold a thread forever
    # Headers and body leave in one write and without Nagle: otherwise the
    # client's delayed ACK adds 40 ms to every reply.
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        self.serve()

    do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_GET

    @property
    def front(self):
        return self.server.front

    DISCARD_LIMIT = 1 << 30

    def discard(self, n):
        while n > 0:
            got = self.rfile.read(min(n, 1 << 16))
            if not got:
                raise BodyError(400, "short body")
            n -= len(got)

    def read_body(self):
        cap = self.front.cfg["max_body_bytes"]
        te = self.headers.get("Transfer-Encoding", "").lower()
        if "chunked" in te:
            chunks, n = [], 0
            while True:
                line = self.rfile.readline(1024)
                if not line.endswith(b"\n"):
                    raise BodyError(400, "bad chunk header")
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise BodyError(400, "bad chunk size")
                if size == 0:
                    while True:  # trailers, up to the blank line
                        t = self.rfile.readline(8192)
                        if t in (b"\r\n", b"\n", b""):
                            break
                    break
                n += size
                if n > cap:
                    # Read on but keep nothing, so the client gets to see the 413.
                    chunks = None
                    if n > self.DISCARD_LIMIT:
                        raise BodyError(413, "request body larger than max_body_bytes")
                    self.discard(size)
                else:
                    data = self.rfile.read(size)
                    if len(data) != size:
                        raise BodyError(400, "short chunk")
                    chunks.append(data)
                self.rfile.readline(8)
            if chunks is None:
                raise BodyError(413, "request body larger than max_body_bytes")
            return b"".join(chunks)
        length = self.headers.get("Content-Length")
        if not length:
            return b""
        try:
            n = int(length)
        except ValueError:
            raise BodyError(400, "bad Content-Length")
        if n < 0:
            raise BodyError(400, "bad Content-Length")
        if n > cap:
            if n <= self.DISCARD_LIMIT:
                self.discard(n)  # so the client, still sending, gets to read the 413
            raise BodyError(413, "request body larger than max_body_bytes")
        data = self.rfile.read(n)
        if len(data) != n:
            raise BodyError(400, "short body")
        return data

    def reply(self, status, headers, body, reason=None):
        self.send_response_only(status, reason)
        names = {k.lower() for k, _ in headers}
        for k, v in headers:
            if k.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(k, v)
        if "date" not in names:
            self.send_header("Date", http_date())
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        # end_headers() by hand, with the body in the same buffer.
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD" and body:
            self._headers_buffer.append(body)
        self.flush_headers()

    def reply_json(self, status, obj):
        self.reply(status, [("Content-Type", "application/json")],
                   (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())

    def hang_up(self, how):
        self.close_connection = True
        if how == "reset":
            # RST instead of FIN: the client sees "connection reset by peer".
            # The server closes the socket without its usual shutdown(), which
            # would send a FIN first.
            try:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
                self.server.mark_reset(self.connection)
            except OSError:
                pass
            return
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def serve(self):
        try:
            body = self.read_body()
        except BodyError as e:
            self.close_connection = True
            self.reply_json(e.status, {"error": str(e)})
            return
        if self.path.startswith("/__front/"):
            self.control(body)
            return
        front = self.front
        if self.path.startswith("/moto-api"):
            # moto's own API (reset, data.json): pass through, not an AWS call.
            try:
                st, reason, h, b = front.forward(self.command, self.path, self.headers, body)
            except (OSError, http.client.HTTPException) as e:
                self.reply_json(502, {"error": f"upstream: {e}"})
                return
            self.reply(st, h, b, reason)
            return
        t0 = time.monotonic()
        req = Request(self.command, self.path, self.headers, body)
        reply, after, fault, forwarded, extra = front.process(req)
        status = reply[0] if reply else None
        front.log(req, fault, status, t0, forwarded, extra)
        if reply is None or after:
            self.hang_up(after or "drop")
            return
        st, h, b = reply
        self.reply(st, h, b)

    def control(self, body):
        front = self.front
        what = self.path.split("?", 1)[0]
        try:
            obj = json.loads(body) if body.strip() else {}
        except ValueError as e:
            self.reply_json(400, {"error": f"bad JSON: {e}"})
            return
        try:
            if what == "/__front/config" and self.command == "GET":
                self.reply_json(200, front.cfg)
            elif what == "/__front/config" and self.command in ("POST", "PATCH"):
                base = front.cfg if self.command == "PATCH" else None
                cfg = parse_config(obj, base)
                front.set_config(cfg)
                self.reply_json(200, cfg)
            elif what == "/__front/stats" and self.command == "GET":
                self.reply_json(200, front.snapshot_stats())
            elif what == "/__front/clock" and self.command == "GET":
                self.reply_json(200, {"offset_s": front.clock_offset})
            elif what == "/__front/clock" and self.command == "POST":
                step = obj.get("advance_s") if isinstance(obj, dict) else None
                if isinstance(step, bool) or not isinstance(step, (int, float)) or step < 0:
                    raise ConfigError("clock: body must be {\"advance_s\": SECONDS >= 0}")
                self.reply_json(200, {"offset_s": front.advance(step)})
            elif what == "/__front/state" and self.command == "GET":
                self.reply_json(200, front.snapshot_state())
            elif what == "/__front/reset" and self.command == "POST":
                if isinstance(obj, dict) and obj.get("upstream"):
                    st, _, _, _ = front.forward("POST", "/moto-api/reset", {}, b"")
                    if st != 200:
                        self.reply_json(502, {"error": f"moto reset answered {st}"})
                        return
                front.reset()
                self.reply_json(200, {"reset": True})
            else:
                self.reply_json(404, {"error": f"no control endpoint {self.command} {what}"})
        except ConfigError as e:
            self.reply_json(400, {"error": str(e)})
        except (OSError, http.client.HTTPException) as e:
            self.reply_json(502, {"error": f"upstream: {e}"})


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256
    allow_reuse_address = True

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self._resets = set()
        self._resets_lock = threading.Lock()

    def mark_reset(self, sock):
        with self._resets_lock:
            self._resets.add(sock)

    def shutdown_request(self, request):
        with self._resets_lock:
            reset = request in self._resets
            self._resets.discard(request)
        if reset:
            self.close_request(request)
        else:
            super().shutdown_request(request)


def main(argv=None):
    ap = argparse.ArgumentParser(description="kiln's fault-injecting front for moto")
    ap.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (port 0: any free one)")
    ap.add_argument("--upstream", required=True, help="moto's URL, http://HOST:PORT")
    ap.add_argument("--config", help="JSON file with the initial configuration")
    ap.add_argument("--log", help="append one JSON line per request to this file")
    args = ap.parse_args(argv)

    cfg = DEFAULTS
    if args.config:
        try:
            with open(args.config, encoding="utf-8") as f:
                cfg = parse_config(json.load(f))
        except (OSError, ValueError) as e:
            print(f"front: config '{args.config}': {e}", file=sys.stderr)
            return 2
    host, _, port = args.listen.rpartition(":")
    try:
        front = Front(args.upstream, copy.deepcopy(cfg))
        server = Server((host or "127.0.0.1", int(port)), Handler)
    except (OSError, ValueError) as e:
        print(f"front: {e}", file=sys.stderr)
        return 2
    server.front = front
    if args.log:
        front.open_log(args.log)

    def stop(signum, frame):
        # shutdown() waits for serve_forever to return, so it cannot run in
        # the thread that runs serve_forever (this one, in the handler).
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"ready {server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        if front.log_file:
            front.log_file.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
