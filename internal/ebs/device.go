package ebs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"go.uber.org/zap"

	"github.com/monagent/monagent/internal/engine"
)

// ErrDeviceNotFound means no device node for the volume exists (yet).
var ErrDeviceNotFound = errors.New("no device for the volume")

// FindDevice returns the block device of volume volID, with symlinks
// resolved. It looks, in order, at the EBS NVMe link in
// <root>/dev/disk/by-id, at the serials of NVMe controllers in
// <root>/sys/class/nvme, and at the configured device name (e.g. /dev/xvdf)
// and its /dev/sd* or /dev/xvd* twin: on Nitro instances the requested name
// is at best a udev symlink, so the volume id is the only stable key. When
// sysfs has a serial for the device found, it must name volID.
func FindDevice(root, volID, configured string) (string, error) {
	for _, cand := range deviceCandidates(root, volID, configured) {
		dev, err := filepath.EvalSymlinks(cand)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("volume: resolve %s: %w", cand, err)
		}
		if err := checkSerial(root, volID, cand, dev); err != nil {
			return "", err
		}
		return dev, nil
	}
	return "", fmt.Errorf("volume: %s: %w", volID, ErrDeviceNotFound)
}

// deviceCandidates lists the paths that may name the volume, best first.
func deviceCandidates(root, volID, configured string) []string {
	serial := nvmeSerial(volID)
	c := []string{filepath.Join(root, "dev", "disk", "by-id", "nvme-Amazon_Elastic_Block_Store_"+serial)}
	ctrls, _ := filepath.Glob(filepath.Join(root, "sys", "class", "nvme", "*", "serial"))
	for _, p := range ctrls {
		b, err := os.ReadFile(p)
		if err != nil || normalizeSerial(string(b)) != serial {
			continue
		}
		ctrl := filepath.Base(filepath.Dir(p))
		c = append(c, filepath.Join(root, "dev", ctrl+"n1"))
	}
	if configured != "" {
		c = append(c, filepath.Join(root, configured))
		if twin := twinDevice(configured); twin != "" {
			c = append(c, filepath.Join(root, twin))
		}
	}
	return c
}

// twinDevice maps /dev/sdX to /dev/xvdX and back: EC2 accepts either name
// and the kernel may use the other.
func twinDevice(dev string) string {
	dir, base := filepath.Split(dev)
	switch {
	case strings.HasPrefix(base, "xvd"):
		return dir + "sd" + strings.TrimPrefix(base, "xvd")
	case strings.HasPrefix(base, "sd"):
		return dir + "xvd" + strings.TrimPrefix(base, "sd")
	}
	return ""
}

// checkSerial compares the serial sysfs holds for dev, when it holds one
// (NVMe EBS volumes; not loop or Xen devices), with the volume id.
func checkSerial(root, volID, found, dev string) error {
	b, err := os.ReadFile(filepath.Join(root, "sys", "class", "block", filepath.Base(dev), "device", "serial"))
	if err != nil {
		return nil
	}
	got := normalizeSerial(string(b))
	if got == "" || got == nvmeSerial(volID) {
		return nil
	}
	return engine.PermanentError(fmt.Errorf(
		"volume: %s (%s) is volume %s, not %s; another volume holds that device name: set volume.device to a free name",
		found, dev, got, volID))
}

// nvmeSerial is the serial an EBS NVMe controller reports for volID.
func nvmeSerial(volID string) string { return "vol" + strings.TrimPrefix(volID, "vol-") }

func normalizeSerial(s string) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), "-", ""))
}

// waitDevice waits, up to volume.device_timeout, for the volume's block
// device to appear after the attachment.
func (s *Step) waitDevice(ctx context.Context, volID string) (string, error) {
	timeout := orDefault(s.cfg.DeviceTimeout, defaultDeviceTimeout)
	var dev string
	err := s.poll(ctx, timeout, func(context.Context) (bool, error) {
		d, err := FindDevice(s.root, volID, s.cfg.Device)
		if errors.Is(err, ErrDeviceNotFound) {
			return false, nil
		}
		dev = d
		return err == nil, err
	})
	if errors.Is(err, errTimeout) {
		return "", fmt.Errorf("volume: %s is attached but its device did not appear, %w; looked at %s and NVMe serials in %s",
			volID, err, strings.Join(deviceCandidates(s.root, volID, s.cfg.Device), ", "),
			filepath.Join(s.root, "sys", "class", "nvme"))
	}
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(dev)
	if err != nil {
		return "", fmt.Errorf("volume: %w", err)
	}
	if fi.Mode()&fs.ModeDevice == 0 || fi.Mode()&fs.ModeCharDevice != 0 {
		return "", engine.PermanentError(fmt.Errorf("volume: %s (for %s) is not a block device", dev, volID))
	}
	s.log.Info("volume device found", zap.String("volume_id", volID), zap.String("device", dev))
	return dev, nil
}
