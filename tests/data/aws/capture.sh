#!/bin/bash
# Captures real moto_server replies as fixtures for the unit tests
# (tests/unit/test_aws_xml.c, test_aws_calls.c). Run it again after a moto
# upgrade and review the diff: the parsers must keep reading what moto says.
#
#   tests/data/aws/capture.sh          (as root: it runs in its own network namespace)
#
# Requests carry a dummy Authorization header: moto checks no signature by
# default and routes by the credential scope in it. Request ids and other
# random values are left as moto made them; tests do not depend on them.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
if [ -z "${KILN_CAPTURE_NS:-}" ]; then
	exec env KILN_CAPTURE_NS=1 unshare --net "$BASH" "$0" "$@"
fi
ip link set lo up
port=47123
work=$(mktemp -d)
moto_server -H 127.0.0.1 -p $port >"$work/moto.log" 2>&1 &
moto=$!
trap 'kill $moto 2>/dev/null; wait $moto 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/moto-api/data.json" >/dev/null && break; sleep 0.1; done

# q SERVICE FILE BODY: POST a Query body, save the reply body as FILE
q() {
	svc=$1 file=$2; shift 2
	curl -s -o "$here/$file" -H "Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/$svc/aws4_request, SignedHeaders=host, Signature=00" \
		-H 'Content-Type: application/x-www-form-urlencoded; charset=utf-8' --data "$*" "http://127.0.0.1:$port/"
}
# j FILE ACTION JSON: an SSM JSON call
j() {
	file=$1 action=$2; shift 2
	curl -s -o "$here/$file" -H "Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/ssm/aws4_request, SignedHeaders=host, Signature=00" \
		-H 'Content-Type: application/x-amz-json-1.1' -H "X-Amz-Target: AmazonSSM.$action" --data "$*" "http://127.0.0.1:$port/"
}
# x FILE XPATH-ish: the text of the first <tag> in FILE
x() { grep -o "<$2>[^<]*</$2>" "$here/$1" | sed "s|<[^>]*>||g" | head -1; }
E='Version=2016-11-15'
T='TagSpecification.1.Tag.1.Key=kiln%3Abuild-id&TagSpecification.1.Tag.1.Value=b-1'

q ec2 ec2-describe-vpcs.xml "Action=DescribeVpcs&$E&Filter.1.Name=is-default&Filter.1.Value.1=true"
vpc=$(x ec2-describe-vpcs.xml vpcId)
q ec2 ec2-describe-subnets.xml "Action=DescribeSubnets&$E&Filter.1.Name=vpc-id&Filter.1.Value.1=$vpc&Filter.2.Name=availability-zone&Filter.2.Value.1=us-east-1a"
subnet=$(x ec2-describe-subnets.xml subnetId)
q ec2 ec2-run-instances.xml "Action=RunInstances&$E&ImageId=ami-03cf127a&InstanceType=t3.micro&MinCount=2&MaxCount=2&SubnetId=$subnet&ClientToken=tok-1&TagSpecification.1.ResourceType=instance&$T&TagSpecification.1.Tag.2.Key=kiln%3Arole&TagSpecification.1.Tag.2.Value=build"
i1=$(x ec2-run-instances.xml instanceId)
q ec2 ec2-stop-instances.xml "Action=StopInstances&$E&InstanceId.1=$i1"
q ec2 ec2-describe-instances.xml "Action=DescribeInstances&$E&Filter.1.Name=tag%3Akiln%3Abuild-id&Filter.1.Value.1=b-1"
q ec2 ec2-get-console-output.xml "Action=GetConsoleOutput&$E&InstanceId=$i1"
q ec2 ec2-create-image.xml "Action=CreateImage&$E&InstanceId=$i1&Name=web-v1&Description=kiln&TagSpecification.1.ResourceType=image&TagSpecification.1.Tag.1.Key=kiln%3Aimage&TagSpecification.1.Tag.1.Value=web&TagSpecification.1.Tag.2.Key=kiln%3Aversion&TagSpecification.1.Tag.2.Value=1"
ami=$(x ec2-create-image.xml imageId)
q ec2 ec2-describe-images.xml "Action=DescribeImages&$E&Owner.1=self&Filter.1.Name=tag-key&Filter.1.Value.1=kiln%3Aimage"
snap=$(x ec2-describe-images.xml snapshotId)
q ec2 ec2-copy-image.xml "Action=CopyImage&$E&SourceImageId=$ami&SourceRegion=us-east-1&Name=web-v1&Description=kiln&ClientToken=kiln-copy-1"
q ec2 ec2-modify-image-attribute.xml "Action=ModifyImageAttribute&$E&ImageId=$ami&LaunchPermission.Add.1.UserId=111122223333"
q ec2 ec2-modify-snapshot-attribute.xml "Action=ModifySnapshotAttribute&$E&SnapshotId=$snap&Attribute=createVolumePermission&CreateVolumePermission.Add.1.UserId=111122223333"
q ec2 ec2-describe-images-source.xml "Action=DescribeImages&$E&ImageId.1=ami-03cf127a"
# moto has no EnableImageDeprecation (HTML 500): ec2-enable-image-deprecation.xml is
# written by hand after the EC2 API reference's example reply
q ec2 ec2-create-tags.xml "Action=CreateTags&$E&ResourceId.1=$snap&Tag.1.Key=kiln%3Aimage&Tag.1.Value=web"
q ec2 ec2-describe-snapshots.xml "Action=DescribeSnapshots&$E&Owner.1=self&Filter.1.Name=tag%3Akiln%3Aimage&Filter.1.Value.1=web"
q ec2 ec2-import-key-pair.xml "Action=ImportKeyPair&$E&KeyName=kiln-b-1&PublicKeyMaterial=c3NoLWVkMjU1MTkgQUFBQUMzTnphQzFsWkRJMU5URTVBQUFBSUdxZDRXQ1h5V1Z5Y0l4S0ZsT1lrNUZ0b0NmN2VJTUdaZ2VBNnNyWlBYSzMgdGVzdA%3D%3D&TagSpecification.1.ResourceType=key-pair&$T"
q ec2 ec2-error-key-pair-duplicate.xml "Action=ImportKeyPair&$E&KeyName=kiln-b-1&PublicKeyMaterial=c3NoLWVkMjU1MTkgQUFBQUMzTnphQzFsWkRJMU5URTVBQUFBSUdxZDRXQ1h5V1Z5Y0l4S0ZsT1lrNUZ0b0NmN2VJTUdaZ2VBNnNyWlBYSzMgdGVzdA%3D%3D"
q ec2 ec2-describe-key-pairs.xml "Action=DescribeKeyPairs&$E&Filter.1.Name=key-name&Filter.1.Value.1=kiln-b-1"
q ec2 ec2-create-security-group.xml "Action=CreateSecurityGroup&$E&GroupName=kiln-b-1&GroupDescription=kiln&VpcId=$vpc&TagSpecification.1.ResourceType=security-group&$T"
sg=$(x ec2-create-security-group.xml groupId)
q ec2 ec2-authorize-ingress.xml "Action=AuthorizeSecurityGroupIngress&$E&GroupId=$sg&IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=22&IpPermissions.1.ToPort=22&IpPermissions.1.IpRanges.1.CidrIp=203.0.113.7%2F32&IpPermissions.1.IpRanges.1.Description=kiln"
q ec2 ec2-describe-security-groups.xml "Action=DescribeSecurityGroups&$E&Filter.1.Name=group-id&Filter.1.Value.1=$sg"
q ec2 ec2-error-group-duplicate.xml "Action=CreateSecurityGroup&$E&GroupName=kiln-b-1&GroupDescription=kiln&VpcId=$vpc"
q ec2 ec2-error-instance-not-found.xml "Action=TerminateInstances&$E&InstanceId.1=i-0123456789abcdef0"
q ec2 ec2-terminate-instances.xml "Action=TerminateInstances&$E&InstanceId.1=$i1"
q ec2 html-500.html "Action=NoSuchAction&$E"

L='Version=2015-12-01'
tg_reply=$(mktemp)
curl -s -o "$tg_reply" -H "Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/elasticloadbalancing/aws4_request, SignedHeaders=host, Signature=00" \
	--data "Action=CreateTargetGroup&$L&Name=web&Protocol=HTTP&Port=80&VpcId=$vpc" "http://127.0.0.1:$port/"
tg=$(grep -o "<TargetGroupArn>[^<]*</TargetGroupArn>" "$tg_reply" | sed "s|<[^>]*>||g" | head -1); rm -f "$tg_reply"
i2=$(grep -o "<instanceId>[^<]*</instanceId>" "$here/ec2-run-instances.xml" | sed "s|<[^>]*>||g" | sed -n 2p)
q elasticloadbalancing elbv2-describe-target-groups.xml "Action=DescribeTargetGroups&$L&TargetGroupArns.member.1=$tg"
q elasticloadbalancing elbv2-describe-target-group-attributes.xml "Action=DescribeTargetGroupAttributes&$L&TargetGroupArn=$tg"
q elasticloadbalancing elbv2-register-targets.xml "Action=RegisterTargets&$L&TargetGroupArn=$tg&Targets.member.1.Id=$i2"
q elasticloadbalancing elbv2-describe-target-health.xml "Action=DescribeTargetHealth&$L&TargetGroupArn=$tg&Targets.member.1.Id=$i2&Targets.member.2.Id=$i1"
q elasticloadbalancing elbv2-error-target-group-not-found.xml "Action=DescribeTargetGroups&$L&TargetGroupArns.member.1=${tg}0"

C='Version=2012-06-01'
curl -s -o /dev/null -H "Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/elasticloadbalancing/aws4_request, SignedHeaders=host, Signature=00" \
	--data "Action=CreateLoadBalancer&$C&LoadBalancerName=classic&Listeners.member.1.Protocol=HTTP&Listeners.member.1.LoadBalancerPort=80&Listeners.member.1.InstancePort=80&AvailabilityZones.member.1=us-east-1a" "http://127.0.0.1:$port/"
q elasticloadbalancing elb-register-instances.xml "Action=RegisterInstancesWithLoadBalancer&$C&LoadBalancerName=classic&Instances.member.1.InstanceId=$i2"
q elasticloadbalancing elb-describe-load-balancers.xml "Action=DescribeLoadBalancers&$C&LoadBalancerNames.member.1=classic"
q elasticloadbalancing elb-describe-load-balancer-attributes.xml "Action=DescribeLoadBalancerAttributes&$C&LoadBalancerName=classic"
q elasticloadbalancing elb-describe-instance-health.xml "Action=DescribeInstanceHealth&$C&LoadBalancerName=classic"
q elasticloadbalancing elb-error-load-balancer-not-found.xml "Action=DescribeLoadBalancers&$C&LoadBalancerNames.member.1=nope"

q sts sts-get-caller-identity.xml "Action=GetCallerIdentity&Version=2011-06-15"
q sts sts-assume-role.xml "Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fdev-role&RoleSessionName=kiln-test&DurationSeconds=900"
# unsigned, as kiln sends it: moto routes this action without a credential scope
curl -s -o "$here/sts-assume-role-with-web-identity.xml" -H 'Content-Type: application/x-www-form-urlencoded; charset=utf-8' \
	--data "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fci&RoleSessionName=kiln-ci&WebIdentityToken=abc.def.ghi" \
	"http://127.0.0.1:$port/"

j ssm-put-parameter.json PutParameter '{"Name":"/kiln/images/web/versions/1","Value":"{\"owner\":\"b-1\"}","Type":"String","Overwrite":false,"Tier":"Standard"}'
j ssm-error-parameter-exists.json PutParameter '{"Name":"/kiln/images/web/versions/1","Value":"x","Type":"String","Overwrite":false,"Tier":"Standard"}'
j ssm-get-parameter.json GetParameter '{"Name":"/kiln/images/web/versions/1"}'
j ssm-error-parameter-not-found.json GetParameter '{"Name":"/kiln/nope"}'
j ssm-get-parameters-by-path.json GetParametersByPath '{"Path":"/kiln","Recursive":true,"MaxResults":10}'

# signature checking on: what a wrong secret earns
curl -sf -o /dev/null -H "Content-Type: text/plain" -d 0 "http://127.0.0.1:$port/moto-api/reset-auth"
q ec2 ec2-error-auth-failure.xml "Action=DescribeImages&$E&Owner.1=self"
q elasticloadbalancing elbv2-error-signature.xml "Action=DescribeTargetGroups&$L"
echo "captured $(ls "$here" | grep -vc capture.sh) fixtures from moto $(python3 -c 'import moto; print(moto.__version__)')"
