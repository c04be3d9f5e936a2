package ec2sim

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// losetupTimeout bounds one losetup call; it is quick unless the kernel is
// wedged, and then the simulator must still answer.
const losetupTimeout = 30 * time.Second

// byIDName is the udev name an NVMe EBS volume gets on a Nitro instance.
func byIDName(volumeID string) string {
	return "nvme-Amazon_Elastic_Block_Store_" + strings.ReplaceAll(volumeID, "-", "")
}

// attachLoop returns a loop device backed by file, reusing one that a
// previous awssim left behind (it may be mounted by the agent under test).
func attachLoop(file string) (string, error) {
	if devs, err := loopsFor(file); err == nil && len(devs) > 0 {
		return devs[0], nil
	}
	out, err := losetup("--find", "--show", file)
	if err != nil {
		return "", err
	}
	dev := strings.TrimSpace(out)
	if !strings.HasPrefix(dev, "/dev/loop") {
		return "", fmt.Errorf("losetup --find --show %s: unexpected output %q", file, out)
	}
	return dev, nil
}

// detachLoop releases dev. A mounted device is released once unmounted
// (the kernel's autoclear), which is what a detach of a busy volume needs.
func detachLoop(dev string) error {
	_, err := losetup("-d", dev)
	return err
}

func losetup(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), losetupTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "losetup", args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("losetup %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// loopsFor lists the loop devices whose backing file is file, read from
// sysfs so that no parsing of losetup's human output is needed.
func loopsFor(file string) ([]string, error) {
	abs, err := filepath.Abs(file)
	if err != nil {
		return nil, err
	}
	paths, err := filepath.Glob("/sys/block/loop*/loop/backing_file")
	if err != nil {
		return nil, err
	}
	var devs []string
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // the device went away while we looked
		}
		if strings.TrimSpace(string(b)) == abs {
			devs = append(devs, "/dev/"+filepath.Base(filepath.Dir(filepath.Dir(p))))
		}
	}
	return devs, nil
}

// link makes path a symlink to target, replacing an old symlink there.
func link(path, target string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("link %s: %w", path, err)
	}
	if err := removeLink(path); err != nil {
		return err
	}
	if err := os.Symlink(target, path); err != nil {
		return fmt.Errorf("link %s -> %s: %w", path, target, err)
	}
	return nil
}

// removeLink removes path if it is a symlink; anything else there is not
// ours to delete.
func removeLink(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove link %s: %w", path, err)
	}
	if fi.Mode()&fs.ModeSymlink == 0 {
		return fmt.Errorf("remove link %s: not a symlink, leaving it", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove link %s: %w", path, err)
	}
	return nil
}
