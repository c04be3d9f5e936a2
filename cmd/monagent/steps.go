package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/monagent/monagent/internal/bundle"
	"github.com/monagent/monagent/internal/cfnsignal"
	"github.com/monagent/monagent/internal/compose"
	"github.com/monagent/monagent/internal/config"
	"github.com/monagent/monagent/internal/docker"
	"github.com/monagent/monagent/internal/dockerwait"
	"github.com/monagent/monagent/internal/ebs"
	"github.com/monagent/monagent/internal/endpoints"
	"github.com/monagent/monagent/internal/engine"
	"github.com/monagent/monagent/internal/envfile"
	"github.com/monagent/monagent/internal/host"
	"github.com/monagent/monagent/internal/osupdate"
	"github.com/monagent/monagent/internal/systemdbus"
)

const (
	modeBootstrap = "bootstrap"
	modeReconcile = "reconcile"
)

var bothModes = []string{modeBootstrap, modeReconcile}

// stepDef is one row of the step table, the only place that lists steps.
type stepDef struct {
	name string
	// modes that run the step.
	modes []string
	// beforeSignal: a failure here during bootstrap sends FAILURE at once.
	beforeSignal bool
	// needs are the steps whose results this one needs.
	needs []string
	// enabled, when set, says whether the configuration wants the step.
	enabled func(*host.Host) bool
	build   func(*host.Host) engine.Step
	// budget is the longest the step may take, from its own bounds: the
	// unit's start timeout is extended by it when the step starts.
	budget func(*host.Host) time.Duration
}

// stepTable lists the steps; a step needs only steps listed before it.
// Each starts as soon as the steps it needs have converged: the Docker
// install and the bundle download run beside the volume, and the signal
// never waits on Docker. The docker step needs packages because both use
// the package manager, which takes one install at a time.
//
// SUCCESS goes out right after the volume, before any Docker work, from
// whichever run gets there first on an instance: bootstrap (user-data) or
// the boot unit's reconcile, which on first boot runs before cloud-init's
// final stage. Once an instance has signalled, the state file remembers it
// and no later run signals again.
func stepTable() []stepDef {
	return []stepDef{
		{name: "packages", modes: bothModes, beforeSignal: true, build: packagesStep, budget: fixed(45 * time.Minute)},
		{name: "volume", modes: bothModes, beforeSignal: true, build: volumeStep, budget: volumeBudget},
		{name: "signal", modes: bothModes, needs: []string{"packages", "volume"},
			enabled: func(h *host.Host) bool { return h.OnAWS() && h.Config.Stack.Signals() }, build: signalStep, budget: awsBudget},
		{name: "docker", modes: bothModes, needs: []string{"packages"}, build: dockerStep, budget: dockerBudget},
		{name: "docker-ready", modes: bothModes, needs: []string{"docker"}, build: dockerReadyStep,
			budget: func(h *host.Host) time.Duration { return h.Config.Docker.ReadyTimeout.Duration + time.Minute }},
		{name: "bundle", modes: bothModes, build: bundleStep, budget: fixed(15 * time.Minute)},
		{name: "env", modes: bothModes, needs: []string{"bundle"}, build: envStep, budget: awsBudget},
		// Image pulls need the engine and the compose file, not .env or
		// the volume: they run beside those.
		{name: "pull", modes: bothModes, needs: []string{"docker-ready", "bundle"}, build: pullStep, budget: fixed(20 * time.Minute)},
		{name: "compose", modes: bothModes, needs: []string{"volume", "docker-ready", "bundle", "env", "pull"}, build: composeStep,
			budget: func(h *host.Host) time.Duration { return 25*time.Minute + h.Config.Compose.HealthTimeout.Duration }},
		{name: "endpoints", modes: bothModes, needs: []string{"compose"},
			enabled: func(h *host.Host) bool { return h.OnAWS() && len(h.Config.Endpoints) > 0 }, build: endpointsStep, budget: awsBudget},
	}
}

func fixed(d time.Duration) func(*host.Host) time.Duration {
	return func(*host.Host) time.Duration { return d }
}

// awsBudget covers a few AWS calls, each bounded by aws.call_timeout.
func awsBudget(h *host.Host) time.Duration { return 4*h.Config.AWS.CallTimeout.Duration + time.Minute }

func volumeBudget(h *host.Host) time.Duration {
	v := h.Config.Volume
	return v.WaitAvailable.Duration + v.AttachTimeout.Duration + v.DeviceTimeout.Duration + 10*time.Minute
}

func dockerBudget(h *host.Host) time.Duration {
	return 35*time.Minute + h.Config.Docker.ComposePlugin.DownloadTimeout.Duration
}

func packagesStep(h *host.Host) engine.Step {
	return &osupdate.Step{Enabled: h.Config.Packages.Update, Root: h.Root, Run: h.Run}
}

func volumeStep(h *host.Host) engine.Step { return newVolumeStep(h) }

func newVolumeStep(h *host.Host) *ebs.Step {
	kind := h.Config.VolumeKind()
	return ebs.New(h.Config.Volume, ebs.Options{
		Root:      h.Root,
		Identity:  h.Identity,
		EC2:       h.EC2,
		Params:    h.Params,
		Run:       h.Run,
		Log:       h.Log,
		Local:     kind == config.VolumeDevice,
		Directory: kind == config.VolumeDirectory,
	})
}

func signalStep(h *host.Host) engine.Step {
	return &cfnsignal.Step{Signaler: signaler(h), InstanceID: h.Identity.InstanceID}
}

func dockerStep(h *host.Host) engine.Step {
	return docker.New(docker.Options{Root: h.Root, Config: h.Config.Docker, Run: h.Run, Engine: h.Docker,
		Units: systemdbus.Units{}, Log: h.Log})
}

func dockerReadyStep(h *host.Host) engine.Step {
	return dockerwait.New(dockerwait.Options{Engine: h.Docker, Run: h.Run, ComposeEnv: h.ComposeEnv(),
		Version: h.Config.Docker.ComposePlugin.Version, PluginPath: h.Path(docker.PluginPath),
		Timeout: h.Config.Docker.ReadyTimeout.Duration, Log: h.Log})
}

func bundleStep(h *host.Host) engine.Step {
	return bundle.New(bundle.Options{Root: h.Root, Config: h.Config.Bundle, Keep: keptPaths(h.Config),
		S3: h.S3, Params: h.Params, Log: h.Log})
}

// keptPaths are the paths of the stack directory that the bundle never
// touches: .env, the secret files, the certificates, the rendered
// templates and the textfile link.
func keptPaths(c *config.Config) []string {
	keep := []string{envfile.Name}
	for _, v := range c.Env {
		if v.File != "" {
			keep = append(keep, v.File)
		}
	}
	for _, cert := range c.Certificates {
		keep = append(keep, cert.KeyFile, cert.CertFile)
	}
	for _, t := range c.Templates {
		keep = append(keep, t.Target)
	}
	if rel, err := filepath.Rel(c.Bundle.Dir, c.Metrics.TextfileLink); c.Metrics.TextfileLink != "" && err == nil && !strings.HasPrefix(rel, "..") {
		keep = append(keep, filepath.ToSlash(rel))
	}
	slices.Sort(keep)
	return slices.Compact(keep)
}

func envStep(h *host.Host) engine.Step {
	c := h.Config
	o := envfile.Options{Root: h.Root, Dir: c.Bundle.Dir, Vars: c.Env, Params: h.Values, Secrets: h.Secrets,
		Seal: h.Seal, Log: h.Log, EnvFile: c.Compose.EnvFile, Kept: h.Kept, Certificates: c.Certificates,
		Templates: c.Templates, Hostname: h.Identity.InstanceID, IP: h.Identity.PrivateIP}
	if c.Local() {
		o.LocalFile = c.Secrets.File
		if o.LocalFile == "" {
			o.LocalFile = "the file secrets.file names (set it, such as /etc/acgs/operator.env)"
		}
	}
	if !c.Local() {
		o.Hostname, _ = os.Hostname()
	}
	return envfile.New(o)
}

func composeStep(h *host.Host) engine.Step {
	mp := h.Config.Volume.MountPoint
	if h.Config.VolumeKind() == config.VolumeDirectory {
		mp = ""
	}
	return compose.New(compose.Options{Root: h.Root, StackDir: h.Config.Bundle.Dir, Config: h.Config.Compose,
		DataDir: h.Config.StackDataDir(), MountPoint: mp, Vars: h.Config.Env,
		Run: h.Run, ComposeEnv: h.ComposeEnv(), Docker: h.Docker, Seal: h.Seal, Log: h.Log})
}

func pullStep(h *host.Host) engine.Step {
	return compose.NewPull(compose.PullOptions{Root: h.Root, StackDir: h.Config.Bundle.Dir, File: h.Config.Compose.File,
		Docker: h.Docker, Log: h.Log})
}

func endpointsStep(h *host.Host) engine.Step {
	return &endpoints.Step{Values: h.Config.Endpoints, Params: h.Params, Log: h.Log}
}

func signaler(h *host.Host) *cfnsignal.Signaler {
	return &cfnsignal.Signaler{API: h.CFN, Stack: h.Config.Stack.Name, Resource: h.Config.Stack.Resource, Log: h.Log}
}

// stepNames lists the steps mode can run, for --only and --until.
func stepNames(table []stepDef, mode string) []string {
	var names []string
	for _, d := range table {
		if slices.Contains(d.modes, mode) {
			names = append(names, d.name)
		}
	}
	return names
}

// validateSelection checks --only and --until before anything runs.
func validateSelection(table []stepDef, mode string, rf *runFlags) error {
	names := stepNames(table, mode)
	for _, n := range append(append([]string(nil), rf.only...), rf.until) {
		if n != "" && !slices.Contains(names, n) {
			return fmt.Errorf("unknown step %q: %s runs %s", n, mode, strings.Join(names, ", "))
		}
	}
	return nil
}

// nodes builds the steps mode runs on h.
func nodes(table []stepDef, mode string, h *host.Host) []engine.Node {
	var out []engine.Node
	for _, d := range table {
		if !slices.Contains(d.modes, mode) || (d.enabled != nil && !d.enabled(h)) {
			continue
		}
		// The signal and what it needs run whatever else failed: the
		// stack's outcome depends on them alone.
		keep := d.beforeSignal || d.name == "signal"
		out = append(out, engine.Node{Name: d.name, Needs: d.needs, Step: d.build(h), Budget: d.budget(h), KeepGoing: keep})
	}
	return out
}

// stepNeeds maps each step to the steps it needs.
func stepNeeds(table []stepDef) map[string][]string {
	out := map[string][]string{}
	for _, d := range table {
		out[d.name] = d.needs
	}
	return out
}

// beforeSignal reports whether a failure of step comes before the signal.
func beforeSignal(table []stepDef, step string) bool {
	for _, d := range table {
		if d.name == step {
			return d.beforeSignal
		}
	}
	return false
}
