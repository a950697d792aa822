#!/bin/bash
test_description='every operation of the aws provider, and so every typed AWS call, against moto'
. "$(dirname "$0")/lib.sh"

[ -x "$KILN_AWS_DRIVER" ] || skip_all "no kiln-aws-driver at '$KILN_AWS_DRIVER'"
command -v jq >/dev/null 2>&1 || skip_all "no jq"
command -v aws >/dev/null 2>&1 || skip_all "no aws CLI (it sets up the load balancers)"
command -v ssh-keygen >/dev/null 2>&1 || skip_all "no ssh-keygen"

start_moto

# drv OP ARGS...: the driver, its JSON on stdout, its counters kept for the last test
ncalls=0
drv() {
	ncalls=$((ncalls + 1))
	"$KILN_AWS_DRIVER" --counters "counters.$ncalls.json" "$@"
}

AMI=ami-03cf127a # one of moto's built-in images, whose id never changes
BUILD=b-e2e-1

test_expect_success 'whoami: the account and where everything points' '
	drv whoami >who.json &&
	test "$(jq -r .account who.json)" = 123456789012 &&
	test "$(jq -r .region who.json)" = us-east-1 &&
	test "$(jq -r .endpoint who.json)" = "$MOTO_URL/" &&
	test "$(jq -r .credential_source who.json)" = environment &&
	"$KILN" whoami >out &&
	grep "^account *123456789012$" out &&
	grep "^endpoint *$MOTO_URL/$" out &&
	"$KILN" whoami --json | jq -e ".account == \"123456789012\" and .provider == \"aws\""
'

test_expect_success 'usage errors exit 2 with the usage line; help exits 0' '
	test_expect_code 2 "$KILN" images 2>err &&
	grep "^usage: kiln images list" err &&
	test_expect_code 2 "$KILN" images frob 2>err &&
	grep "unknown subcommand .frob." err &&
	test_expect_code 2 "$KILN" images show 2>err &&
	test_expect_code 2 "$KILN" images list "bad name!" 2>err &&
	test_expect_code 2 "$KILN" images list a b 2>err &&
	test_expect_code 2 "$KILN" whoami extra 2>err &&
	test_expect_code 2 "$KILN" whoami --frob 2>err &&
	grep "unknown option .--frob." err &&
	test_expect_code 2 "$KILN" images show "web@x" 2>err &&
	"$KILN" help images >out && grep "^usage: kiln images list" out &&
	"$KILN" whoami --help >out && grep "^usage: kiln whoami" out &&
	"$KILN" --help >out && grep "^  whoami " out && grep "^  images " out
'

test_expect_success 'an unknown provider, or a missing region: exit 2, one line' '
	test_expect_code 2 "$KILN" whoami --provider gcp 2>err &&
	test_line_count = 1 err &&
	grep "unknown provider .gcp." err &&
	(unset AWS_REGION AWS_DEFAULT_REGION && test_expect_code 2 "$KILN" images list 2>err) &&
	test_line_count = 1 err &&
	grep "^kiln: error: no AWS region: set AWS_REGION" err
'

test_expect_success 'set up: a target group, a classic load balancer, a key' '
	VPC=$(aws_cli ec2 describe-vpcs --filters Name=is-default,Values=true | jq -r ".Vpcs[0].VpcId") &&
	SUBNET=$(aws_cli ec2 describe-subnets --filters Name=vpc-id,Values=$VPC | jq -r ".Subnets[0].SubnetId") &&
	TG=$(aws_cli elbv2 create-target-group --name web --protocol HTTP --port 80 --vpc-id $VPC \
		--health-check-interval-seconds 10 | jq -r ".TargetGroups[0].TargetGroupArn") &&
	aws_cli elbv2 modify-target-group-attributes --target-group-arn "$TG" \
		--attributes Key=deregistration_delay.timeout_seconds,Value=20 >/dev/null &&
	aws_cli elb create-load-balancer --load-balancer-name classic \
		--listeners Protocol=HTTP,LoadBalancerPort=80,InstancePort=80 \
		--availability-zones us-east-1a >/dev/null &&
	aws_cli elb modify-load-balancer-attributes --load-balancer-name classic \
		--load-balancer-attributes "{\"ConnectionDraining\":{\"Enabled\":true,\"Timeout\":45}}" >/dev/null &&
	ssh-keygen -q -t ed25519 -N "" -C kiln-e2e -f key &&
	test -n "$VPC" && test -n "$SUBNET" && test -n "$TG"
'

test_expect_success 'key pair: import, import again as ours, refuse as someone else' '
	drv keypair-import kiln-$BUILD key.pub kiln:build-id=$BUILD &&
	aws_cli ec2 describe-key-pairs --key-names kiln-$BUILD >kp.json &&
	jq -e ".KeyPairs[0].Tags[] | select(.Key == \"kiln:build-id\" and .Value == \"$BUILD\")" kp.json &&
	drv keypair-import kiln-$BUILD key.pub kiln:build-id=$BUILD &&
	test_must_fail drv keypair-import kiln-$BUILD key.pub kiln:build-id=someone-else 2>err &&
	grep "^error: conflict: InvalidKeyPair.Duplicate: cannot import key pair .kiln-$BUILD.: one of that name exists and is not this build.s" err
'

test_expect_success 'firewall: default VPC, exactly the CIDRs asked for, recognised when made again' '
	drv firewall-create kiln-$BUILD 22 203.0.113.7/32,198.51.100.0/24 kiln:build-id=$BUILD >fw.json &&
	SG=$(jq -r .id fw.json) &&
	aws_cli ec2 describe-security-groups --group-ids $SG >sg.json &&
	test "$(jq -r ".SecurityGroups[0].VpcId" sg.json)" = "$VPC" &&
	jq -c "[.SecurityGroups[0].IpPermissions[] | {p: .IpProtocol, f: .FromPort, t: .ToPort,
		c: [.IpRanges[].CidrIp] | sort}]" sg.json >rules &&
	echo "[{\"p\":\"tcp\",\"f\":22,\"t\":22,\"c\":[\"198.51.100.0/24\",\"203.0.113.7/32\"]}]" >expect &&
	test_cmp expect rules &&
	drv firewall-create kiln-$BUILD 22 203.0.113.7/32,198.51.100.0/24 kiln:build-id=$BUILD >fw2.json &&
	test "$(jq -r .id fw2.json)" = "$SG" &&
	test "$(aws_cli ec2 describe-security-groups --filters Name=group-name,Values=kiln-$BUILD | jq ".SecurityGroups | length")" = 1
'

test_expect_success 'firewall: in a given subnet, and deleted (twice: gone is fine)' '
	drv firewall-create kiln-sub-$BUILD 8080 10.1.2.3/32 subnet=$SUBNET kiln:build-id=$BUILD >fw3.json &&
	SG2=$(jq -r .id fw3.json) &&
	drv firewall-delete $SG2 10000 &&
	drv firewall-delete $SG2 10000 &&
	! aws_cli ec2 describe-security-groups --group-ids $SG2 2>err &&
	grep InvalidGroup.NotFound err
'

test_expect_success 'launch: tags, token, user data, key and group on the instances' '
	drv launch $AMI t3.micro 2 tok-$BUILD subnet=$SUBNET key=kiln-$BUILD sg=$SG \
		"user_data=#!/bin/sh
echo hello" kiln:build-id=$BUILD kiln:role=build >launch.json &&
	test "$(jq length launch.json)" = 2 &&
	I1=$(jq -r ".[0].id" launch.json) && I2=$(jq -r ".[1].id" launch.json) &&
	jq -e "all(.[]; .tags[\"kiln:build-id\"] == \"$BUILD\" and .key_name == \"kiln-$BUILD\"
		and .subnet_id == \"$SUBNET\" and .image_id == \"$AMI\")" launch.json &&
	aws_cli ec2 describe-instance-attribute --instance-id $I1 --attribute userData >ud.json &&
	jq -r .UserData.Value ud.json | base64 -d >ud &&
	printf "#!/bin/sh\necho hello" >expect && test_cmp expect ud
'

test_expect_success 'describe: by tags, by id, running; console output' '
	drv describe kiln:build-id=$BUILD kiln:role="*" >d.json &&
	test "$(jq "map(select(.state == \"running\")) | length" d.json)" = 2 &&
	drv describe id=$I2 >d2.json &&
	test "$(jq -r ".[0].id" d2.json)" = $I2 &&
	drv describe id=i-0000000000000dead >d3.json &&
	test "$(jq length d3.json)" = 0 &&
	drv console $I1 >con.json &&
	jq -e ".output | length > 0" con.json
'

test_expect_success 'stop: the instance reads stopped' '
	drv stop $I1 &&
	drv describe id=$I1 >d.json &&
	test "$(jq -r ".[0].state" d.json)" = stopped
'

test_expect_success 'image: created from the stopped instance with its tags; snapshots tagged after' '
	drv image-create $I1 web-v1 kiln:image=web kiln:version=1 kiln:build-id=$BUILD >img.json &&
	AMI1=$(jq -r .id img.json) &&
	drv images owner=self kiln:image=web >imgs.json &&
	test "$(jq length imgs.json)" = 1 &&
	test "$(jq -r ".[0].id" imgs.json)" = $AMI1 &&
	test "$(jq -r ".[0].name" imgs.json)" = web-v1 &&
	test "$(jq -r ".[0].state" imgs.json)" = available &&
	SNAPS=$(jq -r ".[0].snapshots[]" imgs.json) &&
	test -n "$SNAPS" &&
	drv tag $SNAPS -- kiln:image=web kiln:version=1 kiln:build-id=$BUILD &&
	aws_cli ec2 describe-snapshots --snapshot-ids $SNAPS >snap.json &&
	jq -e ".Snapshots[0].Tags[] | select(.Key == \"kiln:version\" and .Value == \"1\")" snap.json &&
	drv images name="web-v*" owner=self >byname.json &&
	test "$(jq -r ".[0].id" byname.json)" = $AMI1
'

test_expect_success 'kiln images list and show find it' '
	"$KILN" images list >list &&
	grep "^web  *1  *$AMI1  *available " list &&
	"$KILN" images list web --json >list.json &&
	jq -e "length == 1 and .[0].name == \"web\" and .[0].version == 1 and .[0].id == \"$AMI1\"" list.json &&
	"$KILN" images show web >show &&
	grep "^id  *$AMI1$" show &&
	"$KILN" images show web@1 --json | jq -e ".id == \"$AMI1\"" &&
	"$KILN" images show $AMI1 --json | jq -e ".version == 1" &&
	test_expect_code 1 "$KILN" images show web@2 2>err &&
	grep "no image .web@2." err &&
	"$KILN" images list nothing-here --json | jq -e "length == 0"
'

test_expect_success 'find: everything this build tagged' '
	drv find kiln:build-id=$BUILD >found.json &&
	jq -r "map(.kind) | sort | join(\",\")" found.json >kinds &&
	echo "image,instance,instance,key pair,security group,snapshot" >expect &&
	test_cmp expect kinds
'

test_expect_success 'target group: open, register, healthy, deregister' '
	drv lb-open tg "$TG" >open.json &&
	jq -e ".name == \"web\" and .drain_timeout_s == 20 and .health_interval_s == 10" open.json &&
	drv lb-register tg "$TG" $I2 &&
	drv lb-health tg "$TG" >h.json &&
	test "$(jq -r ".\"$I2\".health" h.json)" = healthy &&
	drv lb-health tg "$TG" $I1 $I2 >h2.json &&
	test "$(jq -r ".\"$I1\".health" h2.json)" = unused &&
	drv lb-deregister tg "$TG" $I2 &&
	drv lb-health tg "$TG" $I2 >h3.json &&
	jq -e ".\"$I2\".health == \"unused\" or .\"$I2\".health == \"draining\"" h3.json
'

test_expect_success 'classic load balancer: open, register, healthy, deregister' '
	drv lb-open classic classic >open.json &&
	jq -e ".name == \"classic\" and .drain_timeout_s == 45" open.json &&
	drv lb-register classic classic $I2 &&
	drv lb-health classic classic >h.json &&
	test "$(jq -r ".\"$I2\".health" h.json)" = healthy &&
	drv lb-deregister classic classic $I2 &&
	aws_cli elb describe-load-balancers --load-balancer-names classic >lb.json &&
	test "$(jq ".LoadBalancerDescriptions[0].Instances | length" lb.json)" = 0 &&
	test_must_fail drv lb-open classic no-such-lb 2>err &&
	grep "^error: not found: LoadBalancerNotFound:" err
'

test_expect_success 'records: create once, recognise our own retry, refuse another value' '
	drv record-create /kiln/images/web/versions/1 "{\"owner\":\"$BUILD\"}" &&
	drv record-create /kiln/images/web/versions/1 "{\"owner\":\"$BUILD\"}" &&
	test_must_fail drv record-create /kiln/images/web/versions/1 "{\"owner\":\"b-2\"}" 2>err &&
	grep "^error: conflict: ParameterAlreadyExists: record ./kiln/images/web/versions/1. exists already" err &&
	drv record-get /kiln/images/web/versions/1 >r.json &&
	jq -e ".value == \"{\\\"owner\\\":\\\"$BUILD\\\"}\" and .version == 1 and .modified_ms > 0" r.json &&
	drv record-put /kiln/images/web/versions/1 v2 &&
	drv record-get /kiln/images/web/versions/1 >r2.json &&
	jq -e ".value == \"v2\" and .version == 2" r2.json &&
	drv record-create /kiln/fleets/web/lock held &&
	drv record-list /kiln/ >names.json &&
	jq -e "sort == [\"/kiln/fleets/web/lock\", \"/kiln/images/web/versions/1\"]" names.json &&
	drv record-list /kiln/fleets >names2.json &&
	jq -e ". == [\"/kiln/fleets/web/lock\"]" names2.json &&
	drv record-delete /kiln/fleets/web/lock &&
	drv record-delete /kiln/fleets/web/lock &&
	test_must_fail drv record-get /kiln/fleets/web/lock 2>err &&
	grep "^error: not found: ParameterNotFound: no record" err
'

test_expect_success 'image delete: deregistered with its snapshots (again: already gone)' '
	drv image-delete $AMI1 &&
	drv images id=$AMI1 >gone.json &&
	test "$(jq length gone.json)" = 0 &&
	! aws_cli ec2 describe-snapshots --snapshot-ids $SNAPS 2>err &&
	grep InvalidSnapshot.NotFound err &&
	drv image-delete $AMI1
'

test_expect_success 'terminate: gone from describe, and again is fine; key pair and group deleted' '
	drv terminate $I1 $I2 &&
	drv describe kiln:build-id=$BUILD >d.json &&
	test "$(jq length d.json)" = 0 &&
	drv describe all kiln:build-id=$BUILD >d2.json &&
	test "$(jq "map(select(.state == \"terminated\")) | length" d2.json)" = 2 &&
	drv terminate $I1 i-0000000000000dead &&
	drv keypair-delete kiln-$BUILD &&
	drv keypair-delete kiln-$BUILD &&
	drv firewall-delete $SG 5000 &&
	drv find kiln:build-id=$BUILD >found.json &&
	test "$(jq length found.json)" = 0
'

test_expect_success 'caller_cidr: loopback for an emulator on loopback' '
	drv caller-cidr >cidr.json &&
	test "$(jq -r .cidr cidr.json)" = 127.0.0.1/32
'

test_expect_success 'a reply past the 16 MiB cap is refused, not retried, nothing else read' '
	port=$(free_port) &&
	cat >big.py <<-\EOF &&
	import http.server, sys
	class H(http.server.BaseHTTPRequestHandler):
	    def do_POST(self):
	        self.rfile.read(int(self.headers["Content-Length"]))
	        sys.stderr.write("request\n")
	        sys.stderr.flush()
	        body = b"<GetCallerIdentityResponse>" + b" " * (17 << 20) + b"</GetCallerIdentityResponse>"
	        self.send_response(200)
	        self.send_header("Content-Length", str(len(body)))
	        self.end_headers()
	        self.wfile.write(body)
	http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
	EOF
	{ python3 big.py $port 2>big.log & big=$!; } &&
	track_pid $big &&
	wait_for_port $port &&
	AWS_ENDPOINT_URL_STS=http://127.0.0.1:$port test_expect_code 1 "$KILN" whoami 2>err &&
	grep "^kiln: error: .*reply from .http://127.0.0.1:$port/. is larger than 16777216 bytes" err &&
	test "$(grep -c request big.log)" = 1 &&
	stop_pid $big
'

test_expect_success 'a service whose clock is an hour ahead: re-signed once with its time' '
	port=$(free_port) &&
	cat >skew.py <<-\EOF &&
	import email.utils, http.server, sys, time
	class H(http.server.BaseHTTPRequestHandler):
	    n = 0
	    def do_POST(self):
	        self.rfile.read(int(self.headers["Content-Length"]))
	        sys.stderr.write("x-amz-date %s\n" % self.headers["X-Amz-Date"])
	        sys.stderr.flush()
	        H.n += 1
	        if H.n == 1:
	            status, body = 403, (b"<ErrorResponse><Error><Type>Sender</Type><Code>SignatureDoesNotMatch"
	                b"</Code><Message>Signature expired</Message></Error><RequestId>r1</RequestId></ErrorResponse>")
	        else:
	            status, body = 200, (b"<GetCallerIdentityResponse><GetCallerIdentityResult><Arn>arn:aws:iam::"
	                b"123456789012:user/skew</Arn><UserId>U</UserId><Account>123456789012</Account>"
	                b"</GetCallerIdentityResult></GetCallerIdentityResponse>")
	        self.send_response_only(status)
	        self.send_header("Date", email.utils.formatdate(time.time() + 3600, usegmt=True))
	        self.send_header("Content-Length", str(len(body)))
	        self.end_headers()
	        self.wfile.write(body)
	http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
	EOF
	{ python3 skew.py $port 2>skew.log & skew=$!; } &&
	track_pid $skew &&
	wait_for_port $port &&
	AWS_ENDPOINT_URL_STS=http://127.0.0.1:$port "$KILN" whoami >out 2>err &&
	grep "^arn  *arn:aws:iam::123456789012:user/skew$" out &&
	grep "warning: this machine.s clock is 3[56][0-9][0-9] s behind AWS.s; correcting for it" err &&
	sed -n "s/^x-amz-date \(.*\)T\(..\)\(..\).*/\1 \2 \3/p" skew.log >dates &&
	test_line_count = 2 dates &&
	{ read d1 h1 m1 && read d2 h2 m2; } <dates &&
	test $(( (10#$h2 * 60 + 10#$m2 - 10#$h1 * 60 - 10#$m1 + 1440) % 1440 )) -ge 59 &&
	test $(( (10#$h2 * 60 + 10#$m2 - 10#$h1 * 60 - 10#$m1 + 1440) % 1440 )) -le 61 &&
	stop_pid $skew
'

test_expect_success 'every typed call was made, and none needed a retry' '
	jq -s -r "map(keys) | add | unique | .[]" counters.*.json >called &&
	cat >expect <<-EOF &&
	ec2:AuthorizeSecurityGroupIngress
	ec2:CreateImage
	ec2:CreateSecurityGroup
	ec2:CreateTags
	ec2:DeleteKeyPair
	ec2:DeleteSecurityGroup
	ec2:DeleteSnapshot
	ec2:DeregisterImage
	ec2:DescribeImages
	ec2:DescribeInstances
	ec2:DescribeKeyPairs
	ec2:DescribeSecurityGroups
	ec2:DescribeSnapshots
	ec2:DescribeSubnets
	ec2:DescribeVpcs
	ec2:GetConsoleOutput
	ec2:ImportKeyPair
	ec2:RunInstances
	ec2:StopInstances
	ec2:TerminateInstances
	elb:DeregisterInstancesFromLoadBalancer
	elb:DescribeInstanceHealth
	elb:DescribeLoadBalancerAttributes
	elb:DescribeLoadBalancers
	elb:RegisterInstancesWithLoadBalancer
	elbv2:DeregisterTargets
	elbv2:DescribeTargetGroupAttributes
	elbv2:DescribeTargetGroups
	elbv2:DescribeTargetHealth
	elbv2:RegisterTargets
	ssm:DeleteParameter
	ssm:GetParameter
	ssm:GetParametersByPath
	ssm:PutParameter
	sts:GetCallerIdentity
	EOF
	test_cmp expect called &&
	jq -s "map(to_entries[] | select(.value.attempts > .value.calls)) | length" counters.*.json >retried &&
	echo 0 >expect && test_cmp expect retried
'

test_done
