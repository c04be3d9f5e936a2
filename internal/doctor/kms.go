package doctor

import (
	"context"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/monagent/monagent/internal/iampolicy"
	"github.com/monagent/monagent/internal/retry"
)

// EC2 is the part of *ec2.Client the volume checks use.
type EC2 interface {
	VolumeDescriber
	AttachVolume(ctx context.Context, in *ec2.AttachVolumeInput, optFns ...func(*ec2.Options)) (*ec2.AttachVolumeOutput, error)
}

// Volume is what the KMS check needs to know of this host.
type Volume struct {
	ID         string
	InstanceID string
	Device     string // volume.device, for the dry-run attach
	// LastError is the volume step's last error from the state file:
	// a KMS failure there is the seed's section 4 incident, whatever a
	// dry run says now.
	LastError string
}

// KMS asks whether the volume's KMS key is usable by this instance. A
// volume attached here proves it. Otherwise the last run's error and a
// dry-run AttachVolume, which attaches nothing, answer; EC2 creates the
// key's grant only on a real attach, so a customer-managed key that
// passes the dry run still needs the six permissions of seed section 4,
// which the detail names.
func KMS(ctx context.Context, api EC2, v Volume) Check {
	const name = "ebs kms"
	out, err := api.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{v.ID}})
	if err != nil || len(out.Volumes) != 1 {
		return Failed(name, fmt.Sprintf("describe %s: %v (%d volumes)", v.ID, err, volumes(out)))
	}
	vol := out.Volumes[0]
	key := aws.ToString(vol.KmsKeyId)
	switch {
	case !aws.ToBool(vol.Encrypted):
		return Pass(name, v.ID+" is not encrypted: no KMS key to use")
	case key == "":
		key = "(DescribeVolumes names none)"
	}
	if attachedHere(vol, v.InstanceID) {
		return Pass(name, fmt.Sprintf("%s: usable, %s is attached to this instance", key, v.ID))
	}
	if strings.Contains(v.LastError, v.ID) && kmsFailure(v.LastError) {
		return Failed(name, kmsFix(v.ID, key, "the last run's attach failed on it"))
	}
	if holder := heldBy(vol, v.InstanceID); holder != "" {
		return Warning(name, fmt.Sprintf("%s: not checked: %s is attached to %s; a customer-managed key must grant the instance role %s",
			key, v.ID, holder, permissions()))
	}
	return dryRunAttach(ctx, api, v, key)
}

func dryRunAttach(ctx context.Context, api EC2, v Volume, key string) Check {
	const name = "ebs kms"
	_, err := api.AttachVolume(ctx, &ec2.AttachVolumeInput{VolumeId: aws.String(v.ID), InstanceId: aws.String(v.InstanceID),
		Device: aws.String(v.Device), DryRun: aws.Bool(true)})
	switch code := retry.Code(err); {
	case err == nil || code == "DryRunOperation":
		return Pass(name, fmt.Sprintf("%s: EC2 accepts an attach of %s here (dry run); a customer-managed key must also grant the instance role %s",
			key, v.ID, permissions()))
	case kmsFailure(err.Error()):
		return Failed(name, kmsFix(v.ID, key, retry.Message(err)))
	case code == "UnauthorizedOperation" || code == "AccessDenied":
		return Failed(name, fmt.Sprintf("the instance role may not attach %s (%s): grant it ec2:AttachVolume on the volume and the instance (`monagent iam-policy`)", v.ID, code))
	}
	return Warning(name, fmt.Sprintf("%s: not checked: a dry-run attach of %s failed: %v", key, v.ID, err))
}

func kmsFix(volID, key, cause string) string {
	return fmt.Sprintf("%s is encrypted with KMS key %s, which this instance cannot use (%s): grant the instance role %s on that key (seed section 4; `monagent iam-policy` prints the statement), and make sure the key is enabled (aws kms describe-key --key-id %s)",
		volID, key, cause, permissions(), key)
}

func permissions() string { return strings.Join(iampolicy.KMSPermissions, ", ") }

// kmsFailure recognises EC2's answer for a key the instance cannot use,
// e.g. "Client.CustomerKeyHasBeenRevoked: Volume vol-x is encrypted with
// KMS key arn:..., which is not accessible.", and the volume step's own
// error for it.
func kmsFailure(text string) bool {
	t := strings.ToLower(text)
	if strings.Contains(t, "customerkeyhasbeenrevoked") {
		return true
	}
	return strings.Contains(t, "kms") && (strings.Contains(t, "not accessible") || strings.Contains(t, "revoked") ||
		strings.Contains(t, "disabled") || strings.Contains(t, "cannot use"))
}

func attachedHere(vol types.Volume, instanceID string) bool {
	for _, a := range vol.Attachments {
		if aws.ToString(a.InstanceId) == instanceID && a.State == types.VolumeAttachmentStateAttached {
			return true
		}
	}
	return false
}

// heldBy names the other instance the volume is attached to, or "".
func heldBy(vol types.Volume, instanceID string) string {
	for _, a := range vol.Attachments {
		if id := aws.ToString(a.InstanceId); id != instanceID && a.State != types.VolumeAttachmentStateDetached {
			return id
		}
	}
	return ""
}

func volumes(out *ec2.DescribeVolumesOutput) int {
	if out == nil {
		return 0
	}
	return len(out.Volumes)
}
