#!/bin/bash
# e2e/t0205-build-templates: every kind of bad template makes `kiln build`
# exit 2 with a file:line:column message before a single AWS request (the
# front counts them), and `kiln validate` says the same.
. "$(dirname "$0")/lib-build.sh"
BUILD_FRONT=1
build_setup

echo 'echo hi' >setup.sh
requests() {
	curl -s "$FRONT/__front/stats" | "$py" -c 'import json,sys; print(json.load(sys.stdin)["total"])'
}

# bad NAME MESSAGE [kiln args...] < template text
bad() {
	local name=$1 want=$2
	shift 2
	cat >"$name.json"
	local before after rc
	before=$(requests)
	"$KILN" build "$name.json" "$@" >"$name.out" 2>"$name.err"
	rc=$?
	after=$(requests)
	check "$name: exit 2 (rc $rc)" [ "$rc" = 2 ]
	check "$name: says '$want'" grep -qF -- "kiln: error: $want" "$name.err"
	check "$name: no AWS request ($before -> $after)" [ "$before" = "$after" ]
	"$KILN" validate "$name.json" "$@" >"$name.vout" 2>"$name.verr"
	rc=$?
	check "$name: validate exits 2 too (rc $rc)" [ "$rc" = 2 ]
	check "$name: validate says the same" grep -qF -- "kiln: error: $want" "$name.verr"
}

head='  "name": "web", "source_image": "ami-760aaa0f", "instance_type": "t3.micro",
  "ssh_username": "root", "ssh_host": "127.0.0.1",'

bad syntax "syntax.json:3:28: ':' expected near '\"t3.micro\"'" <<'TEMPLATE'
{
  "name": "web",
  "instance_type" "t3.micro"
}
TEMPLATE
bad unknown-key 'unknown-key.json:4:3: unknown key "instnace_type" in template (did you mean "instance_type"?)' <<TEMPLATE
{
$head
  "instnace_type": "t3.small"
}
TEMPLATE
bad wrong-type 'wrong-type.json:4:15: "ssh_port" must be an integer, not a string' <<TEMPLATE
{
$head
  "ssh_port": "22"
}
TEMPLATE
bad missing-key 'missing-key.json:1:1: missing required key "ssh_username" (a string)' <<'TEMPLATE'
{"name": "web", "source_image": "ami-760aaa0f", "instance_type": "t3.micro"}
TEMPLATE
bad missing-file "missing-file.json:4:48: cannot read 'nope.sh': No such file or directory" <<TEMPLATE
{
$head
  "provisioners": [{"type": "shell", "script": "nope.sh"}]
}
TEMPLATE
bad undefined-var 'undefined-var.json:4:49: undefined variable "greeting" in "element 1" (declare it in "variables")' <<TEMPLATE
{
$head
  "provisioners": [{"type": "shell", "inline": ["{{var greeting}}"]}]
}
TEMPLATE
bad bad-cidr "bad-cidr.json:4:23: '10.1.2.3/8' has host bits set (did you mean '10.0.0.0/8'?)" <<TEMPLATE
{
$head
  "temporary_cidrs": ["10.1.2.3/8"]
}
TEMPLATE
bad open-cidr "open-cidr.json:4:23: '0.0.0.0' is not a CIDR: add a prefix length, e.g. '0.0.0.0/32'" <<TEMPLATE
{
$head
  "temporary_cidrs": ["0.0.0.0"]
}
TEMPLATE
bad inline-and-script 'inline-and-script.json:4:55: provisioner 1 (shell): "inline" and "script" cannot both be set' <<TEMPLATE
{
$head
  "provisioners": [{"type": "shell", "inline": ["x"], "script": "setup.sh"}]
}
TEMPLATE
bad unknown-provisioner 'unknown-provisioner.json:4:29: unknown provisioner type "ansible" (shell or file)' <<TEMPLATE
{
$head
  "provisioners": [{"type": "ansible"}]
}
TEMPLATE
bad version-too-early 'version-too-early.json:1:10: {{version}} cannot be used in "name": it is not known yet there' <<'TEMPLATE'
{"name": "web-{{version}}"}
TEMPLATE
bad required-var 'required-var.json:4:27: variable "region" has no default: set it with --var region=VALUE or --var-file' <<TEMPLATE
{
$head
  "variables": {"region": null}
}
TEMPLATE
bad undeclared-cli-var "--var 'colour=red': variable \"colour\" is not declared in undeclared-cli-var.json" --var colour=red <<TEMPLATE
{
$head
  "variables": {"region": "eu-west-1"}
}
TEMPLATE
echo '{"region": 42}' >vars.json
bad var-file-type 'vars.json:1:12: variable "region" must be a string, not an integer' --var-file vars.json <<TEMPLATE
{
$head
  "variables": {"region": null}
}
TEMPLATE
bad bad-provider 'bad-provider.json:4:15: unknown provider "gcp" (aws or local)' <<TEMPLATE
{
$head
  "provider": "gcp"
}
TEMPLATE
bad block-typo 'block-typo.json:4:13: unknown key "source_imgae" in the "local" block (did you mean "source_image"?)' <<TEMPLATE
{
$head
  "local": {"source_imgae": "debian-12"}
}
TEMPLATE

"$KILN" build >noarg.out 2>noarg.err
rc=$?
check "no template: usage, exit 2 (rc $rc)" [ "$rc" = 2 ]
"$KILN" build syntax.json --on-error explode >oe.out 2>oe.err
rc=$?
check "a bad --on-error: exit 2 (rc $rc)" [ "$rc" = 2 ]
"$KILN" build does-not-exist.json >dne.out 2>dne.err
rc=$?
check "a missing template: exit 2 (rc $rc)" [ "$rc" = 2 ]
check "... naming it" grep -q "does-not-exist.json" dne.err
check "nothing was ever asked of AWS" [ "$(requests)" = 0 ]
assert_no_leftovers
finish
