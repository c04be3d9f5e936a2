// Package sim runs the simulated EC2 monitoring host: `make demo` and the
// end-to-end lifecycle test drive it.
//
// The AWS account is awssim on the host's loopback (scripts/demo-scenario.yaml:
// a stack whose Auto Scaling group waits for one signal, the data volume,
// the scripts bucket holding the seed stack bundle, the SSM parameters, an
// instance role). The "AMI" is a Debian bookworm rootfs with monagent's .deb
// installed by `dpkg -i` under real systemd (Bake). Each instance boots a
// private overlay of it with systemd-nspawn (rig/instance): real systemd
// 252 as PID 1, a cloud-init stand-in that runs the user-data script
// (packaging/user-data.sh, with the configuration written first) once per
// instance, the volume's loop device bound in, its own network with
// awssim and the rig's registry forwarded to its loopback, and a Docker
// engine that monagent installs with apt and starts over D-Bus, pulling
// the stack's images from the registry as a docker.io mirror.
//
// Prepare makes (or finds cached) everything: the host's engine, the
// images, the Compose plugin, the registry and its images, the base
// rootfs, the package and the baked image. StartAWS starts an account;
// Launch boots an instance of it.
package sim

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/monagent/monagent/rig/instance"
)

// DefaultCache is the rig's cache directory; MONAGENT_RIG_CACHE overrides it.
const DefaultCache = "/var/cache/monagent-rig"

// Options describe a rig.
type Options struct {
	// Repo is the repository's root (scripts, rig scripts, the Makefile).
	Repo string
	// Cache is the rig's cache; "" for $MONAGENT_RIG_CACHE or DefaultCache.
	Cache string
	// Work is this run's private directory: the package, the rendered
	// scenario, awssim's files, the instances' disks and logs.
	Work string
	// Fixture is the seed stack bundle; "" for $MONAGENT_SEED_STACK or
	// ../shared/fixtures/seed-stack beside the repository.
	Fixture string
	// Awssim is the awssim binary (make build: bin/awssim).
	Awssim string
	// Logf receives progress; nil for none.
	Logf Logf
}

// Step is one preparation step and what it took.
type Step struct {
	Name string
	Took time.Duration
}

// Rig is what every account and instance of a run shares.
type Rig struct {
	opts Options

	// Plugin is the Compose plugin awssim serves, PluginSHA256 its sum.
	Plugin, PluginSHA256 string
	// Registry is the registry's address on the host's loopback.
	Registry string
	// Base is the base rootfs, Deb the package, Image the baked image.
	Base, Deb, Image string
	// Steps is what Prepare did, in order, with durations.
	Steps []Step
}

// Prepare makes what the simulated instances need, each part cached under
// opts.Cache: the host's Docker engine (rig/docker/dockerd.sh), the seed
// stack's images (rig/images/build.sh), the Compose plugin
// (rig/docker/compose-plugin.sh), the registry holding the images
// (rig/registry/registry.sh push), the base rootfs (instance.EnsureRootfs),
// the .deb (make package) and the image baked from them (Bake).
func Prepare(ctx context.Context, opts Options) (*Rig, error) {
	if err := opts.fill(); err != nil {
		return nil, err
	}
	r := &Rig{opts: opts}
	for _, s := range []struct {
		name string
		do   func(context.Context) error
	}{
		{"Docker engine on the host", r.engine},
		{"seed stack images", r.images},
		{"Compose plugin", r.plugin},
		{"registry", r.registry},
		{"base rootfs", r.rootfs},
		{"package (make package)", r.pkg},
		{"baked image (dpkg -i under systemd)", r.bake},
	} {
		start := time.Now()
		opts.Logf("== %s", s.name)
		if err := s.do(ctx); err != nil {
			return nil, fmt.Errorf("prepare the rig: %s: %w", s.name, err)
		}
		r.Steps = append(r.Steps, Step{s.name, time.Since(start)})
	}
	return r, nil
}

// fill sets the defaults and checks the paths.
func (o *Options) fill() error {
	if o.Logf == nil {
		o.Logf = nopLogf
	}
	if o.Cache == "" {
		o.Cache = os.Getenv("MONAGENT_RIG_CACHE")
	}
	if o.Cache == "" {
		o.Cache = DefaultCache
	}
	if o.Fixture == "" {
		o.Fixture = os.Getenv("MONAGENT_SEED_STACK")
	}
	if o.Fixture == "" {
		o.Fixture = filepath.Join(o.Repo, "../shared/fixtures/seed-stack")
	}
	var errs []error
	for _, p := range []*string{&o.Repo, &o.Cache, &o.Work, &o.Fixture, &o.Awssim} {
		abs, err := filepath.Abs(*p)
		if err != nil || *p == "" {
			errs = append(errs, fmt.Errorf("rig option %q: %v", *p, err))
			continue
		}
		*p = abs
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if _, err := os.Stat(filepath.Join(o.Fixture, "docker-compose.yml")); err != nil {
		return fmt.Errorf("the seed stack bundle (set MONAGENT_SEED_STACK): %w", err)
	}
	if _, err := os.Stat(o.Awssim); err != nil {
		return fmt.Errorf("the awssim binary (make build): %w", err)
	}
	for _, d := range []string{o.Cache, o.Work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// script runs a rig script of the repository and returns the last line
// of its standard output.
func (r *Rig) script(ctx context.Context, rel string, args ...string) (string, error) {
	out, err := command(ctx, r.opts.Logf, r.opts.Repo, []string{"MONAGENT_RIG_CACHE=" + r.opts.Cache},
		append([]string{filepath.Join(r.opts.Repo, rel)}, args...)...)
	if err != nil {
		return "", err
	}
	return lastLine(out), nil
}

func (r *Rig) engine(ctx context.Context) error {
	_, err := r.script(ctx, "rig/docker/dockerd.sh", "ensure")
	return err
}

func (r *Rig) images(ctx context.Context) error {
	_, err := r.script(ctx, "rig/images/build.sh", "--no-plugin")
	return err
}

func (r *Rig) plugin(ctx context.Context) error {
	p, err := r.script(ctx, "rig/docker/compose-plugin.sh")
	if err != nil {
		return err
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("the Compose plugin compose-plugin.sh printed: %w", err)
	}
	sum := sha256.Sum256(b)
	r.Plugin, r.PluginSHA256 = p, hex.EncodeToString(sum[:])
	return nil
}

func (r *Rig) registry(ctx context.Context) error {
	addr, err := r.script(ctx, "rig/registry/registry.sh", "push")
	r.Registry = addr
	return err
}

func (r *Rig) rootfs(ctx context.Context) error {
	base, err := instance.EnsureRootfs(ctx, r.opts.Cache)
	r.Base = base
	return err
}

// pkg builds the .deb with make package into Work/dist.
func (r *Rig) pkg(ctx context.Context) error {
	if err := r.ensureMake(ctx); err != nil {
		return err
	}
	dist := filepath.Join(r.opts.Work, "dist")
	out, err := command(ctx, r.opts.Logf, r.opts.Repo, []string{"MONAGENT_RIG_CACHE=" + r.opts.Cache},
		"make", "--no-print-directory", "package", "DIST="+dist)
	if err != nil {
		return err
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasSuffix(line, ".deb") {
			r.Deb = strings.TrimSpace(line)
		}
	}
	if r.Deb == "" {
		return fmt.Errorf("make package printed no .deb:\n%s", out)
	}
	return nil
}

// ensureMake installs Debian's make when it is missing (a fresh Debian 12
// has none).
func (r *Rig) ensureMake(ctx context.Context) error {
	if _, err := exec.LookPath("make"); err == nil {
		return nil
	}
	env := []string{"DEBIAN_FRONTEND=noninteractive"}
	install := []string{"apt-get", "-o", "DPkg::Lock::Timeout=300", "install", "-y", "-q", "--no-install-recommends", "make"}
	if _, err := command(ctx, r.opts.Logf, "", env, install...); err == nil {
		return nil
	}
	if _, err := command(ctx, r.opts.Logf, "", env, "apt-get", "-o", "DPkg::Lock::Timeout=300", "update", "-q"); err != nil {
		return fmt.Errorf("install make: %w", err)
	}
	if _, err := command(ctx, r.opts.Logf, "", env, install...); err != nil {
		return fmt.Errorf("install make: %w", err)
	}
	return nil
}

func (r *Rig) bake(ctx context.Context) error {
	img, err := Bake(ctx, BakeOptions{Cache: r.opts.Cache, Base: r.Base, Deb: r.Deb, Logf: r.opts.Logf})
	r.Image = img
	return err
}

// Cache returns the rig's cache directory.
func (r *Rig) Cache() string { return r.opts.Cache }

// Work returns the run's private directory.
func (r *Rig) Work() string { return r.opts.Work }

// Logf returns the rig's progress function.
func (r *Rig) Logf() Logf { return r.opts.Logf }

// AccountOptions describe one awssim run of the account.
type AccountOptions struct {
	// Data is the account's state: the same directory across runs is the
	// same account. "" for Work/aws/data.
	Data string
	// InstanceID is the simulated instance; "" for DefaultInstanceID.
	InstanceID string
	// Addr is awssim's listen address; "" for a free loopback port.
	Addr string
}

// StartAWS starts awssim with the demo's scenario (scripts/demo-scenario.yaml,
// the seed stack bundle in the scripts bucket) and the Compose plugin
// served at /_files/docker-compose. The scenario is applied on every
// start: on the same Data, what exists is kept (docs/awssim.md).
func (r *Rig) StartAWS(ctx context.Context, o AccountOptions) (*AWS, error) {
	dir := filepath.Join(r.opts.Work, "aws")
	if o.Data == "" {
		o.Data = filepath.Join(dir, "data")
	}
	scenario, err := r.render("scripts/demo-scenario.yaml", map[string]string{"@FIXTURES@": r.opts.Fixture})
	if err != nil {
		return nil, err
	}
	scenFile := filepath.Join(dir, "scenario.yaml")
	files := filepath.Join(dir, "files")
	if err := writeFile(dir, "scenario.yaml", scenario, 0o644); err != nil {
		return nil, err
	}
	if err := copyFile(r.Plugin, filepath.Join(files, "docker-compose")); err != nil {
		return nil, fmt.Errorf("serve the Compose plugin: %w", err)
	}
	return StartAWS(ctx, AWSOptions{
		Bin: r.opts.Awssim, Data: o.Data, Root: filepath.Join(dir, "root"), Scenario: scenFile, Files: files,
		Addr: o.Addr, InstanceID: o.InstanceID, Log: filepath.Join(dir, "awssim.log"),
	})
}

// Config returns the instance's /etc/monagent/config.yaml for account a:
// scripts/demo-config.yaml with awssim's port and the plugin's sum.
func (r *Rig) Config(a *AWS) (string, error) {
	_, port, _ := strings.Cut(a.HostPort(), ":")
	return r.render("scripts/demo-config.yaml", map[string]string{"@PORT@": port, "@PLUGIN_SHA256@": r.PluginSHA256})
}

// render reads a file of the repository and replaces each key of vars.
func (r *Rig) render(rel string, vars map[string]string) (string, error) {
	b, err := os.ReadFile(filepath.Join(r.opts.Repo, rel))
	if err != nil {
		return "", err
	}
	s := string(b)
	for k, v := range vars {
		s = strings.ReplaceAll(s, k, v)
	}
	return s, nil
}
