#!/bin/bash
# e2e/t0207-build-options: the aws image and instance options against moto.
#
# A build with IMDSv2 required, a gp3 root volume of 20 GiB encrypted with a
# KMS key, imds_support, ami_regions, ami_users and snapshot_users gives an
# image in us-east-1 and a copy in eu-west-1 and us-west-2, each tagged like
# the original (snapshots too), shared, recorded under its region. What moto
# keeps is checked in moto (the build instance's metadata options and
# volume, while it runs; launch permissions; copies and tags); what moto
# accepts and forgets (ImdsSupport, CreateVolumePermission, CopyImage's
# encryption) is checked in moto's own record of the requests it got.
#
# moto has no EnableImageDeprecation: a build with deprecate_at fails
# there, which shows a failure after the copies removes the image and every
# copy. A build killed (SIGKILL) while its copies are pending (the front
# keeps them so) leaves them to `kiln cleanup`, which removes them in every
# region.
BUILD_FRONT=1
. "$(dirname "$0")/lib-build.sh"
# moto's record of every request it receives (headers and body), for what it does not keep
export MOTO_ENABLE_RECORDING=true MOTO_RECORDER_FILEPATH="$T/moto-requests.jsonl"
build_setup

KEY=arn:aws:kms:us-east-1:123456789012:key/kiln-e2e
KEY_EU=arn:aws:kms:eu-west-1:123456789012:key/kiln-e2e
KEY_US=arn:aws:kms:us-west-2:123456789012:key/kiln-e2e
USER=111122223333

ec2_in() { # REGION QUERY: the XML reply of moto for that region
	curl -s -H "Authorization: AWS4-HMAC-SHA256 Credential=testing/20200101/$1/ec2/aws4_request, SignedHeaders=host, Signature=0" \
		--data "Version=2016-11-15&$2" "$MOTO_URL/"
}

# Images named NAME in REGION owned by us, "ID NAME STATE" a line.
images_in() { # REGION NAME
	ec2_in "$1" "Action=DescribeImages&Owner.1=self&Filter.1.Name=name&Filter.1.Value.1=$2" |
		"$py" -c '
import sys, xml.etree.ElementTree as ET
root = ET.fromstring(sys.stdin.read())
ns = {"e": root.tag.split("}")[0].strip("{")}
for it in root.find("e:imagesSet", ns) or []:
    print(it.findtext("e:imageId", namespaces=ns), it.findtext("e:name", namespaces=ns),
          it.findtext("e:imageState", namespaces=ns))'
}

tags_in() { # REGION ID: KEY=VALUE lines, sorted, without the build-time stamp
	ec2_in "$1" "Action=DescribeTags&Filter.1.Name=resource-id&Filter.1.Value.1=$2" |
		"$py" -c '
import sys, xml.etree.ElementTree as ET
root = ET.fromstring(sys.stdin.read())
ns = {"e": root.tag.split("}")[0].strip("{")}
for it in root.find("e:tagSet", ns) or []:
    print("%s=%s" % (it.findtext("e:key", namespaces=ns), it.findtext("e:value", namespaces=ns)))' | sort
}

snapshots_in() { # REGION IMAGE_ID
	ec2_in "$1" "Action=DescribeImages&ImageId.1=$2" | xml_values snapshotId
}

snapshot_count() { # REGION: snapshots we own there
	ec2_in "$1" "Action=DescribeSnapshots&Owner.1=self" | xml_values snapshotId | wc -l
}

# The requests moto received, decoded: "REGION ACTION" then the form fields, as JSON a line.
requests() {
	"$py" -c '
import base64, json, sys, urllib.parse
for line in open(sys.argv[1]):
    r = json.loads(line)
    body = r.get("body") or ""
    if r.get("body_encoded"):
        body = base64.b64decode(body).decode("utf-8", "replace")
    auth = r.get("headers", {}).get("Authorization", "")
    region = auth.split("Credential=")[1].split("/")[2] if "Credential=" in auth else ""
    f = dict(urllib.parse.parse_qsl(body, keep_blank_values=True))
    if "Action" in f:
        f["_region"] = region
        print(json.dumps(f))' "$MOTO_RECORDER_FILEPATH"
}

# a provisioner that looks at moto while the build instance lives: its
# volumes and its metadata options are gone with it afterwards
cat >"$T/look.sh" <<EOF
q() { curl -s -H 'Authorization: AWS4-HMAC-SHA256 Credential=testing/20200101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0' --data "Version=2016-11-15&\$1" $MOTO_URL/; }
q 'Action=DescribeInstances&Filter.1.Name=instance-state-name&Filter.1.Value.1=running&Filter.1.Value.2=pending' >$T/instances.xml
q 'Action=DescribeVolumes' >$T/volumes.xml
EOF

OPTIONS='"region": "us-east-1",
  "aws": {
    "metadata_options": {"http_tokens": "required", "http_put_response_hop_limit": 2},
    "imds_support": "v2.0",
    "root_volume_size_gb": 20, "root_volume_type": "gp3", "root_volume_iops": 4000,
    "encrypt_boot": true, "kms_key_id": "'$KEY'",
    "ami_regions": ["eu-west-1", "us-west-2"],
    "region_kms_key_ids": {"eu-west-1": "'$KEY_EU'", "us-west-2": "'$KEY_US'"},
    "ami_users": ["'$USER'"], "snapshot_users": ["'$USER'"]'
write_template web.json "$OPTIONS
  }" '[{"type": "shell", "inline": ["sh '"$T"'/look.sh"]}]'

# ---- the template is checked before anything is created ----

write_template bad.json '"ami_regions": ["eu-west-1"]'
"$KILN" validate bad.json >bad.out 2>&1
rc=$?
check "an aws option outside the aws block: exit 2 (rc $rc)" [ "$rc" = 2 ]
check "... positioned, saying where it belongs" \
	grep -q 'bad.json:[0-9]*:[0-9]*: "ami_regions" is an aws option: put it in the "aws" block' bad.out
write_template bad.json '"aws": {"encrypt_boot": true, "ami_groups": ["all"]}'
"$KILN" validate bad.json >bad.out 2>&1
check "an encrypted public image is refused" grep -q 'an encrypted image cannot be made public' bad.out
"$KILN" validate web.json >validate.out 2>&1
check "kiln validate accepts the options" grep -q "ok: image 'web'" validate.out

# ---- a build with every option moto can take ----

"$KILN" build web.json --json >build1.json 2>build1.err
rc=$?
check "the build succeeds (rc $rc)" [ "$rc" = 0 ]
result=$(tail -n1 build1.json)
ami=$("$py" -c 'import json,sys; print(json.loads(sys.argv[1])["image_id"])' "$result")
eu=$("$py" -c 'import json,sys; print(json.loads(sys.argv[1])["copies"]["eu-west-1"])' "$result")
us=$("$py" -c 'import json,sys; print(json.loads(sys.argv[1])["copies"]["us-west-2"])' "$result")
check "the result names the image and a copy per region ($ami $eu $us)" \
	eval '[[ "$ami" == ami-* && "$eu" == ami-* && "$us" == ami-* ]]'
assert_no_leftovers "after the build"

check "the build instance required IMDSv2 with a hop limit of 2" "$py" -c '
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
ns = {"e": root.tag.split("}")[0].strip("{")}
insts = root.findall(".//e:instancesSet/e:item", ns)
assert len(insts) == 1, len(insts)
md = insts[0].find("e:metadataOptions", ns)
assert md.findtext("e:httpTokens", namespaces=ns) == "required"
assert md.findtext("e:httpPutResponseHopLimit", namespaces=ns) == "2"' "$T/instances.xml"
check "its root volume: 20 GiB gp3, encrypted with the key" "$py" -c '
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
ns = {"e": root.tag.split("}")[0].strip("{")}
vols = [v for v in root.findall(".//e:volumeSet/e:item", ns)
        if v.findtext("e:attachmentSet/e:item/e:device", namespaces=ns) == "/dev/xvda"]
assert len(vols) == 1, len(vols)
v = vols[0]
got = [v.findtext("e:" + k, namespaces=ns) for k in ("size", "volumeType", "encrypted", "kmsKeyId")]
assert got == ["20", "gp3", "true", sys.argv[2]], got' "$T/volumes.xml" "$KEY"

check "us-east-1 has web-v1" eval 'images_in us-east-1 web-v1 | grep -q "^$ami web-v1 available$"'
check "eu-west-1 has its copy" eval 'images_in eu-west-1 web-v1 | grep -q "^$eu web-v1 available$"'
check "us-west-2 has its copy" eval 'images_in us-west-2 web-v1 | grep -q "^$us web-v1 available$"'
want=$(tags_in us-east-1 "$ami")
check "the image carries the kiln tags" eval 'printf "%s\n" "$want" | grep -q "^kiln:version=1$"'
for r in eu-west-1 us-west-2; do
	id=$eu
	[ $r = us-west-2 ] && id=$us
	check "the copy in $r is tagged like the original" [ "$(tags_in $r "$id")" = "$want" ]
	snaps=$(snapshots_in $r "$id")
	check "the copy in $r has snapshots" [ -n "$snaps" ]
	for s in $snaps; do
		check "its snapshot $s is tagged like the original" [ "$(tags_in $r "$s")" = "$want" ]
	done
done
launchers() { # REGION IMAGE_ID: the accounts that may launch it
	ec2_in "$1" "Action=DescribeImageAttribute&ImageId=$2&Attribute=launchPermission" | xml_values userId
}
check "us-east-1: $ami may be launched by $USER" [ "$(launchers us-east-1 "$ami")" = $USER ]
check "eu-west-1: $eu may be launched by $USER" [ "$(launchers eu-west-1 "$eu")" = $USER ]
check "us-west-2: $us may be launched by $USER" [ "$(launchers us-west-2 "$us")" = $USER ]

requests >requests.jsonl
check "CopyImage to each region: encrypted with that region's key, from us-east-1, with a token" "$py" -c '
import json, sys
reqs = [json.loads(l) for l in open("requests.jsonl")]
copies = {r["_region"]: r for r in reqs if r["Action"] == "CopyImage"}
assert sorted(copies) == ["eu-west-1", "us-west-2"], sorted(copies)
for region, key in (("eu-west-1", sys.argv[2]), ("us-west-2", sys.argv[3])):
    c = copies[region]
    assert c["SourceImageId"] == sys.argv[1] and c["SourceRegion"] == "us-east-1", c
    assert c["Encrypted"] == "true" and c["KmsKeyId"] == key, c
    assert c["ClientToken"].startswith("kiln-copy-") and c["Name"] == "web-v1", c
    assert c["TagSpecification.1.ResourceType"] == "image", c' "$ami" "$KEY_EU" "$KEY_US"
check "ImdsSupport v2.0 set on the image and on each copy, in its region" "$py" -c '
import json, sys
reqs = [json.loads(l) for l in open("requests.jsonl")]
got = sorted((r["_region"], r["ImageId"]) for r in reqs
             if r["Action"] == "ModifyImageAttribute" and r.get("ImdsSupport.Value") == "v2.0")
want = sorted([("us-east-1", sys.argv[1]), ("eu-west-1", sys.argv[2]), ("us-west-2", sys.argv[3])])
assert got == want, got' "$ami" "$eu" "$us"
check "CreateVolumePermission for $USER on every snapshot of the three" "$py" -c '
import json, sys
reqs = [json.loads(l) for l in open("requests.jsonl")]
got = [r for r in reqs if r["Action"] == "ModifySnapshotAttribute"]
assert len(got) == 3, len(got)
for r in got:
    assert r["Attribute"] == "createVolumePermission", r
    assert r["CreateVolumePermission.Add.1.UserId"] == sys.argv[1], r' "$USER"
check "RunInstances asked for the root volume's 4000 IOPS (moto forgets them), and to delete it with the instance" "$py" -c '
import json, sys
reqs = [json.loads(l) for l in open("requests.jsonl")]
run = [r for r in reqs if r["Action"] == "RunInstances"]
assert len(run) == 1, len(run)
r = run[0]
assert r["BlockDeviceMapping.1.DeviceName"] == "/dev/xvda", r
assert r["BlockDeviceMapping.1.Ebs.DeleteOnTermination"] == "true", r
assert r["BlockDeviceMapping.1.Ebs.Iops"] == "4000", r
assert r["BlockDeviceMapping.1.Ebs.KmsKeyId"] == sys.argv[1], r' "$KEY"

check "the registry records each copy under its region" "$py" -c '
import json, os, sys
reg = json.load(open(os.path.join(os.environ["KILN_STATE_DIR"], "registry.json")))
s = json.dumps(reg)
for region, id in (("us-east-1", sys.argv[1]), ("eu-west-1", sys.argv[2]), ("us-west-2", sys.argv[3])):
    assert "aws/" + region in s and id in s, (region, id)' "$ami" "$eu" "$us"
AWS_REGION=eu-west-1 "$KILN" images list web >list-eu.out 2>&1
check "kiln images list in eu-west-1 shows the copy" grep -q "$eu" list-eu.out
check "the manifest's artifact_id names the three, Packer style" "$py" -c '
import json, sys
m = json.load(open("kiln-manifest.json"))
want = "us-east-1:%s,eu-west-1:%s,us-west-2:%s" % tuple(sys.argv[1:4])
assert m["builds"][-1]["artifact_id"] == want, m["builds"][-1]["artifact_id"]' "$ami" "$eu" "$us"

# ---- a failure after the copies: moto has no EnableImageDeprecation ----

before="$(snapshot_count us-east-1) $(snapshot_count eu-west-1) $(snapshot_count us-west-2)"
write_template deprecated.json "$OPTIONS,
    \"deprecate_at\": \"90d\"
  }" '[{"type": "shell", "inline": ["true"]}]'
"$KILN" build deprecated.json >build2.out 2>build2.err
rc=$?
check "a build whose deprecation moto refuses fails (rc $rc)" [ "$rc" = 1 ]
check "... saying so" grep -q "cannot set the deprecation time of image" build2.err
for r in us-east-1 eu-west-1 us-west-2; do
	check "... and leaves no web-v2 in $r" [ -z "$(images_in $r web-v2)" ]
done
after="$(snapshot_count us-east-1) $(snapshot_count eu-west-1) $(snapshot_count us-west-2)"
check "... nor their snapshots (before: $before, after: $after)" [ "$before" = "$after" ]
check "... nor a journal" eval '! ls "$KILN_STATE_DIR"/builds/*.json >/dev/null 2>&1'
assert_no_leftovers "after the failed build"

# ---- SIGKILL while the copies are pending, then kiln cleanup ----

# Every image is pending for 600 s (of the front's clock). Once the image
# itself exists the front's clock jumps 600 s: it becomes available, and the
# copies made after that stay pending.
curl -sf -o /dev/null -X PATCH -d '{"image_pending_s": 600}' "$FRONT_URL/__front/config"
write_template killed.json "$OPTIONS
  }" '[{"type": "shell", "inline": ["true"]}]'
"$KILN" build killed.json >build3.out 2>build3.err &
bpid=$!
journaled() { # KIND STATE: a build journal has resources.KIND.state == STATE
	"$py" -c '
import glob, json, os, sys
for p in glob.glob(os.path.join(os.environ["KILN_STATE_DIR"], "builds", "*.json")):
    if json.load(open(p)).get("resources", {}).get(sys.argv[1], {}).get("state") == sys.argv[2]:
        sys.exit(0)
sys.exit(1)' "$1" "$2"
}
wait_journal() { # KIND STATE
	local i
	for i in $(seq 900); do
		journaled "$1" "$2" && return 0
		kill -0 $bpid 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}
check "the build creates its image" wait_journal image created
curl -sf -o /dev/null -X POST -d '{"advance_s": 600}' "$FRONT_URL/__front/clock"
waited=0
wait_journal copy:eu-west-1 created && wait_journal copy:us-west-2 created && waited=1
check "the build gets to waiting for its copies" [ $waited = 1 ]
kill -KILL $bpid
wait $bpid 2>/dev/null
curl -sf -o /dev/null -X PATCH -d '{"image_pending_s": 0}' "$FRONT_URL/__front/config"
for r in eu-west-1 us-west-2; do
	check "after SIGKILL the copy in $r is there" [ -n "$(images_in $r web-v3)" ]
done
"$KILN" cleanup --json >clean.json 2>clean.err
rc=$?
check "kiln cleanup succeeds (rc $rc)" [ "$rc" = 0 ]
check "it removed both copies, the image, instance, key pair and group" "$py" -c '
import json
ev = [json.loads(l) for l in open("clean.json")]
gone = sorted(e["kind"] for e in ev if e["event"] == "resource" and e["action"] == "deleted")
assert gone == ["firewall", "image", "image", "image", "instance", "keypair"], gone
ids = " ".join(e["id"] for e in ev if e["event"] == "resource")
assert " in eu-west-1" in ids and " in us-west-2" in ids, ids'
for r in us-east-1 eu-west-1 us-west-2; do
	check "no web-v3 left in $r" [ -z "$(images_in $r web-v3)" ]
done
assert_no_leftovers "after SIGKILL and kiln cleanup"
finish
