package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/monagent/monagent/internal/command"
	"github.com/monagent/monagent/internal/config"
	"github.com/monagent/monagent/internal/ebs"
	"github.com/monagent/monagent/internal/state"
)

// check is one smoke or doctor result.
type check struct {
	name   string
	err    error // nil: passed
	warn   bool  // err is a warning, not a failure
	detail string
}

// report prints checks and returns how many failed.
func report(w io.Writer, checks []check) (failed int) {
	var passed, warned int
	for _, c := range checks {
		switch {
		case c.err == nil:
			passed++
			fmt.Fprintf(w, "ok    %s: %s\n", c.name, c.detail)
		case c.warn:
			warned++
			fmt.Fprintf(w, "warn  %s: %v\n", c.name, c.err)
		default:
			failed++
			fmt.Fprintf(w, "FAIL  %s: %v\n", c.name, c.err)
		}
	}
	fmt.Fprintf(w, "Results: %d passed, %d failed, %d warnings\n", passed, failed, warned)
	return failed
}

func smokeCmd(g *globals, stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "smoke",
		Short: "Check the converged host (seed section 8: infrastructure checks today)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(g.configPath)
			if err != nil {
				return err
			}
			checks := infraChecks(cmd.Context(), g.root, cfg)
			checks = append(checks, check{name: "containers, endpoints, grafana, prometheus, pipeline", warn: true,
				err: fmt.Errorf("not checked by this version: they arrive with the docker and compose steps")})
			if n := report(stdout, checks); n > 0 {
				return &exitError{code: exitFailed, err: fmt.Errorf("%d smoke check(s) failed", n)}
			}
			return nil
		},
	}
}

// infraChecks is seed section 8's "Infrastructure" category: the data
// volume's own filesystem is mounted, survives a reboot (fstab by UUID,
// nofail), and has room.
func infraChecks(ctx context.Context, root string, cfg *config.Config) []check {
	mp := filepath.Join(root, cfg.Volume.MountPoint)
	fstabPath := filepath.Join(root, "/etc/fstab")
	line, found, ferr := ebs.FstabFor(fstabPath, cfg.Volume.MountPoint)
	checks := []check{fstabCheck(fstabPath, cfg.Volume.MountPoint, line, found, ferr)}
	m, err := ebs.MountAt(mp)
	switch {
	case err != nil:
		return append(checks, check{name: "ebs mount", err: err})
	case m == nil:
		return append(checks, check{name: "ebs mount", err: fmt.Errorf("nothing is mounted at %s: run `monagent reconcile --only volume`", mp)})
	}
	checks = append(checks, mountCheck(ctx, root, m, mp, line.UUID()))
	return append(checks, diskUsage(mp))
}

// mountCheck makes sure what is mounted at the mount point is the data
// volume's filesystem, by UUID: anything mounted there is not enough.
func mountCheck(ctx context.Context, root string, m *ebs.Mount, mp, fstabUUID string) check {
	c := check{name: "ebs mount"}
	want := fstabUUID
	if st, err := (&state.Store{Path: filepath.Join(root, "/var/lib/monagent/state.json")}).Load(); err == nil {
		if r := st.Steps["volume"]; r != nil && r.Memo["uuid"] != "" {
			want = r.Memo["uuid"]
		}
	}
	sig, err := ebs.Probe(ctx, command.Exec{}, m.Source)
	switch {
	case err != nil:
		c.err = fmt.Errorf("%s is mounted at %s, but its filesystem cannot be read: %w", m.Source, mp, err)
	case want == "":
		c.err = fmt.Errorf("%s (%s, UUID %s) is mounted at %s, but neither fstab nor the state names the volume's filesystem: run `monagent reconcile --only volume`",
			m.Source, sig.Type, sig.UUID, mp)
	case !strings.EqualFold(sig.UUID, want):
		c.err = fmt.Errorf("%s mounted at %s holds filesystem %s, not the data volume's %s: unmount it and run `monagent reconcile --only volume`",
			m.Source, mp, sig.UUID, want)
	default:
		c.detail = fmt.Sprintf("%s (%s, UUID %s) at %s", m.Source, m.FSType, sig.UUID, mp)
	}
	return c
}

func diskUsage(dir string) check {
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return check{name: "disk usage", err: fmt.Errorf("statfs %s: %w", dir, err)}
	}
	total := fs.Blocks * uint64(fs.Bsize)
	if total == 0 {
		return check{name: "disk usage", err: fmt.Errorf("%s reports no size", dir)}
	}
	used := 100 - float64(fs.Bavail)*100/float64(fs.Blocks)
	c := check{name: "disk usage", detail: fmt.Sprintf("%.0f%% of %d MiB used", used, total>>20)}
	switch {
	case used >= 95:
		c.err = fmt.Errorf("%s is %.0f%% full: Loki, Tempo and Prometheus will fail to write", dir, used)
	case used >= 85:
		c.err, c.warn = fmt.Errorf("%s is %.0f%% full", dir, used), true
	}
	return c
}

func fstabCheck(path, mountPoint string, l ebs.FstabLine, found bool, err error) check {
	c := check{name: "fstab"}
	switch {
	case err != nil:
		c.err = err
	case !found:
		c.err = fmt.Errorf("%s has no line for %s: the volume would not be mounted after a reboot", path, mountPoint)
	case l.UUID() == "":
		c.err = fmt.Errorf("%s mounts %s by %s: device names change across reboots; run `monagent reconcile --only volume`", path, mountPoint, l.Source)
	case !strings.Contains(","+l.Options+",", ",nofail,"):
		c.err = fmt.Errorf("%s line for %s lacks nofail: a missing volume would stop the boot", path, mountPoint)
	default:
		c.detail = fmt.Sprintf("%s %s %s", l.Source, l.MountPoint, l.Options)
	}
	return c
}
