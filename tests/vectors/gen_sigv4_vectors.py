#!/usr/bin/env python3
"""Writes tests/vectors/sigv4/*.json: the SigV4 signatures botocore makes for
the requests kiln sends, with a frozen clock, so that
tests/unit/test_sigv4_vectors.c can check kiln signs them byte for byte alike.

Run it with the python3 that has botocore (the pyenv one on these machines):

    python3 tests/vectors/gen_sigv4_vectors.py

Each request goes through a real botocore client (its own serializer, its
own endpoint resolution, its own signer); a 'before-send' hook captures the
request as it would go on the wire and stops it there, so nothing leaves
the machine. The files are committed; re-running gives identical files.
"""
import json
import os
import sys
import datetime

import botocore
import botocore.auth
import botocore.session
from botocore.config import Config

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "sigv4")

# 2026-11-25T21:37:44Z: a date well after the suite's, crossing nothing special.
FROZEN = datetime.datetime(2026, 11, 25, 21, 37, 44)
FROZEN_UNIX = 1795642664

ACCESS_KEY = "AKIAKILNVECTORS00001"
SECRET_KEY = "kilnVectorSecret/+0123456789abcdefghijKLMN"
# real session tokens are long base64 with '/', '+' and '='
SESSION_TOKEN = ("IQoJb3JpZ2luX2VjEKILN//////////wEaCXVzLWVhc3QtMSJHMEUCIQD"
                 "kiln+vectors/token=test0123456789abcdefABCDEF==")

# (file name stem, botocore service, operation, params)
CALLS = [
    ("ec2-describe-images", "ec2", "DescribeImages", {
        "Owners": ["self"],
        "Filters": [
            {"Name": "tag:kiln:image", "Values": ["web"]},
            {"Name": "state", "Values": ["available", "pending"]},
            {"Name": "name", "Values": ["web-v*", "web space/slash=eq"]},
        ],
    }),
    ("ec2-run-instances", "ec2", "RunInstances", {
        "ImageId": "ami-0123456789abcdef0",
        "InstanceType": "t3.micro",
        "MinCount": 2,
        "MaxCount": 2,
        "SubnetId": "subnet-0abc",
        "SecurityGroupIds": ["sg-0abc"],
        "KeyName": "kiln-build-7f3a",
        "ClientToken": "kiln-r-20261125-7f3a-b1-subnet-0abc",
        "TagSpecifications": [
            {"ResourceType": "instance", "Tags": [
                {"Key": "kiln:fleet", "Value": "web"},
                {"Key": "kiln:rollout-id", "Value": "r-20261125-7f3a"},
                {"Key": "kiln:role", "Value": "new"},
                {"Key": "Name", "Value": "web (kiln) \u00e9t\u00e9 ~!*'()"},
            ]},
            {"ResourceType": "volume", "Tags": [
                {"Key": "kiln:fleet", "Value": "web"},
            ]},
        ],
    }),
    ("ec2-create-tags", "ec2", "CreateTags", {
        "Resources": ["ami-0123456789abcdef0", "snap-0123456789abcdef0"],
        "Tags": [
            {"Key": "kiln:image", "Value": "web"},
            {"Key": "kiln:version", "Value": "3"},
            {"Key": "kiln:built-at", "Value": "2026-11-25T21:37:44Z"},
        ],
    }),
    ("elbv2-register-targets", "elbv2", "RegisterTargets", {
        "TargetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:123456789012:"
                          "targetgroup/web/0123456789abcdef",
        "Targets": [{"Id": "i-0123456789abcdef0", "Port": 8080},
                    {"Id": "i-0fedcba9876543210"}],
    }),
    ("elb-describe-instance-health", "elb", "DescribeInstanceHealth", {
        "LoadBalancerName": "web-classic",
        "Instances": [{"InstanceId": "i-0123456789abcdef0"},
                      {"InstanceId": "i-0fedcba9876543210"}],
    }),
    ("sts-get-caller-identity", "sts", "GetCallerIdentity", {}),
    ("ssm-put-parameter", "ssm", "PutParameter", {
        "Name": "/kiln/images/web/versions/3",
        "Value": json.dumps({"image": "ami-0123456789abcdef0", "state": "reserved"}),
        "Type": "String",
        "Overwrite": False,
    }),
]

# (suffix, region, endpoint_url or None for botocore's own)
ENDPOINTS = [
    ("", "us-east-1", None),
    ("-custom", "eu-west-1", "http://127.0.0.1:5000"),
]

captured = {}
_orig_cr = botocore.auth.SigV4Auth.canonical_request
_orig_sts = botocore.auth.SigV4Auth.string_to_sign


def _cr(self, request):
    captured["canonical_request"] = _orig_cr(self, request)
    return captured["canonical_request"]


def _sts(self, request, canonical_request):
    captured["string_to_sign"] = _orig_sts(self, request, canonical_request)
    return captured["string_to_sign"]


class Stop(Exception):
    pass


def _before_send(request, **kwargs):
    captured["request"] = request
    raise Stop()


def main():
    botocore.auth.get_current_datetime = lambda remove_tzinfo=True: FROZEN
    botocore.auth.SigV4Auth.canonical_request = _cr
    botocore.auth.SigV4Auth.string_to_sign = _sts
    assert datetime.datetime.fromtimestamp(FROZEN_UNIX, datetime.timezone.utc) \
        .replace(tzinfo=None) == FROZEN

    os.makedirs(OUT, exist_ok=True)
    for name in os.listdir(OUT):
        if name.endswith(".json"):
            os.unlink(os.path.join(OUT, name))

    session = botocore.session.get_session()
    n = 0
    for stem, service, op, params in CALLS:
        for suffix, region, endpoint in ENDPOINTS:
            for with_token in (False, True):
                client = session.create_client(
                    service, region_name=region, endpoint_url=endpoint,
                    aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                    aws_session_token=SESSION_TOKEN if with_token else None,
                    config=Config(retries={"max_attempts": 0}))
                client.meta.events.register("before-send", _before_send)
                captured.clear()
                try:
                    getattr(client, botocore.xform_name(op))(**params)
                except Stop:
                    pass
                req = captured["request"]
                write_vector(stem + suffix + ("-token" if with_token else ""),
                             service, client.meta.service_model.signing_name,
                             op, region, params, req, with_token)
                n += 1
    print(f"wrote {n} vectors to {os.path.relpath(OUT)} (botocore {botocore.__version__})")


def _str(v):
    return v.decode() if isinstance(v, bytes) else v


def write_vector(name, service, signing_name, op, region, params, req, with_token):
    from urllib.parse import urlsplit
    url = urlsplit(req.url)
    auth = req.headers["Authorization"]
    auth = auth.decode() if isinstance(auth, bytes) else auth
    signed = auth.split("SignedHeaders=")[1].split(",")[0].split(";")
    body = req.body or b""
    if isinstance(body, str):
        body = body.encode()
    headers = []
    for k, v in req.headers.items():
        v = v.decode() if isinstance(v, bytes) else v
        # what kiln's caller passes: the signed headers but the signer's own
        if k.lower() in signed and k.lower() not in (
                "host", "x-amz-date", "x-amz-security-token"):
            headers.append([k, v])
    vec = {
        "name": name,
        "generator": "tests/vectors/gen_sigv4_vectors.py, botocore " + botocore.__version__,
        "service": service,
        "signing_name": signing_name,
        "operation": op,
        "params": params,
        "region": region,
        "time": FROZEN_UNIX,
        "credentials": {"access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY},
        "request": {
            "method": req.method,
            "url": req.url,
            "host": url.netloc,
            "path": url.path or "/",
            "query": url.query,
            "headers": headers,
            "body": body.decode("utf-8"),
        },
        "signed_headers": ";".join(signed),
        "amz_date": _str(req.headers["X-Amz-Date"]),
        "canonical_request": captured["canonical_request"],
        "string_to_sign": captured["string_to_sign"],
        "authorization": auth,
    }
    if with_token:
        vec["credentials"]["session_token"] = SESSION_TOKEN
        assert _str(req.headers["X-Amz-Security-Token"]) == SESSION_TOKEN
    with open(os.path.join(OUT, name + ".json"), "w") as f:
        json.dump(vec, f, indent=2, ensure_ascii=False, sort_keys=False)
        f.write("\n")


if __name__ == "__main__":
    sys.exit(main())
