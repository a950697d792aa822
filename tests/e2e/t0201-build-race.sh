#!/bin/bash
# e2e/t0201-build-race: builds of one image started together each reserve a
# version of their own (SSM create-if-absent), so they make different AMIs;
# nothing temporary is left.
. "$(dirname "$0")/lib-build.sh"
build_setup

write_template web.json '' '[{"type": "shell", "inline": ["sleep 0.3", "echo racing {{version}}"]}]'
n=3
for i in $(seq $n); do
	"$KILN" build web.json >"race$i.out" 2>"race$i.err" &
	eval "pid$i=$!"
done
for i in $(seq $n); do
	eval "wait \$pid$i"
	rc=$?
	check "racing build $i succeeds (rc $rc)" [ "$rc" = 0 ]
done
versions=$(for i in $(seq $n); do tail -n1 "race$i.out" | sed -n 's/^web@\([0-9]*\) ami-.*/\1/p'; done | sort -n | tr '\n' ' ')
check "they got versions 1 2 3, one each ($versions)" [ "$versions" = "1 2 3 " ]
ids=$(for i in $(seq $n); do tail -n1 "race$i.out" | cut -d' ' -f2; done | sort -u | wc -l)
check "three different AMIs" [ "$ids" = 3 ]
check "moto has web-v1, web-v2, web-v3" eval '[ "$(images_named web | cut -d" " -f2 | sort | tr "\n" " ")" = "web-v1 web-v2 web-v3 " ]'
assert_no_leftovers

# a version whose reservation exists (a build elsewhere holds it) is skipped
ssm PutParameter '{"Name": "/kiln/images/web/versions/4", "Value": "{\"owner\": \"elsewhere\"}", "Type": "String"}' >/dev/null
"$KILN" build web.json >next.out 2>next.err
check "a reserved version is skipped: the next build is web@5" grep -q '^web@5 ami-' next.out
assert_no_leftovers "after web@5"
finish
