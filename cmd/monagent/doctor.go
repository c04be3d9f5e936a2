package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/monagent/monagent/internal/imds"
	"github.com/monagent/monagent/internal/lock"
	"github.com/monagent/monagent/internal/state"
	"github.com/spf13/cobra"
)

func doctorCmd(g *globals, stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "doctor",
		Short: "Diagnose what a run needs: config, programs, IMDSv2, AWS access, state, lock",
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := newApp(cmd.Context(), g, modeReconcile, io.Discard)
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
	for _, p := range []string{"blkid", "mount", "umount", "mkfs." + a.cfg.Volume.FSType} {
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
	c := check{name: "state", detail: a.statePath()}
	if _, err := (&state.Store{Path: a.statePath()}).Load(); err != nil {
		c.err = err
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

// awsChecks reads what bootstrap will read, with the instance's own role:
// the identity, the volume id parameter and the volume itself.
func (a *app) awsChecks(ctx context.Context) []check {
	idc := check{name: "imdsv2"}
	id, err := imds.Fetch(ctx, imds.NewClient(a.aws))
	if err != nil {
		idc.err = err
		return []check{idc}
	}
	idc.detail = fmt.Sprintf("%s in %s (%s)", id.InstanceID, id.AZ, id.PrivateIP)
	if err := a.learned(ctx, id); err != nil {
		return []check{idc, {name: "config templates", err: err}}
	}
	out := []check{idc}
	volID := a.cfg.Volume.ID
	if volID == "" {
		pc := check{name: "ssm " + a.cfg.Volume.IDParameter}
		got, err := ssm.NewFromConfig(a.aws).GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(a.cfg.Volume.IDParameter)})
		if err != nil {
			pc.err = fmt.Errorf("read the volume id: %w", err)
			return append(out, pc)
		}
		volID = aws.ToString(got.Parameter.Value)
		pc.detail = volID
		out = append(out, pc)
	}
	vc := check{name: "ec2 volume " + volID}
	got, err := ec2.NewFromConfig(a.aws).DescribeVolumes(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{volID}})
	switch {
	case err != nil:
		vc.err = fmt.Errorf("describe: %w", err)
	case len(got.Volumes) != 1:
		vc.err = fmt.Errorf("describe returned %d volumes", len(got.Volumes))
	case aws.ToString(got.Volumes[0].AvailabilityZone) != id.AZ:
		vc.err = fmt.Errorf("volume is in %s, this instance in %s: attach cannot work across AZs; "+
			"launch the instance in %s or move the volume via a snapshot",
			aws.ToString(got.Volumes[0].AvailabilityZone), id.AZ, aws.ToString(got.Volumes[0].AvailabilityZone))
	default:
		v := got.Volumes[0]
		vc.detail = fmt.Sprintf("%s, %s, encrypted=%t", v.State, aws.ToString(v.AvailabilityZone), aws.ToBool(v.Encrypted))
	}
	return append(out, vc)
}
