// Package status answers "what is this host doing" from what is on it: the
// state file, the mount table, the Docker engine and .env. It never calls
// AWS and changes nothing, so it works at 3 a.m. with AWS unreachable and
// while a run holds the lock.
package status

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/dotenv"
	containertypes "github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/monagent/monagent/internal/command"
	"github.com/monagent/monagent/internal/config"
	"github.com/monagent/monagent/internal/ebs"
	"github.com/monagent/monagent/internal/state"
)

// Schema is the version of the --json document; a field is only ever
// added within one version.
const Schema = 1

// probeTimeout bounds each question to the engine and the plugin.
const probeTimeout = 5 * time.Second

// Report is everything status shows; its JSON form is documented in
// docs/status.md.
type Report struct {
	Schema  int        `json:"schema"`
	LastRun *time.Time `json:"last_run,omitempty"`
	Mode    string     `json:"mode,omitempty"`
	Result  string     `json:"result"`
	// Example: the configuration is the package's example, on which runs
	// do nothing.
	Example    bool        `json:"example"`
	InstanceID string      `json:"instance_id,omitempty"`
	Volume     Volume      `json:"volume"`
	Signal     Signal      `json:"signal"`
	Docker     Docker      `json:"docker"`
	Containers []Container `json:"containers"`
	Env        Env         `json:"env"`
	Steps      []Step      `json:"steps"`
	Timeline   Timeline    `json:"timeline"`
}

// Results of the last run.
const (
	ResultNever       = "never"
	ResultConverged   = "converged"
	ResultFailed      = "failed"
	ResultInterrupted = "interrupted"
)

// Volume is the data volume as recorded and as mounted now.
type Volume struct {
	ID         string `json:"id,omitempty"`
	Device     string `json:"device,omitempty"`
	UUID       string `json:"uuid,omitempty"` // recorded when it was mounted
	MountPoint string `json:"mount_point"`
	Mounted    bool   `json:"mounted"`
	Source     string `json:"source,omitempty"` // what is mounted there now
	FSType     string `json:"fs_type,omitempty"`
	// MountedUUID is the UUID of what is mounted there now.
	MountedUUID string `json:"mounted_uuid,omitempty"`
}

// Signal is the CloudFormation signal as recorded.
type Signal struct {
	Enabled    bool   `json:"enabled"`
	Outcome    string `json:"outcome,omitempty"`
	InstanceID string `json:"instance_id,omitempty"`
	At         string `json:"at,omitempty"`
}

// Docker is the engine and the Compose plugin as they answer now.
type Docker struct {
	Engine  string `json:"engine,omitempty"`
	API     string `json:"api,omitempty"`
	Compose string `json:"compose,omitempty"`
	Error   string `json:"error,omitempty"`
}

// Container is one container of the project.
type Container struct {
	Service  string `json:"service"`
	Name     string `json:"name"`
	State    string `json:"state"`
	Health   string `json:"health,omitempty"`
	Restarts int    `json:"restarts"`
}

// Env is .env: which keys it holds, never their values.
type Env struct {
	Path    string   `json:"path"`
	Present bool     `json:"present"`
	Mode    string   `json:"mode,omitempty"`
	Keys    []string `json:"keys"`
	// Missing are keys of the env mapping bound for .env that are not in
	// it: absent optional values, or a .env that is not current.
	Missing []string `json:"missing"`
}

// Step is one step's record.
type Step struct {
	Name            string     `json:"name"`
	Status          string     `json:"status"`
	Skipped         bool       `json:"skipped"`
	InLastRun       bool       `json:"in_last_run"`
	Start           time.Time  `json:"start"`
	DurationSeconds float64    `json:"duration_seconds"`
	Attempts        int        `json:"attempts"`
	LastSuccess     *time.Time `json:"last_success,omitempty"`
	LastError       string     `json:"last_error,omitempty"`
	Warning         string     `json:"warning,omitempty"`

	duration time.Duration
}

// DockerAPI is what status asks the engine.
type DockerAPI interface {
	ServerVersion(ctx context.Context, options client.ServerVersionOptions) (client.ServerVersionResult, error)
	ContainerList(ctx context.Context, options client.ContainerListOptions) (client.ContainerListResult, error)
	ContainerInspect(ctx context.Context, id string, options client.ContainerInspectOptions) (client.ContainerInspectResult, error)
}

// Options are where the facts come from.
type Options struct {
	Root       string
	Config     *config.Config
	State      *state.State
	Docker     DockerAPI
	Run        command.Runner
	ComposeEnv []string
	// Needs are the steps each step waits for, from the step table: the
	// critical path follows them.
	Needs map[string][]string
}

// Gather reads the facts. What cannot be read is said in the report, never
// an error: status must answer on a broken host.
func Gather(ctx context.Context, o Options) Report {
	st := o.State
	r := Report{Schema: Schema, Mode: st.Mode, InstanceID: st.InstanceID, Example: o.Config.Example, Containers: []Container{}}
	if !st.LastRun.IsZero() {
		t := st.LastRun
		r.LastRun = &t
	}
	r.Steps = steps(st)
	r.Result = result(r.Steps, r.LastRun != nil)
	r.Timeline = timeline(r.Steps, st.LastRun, o.Needs)
	r.Volume = volume(ctx, o)
	r.Signal = signal(o)
	r.Docker, r.Containers = docker(ctx, o)
	r.Env = env(o)
	return r
}

func steps(st *state.State) []Step {
	var out []Step
	for name, rec := range st.Steps {
		s := Step{Name: name, Status: string(rec.Status), Skipped: rec.Skipped, Start: rec.Start,
			InLastRun: !rec.Start.Before(st.LastRun), DurationSeconds: rec.Duration.Seconds(),
			Attempts: rec.Attempts, LastError: rec.LastError, Warning: rec.Warning, duration: rec.Duration}
		if !rec.LastSuccess.IsZero() {
			t := rec.LastSuccess
			s.LastSuccess = &t
		}
		out = append(out, s)
	}
	// In the order they last ran.
	slices.SortFunc(out, func(a, b Step) int { return a.Start.Compare(b.Start) })
	return out
}

func result(steps []Step, ran bool) string {
	if !ran {
		return ResultNever
	}
	res := ResultConverged
	for _, s := range steps {
		switch {
		case !s.InLastRun:
		case s.Status == string(state.Failed):
			return ResultFailed
		case s.Status == string(state.Interrupted):
			res = ResultInterrupted
		}
	}
	return res
}

func volume(ctx context.Context, o Options) Volume {
	v := Volume{MountPoint: o.Config.Volume.MountPoint}
	if r := o.State.Steps["volume"]; r != nil {
		v.ID, v.Device, v.UUID = r.Memo["volume_id"], r.Memo["device"], r.Memo["uuid"]
	}
	m, err := ebs.MountAt(filepath.Join(o.Root, v.MountPoint))
	if err != nil || m == nil {
		return v
	}
	v.Mounted, v.Source, v.FSType = true, m.Source, m.FSType
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	res, err := o.Run.Run(ctx, command.Cmd{Name: "blkid", Args: []string{"-o", "value", "-s", "UUID", m.Source},
		Timeout: probeTimeout, Quiet: true})
	if err == nil {
		v.MountedUUID = strings.TrimSpace(string(res.Stdout))
	}
	return v
}

func signal(o Options) Signal {
	s := Signal{Enabled: o.Config.Stack.Signals()}
	if r := o.State.Steps["signal"]; r != nil {
		s.Outcome, s.InstanceID, s.At = r.Memo["outcome"], r.Memo["signaled_instance"], r.Memo["signaled_at"]
	}
	return s
}

func docker(ctx context.Context, o Options) (Docker, []Container) {
	var d Docker
	cs := []Container{}
	vctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	v, err := o.Docker.ServerVersion(vctx, client.ServerVersionOptions{})
	if err != nil {
		d.Error = fmt.Sprintf("the Docker engine does not answer: %v", err)
		return d, cs
	}
	d.Engine, d.API = v.Version, v.APIVersion
	res, err := o.Run.Run(ctx, command.Cmd{Name: "docker", Args: []string{"compose", "version", "--short"},
		Env: o.ComposeEnv, Timeout: probeTimeout, Quiet: true})
	if err != nil {
		d.Error = fmt.Sprintf("the Compose plugin does not answer: %v", err)
	} else {
		d.Compose = strings.TrimSpace(string(res.Stdout))
	}
	cs, err = containers(ctx, o.Docker, o.Config.Compose.Project)
	if err != nil {
		d.Error = strings.TrimPrefix(d.Error+"; ", "; ") + err.Error()
	}
	return d, cs
}

func containers(ctx context.Context, api DockerAPI, project string) ([]Container, error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	f := client.Filters{}.Add("label", "com.docker.compose.project="+project)
	list, err := api.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return []Container{}, fmt.Errorf("list the containers of project %s: %w", project, err)
	}
	out := []Container{}
	for _, c := range list.Items {
		ct := Container{Service: c.Labels["com.docker.compose.service"], State: string(c.State)}
		if len(c.Names) > 0 {
			ct.Name = strings.TrimPrefix(c.Names[0], "/")
		}
		if in, err := api.ContainerInspect(ctx, c.ID, client.ContainerInspectOptions{}); err == nil {
			ct.Restarts = in.Container.RestartCount
			if s := in.Container.State; s != nil && s.Health != nil && s.Health.Status != containertypes.NoHealthcheck {
				ct.Health = string(s.Health.Status)
			}
		}
		out = append(out, ct)
	}
	slices.SortFunc(out, func(a, b Container) int { return strings.Compare(a.Service+a.Name, b.Service+b.Name) })
	return out, nil
}

// env lists the keys of .env. Its values are never read into the report.
func env(o Options) Env {
	e := Env{Path: o.Config.EnvFilePath(), Keys: []string{}, Missing: []string{}}
	p := filepath.Join(o.Root, e.Path)
	b, err := os.ReadFile(p)
	if err == nil {
		e.Present = true
		if fi, err := os.Stat(p); err == nil {
			e.Mode = fmt.Sprintf("%04o", fi.Mode().Perm())
		}
	}
	vals, _ := dotenv.UnmarshalBytesWithLookup(b, func(string) (string, bool) { return "", false })
	for k := range vals {
		e.Keys = append(e.Keys, k)
	}
	slices.Sort(e.Keys)
	for k, v := range o.Config.Env {
		if _, ok := vals[k]; !ok && v.InEnv() {
			e.Missing = append(e.Missing, k)
		}
	}
	slices.Sort(e.Missing)
	return e
}
