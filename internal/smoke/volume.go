package smoke

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/monagent/monagent/internal/command"
	"github.com/monagent/monagent/internal/config"
	"github.com/monagent/monagent/internal/ebs"
)

// Volume is the infrastructure category's part about the data volume: its
// own filesystem (by UUID, not anything at all) is mounted at the mount
// point, fstab brings it back after a reboot (UUID, nofail), and it has
// room. uuid is the filesystem the volume step last converged, "" if none.
func Volume(ctx context.Context, root string, cfg *config.Config, uuid string, run command.Runner) []Check {
	mp := filepath.Join(root, cfg.Volume.MountPoint)
	if cfg.VolumeKind() == config.VolumeDirectory {
		// Nothing is mounted: the data lives on the root disk.
		if fi, err := os.Stat(mp); err != nil || !fi.IsDir() {
			return []Check{{Infrastructure, "data directory", Fail, fmt.Sprintf("%s is not a directory: run `monagent reconcile --only volume`", mp)}}
		}
		return []Check{{Infrastructure, "data directory", Pass, mp + " (volume.kind: directory, on the root disk)"}, diskUsage(mp, cfg.Smoke)}
	}
	fstabPath := filepath.Join(root, "/etc/fstab")
	line, found, err := ebs.FstabFor(fstabPath, cfg.Volume.MountPoint)
	out := []Check{fstab(fstabPath, cfg.Volume.MountPoint, line, found, err)}
	if uuid == "" {
		uuid = line.UUID()
	}
	m, err := ebs.MountAt(mp)
	switch {
	case err != nil:
		return append(out, Check{Infrastructure, "ebs mount", Fail, err.Error()})
	case m == nil:
		return append(out, Check{Infrastructure, "ebs mount", Fail, fmt.Sprintf("nothing is mounted at %s: run `monagent reconcile --only volume`", mp)})
	}
	out = append(out, mounted(ctx, run, m, mp, uuid))
	return append(out, diskUsage(mp, cfg.Smoke))
}

func mounted(ctx context.Context, run command.Runner, m *ebs.Mount, mp, want string) Check {
	c := Check{Category: Infrastructure, Name: "ebs mount", Status: Fail}
	sig, err := ebs.Probe(ctx, run, m.Source)
	switch {
	case err != nil:
		c.Detail = fmt.Sprintf("%s is mounted at %s, but its filesystem cannot be read: %v", m.Source, mp, err)
	case want == "":
		c.Detail = fmt.Sprintf("%s (%s, UUID %s) is mounted at %s, but neither fstab nor the state names the volume's filesystem: run `monagent reconcile --only volume`",
			m.Source, sig.Type, sig.UUID, mp)
	case !strings.EqualFold(sig.UUID, want):
		c.Detail = fmt.Sprintf("%s mounted at %s holds filesystem %s, not the data volume's %s: unmount it and run `monagent reconcile --only volume`",
			m.Source, mp, sig.UUID, want)
	default:
		c.Status, c.Detail = Pass, fmt.Sprintf("%s (%s, UUID %s) at %s", m.Source, m.FSType, sig.UUID, mp)
	}
	return c
}

func diskUsage(dir string, s config.Smoke) Check {
	c := Check{Category: Infrastructure, Name: "disk usage", Status: Fail}
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		c.Detail = fmt.Sprintf("statfs %s: %v", dir, err)
		return c
	}
	if fs.Blocks == 0 {
		c.Detail = dir + " reports no size"
		return c
	}
	used := 100 - float64(fs.Bavail)*100/float64(fs.Blocks)
	c.Detail = fmt.Sprintf("%.0f%% of %d MiB used", used, fs.Blocks*uint64(fs.Bsize)>>20)
	switch {
	case used >= float64(s.DiskFailPercent):
		c.Detail = fmt.Sprintf("%s is %.0f%% full (smoke.disk_fail_percent %d): Loki, Tempo and Prometheus will fail to write", dir, used, s.DiskFailPercent)
	case used >= float64(s.DiskWarnPercent):
		c.Status, c.Detail = Warn, fmt.Sprintf("%s is %.0f%% full (smoke.disk_warn_percent %d)", dir, used, s.DiskWarnPercent)
	default:
		c.Status = Pass
	}
	return c
}

func fstab(path, mountPoint string, l ebs.FstabLine, found bool, err error) Check {
	c := Check{Category: Infrastructure, Name: "fstab", Status: Fail}
	switch {
	case err != nil:
		c.Detail = err.Error()
	case !found:
		c.Detail = fmt.Sprintf("%s has no line for %s: the volume would not be mounted after a reboot", path, mountPoint)
	case l.UUID() == "":
		c.Detail = fmt.Sprintf("%s mounts %s by %s: device names change across reboots; run `monagent reconcile --only volume`", path, mountPoint, l.Source)
	case !strings.Contains(","+l.Options+",", ",nofail,"):
		c.Detail = fmt.Sprintf("%s line for %s lacks nofail: a missing volume would stop the boot", path, mountPoint)
	default:
		c.Status, c.Detail = Pass, fmt.Sprintf("%s %s %s", l.Source, l.MountPoint, l.Options)
	}
	return c
}
