#!/bin/bash
# e2e/t0200-build-basic: two builds give web@1 then web@2, each an AMI named
# web-vN tagged kiln:* (and its snapshots too), recorded in the manifest and
# the registry, with nothing temporary left in moto; --json ends with the
# result event; a file upload arrives intact.
. "$(dirname "$0")/lib-build.sh"
build_setup

mkdir -p app
head -c 300000 /dev/urandom >app/blob.bin
echo "hello" >app/index.html
write_template web.json '"tags": {"team": "web", "release": "r{{version}}"}' \
	'[{"type": "shell", "inline": ["echo building {{version}}", "uname -s"]},
	  {"type": "file", "source": "app/", "destination": "'"$T"'/uploaded-{{version}}"},
	  {"type": "shell", "inline": ["test \"$(cat '"$T"'/uploaded-{{version}}/index.html)\" = hello"]}]'

"$KILN" validate web.json >validate.out 2>&1
check "kiln validate accepts the template" grep -q "ok: image 'web'" validate.out

"$KILN" build web.json >build1.out 2>build1.err
rc=$?
check "first build succeeds (rc $rc)" [ "$rc" = 0 ]
line1=$(tail -n1 build1.out)
check "stdout ends with web@1 ami-... ($line1)" eval '[[ "$line1" =~ ^web@1\ ami-[0-9a-f]+$ ]]'
ami1=${line1#web@1 }
check "remote output is streamed, prefixed" grep -q '| building 1' build1.err
check "the upload arrived intact" cmp -s app/blob.bin "$T/uploaded-1/blob.bin"
assert_no_leftovers "after build 1"

tags=$(tags_of "$ami1")
for want in kiln:image=web kiln:version=1 "kiln:source-image=$SOURCE_AMI" kiln:template-sha256= \
	kiln:built-at= kiln:build-id= team=web release=r1; do
	check "image 1 tagged $want" has_tag "$tags" "$want"
done
sha=$(sha256sum web.json | cut -d' ' -f1)
check "kiln:template-sha256 is the template's sha256" has_tag "$tags" "kiln:template-sha256=$sha"
check "image 1 is named web-v1" eval 'images_named web | grep -q "^$ami1 web-v1 available$"'
snaps=$(snapshots_of "$ami1")
check "image 1 has snapshots" [ -n "$snaps" ]
for s in $snaps; do
	st=$(tags_of "$s")
	check "snapshot $s tagged kiln:image=web" has_tag "$st" kiln:image=web
	check "snapshot $s tagged kiln:version=1" has_tag "$st" kiln:version=1
	check "snapshot $s tagged team=web" has_tag "$st" team=web
done

"$KILN" build web.json --json >build2.out 2>build2.err
rc=$?
check "second build succeeds (rc $rc)" [ "$rc" = 0 ]
last=$(tail -n1 build2.out)
check "--json ends with the result event" "$py" -c '
import json, sys
e = json.loads(sys.argv[1])
assert e["event"] == "result" and e["name"] == "web" and e["version"] == 2, e
assert e["image_id"].startswith("ami-"), e' "$last"
check "--json prints only JSON on stdout" "$py" -c '
import json, sys
for line in open(sys.argv[1]):
    json.loads(line)' build2.out
ami2=$("$py" -c 'import json,sys; print(json.loads(sys.argv[1])["image_id"])' "$last")
check "version 2 is a different image" [ "$ami2" != "$ami1" ]
check "image 2 tagged kiln:version=2" has_tag "$(tags_of "$ami2")" kiln:version=2
assert_no_leftovers "after build 2"

check "the manifest lists both builds, Packer style" "$py" -c '
import json, sys
m = json.load(open("kiln-manifest.json"))
ids = [b["artifact_id"] for b in m["builds"]]
assert ids == ["us-east-1:" + sys.argv[1], "us-east-1:" + sys.argv[2]], ids
assert m["last_run_uuid"] == m["builds"][1]["packer_run_uuid"]
assert m["builds"][1]["custom_data"]["version"] == "2"' "$ami1" "$ami2"

"$KILN" images list web >list.out 2>&1
check "kiln images list shows both versions" eval 'grep -q "$ami1" list.out && grep -q "$ami2" list.out'
check "the version records exist in SSM" eval \
	"ssm GetParameter '{\"Name\": \"/kiln/images/web/versions/2\"}' | grep -q '\"Version\"'"

# --manifest elsewhere
"$KILN" build web.json --manifest "$T/elsewhere.json" >build3.out 2>build3.err
check "--manifest writes where it is told" eval '[ -s "$T/elsewhere.json" ] && grep -q "web@3 ami-" build3.out'
assert_no_leftovers "after build 3"

finish
