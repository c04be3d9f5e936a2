package ebs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
	"go.uber.org/zap"

	"github.com/monagent/monagent/internal/retry"
)

// kmsPermissions are what the instance role needs on a customer-managed key
// for EC2 to attach a volume encrypted with it (seed section 4).
const kmsPermissions = "kms:CreateGrant, kms:Decrypt, kms:DescribeKey, " +
	"kms:GenerateDataKeyWithoutPlaintext, kms:ReEncryptFrom, kms:ReEncryptTo"

// missingGrace is how long, right after AttachVolume, the volume may show
// no attachment of ours before we call it a fallback: EC2's reads are
// eventually consistent and may not show the attachment at once. A time,
// not a count of polls: the polls are quick.
const missingGrace = 3 * time.Second

// ensureAttached makes sure the volume is attached to this instance, and
// returns the device name EC2 reports for that attachment: the name to
// look for when the volume id cannot be seen on the device itself.
func (s *Step) ensureAttached(ctx context.Context, volID string) (string, error) {
	vol, err := s.describe(ctx, volID)
	if err != nil {
		return "", err
	}
	if err := s.checkVolume(vol); err != nil {
		return "", err
	}
	me := s.id.InstanceID
	if a := attachment(vol, me, types.VolumeAttachmentStateAttached); a != nil {
		return aws.ToString(a.Device), nil
	}
	if attachment(vol, me, types.VolumeAttachmentStateAttaching) == nil {
		if !free(vol) {
			if vol, err = s.waitAvailable(ctx, vol); err != nil {
				return "", err
			}
			if a := attachment(vol, me, types.VolumeAttachmentStateAttached); a != nil {
				return aws.ToString(a.Device), nil
			}
		}
		if err := s.attach(ctx, vol); err != nil {
			return "", err
		}
	}
	return s.waitAttached(ctx, vol)
}

// describe returns the volume as EC2 sees it now.
func (s *Step) describe(ctx context.Context, volID string) (types.Volume, error) {
	out, err := s.ec2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{volID}})
	if err != nil {
		err = fmt.Errorf("volume: describe %s: %w", volID, err)
		switch {
		case retry.Code(err) == "InvalidVolume.NotFound":
			return types.Volume{}, retry.PermanentError(fmt.Errorf("%w (check volume.id or the SSM parameter, and the region)", err))
		case retry.Classify(err) == retry.Fatal:
			return types.Volume{}, retry.PermanentError(fmt.Errorf("%w; the instance role needs ec2:DescribeVolumes", err))
		}
		return types.Volume{}, err
	}
	for _, v := range out.Volumes {
		if aws.ToString(v.VolumeId) == volID {
			return v, nil
		}
	}
	return types.Volume{}, retry.PermanentError(fmt.Errorf("volume: %s does not exist in region %s (check volume.id or the SSM parameter)", volID, s.id.Region))
}

// checkVolume fails permanently for a volume this instance can never use.
func (s *Step) checkVolume(vol types.Volume) error {
	volID := aws.ToString(vol.VolumeId)
	if az := aws.ToString(vol.AvailabilityZone); az != "" && az != s.id.AZ {
		return retry.PermanentError(fmt.Errorf(
			"volume: %s is in availability zone %s but this instance %s is in %s; the volume and the instance's subnet must be in the same availability zone: launch the instance in a subnet of %s (or snapshot the volume and restore it in %s)",
			volID, az, s.id.InstanceID, s.id.AZ, az, s.id.AZ))
	}
	switch vol.State {
	case types.VolumeStateError, types.VolumeStateDeleting, types.VolumeStateDeleted:
		return retry.PermanentError(fmt.Errorf("volume: %s is in state %q and cannot be attached", volID, vol.State))
	}
	return nil
}

// waitAvailable waits, up to volume.wait_available, for a volume held by
// another instance to be released: in a rolling update the old instance may
// still be terminating while the new one boots.
func (s *Step) waitAvailable(ctx context.Context, vol types.Volume) (types.Volume, error) {
	volID := aws.ToString(vol.VolumeId)
	timeout := s.cfg.WaitAvailable.Duration
	s.log.Info("volume is not available, waiting", zap.String("volume_id", volID),
		zap.String("held_by", describeHolder(vol)), zap.Duration("timeout", timeout))
	last := vol
	err := retry.Poll(ctx, s.backoff, timeout, s.log, func(ctx context.Context) (bool, error) {
		v, err := s.describe(ctx, volID)
		if err != nil {
			return false, err
		}
		if err := s.checkVolume(v); err != nil {
			return false, err
		}
		last = v
		return free(v) || attachment(v, s.id.InstanceID, types.VolumeAttachmentStateAttached) != nil, nil
	})
	if errors.Is(err, retry.ErrTimeout) {
		err = fmt.Errorf(
			"volume: %s is still %s, %w; if that instance is terminating (rolling update) run again once it is gone, otherwise detach the volume from it (aws ec2 detach-volume --volume-id %s) or raise volume.wait_available",
			volID, describeHolder(last), err, volID)
		if retry.Retryable(err) {
			return last, err // AWS did not answer: not the holder's fault
		}
		// The holder never let go: a restart every 30 s would only wait
		// again; the operator decides (the timer retries later).
		return last, retry.PermanentError(err)
	}
	if err != nil {
		return last, fmt.Errorf("volume: wait for %s to become available: %w", volID, err)
	}
	return last, nil
}

// attach asks EC2 to attach the volume here.
func (s *Step) attach(ctx context.Context, vol types.Volume) error {
	volID := aws.ToString(vol.VolumeId)
	s.log.Info("attaching volume", zap.String("volume_id", volID),
		zap.String("instance_id", s.id.InstanceID), zap.String("device", s.cfg.Device))
	_, err := s.ec2.AttachVolume(ctx, &ec2.AttachVolumeInput{
		VolumeId:   aws.String(volID),
		InstanceId: aws.String(s.id.InstanceID),
		Device:     aws.String(s.cfg.Device),
	})
	if err == nil {
		return nil
	}
	err = fmt.Errorf("volume: attach %s to %s at %s: %w", volID, s.id.InstanceID, s.cfg.Device, err)
	code := retry.Code(err)
	switch {
	case isKMSError(err):
		return kmsError(vol, err)
	case code == "UnauthorizedOperation" || code == "AccessDenied" || code == "AccessDeniedException":
		return retry.PermanentError(fmt.Errorf("%w; the instance role needs ec2:AttachVolume and ec2:DescribeVolumes on this volume", err))
	case code == "InvalidInstanceID.NotFound":
		return retry.PermanentError(fmt.Errorf("%w; instance metadata and EC2 disagree about this instance: check the region (region, AWS_REGION) and the endpoint settings", err))
	case code == "InvalidVolume.ZoneMismatch":
		return retry.PermanentError(fmt.Errorf("%w; the volume and the instance's subnet must be in the same availability zone", err))
	case code == "InvalidParameterValue" && strings.Contains(strings.ToLower(err.Error()), "in use"):
		return retry.PermanentError(fmt.Errorf("%w; another volume uses device %s on this instance: set volume.device to a free name", err, s.cfg.Device))
	}
	return err
}

// waitAttached waits, up to volume.attach_timeout, for the attachment to
// this instance to reach "attached", or for the device that carries the
// volume's id to appear here: the kernel sees the attachment before the
// next DescribeVolumes would, and a look at /dev costs nothing, so it is
// looked at between the API calls, as often as waitDevice looks. An
// attachment that vanishes (the volume falls back to available) on an
// encrypted volume is the KMS failure of seed section 4.
func (s *Step) waitAttached(ctx context.Context, vol types.Volume) (string, error) {
	volID := aws.ToString(vol.VolumeId)
	me := s.id.InstanceID
	timeout := s.cfg.AttachTimeout.Duration
	last := vol
	seen := attachment(vol, me, types.VolumeAttachmentStateAttaching) != nil
	asked := time.Now()
	var stop error
	var local bool
	var apiDelay time.Duration
	nextCall := asked
	err := retry.Poll(ctx, s.localBackoff(), timeout, s.log, func(ctx context.Context) (bool, error) {
		if _, err := deviceByID(s.root, volID); err == nil {
			local = true
			return true, nil
		}
		if time.Now().Before(nextCall) {
			return false, nil
		}
		apiDelay = s.backoff.Next(apiDelay)
		nextCall = time.Now().Add(apiDelay)
		v, err := s.describe(ctx, volID)
		if err != nil {
			return false, err
		}
		last = v
		if attachment(v, me, types.VolumeAttachmentStateAttached) != nil {
			return true, nil
		}
		if attachment(v, me, "") != nil {
			seen = true
			return false, nil
		}
		if h := holder(v, me); h != nil {
			stop = fmt.Errorf("volume: %s was attached to %s while attaching it here; another instance uses it", volID, aws.ToString(h.InstanceId))
			return false, stop
		}
		if seen || time.Since(asked) >= missingGrace {
			stop = fallbackError(v, me, s.cfg.Device)
			return false, stop
		}
		return false, nil
	})
	switch {
	case err == nil && local:
		// The device carries the volume id: no name is needed to find it.
		s.log.Info("volume attached", zap.String("volume_id", volID), zap.String("instance_id", me), zap.String("seen_by", "device"))
		return "", nil
	case err == nil:
		s.log.Info("volume attached", zap.String("volume_id", volID), zap.String("instance_id", me), zap.String("seen_by", "api"))
		return aws.ToString(attachment(last, me, types.VolumeAttachmentStateAttached).Device), nil
	case stop != nil && errors.Is(err, stop):
		return "", err
	case errors.Is(err, retry.ErrTimeout):
		hint := ""
		if aws.ToBool(last.Encrypted) {
			hint = fmt.Sprintf("; the volume is encrypted with KMS key %s: with a customer-managed key the instance role needs %s on it", kmsKey(last), kmsPermissions)
		}
		return "", fmt.Errorf("volume: %s is still %s, not attached to %s, %w%s; raise volume.attach_timeout or look at the volume's state in the EC2 console",
			volID, attachmentState(last, me), me, err, hint)
	}
	return "", fmt.Errorf("volume: wait for %s to attach: %w", volID, err)
}

// fallbackError explains an attachment that went back to nothing.
func fallbackError(vol types.Volume, me, device string) error {
	volID := aws.ToString(vol.VolumeId)
	if aws.ToBool(vol.Encrypted) {
		return kmsError(vol, fmt.Errorf("the attachment of %s to %s at %s fell back from attaching to %s", volID, me, device, vol.State))
	}
	return fmt.Errorf("volume: the attachment of %s to %s at %s fell back from attaching to %s; EC2 gave up on it: look at the instance's and the volume's events, then run again",
		volID, me, device, vol.State)
}

// kmsError is the permanent error of seed section 4.
func kmsError(vol types.Volume, cause error) error {
	return retry.PermanentError(fmt.Errorf(
		"volume: %s cannot be attached because it is encrypted with KMS key %s, which this instance cannot use (%w). "+
			"Grant the instance role these permissions on that key: %s. "+
			"This only shows with a customer-managed key; the AWS-managed aws/ebs key needs no grant, so an environment without customer-managed keys works with the same role",
		aws.ToString(vol.VolumeId), kmsKey(vol), cause, kmsPermissions))
}

func kmsKey(vol types.Volume) string {
	if k := aws.ToString(vol.KmsKeyId); k != "" {
		return k
	}
	return "(unknown: DescribeVolumes names none)"
}

// isKMSError recognises EC2's answer when the volume's key is unusable,
// e.g. "Client.CustomerKeyHasBeenRevoked: Volume vol-x is encrypted with KMS
// key arn:..., which is not accessible."
func isKMSError(err error) bool {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return false
	}
	code := strings.ToLower(ae.ErrorCode())
	msg := strings.ToLower(ae.ErrorMessage())
	switch {
	case strings.Contains(code, "customerkeyhasbeenrevoked"), strings.Contains(msg, "customerkeyhasbeenrevoked"):
		return true
	case strings.HasPrefix(code, "kms.") || strings.Contains(code, "kmskey"):
		return true
	case strings.Contains(msg, "kms") &&
		(strings.Contains(msg, "not accessible") || strings.Contains(msg, "revoked") || strings.Contains(msg, "disabled")):
		return true
	}
	return false
}

// attachment returns the attachment of vol to instanceID in state ("" for
// any state), or nil.
func attachment(vol types.Volume, instanceID string, state types.VolumeAttachmentState) *types.VolumeAttachment {
	for i, a := range vol.Attachments {
		if aws.ToString(a.InstanceId) == instanceID && (state == "" || a.State == state) {
			return &vol.Attachments[i]
		}
	}
	return nil
}

// holder returns an attachment of vol to an instance other than me.
func holder(vol types.Volume, me string) *types.VolumeAttachment {
	for i, a := range vol.Attachments {
		if aws.ToString(a.InstanceId) != me && a.State != types.VolumeAttachmentStateDetached {
			return &vol.Attachments[i]
		}
	}
	return nil
}

// free reports whether the volume can be attached now.
func free(vol types.Volume) bool {
	if vol.State != types.VolumeStateAvailable {
		return false
	}
	for _, a := range vol.Attachments {
		if a.State != types.VolumeAttachmentStateDetached {
			return false
		}
	}
	return true
}

// describeHolder says who holds the volume, for messages.
func describeHolder(vol types.Volume) string {
	var parts []string
	for _, a := range vol.Attachments {
		if a.State == types.VolumeAttachmentStateDetached {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s to instance %s", a.State, aws.ToString(a.InstanceId)))
	}
	if len(parts) == 0 {
		return fmt.Sprintf("in state %s", vol.State)
	}
	return strings.Join(parts, ", ")
}

func attachmentState(vol types.Volume, me string) string {
	if a := attachment(vol, me, ""); a != nil {
		return string(a.State)
	}
	return describeHolder(vol)
}
