package doctor

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/monagent/monagent/internal/retry"
)

// VolumeDescriber is the part of *ec2.Client the credentials probe uses.
type VolumeDescriber interface {
	DescribeVolumes(ctx context.Context, in *ec2.DescribeVolumesInput, optFns ...func(*ec2.Options)) (*ec2.DescribeVolumesOutput, error)
}

// Region says which region the clients use and where it came from.
type Region struct {
	Name string
	// From says where it came from: "set by region or AWS_REGION", "from
	// instance metadata".
	From string
	// Instance is the instance's own region, from IMDS.
	Instance string
}

// authCodes are EC2's answers to credentials it does not accept.
var authCodes = []string{"AuthFailure", "InvalidClientTokenId", "UnrecognizedClientException", "SignatureDoesNotMatch",
	"ExpiredToken", "ExpiredTokenException", "RequestExpired", "IncompleteSignature"}

// deniedCodes are answers to credentials that work for a role lacking
// the permission.
var deniedCodes = []string{"UnauthorizedOperation", "AccessDenied", "AccessDeniedException"}

// Credentials asks whether the region and the credentials work: the
// credentials chain gives some, and EC2 accepts them for a dry-run
// DescribeVolumes, which reads nothing and writes nothing. usable is false
// when no AWS call can succeed, so the AWS checks after it are skipped.
func Credentials(ctx context.Context, cfg aws.Config, api VolumeDescriber, r Region, instanceID string) (c Check, usable bool) {
	const name = "aws"
	if cfg.Credentials == nil {
		return Failed(name, "no AWS credentials provider: "+profileFix(instanceID)), false
	}
	creds, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		return Failed(name, fmt.Sprintf("no AWS credentials (%v): %s", err, profileFix(instanceID))), false
	}
	where := fmt.Sprintf("region %s (%s), credentials from %s", r.Name, r.From, creds.Source)
	_, err = api.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{DryRun: aws.Bool(true)})
	code := retry.Code(err)
	switch {
	case err == nil || code == "DryRunOperation":
	case slices.Contains(deniedCodes, code):
		return Failed(name, fmt.Sprintf("%s work, but the role may not call ec2:DescribeVolumes (%s): attach the statements `monagent iam-policy` prints to the instance role", where, code)), true
	case slices.Contains(authCodes, code):
		return Failed(name, fmt.Sprintf("%s are rejected by EC2 (%v): %s; a clock far off also fails signatures (chronyc tracking)", where, err, profileFix(instanceID))), false
	case errors.Is(err, context.DeadlineExceeded) || retry.Unreachable(err):
		return Failed(name, fmt.Sprintf("EC2 in %s cannot be reached (%v): check the network path to the EC2 endpoint (NAT, VPC endpoint), HTTPS_PROXY and AWS_ENDPOINT_URL", r.Name, err)), false
	default:
		return Failed(name, fmt.Sprintf("%s: a dry-run DescribeVolumes failed: %v", where, err)), true
	}
	if r.Instance != "" && r.Name != r.Instance {
		return Warning(name, fmt.Sprintf("%s accepted, but the instance is in %s: the volume, the parameters and the stack are looked up in %s; remove region (and AWS_REGION) unless that is meant",
			where, r.Instance, r.Name)), true
	}
	return Pass(name, where+" accepted (ec2:DescribeVolumes dry run)"), true
}

func profileFix(instanceID string) string {
	return fmt.Sprintf("the instance needs an instance profile whose role has monagent's policy (`monagent iam-policy`): "+
		"aws ec2 describe-iam-instance-profile-associations --filters Name=instance-id,Values=%s, "+
		"then aws ec2 associate-iam-instance-profile --instance-id %s --iam-instance-profile Name=<profile>", instanceID, instanceID)
}
