package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"

	"github.com/spf13/cobra"

	"github.com/monagent/monagent/internal/lock"
)

func doctorCmd(g *globals, stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "doctor",
		Short: "Diagnose what a run needs: config, programs, IMDSv2, AWS access, state, lock",
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := newApp(cmd.Context(), g, io.Discard)
			if err != nil {
				return err
			}
			checks := []check{{name: "config", detail: g.configPath + " is valid"}}
			checks = append(checks, a.programChecks()...)
			checks = append(checks, a.stateCheck(), a.lockCheck(cmd.Context()))
			checks = append(checks, a.awsChecks(cmd.Context())...)
			if n := report(stdout, checks); n > 0 {
				return &exitError{code: exitFailed, err: fmt.Errorf("%d doctor check(s) failed", n)}
			}
			return nil
		},
	}
}

func (a *app) programChecks() []check {
	var out []check
	for _, p := range []string{"blkid", "mount", "mkfs." + a.cfg.Volume.FSType} {
		c := check{name: "program " + p}
		if path, err := exec.LookPath(p); err != nil {
			c.err = fmt.Errorf("%s not found on PATH: install it (xfsprogs for mkfs.xfs, e2fsprogs for mkfs.ext4, util-linux for the rest)", p)
		} else {
			c.detail = path
		}
		out = append(out, c)
	}
	return out
}

func (a *app) stateCheck() check {
	c := check{name: "state", detail: a.store().Path}
	if _, err := a.store().Load(); err != nil {
		c.err, c.warn = err, true
	}
	return c
}

func (a *app) lockCheck(ctx context.Context) check {
	c := check{name: "lock", detail: a.lockPath() + " is free"}
	l, err := lock.Acquire(ctx, a.lockPath(), 0)
	switch {
	case errors.Is(err, lock.ErrTimeout):
		c.err, c.warn = fmt.Errorf("a run holds %s right now", a.lockPath()), true
	case err != nil:
		c.err = err
	default:
		_ = l.Release()
	}
	return c
}

// awsChecks asks what a run will ask, with the instance's own role and
// read-only calls: the identity, the volume id, and the volume itself.
func (a *app) awsChecks(ctx context.Context) []check {
	idc := check{name: "imdsv2"}
	h, err := a.discover(ctx)
	if h == nil {
		idc.err = err
		return []check{idc}
	}
	idc.detail = fmt.Sprintf("%s in %s (%s)", h.Identity.InstanceID, h.Identity.AZ, h.Identity.PrivateIP)
	if err != nil {
		return []check{idc, {name: "config templates", err: err}}
	}
	vc := check{name: "ebs volume"}
	vc.detail, vc.err = newVolumeStep(h).Diagnose(ctx)
	return []check{idc, vc}
}
