// Package compose is the compose step: `docker compose up -d` of the stack
// with the enabled services, run only when its inputs changed or a wanted
// container is missing or stopped, then watched through the Docker API
// until every service runs (healthy where it has a healthcheck) and none
// restarts. It never takes a running stack down.
//
// The stack's named volumes are bound, through a generated override file,
// to directories under compose data_dir on the data volume: the engine's
// own state (images, containers) stays on the root disk and is disposable,
// while the data outlives the instance. A replacement instance therefore
// never restarts stale containers against a stack directory that is not
// there yet, and a volume that is not mounted leaves the services failing
// to start rather than writing to the root disk.
package compose

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/types"
	"go.uber.org/zap"

	"github.com/monagent/monagent/internal/atomicfile"
	"github.com/monagent/monagent/internal/command"
	"github.com/monagent/monagent/internal/config"
	"github.com/monagent/monagent/internal/ebs"
	"github.com/monagent/monagent/internal/retry"
)

// upTimeout bounds `docker compose up`, image pulls included.
const upTimeout = 20 * time.Minute

// Options are the step's collaborators. Paths are as seen from the host
// root; Root prefixes them.
type Options struct {
	Root       string
	StackDir   string // bundle.dir
	Config     config.Compose
	DataDir    string // config.StackDataDir()
	MountPoint string // volume.mount_point: DataDir must be on it
	// Vars is the env mapping: an optional key absent from .env leaves its
	// services out.
	Vars       map[string]config.EnvVar
	Run        command.Runner
	ComposeEnv []string
	Docker     DockerAPI
	Log        *zap.Logger
	// Backoff spaces the watch's polls; Settle is how long every service
	// must stay up, unrestarted, before the stack counts as up.
	Backoff retry.Backoff
	Settle  time.Duration
}

// Step converges the running stack.
type Step struct {
	o Options

	m        *model
	env      map[string]string
	envBytes []byte
	enabled  []string
	digests  map[string]string // service -> digest of its bind-mounted stack files
	override []byte
	warnings []string

	lastDigests map[string]string // memo
}

// New returns the step.
func New(o Options) *Step {
	if o.Root == "" {
		o.Root = "/"
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.Backoff.Initial <= 0 {
		o.Backoff = retry.Backoff{Initial: 50 * time.Millisecond, Max: 500 * time.Millisecond}
	}
	if o.Settle <= 0 {
		o.Settle = 2 * time.Second
	}
	return &Step{o: o}
}

func (s *Step) path(p string) string { return filepath.Join(s.o.Root, p) }
func (s *Step) stackDir() string     { return s.path(s.o.StackDir) }
func (s *Step) composeFile() string  { return filepath.Join(s.stackDir(), s.o.Config.File) }

// OverridePath is the generated override file, monagent's own.
func (s *Step) OverridePath() string {
	return s.path(filepath.Join("/var/lib/monagent/compose", s.o.Config.Project+".volumes.yml"))
}

// Restore implements engine.Memoizer.
func (s *Step) Restore(memo map[string]string) {
	s.lastDigests = map[string]string{}
	_ = json.Unmarshal([]byte(memo["mounts"]), &s.lastDigests)
}

// Memo implements engine.Memoizer.
func (s *Step) Memo() map[string]string {
	b, _ := json.Marshal(s.digests)
	return map[string]string{"mounts": string(b), "enabled": strings.Join(s.enabled, ",")}
}

// Warning implements engine.Warner.
func (s *Step) Warning() string { return strings.Join(s.warnings, "; ") }

// Fingerprint digests every input of `up`: the compose file, the override,
// .env, the enabled services and the stack files each service mounts.
func (s *Step) Fingerprint(ctx context.Context) (string, error) {
	if err := s.prepare(ctx); err != nil {
		return "", err
	}
	h := sha256.New()
	compose, err := os.ReadFile(s.composeFile())
	if err != nil {
		return "", fmt.Errorf("compose: %w", err)
	}
	for _, part := range [][]byte{[]byte(s.o.Config.Project), compose, s.override, s.envBytes, []byte(strings.Join(s.enabled, ","))} {
		fmt.Fprintf(h, "%d:%s;", len(part), part)
	}
	for _, svc := range slices.Sorted(maps.Keys(s.digests)) {
		fmt.Fprintf(h, "%s=%s;", svc, s.digests[svc])
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// prepare loads the model once per run: .env from disk, the services it
// enables, the override file and the mounts' digests.
func (s *Step) prepare(ctx context.Context) error {
	if s.m != nil {
		return nil
	}
	envBytes, err := os.ReadFile(filepath.Join(s.stackDir(), ".env"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("compose: %w", err)
	}
	env, err := dotenv.UnmarshalBytesWithLookup(envBytes, func(string) (string, bool) { return "", false })
	if err != nil {
		return fmt.Errorf("compose: read .env: %w", err)
	}
	base, err := load(ctx, s.stackDir(), s.o.Config.Project, []string{s.composeFile()}, env)
	if err != nil {
		return err
	}
	s.override = renderOverride(base.namedVolumes(), s.path(s.o.DataDir), s.o.DataDir)
	compose, err := os.ReadFile(s.composeFile())
	if err != nil {
		return fmt.Errorf("compose: %w", err)
	}
	m, err := loadConfigs(ctx, s.stackDir(), s.o.Config.Project, []types.ConfigFile{
		{Filename: s.composeFile(), Content: compose}, {Filename: s.OverridePath(), Content: s.override}}, env)
	if err != nil {
		return err
	}
	s.m, s.env, s.envBytes = m, env, envBytes
	s.enabled = s.enabledServices(m)
	s.digests = map[string]string{}
	for _, svc := range m.services() {
		d, err := digestPaths(m.bindSources(svc, s.stackDir()))
		if err != nil {
			return fmt.Errorf("compose: service %s: %w", svc, err)
		}
		s.digests[svc] = d
	}
	return nil
}

// enabledServices is every service but those whose optional value is
// absent from .env.
func (s *Step) enabledServices(m *model) []string {
	var disabled []string
	for k, v := range s.o.Vars {
		if _, ok := s.env[k]; !ok && v.Optional && v.InEnv() {
			disabled = append(disabled, v.Services...)
		}
	}
	var out []string
	for _, svc := range m.services() {
		if !slices.Contains(disabled, svc) {
			out = append(out, svc)
		}
	}
	return out
}

// writeOverride keeps the override file current; unchanged, it is not
// rewritten.
func (s *Step) writeOverride() error {
	if old, err := os.ReadFile(s.OverridePath()); err == nil && string(old) == string(s.override) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(s.OverridePath()), 0o700); err != nil {
		return fmt.Errorf("compose: %w", err)
	}
	if err := atomicfile.WriteFile(s.OverridePath(), s.override, 0o600); err != nil {
		return fmt.Errorf("compose: %w", err)
	}
	return nil
}

// Check passes when every enabled service has its containers running,
// healthy where they have a healthcheck, and not restarting.
func (s *Step) Check(ctx context.Context) (bool, error) {
	if err := s.prepare(ctx); err != nil {
		return false, err
	}
	st, err := s.observe(ctx, nil)
	if err != nil {
		return false, err
	}
	if !st.ready {
		s.o.Log.Info("stack not converged", zap.String("why", st.why))
	}
	return st.ready && st.failure == nil, nil
}

// Apply checks the model against .env, makes the data directories, runs
// `docker compose up -d` and watches the containers come up.
func (s *Step) Apply(ctx context.Context) error {
	if err := s.prepare(ctx); err != nil {
		return err
	}
	if err := s.preflight(ctx); err != nil {
		return err
	}
	if err := s.writeOverride(); err != nil {
		return err
	}
	before, err := s.containers(ctx)
	if err != nil {
		return err
	}
	if err := s.up(ctx, nil); err != nil {
		return err
	}
	if changed := s.changedMounts(before); len(changed) > 0 {
		s.o.Log.Info("recreating services whose mounted stack files changed", zap.Strings("services", changed))
		if err := s.up(ctx, append([]string{"--force-recreate", "--no-deps"}, changed...)); err != nil {
			return err
		}
	}
	return s.watch(ctx)
}

// preflight refuses to start the stack when its data would not land on
// the data volume, or when the compose file needs a value .env lacks.
func (s *Step) preflight(ctx context.Context) error {
	mp := s.path(s.o.MountPoint)
	m, err := ebs.MountAt(mp)
	if err != nil {
		return fmt.Errorf("compose: %w", err)
	}
	if m == nil {
		return fmt.Errorf("compose: nothing is mounted at %s: the stack's data would land on the root disk; run `monagent reconcile --only volume` first", mp)
	}
	f := s.m.check(s.env, s.enabled)
	for _, w := range f.warnings {
		s.o.Log.Warn("compose file check", zap.String("warning", w))
	}
	s.warnings = f.warnings
	if len(f.errs) > 0 {
		return retry.PermanentError(fmt.Errorf("compose: %s", strings.Join(f.errs, "; ")))
	}
	return s.prepareVolumes(ctx)
}

// up runs docker compose up with the enabled services; extra goes before
// them.
func (s *Step) up(ctx context.Context, extra []string) error {
	args := []string{"compose", "--project-name", s.o.Config.Project, "--project-directory", s.stackDir(),
		"--file", s.composeFile(), "--file", s.OverridePath(), "up", "--detach", "--remove-orphans"}
	args = append(args, extra...)
	if len(extra) == 0 {
		args = append(args, s.enabled...)
	}
	s.o.Log.Info("docker compose up", zap.Strings("services", s.enabled))
	if _, err := s.o.Run.Run(ctx, command.Cmd{Name: "docker", Args: args, Env: s.o.ComposeEnv, Timeout: upTimeout}); err != nil {
		return fmt.Errorf("compose: %w", err)
	}
	return nil
}

// changedMounts lists the enabled services that were running before and
// whose mounted stack files changed since the last successful run:
// Compose does not see a file's content, and a container keeps a
// bind-mounted file it started with.
func (s *Step) changedMounts(before map[string][]container) []string {
	var out []string
	for _, svc := range s.enabled {
		old, seen := s.lastDigests[svc]
		if seen && old != s.digests[svc] && len(before[svc]) > 0 {
			out = append(out, svc)
		}
	}
	return out
}

// digestPaths hashes the files under paths, names and contents.
func digestPaths(paths []string) (string, error) {
	h := sha256.New()
	for _, p := range paths {
		err := filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "%s %d %x\n", path, len(b), sha256.Sum256(b))
			return nil
		})
		if err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
