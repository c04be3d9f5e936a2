// Package ebs is the volume step: it attaches the data volume to this
// instance, finds its block device, gives it a filesystem only when it is
// blank, mounts it and records it in fstab by UUID.
//
// Nothing here ever formats a device that holds anything blkid can see.
//
// The check of a converged host is local: the device named by the volume
// id (its by-id link or NVMe serial), its filesystem, the mount and the
// fstab line. AWS is asked only when something local is wrong, so a host
// that is already right stays right through an AWS outage.
package ebs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"go.uber.org/zap"

	"github.com/monagent/monagent/internal/command"
	"github.com/monagent/monagent/internal/config"
	"github.com/monagent/monagent/internal/imds"
	"github.com/monagent/monagent/internal/retry"
	"github.com/monagent/monagent/internal/ssmparam"
)

// Bounds of the commands that change the disk. They run to the end even
// when the run is cancelled: a half-made filesystem helps no one.
// The unit's TimeoutStopSec (5 min) must exceed mkfs's and mount's bounds.
const (
	mkfsTimeout  = 3 * time.Minute
	mountTimeout = time.Minute
	probeTimeout = 30 * time.Second
)

// When the last successful run already knows the volume id, the read of
// its parameter is cut short, so that an outage costs a converged host
// seconds, not minutes: past these bounds the host's local state decides.
const (
	fallbackAttempts = 3
	fallbackBound    = 15 * time.Second
)

// EC2API is the part of *ec2.Client the step uses.
type EC2API interface {
	DescribeVolumes(ctx context.Context, in *ec2.DescribeVolumesInput, optFns ...func(*ec2.Options)) (*ec2.DescribeVolumesOutput, error)
	AttachVolume(ctx context.Context, in *ec2.AttachVolumeInput, optFns ...func(*ec2.Options)) (*ec2.AttachVolumeOutput, error)
}

// Params reads SSM parameters; *ssmparam.Store is one.
type Params interface {
	Get(ctx context.Context, name string, optFns ...func(*ssm.Options)) (ssmparam.Parameter, error)
}

// Options are the step's collaborators.
type Options struct {
	// Root prefixes every host path (/dev, /sys, /etc/fstab, the mount
	// point); "" means "/".
	Root     string
	Identity imds.Identity
	EC2      EC2API
	Params   Params
	Run      command.Runner
	Log      *zap.Logger
	// Backoff spaces polls; zero means retry.DefaultBackoff.
	Backoff retry.Backoff
	// Local makes the step take volume.device as a local block device:
	// no volume id, no AWS.
	Local bool
	// Directory makes the mount point a plain directory on the root disk
	// (volume.kind: directory): made and given its owner, nothing mounted.
	Directory bool
}

// Step converges the data volume.
type Step struct {
	cfg     config.Volume
	root    string
	id      imds.Identity
	ec2     EC2API
	params  Params
	run     command.Runner
	log     *zap.Logger
	backoff retry.Backoff
	local   bool
	dir     bool

	// Learned during the run.
	volID     string
	volIDErr  error // the SSM read that failed when volID is the remembered one
	uuid      string
	warning   string
	nsChecked bool

	// Memo of the last success: the volume, its filesystem, and the device
	// name EC2 gave its attachment here.
	lastVolID, lastUUID, lastDevice string
}

// New returns the volume step for cfg, an expanded and validated
// configuration.
func New(cfg config.Volume, o Options) *Step {
	s := &Step{cfg: cfg, root: o.Root, id: o.Identity, ec2: o.EC2, params: o.Params, run: o.Run, log: o.Log, backoff: o.Backoff, local: o.Local || o.Directory, dir: o.Directory}
	if s.root == "" {
		s.root = "/"
	}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	if s.backoff.Initial <= 0 {
		s.backoff = retry.DefaultBackoff
	}
	return s
}

// Restore implements engine.Memoizer.
func (s *Step) Restore(memo map[string]string) {
	s.lastVolID, s.lastUUID, s.lastDevice = memo["volume_id"], memo["uuid"], memo["device"]
}

// Memo implements engine.Memoizer.
func (s *Step) Memo() map[string]string {
	return map[string]string{"volume_id": s.volID, "uuid": s.uuid, "device": s.lastDevice}
}

// Warning implements engine.Warner.
func (s *Step) Warning() string { return s.warning }

// Fingerprint digests the volume id (resolved from SSM when configured so,
// since a new parameter value means a different volume) and how it is to be
// mounted.
func (s *Step) Fingerprint(ctx context.Context) (string, error) {
	volID, err := "local", error(nil)
	if !s.local {
		volID, err = s.volumeID(ctx)
	}
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, f := range []string{volID, s.cfg.Device, s.cfg.MountPoint, s.cfg.FSType, s.cfg.MountOptions, s.cfg.Owner} {
		fmt.Fprintf(h, "%d:%s;", len(f), f)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Check reports, from local facts alone, whether the volume is attached
// here, has its filesystem, is mounted at the mount point in the host's
// mount namespace, is in fstab by UUID and has its owner.
func (s *Step) Check(ctx context.Context) (bool, error) {
	if err := s.preflight(); err != nil {
		return false, err
	}
	if s.local {
		return s.checkLocalDevice(ctx)
	}
	volID, err := s.volumeID(ctx)
	if err != nil {
		return false, err
	}
	ok, err := s.checkLocal(ctx, volID)
	if err != nil || !ok {
		if s.volIDErr != nil {
			// The id is only remembered, and the host does not match it:
			// nothing can be done until SSM answers.
			return false, s.volIDErr
		}
		return false, err
	}
	return true, nil
}

// checkLocal is Check without AWS.
func (s *Step) checkLocal(ctx context.Context, volID string) (bool, error) {
	dev, proof, err := FindDevice(s.root, volID, s.knownDevice(volID))
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
	if proof == byName && (s.lastVolID != volID || s.lastUUID != sig.UUID) {
		// A device name alone does not say which volume it is; the
		// filesystem this volume had last time, at the name EC2 gave its
		// attachment, does.
		s.log.Info("device found by name only; asking EC2 which volume it is", zap.String("device", dev))
		return false, nil
	}
	s.uuid = sig.UUID
	mounted, err := s.mounted(volID, dev)
	if err != nil || !mounted {
		if err == nil {
			s.log.Info("volume not mounted", zap.String("mount_point", s.cfg.MountPoint))
		}
		return false, err
	}
	fstabOK, err := FstabConverged(s.fstabPath(), s.fstabEntry(sig.UUID))
	if err != nil || !fstabOK {
		if err == nil {
			s.log.Info("fstab entry missing or different", zap.String("fstab", s.fstabPath()))
		}
		return false, err
	}
	return s.ownerConverged()
}

// Apply attaches, formats when blank, mounts, records in fstab and sets
// the owner. Each part does nothing when it is already done.
func (s *Step) Apply(ctx context.Context) error {
	if err := s.preflight(); err != nil {
		return err
	}
	if s.local {
		return s.applyLocalDevice(ctx)
	}
	volID, err := s.volumeID(ctx)
	if err != nil {
		return err
	}
	if s.volIDErr != nil {
		return s.volIDErr
	}
	attachedAs, err := s.ensureAttached(ctx, volID)
	if err != nil {
		return err
	}
	if attachedAs == "" {
		attachedAs = s.cfg.Device
	}
	dev, err := s.waitDevice(ctx, volID, attachedAs)
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
	// A device found by name is this volume now: EC2 says it is attached
	// here under that name.
	s.uuid, s.lastVolID, s.lastUUID, s.lastDevice = uuid, volID, uuid, attachedAs
	return s.ensureOwner()
}

// preflight checks what the step needs before it touches anything: the
// identity, a usable mount point, and a mount namespace shared with the
// host's init, without which a mount would never reach the host.
func (s *Step) preflight() error {
	if !s.local && (s.id.InstanceID == "" || s.id.AZ == "") {
		return errors.New("volume: instance identity unknown (instance id and availability zone come from instance metadata)")
	}
	mp := s.cfg.MountPoint
	if !filepath.IsAbs(mp) || filepath.Clean(mp) == "/" {
		return retry.PermanentError(fmt.Errorf("volume: mount_point %q must be an absolute path other than /", mp))
	}
	if s.nsChecked {
		return nil
	}
	if err := HostMountNamespace(); err != nil {
		return err
	}
	s.nsChecked = true
	return nil
}

// volumeID returns the configured id, or the value of its SSM parameter,
// read once per run. When SSM cannot be reached and the last successful
// run knew the id, that id is used and the failure kept: the host's local
// state then decides whether it matters.
func (s *Step) volumeID(ctx context.Context) (string, error) {
	if s.volID != "" {
		return s.volID, nil
	}
	id, from := strings.TrimSpace(s.cfg.ID), "volume.id"
	if id == "" {
		p, err := s.readParameter(ctx)
		switch {
		case err != nil && retry.Unreachable(err) && config.IsVolumeID(s.lastVolID):
			s.volIDErr = err
			s.warning = fmt.Sprintf("could not read %s (%v); the host is checked against %s, the volume of the last successful run",
				s.cfg.IDParameter, err, s.lastVolID)
			s.log.Warn("volume id parameter unreadable; using the last known volume id",
				zap.String("parameter", s.cfg.IDParameter), zap.String("volume_id", s.lastVolID), zap.Error(err))
			s.volID = s.lastVolID
			return s.volID, nil
		case errors.Is(err, ssmparam.ErrNotFound):
			return "", retry.PermanentError(fmt.Errorf("volume: %w (create it, or set volume.id)", err))
		case err != nil:
			return "", retry.Permanently(fmt.Errorf("volume: %w (the instance role needs ssm:GetParameters on it)", err))
		}
		id, from = strings.TrimSpace(p.Value), "SSM parameter "+s.cfg.IDParameter
	}
	if !config.IsVolumeID(id) {
		return "", retry.PermanentError(fmt.Errorf("volume: %q from %s is not an EBS volume id (vol- and 8 or 17 hex digits)", id, from))
	}
	s.volID = id
	return id, nil
}

// readParameter reads the volume-id parameter, for a bounded time when a
// remembered id can stand in.
func (s *Step) readParameter(ctx context.Context) (ssmparam.Parameter, error) {
	if s.cfg.IDParameter == "" {
		return ssmparam.Parameter{}, retry.PermanentError(errors.New("volume: neither volume.id nor volume.id_parameter is set"))
	}
	if !config.IsVolumeID(s.lastVolID) {
		return s.params.Get(ctx, s.cfg.IDParameter)
	}
	ctx, cancel := context.WithTimeout(ctx, fallbackBound)
	defer cancel()
	return s.params.Get(ctx, s.cfg.IDParameter, func(o *ssm.Options) { o.RetryMaxAttempts = fallbackAttempts })
}

// knownDevice is the name to look the volume up by when its id is not on
// the device: the name EC2 gave its attachment when it last converged, or
// the configured one.
func (s *Step) knownDevice(volID string) string {
	if s.lastVolID == volID && s.lastDevice != "" {
		return s.lastDevice
	}
	return s.cfg.Device
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

// Diagnose answers doctor's question about the volume without changing
// anything: the id resolves, EC2 knows the volume, it can be attached to
// this instance (AZ, state), and where it is attached now.
func (s *Step) Diagnose(ctx context.Context) (string, error) {
	volID, err := s.volumeID(ctx)
	if err == nil && s.volIDErr != nil {
		err = s.volIDErr
	}
	if err != nil {
		return "", err
	}
	vol, err := s.describe(ctx, volID)
	if err != nil {
		return "", err
	}
	if err := s.checkVolume(vol); err != nil {
		return "", err
	}
	d := fmt.Sprintf("%s: %s in %s, %s", volID, vol.State, aws.ToString(vol.AvailabilityZone), describeHolder(vol))
	if aws.ToBool(vol.Encrypted) {
		d += fmt.Sprintf("; encrypted with %s (a customer-managed key needs %s for the instance role)", kmsKey(vol), kmsPermissions)
	}
	return d, nil
}
