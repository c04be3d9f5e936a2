package ebs

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"go.uber.org/zap"

	"github.com/monagent/monagent/internal/retry"
)

// A local device (volume.kind: device) is a block device the host already
// has, such as a second disk off AWS. There is nothing to attach and no
// volume id; everything else is the EBS path: a filesystem only when
// blank, the mount in the host's namespace, fstab by UUID, the owner.

// localName stands for the volume id in logs and errors.
func (s *Step) localName() string { return "device " + s.cfg.Device }

// localDevice is the configured device with its symlinks followed, once
// it is known to be a block device.
func (s *Step) localDevice() (string, error) {
	p := filepath.Join(s.root, s.cfg.Device)
	dev, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", retry.PermanentError(fmt.Errorf("volume: volume.device %s: %w; name the host's data disk (lsblk lists them), or use volume.kind: directory", s.cfg.Device, err))
	}
	fi, err := os.Stat(dev)
	if err != nil {
		return "", fmt.Errorf("volume: %w", err)
	}
	if fi.Mode()&fs.ModeDevice == 0 || fi.Mode()&fs.ModeCharDevice != 0 {
		return "", retry.PermanentError(fmt.Errorf("volume: volume.device %s (%s) is not a block device", s.cfg.Device, dev))
	}
	return dev, nil
}

func (s *Step) checkLocalDevice(ctx context.Context) (bool, error) {
	if s.dir {
		return s.checkDirectory()
	}
	dev, err := s.localDevice()
	if err != nil {
		return false, err
	}
	sig, err := s.probe(ctx, s.localName(), dev)
	if err != nil {
		return false, err
	}
	if sig.Type != s.cfg.FSType || sig.UUID == "" {
		s.log.Info("device has no usable filesystem", zap.String("device", dev), zap.String("type", sig.Type))
		return false, nil
	}
	s.uuid = sig.UUID
	if ok, err := s.mounted(s.localName(), dev); err != nil || !ok {
		return false, err
	}
	if ok, err := FstabConverged(s.fstabPath(), s.fstabEntry(sig.UUID)); err != nil || !ok {
		return false, err
	}
	return s.ownerConverged()
}

func (s *Step) applyLocalDevice(ctx context.Context) error {
	if s.dir {
		return s.applyDirectory()
	}
	dev, err := s.localDevice()
	if err != nil {
		return err
	}
	if err := s.notRenamed(ctx, dev); err != nil {
		return err
	}
	uuid, err := s.ensureFilesystem(ctx, s.localName(), dev)
	if err != nil {
		return err
	}
	if err := s.ensureMounted(ctx, s.localName(), dev); err != nil {
		return err
	}
	changed, err := UpdateFstab(s.fstabPath(), s.fstabEntry(uuid))
	if err != nil {
		return err
	}
	if changed {
		s.log.Info("fstab updated", zap.String("fstab", s.fstabPath()), zap.String("uuid", uuid))
	}
	s.uuid, s.lastUUID, s.lastDevice = uuid, uuid, s.cfg.Device
	return s.ensureOwner()
}

// notRenamed refuses a blank device where this host's data disk was: a
// device name (sdb, vdb) can move to another disk between boots, and the
// blank one now under the name must not be formatted as if it were new.
func (s *Step) notRenamed(ctx context.Context, dev string) error {
	sig, err := s.probe(ctx, s.localName(), dev)
	if err != nil || sig.Type != "" {
		return err
	}
	known := s.lastUUID
	if line, ok, _ := FstabFor(s.fstabPath(), s.cfg.MountPoint); known == "" && ok {
		known = line.UUID()
	}
	if known == "" {
		return nil
	}
	return retry.PermanentError(fmt.Errorf("volume: volume.device %s (%s) is blank, but this host's data disk had filesystem UUID %s: "+
		"the device name now points at another disk; set volume.device to the data disk's /dev/disk/by-uuid/%s or /dev/disk/by-id path "+
		"(or, for a new disk, remove the fstab line for %s)", s.cfg.Device, dev, known, known, s.cfg.MountPoint))
}

// A directory (volume.kind: directory) on the root disk holds the data on
// a host with no disk of its own for it.
func (s *Step) checkDirectory() (bool, error) {
	fi, err := os.Stat(s.mountDir())
	if err != nil || !fi.IsDir() {
		s.log.Info("data directory missing", zap.String("dir", s.mountDir()))
		return false, nil
	}
	return s.ownerConverged()
}

func (s *Step) applyDirectory() error {
	if err := os.MkdirAll(s.mountDir(), 0o755); err != nil {
		return fmt.Errorf("volume: %w", err)
	}
	return s.ensureOwner()
}
