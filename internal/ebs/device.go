package ebs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"go.uber.org/zap"

	"github.com/monagent/monagent/internal/retry"
)

// ErrDeviceNotFound means no device node for the volume exists (yet).
var ErrDeviceNotFound = errors.New("no device for the volume")

// Proof is how a device was tied to the volume.
type Proof int

const (
	// byID: the EBS by-id link or the NVMe serial names the volume.
	byID Proof = iota
	// byName: only the configured device name (Xen instances, loop
	// devices) points at it.
	byName
)

// FindDevice returns the block device of volume volID, with symlinks
// resolved, and how it was found. It looks, in order, at the EBS NVMe link
// in <root>/dev/disk/by-id, at the serials of block devices in
// <root>/sys/class/block (every NVMe namespace, whatever its number, and
// the heads of native multipath), and at the configured device name (e.g.
// /dev/xvdf) and its /dev/sd* or /dev/xvd* twin: on Nitro instances the
// requested name is at best a udev symlink, so the volume id is the only
// stable key. When sysfs has a serial for the device found by name, it
// must name volID.
func FindDevice(root, volID, configured string) (string, Proof, error) {
	if dev, err := deviceByID(root, volID); err == nil || !errors.Is(err, ErrDeviceNotFound) {
		return dev, byID, err
	}
	for _, cand := range nameCandidates(root, configured) {
		dev, err := resolve(cand)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", byName, err
		}
		if err := checkSerial(root, volID, cand, dev); err != nil {
			return "", byName, err
		}
		return dev, byName, nil
	}
	return "", byName, fmt.Errorf("volume: %s: %w", volID, ErrDeviceNotFound)
}

// deviceByID finds the device that carries volID itself: udev's by-id
// link, or an NVMe serial in sysfs.
func deviceByID(root, volID string) (string, error) {
	link := filepath.Join(root, "dev", "disk", "by-id", "nvme-Amazon_Elastic_Block_Store_"+nvmeSerial(volID))
	if dev, err := resolve(link); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return dev, err
	}
	if dev := findBySerial(root, volID); dev != "" {
		return dev, nil
	}
	return "", fmt.Errorf("volume: %s: %w", volID, ErrDeviceNotFound)
}

func resolve(path string) (string, error) {
	dev, err := filepath.EvalSymlinks(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("volume: resolve %s: %w", path, err)
	}
	return dev, err
}

// pathDevice matches the hidden per-path devices of NVMe native multipath
// (nvme0c1n1); their head (nvme0n1) is the device to use.
var pathDevice = regexp.MustCompile(`^nvme\d+c\d+n\d+$`)

// findBySerial returns <root>/dev/<name> for the whole-disk block device
// whose serial names volID. A namespace's device/serial is its
// controller's, and a multipath head's is its subsystem's, so this finds
// nvme1n2 as well as nvme1n1.
func findBySerial(root, volID string) string {
	want := nvmeSerial(volID)
	serials, _ := filepath.Glob(filepath.Join(root, "sys", "class", "block", "*", "device", "serial"))
	sort.Strings(serials)
	for _, p := range serials {
		blk := filepath.Dir(filepath.Dir(p))
		name := filepath.Base(blk)
		if pathDevice.MatchString(name) || exists(filepath.Join(blk, "partition")) {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil || normalizeSerial(string(b)) != want {
			continue
		}
		if dev, err := resolve(filepath.Join(root, "dev", name)); err == nil {
			return dev
		}
	}
	return ""
}

// nameCandidates are the configured name and its twin, under root.
func nameCandidates(root, configured string) []string {
	if configured == "" {
		return nil
	}
	c := []string{filepath.Join(root, configured)}
	if twin := twinDevice(configured); twin != "" {
		c = append(c, filepath.Join(root, twin))
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
	return retry.PermanentError(fmt.Errorf(
		"volume: %s (%s) is volume %s, not %s; another volume holds that device name: set volume.device to a free name",
		found, dev, got, volID))
}

// nvmeSerial is the serial an EBS NVMe controller reports for volID.
func nvmeSerial(volID string) string { return "vol" + strings.TrimPrefix(volID, "vol-") }

func normalizeSerial(s string) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), "-", ""))
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// localBackoff paces looks at /dev and /sys, which cost nothing next to
// an AWS call: five times as often, so udev's link is seen within tens of
// milliseconds.
func (s *Step) localBackoff() retry.Backoff {
	return retry.Backoff{Initial: s.backoff.Initial / 5, Max: s.backoff.Max / 5}
}

// waitDevice waits, up to volume.device_timeout, for the volume's block
// device to appear after the attachment. name is the device name EC2
// reports for the attachment; it is used only when the device does not
// carry the volume id.
func (s *Step) waitDevice(ctx context.Context, volID, name string) (string, error) {
	timeout := s.cfg.DeviceTimeout.Duration
	var dev string
	err := retry.Poll(ctx, s.localBackoff(), timeout, s.log, func(context.Context) (bool, error) {
		d, _, err := FindDevice(s.root, volID, name)
		if errors.Is(err, ErrDeviceNotFound) {
			return false, nil
		}
		dev = d
		return err == nil, err
	})
	if errors.Is(err, retry.ErrTimeout) {
		return "", fmt.Errorf("volume: %s is attached but its device did not appear, %w; looked at %s, the serials in %s and %s",
			volID, err, filepath.Join(s.root, "dev", "disk", "by-id", "nvme-Amazon_Elastic_Block_Store_"+nvmeSerial(volID)),
			filepath.Join(s.root, "sys", "class", "block"), strings.Join(nameCandidates(s.root, name), ", "))
	}
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(dev)
	if err != nil {
		return "", fmt.Errorf("volume: %w", err)
	}
	if fi.Mode()&fs.ModeDevice == 0 || fi.Mode()&fs.ModeCharDevice != 0 {
		return "", retry.PermanentError(fmt.Errorf("volume: %s (for %s) is not a block device", dev, volID))
	}
	s.log.Info("volume device found", zap.String("volume_id", volID), zap.String("device", dev))
	return dev, nil
}
