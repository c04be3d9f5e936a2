package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/monagent/monagent/internal/command"
	"github.com/monagent/monagent/internal/config"
	"github.com/monagent/monagent/internal/doctor"
	"github.com/monagent/monagent/internal/host"
	"github.com/monagent/monagent/internal/imds"
	"github.com/monagent/monagent/internal/smoke"
	"github.com/monagent/monagent/internal/state"
)

// awsCheckNames are the checks that need AWS, reported as skipped when
// what they depend on failed.
var awsCheckNames = []string{"aws", "ssm parameters", "ebs volume", "ebs kms", "s3 bundle"}

func doctorCmd(g *globals, stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use: "doctor",
		Short: "Check, read-only, what a run needs (the seed's troubleshooting tables): IMDSv2, AWS access, SSM parameters, " +
			"the volume and its KMS key, Docker and the Compose plugin, .env, the units, the stack's data; exit 1 on any failure",
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := newApp(cmd.Context(), g, io.Discard)
			if err != nil {
				return err
			}
			checks := []check{{name: "config", detail: g.configPath + " is valid"}}
			if a.cfg.Example {
				// Its checks would ask about the example's environment.
				checks[0].err = fmt.Errorf("%s is the package's example configuration (example: true): write this host's "+
					"configuration there, without that line; runs do nothing until then", g.configPath)
			} else {
				checks = append(checks, a.programChecks()...)
				checks = append(checks, a.stateCheck(), a.lockCheck())
				checks = append(checks, fromDoctor(a.hostChecks(cmd.Context()))...)
			}
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

// lockCheck probes the run lock with a shared, non-blocking flock that it
// drops at once; unlike a run it creates neither the file nor /run.
func (a *app) lockCheck() check {
	path := a.lockPath()
	c := check{name: "lock", detail: path + " is free"}
	f, err := os.Open(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		c.detail = path + " is free (no run since boot)"
		return c
	case err != nil:
		c.err = fmt.Errorf("lock %s: %w", path, err)
		return c
	}
	defer f.Close()
	switch err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); {
	case errors.Is(err, unix.EWOULDBLOCK):
		c.err, c.warn = fmt.Errorf("a run holds %s right now: what follows may change under it (journalctl -u monagent)", path), true
	case err != nil:
		c.err = fmt.Errorf("lock %s: %w", path, err)
	default:
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
	}
	return c
}

// hostChecks are the checks of the instance: its identity, then what AWS
// says of it, then what is on the host. Without the identity the AWS
// checks are reported skipped and the local ones run on the configuration
// as loaded.
func (a *app) hostChecks(ctx context.Context) []doctor.Check {
	a.cfg = host.Resolve(a.g.root, a.cfg)
	if a.cfg.Local() {
		return a.localHostChecks(ctx)
	}
	h, out, err := a.doctorHost(ctx)
	if err != nil {
		// Only the Docker client's settings fail here; a run fails the same.
		return append(out, doctor.Failed("host", fmt.Sprintf("%v: no check after this one can run; fix DOCKER_HOST or DOCKER_CERT_PATH", err)))
	}
	if last := out[len(out)-1]; last.Status == doctor.OK {
		out = append(out, a.awsChecks(ctx, h)...)
	} else {
		out = append(out, doctor.Skipped("needs the instance's identity and the configuration expanded with it: "+last.Name+" failed", awsCheckNames...)...)
	}
	return append(out, a.localChecks(ctx, h)...)
}

// localHostChecks are the checks of a host off AWS (cloud: none): its
// identity from the host, no AWS, then what is on the host.
func (a *app) localHostChecks(ctx context.Context) []doctor.Check {
	h, err := a.discover(ctx)
	if err != nil {
		return []doctor.Check{doctor.Failed("host", err.Error())}
	}
	out := []doctor.Check{doctor.Pass("imdsv2", fmt.Sprintf("cloud: none: %s (%s), no instance metadata asked", h.Identity.InstanceID, h.Identity.PrivateIP))}
	out = append(out, doctor.Skipped("cloud: none: the host does not use AWS", awsCheckNames...)...)
	return append(out, a.localChecks(ctx, h)...)
}

// doctorHost is the metadata phase of a run, told apart: IMDSv2, then the
// configuration's instance placeholders. It returns the Host the checks
// use and the lines of both; the last is OK only when both are.
func (a *app) doctorHost(ctx context.Context) (*host.Host, []doctor.Check, error) {
	opts := host.Options{Root: a.g.root, Config: a.cfg, AWS: a.aws, Log: a.log, Secrets: a.g.secrets,
		Run: command.Exec{Log: a.log, Redact: a.g.secrets.Redact}}
	id, err := imds.Fetch(ctx, imds.NewClient(a.aws))
	if err != nil {
		h, herr := host.New(opts, imds.Identity{}, a.cfg, a.aws)
		return h, []doctor.Check{doctor.Failed("imdsv2", err.Error())}, herr
	}
	out := []doctor.Check{doctor.Pass("imdsv2", fmt.Sprintf("%s in %s (%s)", id.InstanceID, id.AZ, id.PrivateIP))}
	awsCfg := a.aws.Copy()
	if awsCfg.Region == "" {
		awsCfg.Region = id.Region
	}
	cfg, err := a.cfg.Expand(config.Vars{InstanceID: id.InstanceID, Region: id.Region, AZ: id.AZ, PrivateIP: id.PrivateIP})
	if err != nil {
		out = append(out, doctor.Failed("config templates", err.Error()))
		cfg = a.cfg
	}
	h, err := host.New(opts, id, cfg, awsCfg)
	return h, out, err
}

// awsChecks ask AWS, read-only, what a run will ask: the credentials,
// every parameter, the volume and its key, the bundle.
func (a *app) awsChecks(ctx context.Context, h *host.Host) []doctor.Check {
	region := doctor.Region{Name: h.AWS.Region, From: "set by region or AWS_REGION", Instance: h.Identity.Region}
	if a.aws.Region == "" {
		region.From = "from instance metadata"
	}
	cctx, cancel := context.WithTimeout(ctx, h.Config.AWS.CallTimeout.Duration)
	cred, usable := doctor.Credentials(cctx, h.AWS, h.EC2, region, h.Identity.InstanceID)
	cancel()
	if !usable {
		return append([]doctor.Check{cred}, doctor.Skipped("AWS cannot be asked with this host's credentials (see aws)", awsCheckNames[1:]...)...)
	}
	params, found := doctor.Parameters(ctx, h.Params, doctor.Needs(h.Config), a.g.secrets)
	out := append([]doctor.Check{cred}, params...)
	if h.Config.VolumeKind() == config.VolumeEBS {
		out = append(out, a.volumeChecks(ctx, h)...)
	} else {
		out = append(out, doctor.Skipped("volume.kind is "+h.Config.VolumeKind()+": no EBS volume", "ebs volume", "ebs kms")...)
	}
	if h.Config.Bundle.Source != "" {
		return append(out, doctor.Skipped("bundle.source: the bundle is local", "s3 bundle")...)
	}
	return append(out, bundleCheck(ctx, h, found))
}

// volumeChecks are the volume as EC2 sees it (it exists, in this AZ, in a
// usable state) and its KMS key.
func (a *app) volumeChecks(ctx context.Context, h *host.Host) []doctor.Check {
	step := newVolumeStep(h)
	detail, err := step.Diagnose(ctx)
	if err != nil {
		return append([]doctor.Check{doctor.Failed("ebs volume", err.Error())}, doctor.Skipped("the volume check failed", "ebs kms")...)
	}
	// The memo holds the id Diagnose resolved, from volume.id or SSM.
	kms := doctor.KMS(ctx, h.EC2, doctor.Volume{ID: step.Memo()["volume_id"], InstanceID: h.Identity.InstanceID,
		Device: h.Config.Volume.Device, LastError: a.lastVolumeRun().LastError})
	return []doctor.Check{doctor.Pass("ebs volume", detail), kms}
}

func bundleCheck(ctx context.Context, h *host.Host, found map[string]string) doctor.Check {
	b := h.Config.Bundle
	bucket := b.Bucket
	if bucket == "" {
		bucket = strings.TrimSpace(found[b.BucketParameter])
	}
	if bucket == "" {
		return doctor.Skipped("the bucket is unknown: "+b.BucketParameter+" cannot be read (see its ssm line)", "s3 bundle")[0]
	}
	return doctor.Bundle(ctx, h.S3, bucket, b.KeyPrefix)
}

// localChecks look at the host itself: the volume's mount and fstab (as
// smoke does), Docker and the plugin, .env, the units, the stack's data.
func (a *app) localChecks(ctx context.Context, h *host.Host) []doctor.Check {
	var out []doctor.Check
	// Listed only when one is left: a restore cut short.
	if err := restoreCutShort(h.Root); err != nil {
		out = append(out, doctor.Failed("restore", err.Error()))
	}
	for _, c := range smoke.Volume(ctx, h.Root, h.Config, a.lastVolumeRun().Memo["uuid"], h.Run) {
		out = append(out, fromSmoke(c))
	}
	engine := doctor.DockerEngine(ctx, h.Docker)
	var vols doctor.Volumes
	if engine.Status == doctor.OK {
		vols = h.Docker
	}
	out = append(out, engine,
		doctor.ComposePlugin(ctx, doctor.Plugin{Root: h.Root, Config: h.Config.Docker.ComposePlugin, Env: h.ComposeEnv(), Run: h.Run}),
		doctor.StackData(ctx, h.Root, h.Config, vols),
		doctor.DotEnv(ctx, h.Root, h.Config, a.g.secrets))
	units := doctor.Units
	if h.Config.Backup.Location != "" {
		// Backups configured but never taken are the guide's "automated
		// backup" that is not.
		units = append(slices.Clip(units), doctor.BackupTimer)
	}
	for _, u := range units {
		out = append(out, doctor.Unit(h.Root, u))
	}
	return out
}

// lastVolumeRun is the volume step's record in the state file, empty when
// there is none or the file cannot be read (the state line says so).
func (a *app) lastVolumeRun() *state.Record {
	if st, err := a.store().Load(); err == nil && st.Steps["volume"] != nil {
		return st.Steps["volume"]
	}
	return &state.Record{}
}

func fromSmoke(c smoke.Check) doctor.Check {
	switch c.Status {
	case smoke.Pass:
		return doctor.Pass(c.Name, c.Detail)
	case smoke.Warn:
		return doctor.Warning(c.Name, c.Detail)
	}
	return doctor.Failed(c.Name, c.Detail)
}

func fromDoctor(cs []doctor.Check) []check {
	out := make([]check, 0, len(cs))
	for _, c := range cs {
		k := check{name: c.Name, detail: c.Detail}
		if c.Status != doctor.OK {
			k.err, k.warn = errors.New(c.Detail), c.Status == doctor.Warn
		}
		out = append(out, k)
	}
	return out
}
