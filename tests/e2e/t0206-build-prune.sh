#!/bin/bash
# e2e/t0206-build-prune: `kiln images prune NAME --keep N` deregisters older
# versions and deletes their snapshots, but never the newest N, never an
# image a kiln fleet's instance runs, never one a fleet's record names (a
# rollback target); a template's keep_versions prunes the same way after a
# successful build.
. "$(dirname "$0")/lib-build.sh"
build_setup

write_template web.json '' '[{"type": "shell", "inline": ["true"]}]'
for v in 1 2 3 4; do
	"$KILN" build web.json >"b$v.out" 2>"b$v.err"
	eval "ami$v=\$(tail -n1 b$v.out | cut -d' ' -f2)"
done
check "four versions built" [ "$(images_named web | wc -l)" = 4 ]
snaps3=$(snapshots_of "$ami3")
check "web@3 has snapshots" [ -n "$snaps3" ]

# web@1 runs in a fleet; web@2 is a fleet's rollback target, named in its record
fleet_instance=$(ec2 "Action=RunInstances&ImageId=$ami1&MinCount=1&MaxCount=1&InstanceType=t3.micro&TagSpecification.1.ResourceType=instance&TagSpecification.1.Tag.1.Key=kiln:fleet&TagSpecification.1.Tag.1.Value=web" |
	xml_values instanceId | head -n1)
check "a fleet instance runs web@1" [ -n "$fleet_instance" ]
ssm PutParameter '{"Name": "/kiln/fleets/web/state", "Type": "String", "Value": "{\"previous_image_id\": \"'"$ami2"'\"}"}' >/dev/null

"$KILN" images prune web --keep 1 --dry-run >dry.out 2>dry.err
rc=$?
check "prune --dry-run succeeds (rc $rc)" [ "$rc" = 0 ]
check "... would delete web@3 only" eval 'grep -q "would delete web@3" dry.err && ! grep -q "would delete web@[124]" dry.err'
check "... and deletes nothing" [ "$(images_named web | wc -l)" = 4 ]

"$KILN" images prune web --keep 1 >p.out 2>p.err
rc=$?
check "prune succeeds (rc $rc)" [ "$rc" = 0 ]
left=$(images_named web | cut -d' ' -f2 | sort | tr '\n' ' ')
check "web@3 went; 4 (newest), 2 (rollback target), 1 (in use) stay: $left" [ "$left" = "web-v1 web-v2 web-v4 " ]
check "it says why it kept web@1 and web@2" eval 'grep -q "keeping web@1" p.err && grep -q "keeping web@2" p.err'
for s in $snaps3; do
	check "web@3's snapshot $s is deleted" eval '! ec2 "Action=DescribeSnapshots&SnapshotId.1=$s" | grep -q "<snapshotId>$s<"'
done
"$KILN" images prune web --keep 0 >k0.out 2>k0.err
rc=$?
check "--keep 0 is refused (rc $rc)" [ "$rc" = 2 ]
"$KILN" images prune web >nokeep.out 2>nokeep.err
rc=$?
check "--keep is required (rc $rc)" [ "$rc" = 2 ]

# nothing protects them any more: keep_versions 2 keeps the new web@5 and web@4
ec2 "Action=TerminateInstances&InstanceId.1=$fleet_instance" >/dev/null
ssm DeleteParameter '{"Name": "/kiln/fleets/web/state"}' >/dev/null
write_template keep.json '"keep_versions": 2' '[{"type": "shell", "inline": ["true"]}]'
"$KILN" build keep.json >k.out 2>k.err
rc=$?
check "a build with keep_versions 2 succeeds (rc $rc)" [ "$rc" = 0 ]
check "... as web@5" grep -q '^web@5 ami-' k.out
left=$(images_named web | cut -d' ' -f2 | sort | tr '\n' ' ')
check "keep_versions left web@4 and web@5 ($left)" [ "$left" = "web-v4 web-v5 " ]
"$KILN" images list web >list.out 2>&1
check "kiln images list agrees" eval '[ "$(grep -c "^web " list.out)" = 2 ]'
assert_no_leftovers
finish
