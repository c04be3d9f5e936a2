package instance

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"golang.org/x/sys/unix"
)

// DockerDirNone, as Options.DockerDir, binds nothing at /var/lib/docker:
// the test puts Docker's state on a filesystem its overlay2 driver
// accepts itself (the data volume mounted there, or a data-root on it).
const DockerDirNone = "none"

const (
	// cgroupRWUnit remounts the cgroup v1 controller hierarchies
	// read-write inside (nspawn mounts them read-only; dockerd and runc
	// create cgroups in them) before anything of Docker's starts.
	cgroupRWUnit = `# Written by rig/instance (Options.Docker): nspawn mounts the cgroup v1
# controller hierarchies read-only; a Docker engine inside creates its
# cgroups in them (below the instance's own cgroup, the root of its cgroup
# namespace).
[Unit]
Description=rig/instance: cgroup v1 controller hierarchies read-write for Docker
DefaultDependencies=no
Before=sysinit.target containerd.service docker.service docker.socket

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/rig-cgroup-rw

[Install]
WantedBy=sysinit.target
`
	cgroupRWScript = `#!/bin/sh
# rig/instance: remount every cgroup v1 hierarchy under /sys/fs/cgroup
# read-write (see rig-cgroup-rw.service).
set -e
for d in /sys/fs/cgroup/*; do
	[ -d "$d" ] && [ ! -L "$d" ] || continue
	[ "$(stat -f -c %T "$d")" = cgroupfs ] || continue
	mount -o remount,bind,rw,nosuid,nodev,noexec "$d"
done
`
	// overlayfsMagic is statfs's f_type of an overlayfs.
	overlayfsMagic = 0x794c7630
)

// prepareDocker installs and enables rig-cgroup-rw.service in root.
func prepareDocker(root string) error {
	if err := writeRootFile(root, "usr/local/sbin/rig-cgroup-rw", cgroupRWScript, 0o755); err != nil {
		return err
	}
	if err := writeRootFile(root, "etc/systemd/system/rig-cgroup-rw.service", cgroupRWUnit, 0o644); err != nil {
		return err
	}
	return enableUnit(root, "sysinit.target", "/etc/systemd/system/rig-cgroup-rw.service")
}

// dockerDir returns the host directory to bind at /var/lib/docker (""
// for none), creating it if needed. The default is docker/ in bootDir,
// or, when root is an overlay an earlier boot mounted (overlay is false:
// this boot did not mount it), the docker/ directory beside that
// overlay's layers.
func dockerDir(opt, root, bootDir string, overlay bool) (string, error) {
	switch opt {
	case DockerDirNone:
		return "", nil
	case "":
		if !overlay {
			if d, ok := priorDockerDir(root); ok {
				return d, nil
			}
		}
		d := filepath.Join(bootDir, "docker")
		if err := os.Mkdir(d, 0o710); err != nil {
			return "", fmt.Errorf("Docker's state directory: %w", err)
		}
		if err := checkNotOverlay(d); err != nil {
			return "", err
		}
		return d, nil
	}
	if !filepath.IsAbs(opt) {
		return "", fmt.Errorf("Options.DockerDir %q: want an absolute host path or %q", opt, DockerDirNone)
	}
	if err := os.MkdirAll(opt, 0o710); err != nil {
		return "", fmt.Errorf("Options.DockerDir: %w", err)
	}
	if err := checkNotOverlay(opt); err != nil {
		return "", err
	}
	return opt, nil
}

// priorDockerDir returns the docker/ directory of the boot that mounted
// root: root is an overlay whose upper layer is upper/ beside it, as
// mountBase makes them, and docker/ is a directory there.
func priorDockerDir(root string) (string, bool) {
	mounts, err := readMountInfo()
	if err != nil {
		return "", false
	}
	dir := filepath.Dir(root)
	for _, m := range mounts {
		if m.mountPoint != root || m.fsType != "overlay" || !slices.Contains(m.superOpts, "upperdir="+filepath.Join(dir, "upper")) {
			continue
		}
		d := filepath.Join(dir, "docker")
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			return d, true
		}
	}
	return "", false
}

// checkNotOverlay refuses a directory on an overlayfs for Docker's state.
func checkNotOverlay(dir string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("Docker's state directory: %w", err)
	}
	if st.Type == overlayfsMagic {
		return errors.New("Docker's state directory " + dir + " is on an overlayfs, which Docker's overlay2 driver cannot use (set Options.DockerDir)")
	}
	return nil
}
