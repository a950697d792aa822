#!/usr/bin/env python3
"""Tests of tests/front/front.py against a real moto_server, through boto3.

Starts its own moto_server and front on free loopback ports and stops them by
PID. Run directly (`python3 tests/front/test_front.py -v`) or through ctest as
e2e/t0050-front (inside `unshare --net`). Needs the pyenv python3 with moto
and boto3.
"""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

import boto3
import botocore.exceptions
from botocore.config import Config

HERE = os.path.dirname(os.path.abspath(__file__))
FRONT = os.path.join(HERE, "front.py")
# moto accepts any image id unless MOTO_ENABLE_AMI_VALIDATION is set; listing its
# 1,177 built-in images to pick real ones would cost seconds.
AMI_A = "ami-0000000000000a001"
AMI_B = "ami-0000000000000b002"

MOTO = None
FRONT_PROC = None
MOTO_URL = None
FRONT_URL = None
LOG_PATH = None
TMP = None

AUTH = ("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/{svc}/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=00")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, timeout_s=20.0):
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                r.read()
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def start_front(extra_args=(), upstream=None):
    proc = subprocess.Popen([sys.executable, FRONT, "--listen", "127.0.0.1:0",
                             "--upstream", upstream or MOTO_URL, *extra_args],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().split()
    if len(line) != 2 or line[0] != "ready":
        proc.kill()
        raise RuntimeError(f"front did not say ready: {line!r}")
    return proc, f"http://127.0.0.1:{line[1]}"


def stop(proc):
    if proc is None:
        return
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout:
        proc.stdout.close()


def setUpModule():
    global MOTO, FRONT_PROC, MOTO_URL, FRONT_URL, LOG_PATH, TMP
    TMP = tempfile.TemporaryDirectory(prefix="kiln-front-test.")
    port = free_port()
    MOTO_URL = f"http://127.0.0.1:{port}"
    # moto's server from this very interpreter (moto_server is a pyenv shim for it).
    MOTO = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                             "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(MOTO_URL + "/moto-api/data.json")
        LOG_PATH = os.path.join(TMP.name, "front.log")
        FRONT_PROC, FRONT_URL = start_front(["--log", LOG_PATH])
    except Exception:
        stop(MOTO)
        raise


def tearDownModule():
    stop(FRONT_PROC)
    stop(MOTO)
    if TMP:
        TMP.cleanup()


def control(method, path, obj=None, url=None):
    data = None if obj is None else json.dumps(obj).encode()
    req = urllib.request.Request((url or FRONT_URL) + path, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def configure(**cfg):
    st, body = control("POST", "/__front/config", cfg)
    assert st == 200, body
    return body


def stats():
    return control("GET", "/__front/stats")[1]


_CLIENTS = {}


def client(svc, url=None, retries=False, fresh=False):
    """boto3 clients are slow to build: tests share one per kind unless fresh."""
    key = (svc, url or FRONT_URL, retries)
    if not fresh and key in _CLIENTS:
        return _CLIENTS[key]
    cfg = Config(retries={"total_max_attempts": 10 if retries else 1, "mode": "standard"},
                 connect_timeout=5, read_timeout=30)
    c = boto3.client(svc, endpoint_url=url or FRONT_URL, region_name="us-east-1",
                     aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret",
                     config=cfg)
    if not fresh:
        _CLIENTS[key] = c
    return c


def raw(method, body, svc="ec2", headers=None, url=None, path="/"):
    """One request with a dummy SigV4 Authorization (moto does not check it)."""
    u = urllib.parse.urlsplit(url or FRONT_URL)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    h = {"Authorization": AUTH.format(svc=svc),
         "Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    h.update(headers or {})
    try:
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def code_of(exc):
    return exc.response["Error"]["Code"]


class FrontCase(unittest.TestCase):
    def setUp(self):
        st, body = control("POST", "/__front/reset", {"upstream": True})
        self.assertEqual(st, 200, body)
        configure()
        self.ec2 = client("ec2")
        self.elbv2 = client("elbv2")
        self.elb = client("elb")
        self.ssm = client("ssm")
        self.moto_ec2 = client("ec2", url=MOTO_URL)

    def vpc_subnet(self):
        vpc = self.ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        sub = self.ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24",
                                     AvailabilityZone="us-east-1a")["Subnet"]["SubnetId"]
        return vpc, sub

    def launch(self, n=1, image=None, **kw):
        r = self.ec2.run_instances(ImageId=image or AMI_A, MinCount=n, MaxCount=n, **kw)
        return [i["InstanceId"] for i in r["Instances"]]

    def moto_instances(self):
        return sorted(i["InstanceId"] for r in self.moto_ec2.describe_instances()["Reservations"]
                      for i in r["Instances"])

    def states(self, ids, **kw):
        out = {}
        for r in self.ec2.describe_instances(InstanceIds=ids, **kw)["Reservations"]:
            for i in r["Instances"]:
                out[i["InstanceId"]] = (i["State"]["Name"], i["State"]["Code"])
        return out


class TestPassThrough(FrontCase):
    def test_fault_rate_zero_forwards_unchanged(self):
        (iid,) = self.launch(1)
        body = f"Action=DescribeInstances&Version=2016-11-15&InstanceId.1={iid}"
        via = raw("POST", body)
        direct = raw("POST", body, url=MOTO_URL)
        self.assertEqual(via[0], 200)
        self.assertEqual(via[2], direct[2])
        self.assertIn(b"<instanceId>" + iid.encode() + b"</instanceId>", via[2])
        # An error passes through with its status and bytes.
        body = "Action=DeleteSecurityGroup&Version=2016-11-15&GroupId=sg-nothere"
        via, direct = raw("POST", body), raw("POST", body, url=MOTO_URL)
        self.assertEqual((via[0], via[2]), (400, direct[2]))
        # JSON protocol (SSM) round trip.
        self.ssm.put_parameter(Name="/kiln/p", Value="v1", Type="String")
        self.assertEqual(self.ssm.get_parameter(Name="/kiln/p")["Parameter"]["Value"], "v1")
        s = stats()
        self.assertEqual(s["faults"], {})
        self.assertEqual(s["total"], s["total_forwarded"])
        self.assertEqual(s["requests"]["ssm:PutParameter"], 1)

    def test_moto_api_is_passed_through_uncounted(self):
        with urllib.request.urlopen(FRONT_URL + "/moto-api/data.json") as r:
            self.assertEqual(r.status, 200)
        self.assertEqual(stats()["total"], 0)


class TestFaults(FrontCase):
    def script(self, fault, action="*", count=1, skip=0):
        configure(fault_script=[{"action": action, "fault": fault, "count": count, "skip": skip}])

    def test_throttle_in_each_service_shape(self):
        self.script("throttle", count=3)
        st, _, body = raw("POST", "Action=DescribeVpcs&Version=2016-11-15")
        self.assertEqual(st, 503)
        self.assertRegex(body, rb"^<\?xml[^>]*>\s*<Response><Errors><Error><Code>"
                               rb"RequestLimitExceeded</Code><Message>.+</Message></Error>"
                               rb"</Errors><RequestID>.+</RequestID></Response>$")
        with self.assertRaises(botocore.exceptions.ClientError) as cm:
            self.elbv2.describe_target_groups()
        self.assertEqual(code_of(cm.exception), "Throttling")
        self.assertEqual(cm.exception.response["ResponseMetadata"]["HTTPStatusCode"], 400)
        st, h, body = raw("POST", b"{}", svc="ssm",
                          headers={"X-Amz-Target": "AmazonSSM.DescribeParameters",
                                   "Content-Type": "application/x-amz-json-1.1"})
        self.assertEqual(st, 400)
        self.assertEqual(json.loads(body)["__type"], "ThrottlingException")
        s = stats()
        self.assertEqual(s["faults"], {"throttle": 3})
        self.assertEqual(s["total_forwarded"], 0)
        # The script is used up: the next call goes through.
        self.ec2.describe_vpcs()

    def test_throttled_elb_error_shape(self):
        self.script("throttle")
        st, _, body = raw("POST", "Action=DescribeLoadBalancers&Version=2012-06-01",
                          svc="elasticloadbalancing")
        self.assertEqual(st, 400)
        self.assertRegex(body, rb"^<ErrorResponse><Error><Type>Sender</Type><Code>Throttling"
                               rb"</Code><Message>Rate exceeded</Message></Error>"
                               rb"<RequestId>.+</RequestId></ErrorResponse>$")

    def test_500_and_503(self):
        self.script("500")
        with self.assertRaises(botocore.exceptions.ClientError) as cm:
            self.ec2.create_key_pair(KeyName="k500")
        self.assertEqual(code_of(cm.exception), "InternalError")
        self.assertEqual(cm.exception.response["ResponseMetadata"]["HTTPStatusCode"], 500)
        self.script("503")
        with self.assertRaises(botocore.exceptions.ClientError) as cm:
            self.ssm.get_parameter(Name="x")
        self.assertEqual(cm.exception.response["ResponseMetadata"]["HTTPStatusCode"], 503)
        # Faults before moto leave moto untouched.
        self.assertEqual(self.moto_ec2.describe_key_pairs()["KeyPairs"], [])

    def test_drop_and_reset_close_without_reply(self):
        for kind in ("drop", "reset"):
            self.script(kind)
            with self.assertRaises(botocore.exceptions.ConnectionClosedError):
                self.ec2.create_key_pair(KeyName="k-" + kind)
        self.assertEqual(self.moto_ec2.describe_key_pairs()["KeyPairs"], [])
        # At the socket: drop is an orderly close with no bytes, reset an RST.
        for kind, exc in (("drop", None), ("reset", ConnectionResetError)):
            self.script(kind)
            u = urllib.parse.urlsplit(FRONT_URL)
            s = socket.create_connection((u.hostname, u.port), timeout=5)
            body = b"Action=DescribeVpcs&Version=2016-11-15"
            s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: " +
                      AUTH.format(svc="ec2").encode() +
                      b"\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                      b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            try:
                if exc is None:
                    self.assertEqual(s.recv(100), b"")
                else:
                    with self.assertRaises(exc):
                        while s.recv(100):
                            pass
            finally:
                s.close()
        self.assertEqual(stats()["faults"], {"drop": 2, "reset": 2})

    def test_latency_delays_then_forwards(self):
        configure(fault_script=[{"action": "DescribeVpcs", "fault": "latency"}], latency_ms=400)
        t0 = time.monotonic()
        self.ec2.describe_vpcs()
        self.assertGreaterEqual(time.monotonic() - t0, 0.4)
        s = stats()
        self.assertEqual(s["faults"], {"latency": 1})
        self.assertEqual(s["forwarded"]["ec2:DescribeVpcs"], 1)

    def test_lost_response_lets_moto_act(self):
        self.script("lost_response", action="ec2:CreateKeyPair")
        with self.assertRaises(botocore.exceptions.ConnectionClosedError):
            self.ec2.create_key_pair(KeyName="lost")
        names = [k["KeyName"] for k in self.moto_ec2.describe_key_pairs()["KeyPairs"]]
        self.assertEqual(names, ["lost"])
        s = stats()
        self.assertEqual(s["forwarded"]["ec2:CreateKeyPair"], 1)
        self.assertEqual(s["faults"], {"lost_response": 1})

    def test_lost_run_instances_then_retry_with_token(self):
        self.script("lost_response", action="RunInstances")
        with self.assertRaises(botocore.exceptions.ConnectionClosedError):
            self.launch(2, ClientToken="tok-lost")
        launched = self.moto_instances()
        self.assertEqual(len(launched), 2)  # moto acted
        again = self.launch(2, ClientToken="tok-lost")  # the retry
        self.assertEqual(sorted(again), launched)
        self.assertEqual(self.moto_instances(), launched)
        s = stats()
        self.assertEqual(s["requests"]["ec2:RunInstances"], 2)
        self.assertEqual(s["forwarded"]["ec2:RunInstances"], 1)
        self.assertEqual(s["client_token_replays"], 1)

    def test_random_faults_follow_rate_and_allow_list(self):
        configure(seed=7, fault_rate=0.5, faults_before=["throttle"], fault_split=1.0,
                  fault_actions=["ec2:DescribeVpcs"])
        failed = 0
        for _ in range(100):
            try:
                self.ec2.describe_vpcs()
            except botocore.exceptions.ClientError as e:
                self.assertEqual(code_of(e), "RequestLimitExceeded")
                failed += 1
        for _ in range(20):
            self.ec2.describe_subnets()  # not in fault_actions: never faulted
        self.assertTrue(25 <= failed <= 75, failed)
        s = stats()
        self.assertEqual(s["faults"], {"throttle": failed})
        self.assertEqual(s["requests"]["ec2:DescribeVpcs"], 100)
        self.assertEqual(s["forwarded"]["ec2:DescribeVpcs"], 100 - failed)
        self.assertEqual(s["forwarded"]["ec2:DescribeSubnets"], 20)

    def test_fault_split_after_only(self):
        configure(fault_rate=1.0, fault_split=0.0, fault_actions=["CreateKeyPair"])
        for i in range(3):
            with self.assertRaises(botocore.exceptions.ConnectionClosedError):
                self.ec2.create_key_pair(KeyName=f"k{i}")
        self.assertEqual(len(self.moto_ec2.describe_key_pairs()["KeyPairs"]), 3)

    def test_retrying_client_survives_heavy_faults(self):
        # The scenario kiln faces: 30% faulted both ways, a retrying client and
        # idempotent creates end in exactly the right state.
        configure(seed=3, fault_rate=0.3, faults_before=["throttle", "500", "drop"],
                  latency_ms=10)
        ec2 = client("ec2", retries=True)
        ids = set()
        for n in range(5):
            r = ec2.run_instances(ImageId=AMI_A, MinCount=1, MaxCount=1, ClientToken=f"t{n}")
            ids.add(r["Instances"][0]["InstanceId"])
        self.assertEqual(sorted(ids), self.moto_instances())
        self.assertGreater(sum(stats()["faults"].values()), 0)


class TestClientToken(FrontCase):
    def test_same_token_same_instances(self):
        a = self.launch(2, ClientToken="tok-1")
        b = self.launch(2, ClientToken="tok-1")
        self.assertEqual(a, b)
        self.assertEqual(self.moto_instances(), sorted(a))
        c = self.launch(1, ClientToken="tok-2")
        self.assertNotIn(c[0], a)
        self.assertEqual(len(self.moto_instances()), 3)

    def test_moto_alone_would_launch_twice(self):
        for _ in range(2):
            self.moto_ec2.run_instances(ImageId=AMI_A, MinCount=1, MaxCount=1, ClientToken="t")
        self.assertEqual(len(self.moto_instances()), 2)

    def test_mismatched_parameters(self):
        self.launch(1, ClientToken="tok-m")
        with self.assertRaises(botocore.exceptions.ClientError) as cm:
            self.launch(1, ClientToken="tok-m", InstanceType="t3.micro")
        self.assertEqual(code_of(cm.exception), "IdempotentParameterMismatch")

    def test_concurrent_same_token_launches_once(self):
        out = []

        def go():
            out.append(tuple(client("ec2", fresh=True).run_instances(
                ImageId=AMI_A, MinCount=1, MaxCount=1,
                ClientToken="tok-race")["Instances"][0]["InstanceId"]))

        ts = [threading.Thread(target=go) for _ in range(6)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.assertEqual(len(set(out)), 1)
        self.assertEqual(len(self.moto_instances()), 1)

    def test_can_be_turned_off(self):
        configure(client_token_idempotency=False)
        a = self.launch(1, ClientToken="tok-off")
        b = self.launch(1, ClientToken="tok-off")
        self.assertNotEqual(a, b)


# Simulated windows are long (W) and the tests jump past them with the
# front's clock (POST /__front/clock) instead of sleeping: nothing depends on
# how fast this machine is. TestRealTime checks the windows also pass in real time.
W = 60.0


def advance(seconds):
    st, body = control("POST", "/__front/clock", {"advance_s": seconds})
    assert st == 200, body


class TestDelays(FrontCase):
    def test_dependency_violation_window(self):
        configure(dependency_violation_s=W)
        vpc, _ = self.vpc_subnet()
        sg = self.ec2.create_security_group(GroupName="kiln-tmp", Description="d",
                                            VpcId=vpc)["GroupId"]
        st, _, body = raw("POST", f"Action=DeleteSecurityGroup&Version=2016-11-15&GroupId={sg}")
        self.assertEqual(st, 400)
        self.assertIn(b"<Response><Errors><Error><Code>DependencyViolation</Code>", body)
        advance(W - 1)
        with self.assertRaises(botocore.exceptions.ClientError) as cm:
            self.ec2.delete_security_group(GroupId=sg)
        self.assertEqual(code_of(cm.exception), "DependencyViolation")
        self.assertEqual(len(self.moto_ec2.describe_security_groups(GroupIds=[sg])
                             ["SecurityGroups"]), 1)
        advance(1.01)
        self.ec2.delete_security_group(GroupId=sg)
        with self.assertRaises(botocore.exceptions.ClientError):
            self.moto_ec2.describe_security_groups(GroupIds=[sg])
        s = stats()
        self.assertEqual(s["faults"], {"dependency_violation": 2})
        self.assertEqual(s["forwarded"]["ec2:DeleteSecurityGroup"], 1)

    def test_instances_pending_then_running(self):
        configure(pending_s=W)
        ids = self.launch(2)
        self.assertEqual(self.states(ids), {i: ("pending", 0) for i in ids})
        flt = lambda v: [{"Name": "instance-state-name", "Values": v}]
        self.assertEqual(self.states(ids, Filters=flt(["running"])), {})
        self.assertEqual(set(self.states(ids, Filters=flt(["pending"]))), set(ids))
        self.assertEqual(self.ec2.describe_instance_status(InstanceIds=ids)
                         ["InstanceStatuses"], [])
        st = self.ec2.describe_instance_status(InstanceIds=ids, IncludeAllInstances=True)
        self.assertEqual({s["InstanceState"]["Name"] for s in st["InstanceStatuses"]},
                         {"pending"})
        advance(W)
        self.assertEqual(self.states(ids), {i: ("running", 16) for i in ids})
        self.assertEqual(set(self.states(ids, Filters=flt(["running"]))), set(ids))
        self.assertEqual(self.states(ids, Filters=flt(["pending"])), {})
        self.assertEqual(len(self.ec2.describe_instance_status(InstanceIds=ids)
                             ["InstanceStatuses"]), 2)
        # moto itself never says pending after launch.
        self.assertEqual({i["State"]["Name"] for r in self.moto_ec2.describe_instances(
            InstanceIds=ids)["Reservations"] for i in r["Instances"]}, {"running"})

    def test_pending_window_per_instance(self):
        configure(pending_s=W)
        (a,) = self.launch(1)
        advance(W / 2)
        (b,) = self.launch(1)
        advance(W / 2)
        self.assertEqual(self.states([a, b]), {a: ("running", 16), b: ("pending", 0)})

    def test_stopping_and_shutting_down(self):
        configure(stopping_s=W, shutting_down_s=W)
        a, b = self.launch(2)
        self.ec2.stop_instances(InstanceIds=[a])
        self.ec2.terminate_instances(InstanceIds=[b])
        self.assertEqual(self.states([a, b]), {a: ("stopping", 64), b: ("shutting-down", 32)})
        advance(W)
        self.assertEqual(self.states([a, b]), {a: ("stopped", 80), b: ("terminated", 48)})

    def test_image_pending_then_available(self):
        configure(image_pending_s=W)
        (iid,) = self.launch(1)
        ami = self.ec2.create_image(InstanceId=iid, Name="kiln-web-v1")["ImageId"]
        img = self.ec2.describe_images(ImageIds=[ami])["Images"][0]
        self.assertEqual(img["State"], "pending")
        avail = [{"Name": "state", "Values": ["available"]}]
        pend = [{"Name": "state", "Values": ["pending"]}]
        self.assertEqual(self.ec2.describe_images(ImageIds=[ami], Filters=avail)["Images"], [])
        self.assertEqual(len(self.ec2.describe_images(Owners=["self"], Filters=pend)["Images"]), 1)
        advance(W)
        self.assertEqual(self.ec2.describe_images(ImageIds=[ami])["Images"][0]["State"],
                         "available")
        self.assertEqual(len(self.ec2.describe_images(ImageIds=[ami], Filters=avail)
                             ["Images"]), 1)
        self.assertEqual(self.ec2.describe_images(Owners=["self"], Filters=pend)["Images"], [])
        # An image created behind the front's back is not simulated.
        other = self.moto_ec2.create_image(InstanceId=iid, Name="kiln-web-v2")["ImageId"]
        self.assertEqual(self.ec2.describe_images(ImageIds=[other])["Images"][0]["State"],
                         "available")


class TestHealth(FrontCase):
    def target_group(self, vpc, name="tg-web"):
        return self.elbv2.create_target_group(Name=name, Protocol="HTTP", Port=80,
                                              VpcId=vpc)["TargetGroups"][0]["TargetGroupArn"]

    def health(self, arn, ids=None):
        kw = {"Targets": [{"Id": i} for i in ids]} if ids else {}
        out = {}
        for d in self.elbv2.describe_target_health(TargetGroupArn=arn, **kw)[
                "TargetHealthDescriptions"]:
            th = d["TargetHealth"]
            out[d["Target"]["Id"]] = (th["State"], th.get("Reason"))
        return out

    def test_initial_then_healthy_unhealthy_instance_and_image(self):
        vpc, sub = self.vpc_subnet()
        arn = self.target_group(vpc)
        good, bad = self.launch(2, SubnetId=sub)
        (from_bad_image,) = self.launch(1, image=AMI_B, SubnetId=sub)
        configure(health={"initial_s": W, "unhealthy_instances": [bad],
                          "unhealthy_images": [AMI_B]})
        self.elbv2.register_targets(TargetGroupArn=arn, Targets=[
            {"Id": i} for i in (good, bad, from_bad_image)])
        initial = ("initial", "Elb.RegistrationInProgress")
        self.assertEqual(self.health(arn), {good: initial, bad: initial, from_bad_image: initial})
        advance(W)
        unhealthy = ("unhealthy", "Target.FailedHealthChecks")
        self.assertEqual(self.health(arn), {good: ("healthy", None), bad: unhealthy,
                                            from_bad_image: unhealthy})
        self.assertEqual(self.health(arn, [bad]), {bad: unhealthy})
        # Unhealthy images are learnt from replies: the config may name them later.
        st, _ = control("PATCH", "/__front/config", {"health": {"unhealthy_images": [AMI_A]}})
        self.assertEqual(self.health(arn)[good], unhealthy)
        # moto alone: all healthy.
        moto = client("elbv2", url=MOTO_URL)
        self.assertEqual({d["TargetHealth"]["State"] for d in moto.describe_target_health(
            TargetGroupArn=arn)["TargetHealthDescriptions"]}, {"healthy"})

    def test_initial_counts_from_running_when_pending(self):
        vpc, sub = self.vpc_subnet()
        arn = self.target_group(vpc)
        configure(pending_s=W, health={"initial_s": W})
        (iid,) = self.launch(1, SubnetId=sub)
        self.elbv2.register_targets(TargetGroupArn=arn, Targets=[{"Id": iid}])
        advance(W + 1)  # running for 1 s: still initial
        self.assertEqual(self.health(arn)[iid][0], "initial")
        advance(W)
        self.assertEqual(self.health(arn)[iid][0], "healthy")

    def test_draining_then_gone(self):
        vpc, sub = self.vpc_subnet()
        arn = self.target_group(vpc)
        old, new = self.launch(2, SubnetId=sub)
        configure(health={"draining_s": W})
        self.elbv2.register_targets(TargetGroupArn=arn, Targets=[{"Id": old}, {"Id": new}])
        self.elbv2.deregister_targets(TargetGroupArn=arn, Targets=[{"Id": old}])
        draining = ("draining", "Target.DeregistrationInProgress")
        self.assertEqual(self.health(arn), {old: draining, new: ("healthy", None)})
        self.assertEqual(self.health(arn, [old]), {old: draining})
        d = self.elbv2.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
        self.assertEqual({x["Target"]["Id"]: x["Target"].get("Port") for x in d},
                         {old: 80, new: 80})
        advance(W)
        self.assertEqual(self.health(arn), {new: ("healthy", None)})
        self.assertEqual(self.health(arn, [old]), {old: ("unused", "Target.NotRegistered")})

    def test_reregistered_while_draining_starts_initial_again(self):
        vpc, sub = self.vpc_subnet()
        arn = self.target_group(vpc)
        (iid,) = self.launch(1, SubnetId=sub)
        configure(health={"draining_s": W, "initial_s": W})
        self.elbv2.register_targets(TargetGroupArn=arn, Targets=[{"Id": iid}])
        advance(W)
        self.elbv2.deregister_targets(TargetGroupArn=arn, Targets=[{"Id": iid}])
        self.assertEqual(self.health(arn)[iid][0], "draining")
        self.elbv2.register_targets(TargetGroupArn=arn, Targets=[{"Id": iid}])
        self.assertEqual(self.health(arn)[iid][0], "initial")

    def test_draining_in_empty_group(self):
        vpc, sub = self.vpc_subnet()
        arn = self.target_group(vpc)
        (iid,) = self.launch(1, SubnetId=sub)
        configure(health={"draining_s": W})
        self.elbv2.register_targets(TargetGroupArn=arn, Targets=[{"Id": iid}])
        self.elbv2.deregister_targets(TargetGroupArn=arn, Targets=[{"Id": iid}])
        self.assertEqual(self.health(arn), {iid: ("draining", "Target.DeregistrationInProgress")})

    def test_terminated_target_drains_then_unused(self):
        vpc, sub = self.vpc_subnet()
        arn = self.target_group(vpc)
        (iid,) = self.launch(1, SubnetId=sub)
        configure(health={"draining_s": W})
        self.elbv2.register_targets(TargetGroupArn=arn, Targets=[{"Id": iid}])
        self.ec2.terminate_instances(InstanceIds=[iid])
        self.assertEqual(self.health(arn)[iid][0], "draining")
        advance(W)
        self.assertEqual(self.health(arn), {})
        # moto alone would say "draining" for ever when asked by id.
        self.assertEqual(self.health(arn, [iid]), {iid: ("unused", "Target.NotRegistered")})

    def test_target_in_two_groups_tracked_per_group(self):
        vpc, sub = self.vpc_subnet()
        a = self.target_group(vpc, "tg-a")
        b = self.target_group(vpc, "tg-b")
        (iid,) = self.launch(1, SubnetId=sub)
        configure(health={"initial_s": W, "draining_s": 2 * W})
        self.elbv2.register_targets(TargetGroupArn=a, Targets=[{"Id": iid}])
        advance(W)
        self.elbv2.register_targets(TargetGroupArn=b, Targets=[{"Id": iid}])
        self.assertEqual(self.health(a)[iid][0], "healthy")
        self.assertEqual(self.health(b)[iid][0], "initial")
        self.elbv2.deregister_targets(TargetGroupArn=a, Targets=[{"Id": iid}])
        self.assertEqual(self.health(a)[iid][0], "draining")
        self.assertEqual(self.health(b)[iid][0], "initial")
        advance(W)
        self.assertEqual(self.health(a)[iid][0], "draining")
        self.assertEqual(self.health(b)[iid][0], "healthy")

    def test_classic_elb(self):
        self.elb.create_load_balancer(
            LoadBalancerName="web", AvailabilityZones=["us-east-1a"],
            Listeners=[{"Protocol": "HTTP", "LoadBalancerPort": 80, "InstancePort": 80}])
        good, bad, old = self.launch(3)
        configure(health={"initial_s": W, "draining_s": W, "unhealthy_instances": [bad]})

        def health(ids=None):
            kw = {"Instances": [{"InstanceId": i} for i in ids]} if ids else {}
            return {s["InstanceId"]: (s["State"], s["ReasonCode"], s["Description"])
                    for s in self.elb.describe_instance_health(LoadBalancerName="web", **kw)
                    ["InstanceStates"]}

        self.elb.register_instances_with_load_balancer(
            LoadBalancerName="web", Instances=[{"InstanceId": i} for i in (good, bad)])
        h = health()
        self.assertEqual({k: v[:2] for k, v in h.items()},
                         {good: ("OutOfService", "ELB"), bad: ("OutOfService", "ELB")})
        advance(W)
        h = health()
        self.assertEqual({k: v[:2] for k, v in h.items()},
                         {good: ("InService", "N/A"), bad: ("OutOfService", "Instance")})
        # `old` was registered directly in moto, "before" the front: healthy at once.
        client("elb", url=MOTO_URL).register_instances_with_load_balancer(
            LoadBalancerName="web", Instances=[{"InstanceId": old}])
        self.assertEqual(health([old])[old][0], "InService")
        self.elb.deregister_instances_from_load_balancer(
            LoadBalancerName="web", Instances=[{"InstanceId": old}])
        h = health()
        self.assertEqual(h[old], ("InService", "N/A",
                                  "Instance deregistration currently in progress."))
        self.assertEqual(health([old])[old][0], "InService")
        advance(W)
        self.assertNotIn(old, health())
        self.assertEqual(health([old])[old][:2], ("OutOfService", "ELB"))


class TestRealTime(FrontCase):
    """The windows also pass on the wall clock, not only when jumped over."""

    def test_pending_and_initial_in_real_time(self):
        vpc, sub = self.vpc_subnet()
        arn = self.elbv2.create_target_group(Name="tg-rt", Protocol="HTTP", Port=80, VpcId=vpc)[
            "TargetGroups"][0]["TargetGroupArn"]
        configure(pending_s=0.5, health={"initial_s": 0.5})
        t0 = time.monotonic()
        (iid,) = self.launch(1, SubnetId=sub)
        t1 = time.monotonic()
        self.elbv2.register_targets(TargetGroupArn=arn, Targets=[{"Id": iid}])
        states = [self.states([iid])[iid][0]]
        health = [self.elbv2.describe_target_health(TargetGroupArn=arn)[
            "TargetHealthDescriptions"][0]["TargetHealth"]["State"]]
        if time.monotonic() - t0 < 0.5:  # only meaningful if this machine was quick enough
            self.assertEqual((states[0], health[0]), ("pending", "initial"))
        time.sleep(max(0.0, 1.0 - (time.monotonic() - t1)) + 0.05)
        self.assertEqual(self.states([iid])[iid][0], "running")
        self.assertEqual(self.elbv2.describe_target_health(TargetGroupArn=arn)[
            "TargetHealthDescriptions"][0]["TargetHealth"]["State"], "healthy")


class TestBuckets(FrontCase):
    def test_burst_then_refill(self):
        configure(buckets={"describe": [5, 0.5], "mutating": [50, 5]})
        results = []
        for _ in range(10):
            try:
                self.ec2.describe_vpcs()
                results.append(True)
            except botocore.exceptions.ClientError as e:
                self.assertEqual(code_of(e), "RequestLimitExceeded")
                self.assertEqual(e.response["ResponseMetadata"]["HTTPStatusCode"], 503)
                results.append(False)
        # 10 requests: the burst of 5 passes; refilling at 0.5/s, at most one more
        # token can arrive, and only if this machine took over 2 s for them.
        self.assertEqual(results[:5], [True] * 5)
        self.assertLessEqual(results.count(True), 6)
        # Same class, same bucket: another describe action is throttled too.
        with self.assertRaises(botocore.exceptions.ClientError):
            self.ec2.describe_subnets()
        # Another class has its own bucket.
        self.ec2.create_key_pair(KeyName="k")
        advance(2.0)  # 0.5 token/s: one more token
        self.ec2.describe_vpcs()
        s = stats()
        self.assertEqual(s["throttled_by_action"]["ec2:DescribeSubnets"], 1)
        self.assertEqual(s["throttled"], 1 + results.count(False))
        self.assertEqual(s["requests"]["ec2:DescribeVpcs"], 11)
        self.assertEqual(s["forwarded"]["ec2:DescribeVpcs"], 1 + results.count(True))
        # bucket_tokens: what each bucket gave (throttled requests took nothing)
        self.assertEqual(s["bucket_tokens"], {"describe": 1 + results.count(True), "mutating": 1})

    def test_action_bucket_and_action_scope(self):
        configure(buckets={"RunInstances": [2, 0.01], "describe": [2, 0.01]},
                  bucket_scope="action")
        self.launch(1)
        self.launch(1)
        with self.assertRaises(botocore.exceptions.ClientError) as cm:
            self.launch(1)
        self.assertEqual(code_of(cm.exception), "RequestLimitExceeded")
        # Per-action scope: each describe action has a bucket of its own.
        for _ in range(2):
            self.ec2.describe_vpcs()
            self.ec2.describe_subnets()
        with self.assertRaises(botocore.exceptions.ClientError):
            self.ec2.describe_vpcs()
        self.assertEqual(len(self.moto_instances()), 2)

    def test_sustained_rate(self):
        # Real time: what a client sees when it keeps asking.
        burst, rate, secs = 3, 4.0, 1.5
        configure(buckets={"describe": [burst, rate]})
        ok = tries = 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < secs:
            tries += 1
            try:
                self.ec2.describe_vpcs()
                ok += 1
            except botocore.exceptions.ClientError:
                pass
        elapsed = time.monotonic() - t0
        bound = burst + rate * elapsed
        self.assertLessEqual(ok, bound + 1)
        self.assertEqual(stats()["throttled"], tries - ok)
        if tries >= bound + 5:  # the client asked faster than the refill: it got the rate
            self.assertGreaterEqual(ok, bound - 2)
            self.assertGreater(tries - ok, 0)

    def test_resource_bucket_counts_instances(self):
        configure(resource_buckets={"RunInstances": [5, 0.01]})
        self.launch(3)
        with self.assertRaises(botocore.exceptions.ClientError):
            self.launch(3)
        self.launch(2)
        self.assertEqual(len(self.moto_instances()), 5)
        advance(300)  # 3 tokens back
        self.launch(3)
        # one token per instance of the launches that passed (3 + 2 + 3); the
        # refused launch drew nothing
        self.assertEqual(stats()["bucket_tokens"], {"resource:RunInstances": 8})

    def test_other_services_only_by_explicit_entry(self):
        configure(buckets={"describe": [1, 0.01], "elasticloadbalancing:*": [1, 0.01]})
        self.ssm.describe_parameters()
        self.ssm.describe_parameters()  # no bucket for ssm
        self.elbv2.describe_target_groups()
        with self.assertRaises(botocore.exceptions.ClientError) as cm:
            self.elbv2.describe_target_groups()
        self.assertEqual(code_of(cm.exception), "Throttling")


class TestControlAndPlumbing(FrontCase):
    def test_config_partial_keys_keep_defaults(self):
        cfg = configure(fault_rate=0.1, health={"initial_s": 2})
        self.assertEqual(cfg["fault_rate"], 0.1)
        self.assertEqual(cfg["faults_after"], ["lost_response"])
        self.assertEqual(cfg["health"]["draining_s"], 0)
        self.assertTrue(cfg["client_token_idempotency"])
        st, got = control("GET", "/__front/config")
        self.assertEqual((st, got), (200, cfg))
        # POST replaces, PATCH merges.
        configure(pending_s=3)
        self.assertEqual(control("GET", "/__front/config")[1]["fault_rate"], 0)
        st, got = control("PATCH", "/__front/config", {"health": {"draining_s": 4}})
        self.assertEqual(got["pending_s"], 3)
        self.assertEqual(got["health"]["draining_s"], 4)
        st, body = control("POST", "/__front/clock", {"advance_s": -1})
        self.assertEqual(st, 400, body)
        self.assertEqual(control("GET", "/__front/clock"), (200, {"offset_s": 0.0}))
        for bad in ({"nope": 1}, {"fault_rate": 1.5}, {"faults_before": ["teleport"]},
                    {"buckets": {"describe": [1]}}, {"health": {"x": 1}}, [1]):
            st, body = control("POST", "/__front/config", bad)
            self.assertEqual(st, 400, bad)
            self.assertIn("error", body)

    def test_stats_and_reset(self):
        configure(fault_script=[{"action": "DescribeVpcs", "fault": "500", "skip": 1}])
        self.ec2.describe_vpcs()
        with self.assertRaises(botocore.exceptions.ClientError):
            self.ec2.describe_vpcs()
        self.ec2.describe_vpcs()
        s = stats()
        self.assertEqual(s["requests"], {"ec2:DescribeVpcs": 3})
        self.assertEqual(s["forwarded"], {"ec2:DescribeVpcs": 2})
        self.assertEqual(s["faults"], {"500": 1})
        self.assertEqual((s["total"], s["total_forwarded"], s["throttled"]), (3, 2, 0))
        control("POST", "/__front/reset")
        s = stats()
        self.assertEqual((s["total"], s["requests"], s["faults"]), (0, {}, {}))

    def test_request_log(self):
        configure(fault_script=[{"action": "DescribeSubnets", "fault": "throttle"}])
        with open(LOG_PATH, encoding="utf-8") as f:
            f.seek(0, os.SEEK_END)
            self.ec2.describe_vpcs()
            with self.assertRaises(botocore.exceptions.ClientError):
                self.ec2.describe_subnets()
            time.sleep(0.05)
            lines = [json.loads(x) for x in f.read().splitlines()]
        self.assertEqual(len(lines), 2)
        for rec in lines:
            self.assertTrue({"time", "service", "action", "fault", "status", "ms"} <= set(rec))
        self.assertEqual([(r["action"], r["fault"], r["status"]) for r in lines],
                         [("DescribeVpcs", None, 200), ("DescribeSubnets", "throttle", 503)])

    def test_keep_alive_chunked_and_large_bodies(self):
        u = urllib.parse.urlsplit(FRONT_URL)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
        h = {"Authorization": AUTH.format(svc="ec2"),
             "Content-Type": "application/x-www-form-urlencoded"}
        try:
            for i in range(3):  # one connection, moto's "Connection: close" not passed on
                conn.request("POST", "/", body=f"Action=CreateKeyPair&Version=2016-11-15"
                             f"&KeyName=ka{i}", headers=h)
                r = conn.getresponse()
                r.read()
                self.assertEqual(r.status, 200)
                self.assertNotEqual(r.getheader("Connection"), "close")
            # Chunked request body.
            parts = [b"Action=CreateKeyPair", b"&Version=2016-11-15", b"&KeyName=chunked"]
            conn.request("POST", "/", body=iter(parts), headers=h, encode_chunked=True)
            r = conn.getresponse()
            r.read()
            self.assertEqual(r.status, 200)
            # A large body (3 MB of padding) is forwarded whole.
            pad = "x" * (3 << 20)
            conn.request("POST", "/", body=f"Action=CreateKeyPair&Version=2016-11-15"
                         f"&KeyName=large&Padding={pad}", headers=h)
            r = conn.getresponse()
            r.read()
            self.assertEqual(r.status, 200)
        finally:
            conn.close()
        # Expect: 100-continue, as libcurl sends for large POSTs.
        body = b"Action=CreateKeyPair&Version=2016-11-15&KeyName=expect"
        with socket.create_connection((u.hostname, u.port), timeout=10) as s:
            s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: " +
                      AUTH.format(svc="ec2").encode() +
                      b"\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                      b"Expect: 100-continue\r\nConnection: close\r\n"
                      b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
            f = s.makefile("rb")
            self.assertTrue(f.readline().startswith(b"HTTP/1.1 100"))
            while f.readline() not in (b"\r\n", b""):
                pass
            s.sendall(body)
            self.assertTrue(f.readline().startswith(b"HTTP/1.1 200"))
            f.close()
        names = sorted(k["KeyName"] for k in self.moto_ec2.describe_key_pairs()["KeyPairs"])
        self.assertEqual(names, ["chunked", "expect", "ka0", "ka1", "ka2", "large"])
        # Beyond max_body_bytes: 413, nothing forwarded.
        configure(max_body_bytes=1 << 20)
        st, _, _ = raw("POST", "Action=DescribeVpcs&Version=2016-11-15&P=" + "y" * (2 << 20))
        self.assertEqual(st, 413)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
        try:
            conn.request("POST", "/", body=iter([b"Action=DescribeVpcs&P=", b"z" * (1 << 20),
                                                 b"z" * (1 << 20)]),
                         headers=h, encode_chunked=True)
            r = conn.getresponse()
            r.read()
            self.assertEqual(r.status, 413)
        finally:
            conn.close()
        self.assertEqual(stats()["requests"], {"ec2:CreateKeyPair": 6})

    def test_concurrent_requests(self):
        clients = [client("ec2", fresh=True) for _ in range(16)]  # one connection pool each

        def run(threads, calls):
            errors = []

            def worker(c):
                for _ in range(calls):
                    try:
                        c.describe_vpcs()
                    except Exception as e:  # noqa: BLE001 - collected and asserted below
                        errors.append(e)

            ts = [threading.Thread(target=worker, args=(clients[i],)) for i in range(threads)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            self.assertEqual(errors, [])

        # 16 requests held 0.3 s each by the front: one after the other they
        # would take 4.8 s.
        configure(base_latency_ms=300)
        t0 = time.monotonic()
        run(16, 1)
        self.assertLess(time.monotonic() - t0, 2.4)
        configure()
        run(16, 4)
        self.assertEqual(stats()["requests"]["ec2:DescribeVpcs"], 16 * 5)

    def test_sigterm_stops_cleanly(self):
        proc, url = start_front()
        u = urllib.parse.urlsplit(url)
        idle = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
        try:
            self.assertEqual(control("GET", "/__front/stats", url=url)[0], 200)
            idle.request("GET", "/__front/stats")  # leaves a keep-alive connection open
            idle.getresponse().read()
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(timeout=5), 0)
        finally:
            idle.close()
            stop(proc)

    def test_upstream_down_is_a_503_in_the_service_shape(self):
        proc, url = start_front(upstream=f"http://127.0.0.1:{free_port()}")
        try:
            st, _, body = raw("POST", "Action=DescribeVpcs&Version=2016-11-15", url=url)
            self.assertEqual(st, 503)
            self.assertIn(b"<Code>Unavailable</Code>", body)
            s = control("GET", "/__front/stats", url=url)[1]
            self.assertEqual((s["total"], s["total_forwarded"]), (1, 0))
        finally:
            stop(proc)

    def test_config_file(self):
        path = os.path.join(TMP.name, "cfg.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"pending_s": 5, "health": {"initial_s": 7}}, f)
        proc, url = start_front(["--config", path])
        try:
            cfg = control("GET", "/__front/config", url=url)[1]
            self.assertEqual((cfg["pending_s"], cfg["health"]["initial_s"]), (5, 7))
        finally:
            stop(proc)


class TestSignatures(unittest.TestCase):
    """With moto checking SigV4, requests through the front still verify
    (headers and body pass unchanged) and a wrong secret still fails.
    STS GetCallerIdentity needs no IAM policy: anything else would make moto
    load its managed policies, which takes seconds."""

    def test_signed_requests_pass_through(self):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="2")
        moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                 "-p", str(port)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        proc = None
        try:
            wait_http(url + "/moto-api/data.json")
            proc, furl = start_front(upstream=url)

            def make(svc, akid="x", secret="y"):
                return boto3.client(svc, endpoint_url=furl, region_name="us-east-1",
                                    aws_access_key_id=akid, aws_secret_access_key=secret,
                                    config=Config(retries={"total_max_attempts": 1}))

            iam = make("iam")  # the 2 unauthenticated actions
            iam.create_user(UserName="kiln")
            key = iam.create_access_key(UserName="kiln")["AccessKey"]
            akid, secret = key["AccessKeyId"], key["SecretAccessKey"]
            who = make("sts", akid, secret).get_caller_identity()
            self.assertTrue(who["Arn"].endswith(":user/kiln"), who)
            with self.assertRaises(botocore.exceptions.ClientError) as cm:
                make("sts", akid, "wrong").get_caller_identity()
            self.assertEqual(code_of(cm.exception), "SignatureDoesNotMatch")
        finally:
            stop(proc)
            stop(moto)


class TestXmlScanner(unittest.TestCase):
    """The in-place rewriting rests on finding exact element boundaries."""

    def test_nested_same_name_self_closing_and_attributes(self):
        sys.path.insert(0, HERE)
        import front as F
        text = ('<?xml version="1.0"?>\n<R xmlns="urn:x"><set><item><a>1</a>'
                '<item><item/><b x="1/">2</b></item><c/></item><item attr="y">'
                '<a>3</a><itemx>no</itemx></item></set><ns:tail>t</ns:tail></R>')
        root = F.root_of(text)
        self.assertEqual((root.name, text[root.end:]), ("R", ""))
        kids = F.children(text, root.cstart, root.cend)
        self.assertEqual([k.name for k in kids], ["set", "tail"])
        self.assertEqual(F.text_of(text, kids[1]), "t")
        items = F.children(text, kids[0].cstart, kids[0].cend)
        self.assertEqual(len(items), 2)
        self.assertEqual([c.name for c in F.children(text, items[0].cstart, items[0].cend)],
                         ["a", "item", "c"])
        self.assertEqual(F.text_of(text, F.child(text, items[1], "a")), "3")
        self.assertEqual(F.text_of(text, F.child(text, items[1], "itemx")), "no")
        edited = F.apply_edits(text, [(items[0].start, items[0].end, ""),
                                      (F.child(text, items[1], "a").cstart,
                                       F.child(text, items[1], "a").cend, "9")])
        self.assertIn('<set><item attr="y"><a>9</a><itemx>', edited)


if __name__ == "__main__":
    unittest.main()
