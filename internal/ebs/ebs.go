// Package ebs is the volume step: it attaches the data volume to this
// instance, finds its block device, gives it a filesystem only when it is
// blank, mounts it and records it in fstab by UUID.
//
// Nothing here ever formats a device that holds anything blkid can see.
package ebs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"go.uber.org/zap"

	"github.com/monagent/monagent/internal/command"
	"github.com/monagent/monagent/internal/config"
	"github.com/monagent/monagent/internal/engine"
	"github.com/monagent/monagent/internal/imds"
)

// Defaults for a zero duration in the configuration.
const (
	defaultWaitAvailable = 120 * time.Second
	defaultAttachTimeout = 120 * time.Second
	defaultDeviceTimeout = 60 * time.Second
)

// EC2API is the part of *ec2.Client the step uses.
type EC2API interface {
	DescribeVolumes(ctx context.Context, in *ec2.DescribeVolumesInput, optFns ...func(*ec2.Options)) (*ec2.DescribeVolumesOutput, error)
	AttachVolume(ctx context.Context, in *ec2.AttachVolumeInput, optFns ...func(*ec2.Options)) (*ec2.AttachVolumeOutput, error)
}

// ParameterAPI is the part of *ssm.Client the step uses.
type ParameterAPI interface {
	GetParameter(ctx context.Context, in *ssm.GetParameterInput, optFns ...func(*ssm.Options)) (*ssm.GetParameterOutput, error)
}

// Runner starts external programs; command.Runner satisfies it.
type Runner interface {
	Run(ctx context.Context, name string, args ...string) (command.Result, error)
}

// Backoff spaces the polls of every wait: the delay starts at Initial and
// doubles up to Max.
type Backoff struct {
	Initial time.Duration
	Max     time.Duration
}

// The default backoff suits the AWS API and udev on a real instance.
const (
	defaultBackoffInitial = time.Second
	defaultBackoffMax     = 10 * time.Second
)

// Options are the step's collaborators.
type Options struct {
	// Root prefixes every host path (/dev, /sys, /etc/fstab, the mount
	// point); "" means "/".
	Root string
	// Identity is filled in by the metadata step; it is read at run time.
	Identity *imds.Identity
	EC2      EC2API
	SSM      ParameterAPI
	Run      Runner
	Log      *zap.Logger
	// Backoff spaces polls; zero means 1s doubling up to 10s.
	Backoff Backoff
}

// Step converges the data volume.
type Step struct {
	cfg     config.Volume
	root    string
	id      *imds.Identity
	ec2     EC2API
	ssm     ParameterAPI
	run     Runner
	log     *zap.Logger
	backoff Backoff
}

var _ engine.Step = (*Step)(nil)

// New returns the volume step for cfg, an already template-expanded
// configuration.
func New(cfg config.Volume, opts Options) *Step {
	s := &Step{
		cfg:     cfg,
		root:    opts.Root,
		id:      opts.Identity,
		ec2:     opts.EC2,
		ssm:     opts.SSM,
		run:     opts.Run,
		log:     opts.Log,
		backoff: opts.Backoff,
	}
	if s.root == "" {
		s.root = "/"
	}
	if s.run == nil {
		s.run = command.Runner{Log: opts.Log}
	}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	if s.backoff.Initial <= 0 {
		s.backoff = Backoff{Initial: defaultBackoffInitial, Max: defaultBackoffMax}
	}
	if s.backoff.Max < s.backoff.Initial {
		s.backoff.Max = s.backoff.Initial
	}
	if s.cfg.FSType == "" {
		s.cfg.FSType = "xfs"
	}
	if s.cfg.Device == "" {
		s.cfg.Device = "/dev/xvdf"
	}
	return s
}

// Name implements engine.Step.
func (s *Step) Name() string { return "volume" }

// Fingerprint digests the volume id (resolved from SSM when configured so,
// since a new parameter value means a different volume) and how it is to be
// mounted.
func (s *Step) Fingerprint(ctx context.Context) (string, error) {
	volID, err := s.volumeID(ctx)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, f := range []string{volID, s.cfg.Device, s.cfg.MountPoint, s.cfg.FSType, s.cfg.MountOptions, s.cfg.Owner} {
		fmt.Fprintf(h, "%d:%s;", len(f), f)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Check reports drift: the volume not attached here, its device missing,
// the mount point not mounted from it, the fstab line missing or different,
// or the mount point's owner wrong.
func (s *Step) Check(ctx context.Context) (bool, error) {
	ok, err := s.check(ctx)
	var p *engine.Permanent
	if errors.As(err, &p) {
		// A state only a person can fix (wrong AZ, foreign filesystem, mount
		// point held by another device) is drift; Apply explains it.
		s.log.Info("volume not converged", zap.Error(err))
		return false, nil
	}
	return ok, err
}

func (s *Step) check(ctx context.Context) (bool, error) {
	if err := s.identity(); err != nil {
		return false, err
	}
	volID, err := s.volumeID(ctx)
	if err != nil {
		return false, err
	}
	vol, err := s.describe(ctx, volID)
	if err != nil {
		return false, err
	}
	if attachment(vol, s.id.InstanceID, types.VolumeAttachmentStateAttached) == nil {
		s.log.Info("volume not attached to this instance", zap.String("volume_id", volID))
		return false, nil
	}
	dev, err := FindDevice(s.root, volID, s.cfg.Device)
	if errors.Is(err, ErrDeviceNotFound) {
		s.log.Info("volume device not found", zap.String("volume_id", volID))
		return false, nil
	}
	if err != nil {
		return false, err
	}
	sig, err := s.probe(ctx, volID, dev)
	if err != nil {
		return false, err
	}
	if sig.Type != s.cfg.FSType || sig.UUID == "" {
		s.log.Info("volume has no usable filesystem", zap.String("device", dev), zap.String("type", sig.Type))
		return false, nil
	}
	mounted, err := s.mounted(volID, dev)
	if err != nil {
		return false, err
	}
	if !mounted {
		s.log.Info("volume not mounted", zap.String("mount_point", s.cfg.MountPoint))
		return false, nil
	}
	fstabOK, err := FstabConverged(s.fstabPath(), s.fstabEntry(sig.UUID))
	if err != nil {
		return false, err
	}
	if !fstabOK {
		s.log.Info("fstab entry missing or different", zap.String("fstab", s.fstabPath()))
		return false, nil
	}
	own, set, err := s.owner()
	if err != nil {
		// Apply reports it; here it is just drift.
		s.log.Info("mount point owner unknown", zap.Error(err))
		return false, nil
	}
	if !set {
		return true, nil
	}
	ok, err := ownedBy(s.mountDir(), own)
	if err != nil {
		return false, err
	}
	if !ok {
		s.log.Info("mount point owner differs", zap.String("owner", s.cfg.Owner))
	}
	return ok, nil
}

// Apply attaches, formats when blank, mounts, records in fstab and sets
// the owner. Each part does nothing when it is already done.
func (s *Step) Apply(ctx context.Context) error {
	if err := s.identity(); err != nil {
		return err
	}
	volID, err := s.volumeID(ctx)
	if err != nil {
		return err
	}
	if err := s.ensureAttached(ctx, volID); err != nil {
		return err
	}
	dev, err := s.waitDevice(ctx, volID)
	if err != nil {
		return err
	}
	uuid, err := s.ensureFilesystem(ctx, volID, dev)
	if err != nil {
		return err
	}
	if err := s.ensureMounted(ctx, volID, dev); err != nil {
		return err
	}
	changed, err := UpdateFstab(s.fstabPath(), s.fstabEntry(uuid))
	if err != nil {
		return err
	}
	if changed {
		s.log.Info("fstab updated", zap.String("fstab", s.fstabPath()), zap.String("uuid", uuid))
	}
	return s.ensureOwner()
}

// identity checks what the step needs from the metadata step and from the
// configuration before it touches anything.
func (s *Step) identity() error {
	if s.id == nil || s.id.InstanceID == "" || s.id.AZ == "" {
		return errors.New("volume: instance identity unknown (instance id and availability zone come from the metadata step, which must run first)")
	}
	mp := s.cfg.MountPoint
	if !filepath.IsAbs(mp) || filepath.Clean(mp) == "/" {
		return engine.PermanentError(fmt.Errorf("volume: mount_point %q must be an absolute path other than /", mp))
	}
	return nil
}

// volumeIDPattern accepts the old 8-digit and the current 17-digit ids.
var volumeIDPattern = regexp.MustCompile(`^vol-(?:[0-9a-f]{8}|[0-9a-f]{17})$`)

// volumeID returns the configured id, or the value of its SSM parameter.
func (s *Step) volumeID(ctx context.Context) (string, error) {
	id, from := strings.TrimSpace(s.cfg.ID), "volume.id"
	if id == "" {
		if s.cfg.IDParameter == "" {
			return "", engine.PermanentError(errors.New("volume: neither volume.id nor volume.id_parameter is set"))
		}
		if s.ssm == nil {
			return "", errors.New("volume: no SSM client to read volume.id_parameter")
		}
		out, err := s.ssm.GetParameter(ctx, &ssm.GetParameterInput{
			Name:           aws.String(s.cfg.IDParameter),
			WithDecryption: aws.Bool(true),
		})
		if err != nil {
			err = fmt.Errorf("volume: read volume id from SSM parameter %s: %w", s.cfg.IDParameter, err)
			if apiCode(err) == "ParameterNotFound" {
				return "", engine.PermanentError(fmt.Errorf("%w (create it, or set volume.id)", err))
			}
			return "", err
		}
		if out.Parameter == nil || out.Parameter.Value == nil {
			return "", fmt.Errorf("volume: SSM parameter %s has no value", s.cfg.IDParameter)
		}
		id, from = strings.TrimSpace(*out.Parameter.Value), "SSM parameter "+s.cfg.IDParameter
	}
	if !volumeIDPattern.MatchString(id) {
		return "", engine.PermanentError(fmt.Errorf("volume: %q from %s is not an EBS volume id (vol- and 8 or 17 hex digits)", id, from))
	}
	return id, nil
}

func (s *Step) fstabPath() string { return filepath.Join(s.root, "etc", "fstab") }

// mountDir is the mount point on this host, under root.
func (s *Step) mountDir() string { return filepath.Join(s.root, s.cfg.MountPoint) }

func (s *Step) fstabEntry(uuid string) FstabEntry {
	return FstabEntry{
		UUID:       uuid,
		MountPoint: s.cfg.MountPoint,
		FSType:     s.cfg.FSType,
		Options:    FstabOptions(s.cfg.MountOptions),
	}
}

func orDefault(d config.Duration, def time.Duration) time.Duration {
	if d.Duration <= 0 {
		return def
	}
	return d.Duration
}

// poll calls f until it reports done or a non-transient error, waiting with
// backoff between calls. It gives up after timeout with an error wrapping
// errTimeout and the last transient error.
func (s *Step) poll(ctx context.Context, timeout time.Duration, f func(context.Context) (bool, error)) error {
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	delay := s.backoff.Initial
	var last error
	for {
		done, err := f(pctx)
		switch {
		case err == nil && done:
			return nil
		case err != nil && pctx.Err() != nil && ctx.Err() == nil:
			// The call was cut short by our own deadline.
		case err != nil && !transient(err):
			return err
		case err != nil:
			last = err
			s.log.Info("transient error, retrying", zap.Error(err))
		}
		t := time.NewTimer(delay)
		select {
		case <-pctx.Done():
			t.Stop()
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if last != nil {
				return fmt.Errorf("%w after %v (last error: %w)", errTimeout, timeout, last)
			}
			return fmt.Errorf("%w after %v", errTimeout, timeout)
		case <-t.C:
		}
		delay = min(2*delay, s.backoff.Max)
	}
}

var errTimeout = errors.New("timed out")

// isDir reports whether path is an existing directory.
func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}
