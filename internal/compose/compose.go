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
	"github.com/monagent/monagent/internal/envfile"
	"github.com/monagent/monagent/internal/retry"
	"github.com/monagent/monagent/internal/seal"
)

// upTimeout bounds `docker compose up`, image pulls included.
const upTimeout = 20 * time.Minute

// Options are the step's collaborators. Paths are as seen from the host
// root; Root prefixes them.
type Options struct {
	Root     string
	StackDir string // bundle.dir
	Config   config.Compose
	DataDir  string // config.StackDataDir()
	// MountPoint is volume.mount_point: DataDir must be on the filesystem
	// mounted there. "" when the data is a directory on the root disk
	// (volume.kind: directory).
	MountPoint string
	// Vars is the env mapping: an optional key absent from .env leaves its
	// services out.
	Vars       map[string]config.EnvVar
	Run        command.Runner
	ComposeEnv []string
	Docker     DockerAPI
	// Seal keys the fingerprint, which digests .env.
	Seal *seal.Key
	Log  *zap.Logger
	// Backoff spaces the watch's polls.
	Backoff retry.Backoff
}

// inherit is what `docker compose` gets of the agent's environment: a
// variable set there would override .env (COMPOSE_PROFILES, a stray
// GRAFANA_ADMIN_PASSWORD in a shell), and the stack must come up the
// same from the unit, from user-data and by hand.
var inherit = []string{"PATH", "HOME", "TMPDIR", "DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CONTEXT", "DOCKER_CERT_PATH",
	"DOCKER_TLS_VERIFY", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"}

// Step converges the running stack.
type Step struct {
	o Options

	m        *model
	env      map[string]string
	envBytes []byte
	enabled  []string
	disabled []string          // services with containers to remove
	digests  map[string]string // service -> digest of its bind-mounted stack files
	override []byte
	warnings []string

	lastDigests map[string]string // memo
	// lastUp is each container as the stack was last up (memo): from the
	// last successful run, then from this run's watch.
	lastUp map[string]record
}

// record is one container as the stack was last up.
type record struct {
	Service  string `json:"service"`
	Restarts int    `json:"restarts"`
	// Hash is Compose's config-hash label: the service's definition,
	// interpolated, as the container was created from it.
	Hash string `json:"config_hash"`
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
		o.Backoff = retry.Backoff{Initial: 50 * time.Millisecond, Max: 200 * time.Millisecond}
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
	s.lastDigests, s.lastUp = map[string]string{}, map[string]record{}
	_ = json.Unmarshal([]byte(memo["mounts"]), &s.lastDigests)
	_ = json.Unmarshal([]byte(memo["containers"]), &s.lastUp)
}

// Memo implements engine.Memoizer.
func (s *Step) Memo() map[string]string {
	mounts, _ := json.Marshal(s.digests)
	containers, _ := json.Marshal(s.lastUp)
	return map[string]string{"mounts": string(mounts), "containers": string(containers), "enabled": strings.Join(s.enabled, ",")}
}

// Warning implements engine.Warner.
func (s *Step) Warning() string { return strings.Join(s.warnings, "; ") }

// Fingerprint digests every input of `up`: the compose file, the override,
// .env, the enabled services and the stack files each service mounts.
func (s *Step) Fingerprint(ctx context.Context) (string, error) {
	if err := s.prepare(ctx); err != nil {
		return "", err
	}
	h := s.o.Seal.New()
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
	envBytes, err := os.ReadFile(s.envFile())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("compose: %w", err)
	}
	env, err := dotenv.UnmarshalBytesWithLookup(envBytes, func(string) (string, bool) { return "", false })
	if err != nil {
		return fmt.Errorf("compose: read %s: %w", s.envFile(), err)
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
	s.enabled, s.disabled = s.enabledServices(m)
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

// enabledServices splits the services: those left out because an optional
// value is absent, with every service that depends on one of them (`up`
// would start the dependency anyway), and the rest.
func (s *Step) enabledServices(m *model) (enabled, disabled []string) {
	off := map[string]bool{}
	for _, svc := range envfile.Disabled(s.stackDir(), s.o.Vars, s.env) {
		if _, ok := m.project.Services[svc]; ok {
			off[svc] = true
		}
	}
	for _, d := range m.dependants(off) {
		msg := fmt.Sprintf("service %s is left out too: it depends on %s, which is left out", d.service, d.on)
		s.warnings = append(s.warnings, msg)
		s.o.Log.Warn("service left out with its dependency", zap.String("service", d.service), zap.String("depends_on", d.on))
		off[d.service] = true
	}
	for _, svc := range m.services() {
		if off[svc] {
			disabled = append(disabled, svc)
		} else {
			enabled = append(enabled, svc)
		}
	}
	return enabled, disabled
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
	if m, err := ebs.MountAt(s.path(s.o.MountPoint)); s.o.MountPoint != "" && (err != nil || m == nil) {
		s.o.Log.Info("stack not converged", zap.String("why", "nothing is mounted at "+s.o.MountPoint))
		return false, nil
	}
	all, err := s.containers(ctx)
	if err != nil {
		return false, err
	}
	why := s.drift(all)
	if strings.Contains(why, "restarted") {
		s.warnings = append(s.warnings, why)
	}
	if why == "" {
		st := s.observe(ctx, all, nil)
		why = st.why
	}
	if why != "" {
		s.o.Log.Info("stack not converged", zap.String("why", why))
	}
	return why == "", nil
}

// drift says how the containers moved from how the last successful run
// left them: one restarted since, one recreated from another definition
// (`docker compose up` by hand, with another environment), a service left
// out still running.
func (s *Step) drift(all map[string][]container) string {
	for _, svc := range s.disabled {
		if len(all[svc]) > 0 {
			return "service " + svc + " is left out but has a container"
		}
	}
	hashes := map[string]string{}
	for _, c := range s.lastUp {
		hashes[c.Service] = c.Hash
	}
	for _, svc := range s.enabled {
		for _, c := range all[svc] {
			if last, ok := s.lastUp[c.id]; ok && c.restarts > last.Restarts {
				return fmt.Sprintf("service %s restarted %d times since the last run", svc, c.restarts-last.Restarts)
			}
			if h, ok := hashes[svc]; ok && c.configHash != h {
				return "service " + svc + " was recreated from another definition than the last run's"
			}
		}
	}
	return ""
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
	if err := s.compose(ctx, "up", nil); err != nil {
		return err
	}
	if changed := s.changedMounts(before); len(changed) > 0 {
		s.o.Log.Info("recreating services whose mounted stack files changed", zap.Strings("services", changed))
		if err := s.compose(ctx, "up", append([]string{"--force-recreate", "--no-deps"}, changed...)); err != nil {
			return err
		}
	}
	if err := s.removeDisabled(ctx, before); err != nil {
		return err
	}
	return s.watch(ctx, before)
}

// removeDisabled stops and removes the containers of services left out:
// one still running would go on with a value that is gone.
func (s *Step) removeDisabled(ctx context.Context, before map[string][]container) error {
	var running []string
	for _, svc := range s.disabled {
		if len(before[svc]) > 0 {
			running = append(running, svc)
		}
	}
	if len(running) == 0 {
		return nil
	}
	s.o.Log.Info("removing the containers of services left out", zap.Strings("services", running))
	return s.compose(ctx, "rm", append([]string{"--stop", "--force"}, running...))
}

// preflight refuses to start the stack when its data would not land on
// the data volume, or when the compose file needs a value .env lacks.
func (s *Step) preflight(ctx context.Context) error {
	mp := s.path(s.o.MountPoint)
	m, err := ebs.MountAt(mp)
	if err != nil {
		return fmt.Errorf("compose: %w", err)
	}
	if m == nil && s.o.MountPoint != "" {
		return fmt.Errorf("compose: nothing is mounted at %s: the stack's data would land on the root disk; run `monagent reconcile --only volume` first", mp)
	}
	f := s.m.check(s.env, s.enabled)
	for _, w := range f.warnings {
		s.o.Log.Warn("compose file check", zap.String("warning", w))
	}
	s.warnings = append(s.warnings, f.warnings...)
	if len(f.errs) > 0 {
		return retry.PermanentError(fmt.Errorf("compose: %s", strings.Join(f.errs, "; ")))
	}
	return s.prepareVolumes(ctx)
}

// envFile is the environment file the env step writes.
func (s *Step) envFile() string {
	if s.o.Config.EnvFile != "" {
		return s.path(s.o.Config.EnvFile)
	}
	return filepath.Join(s.stackDir(), ".env")
}

// compose runs `docker compose verb` on the project: up with the enabled
// services unless extra names its own, rm with extra. It gets .env and the
// agent's environment cut down to inherit, nothing else.
func (s *Step) compose(ctx context.Context, verb string, extra []string) error {
	args := []string{"compose", "--project-name", s.o.Config.Project, "--project-directory", s.stackDir()}
	// Compose refuses an --env-file that does not exist, and a stack
	// without secrets may have none.
	if _, err := os.Stat(s.envFile()); err == nil {
		args = append(args, "--env-file", s.envFile())
	}
	args = append(args, "--file", s.composeFile(), "--file", s.OverridePath(), verb)
	if verb == "up" {
		args = append(args, "--detach", "--remove-orphans")
	}
	args = append(args, extra...)
	if verb == "up" && len(extra) == 0 {
		args = append(args, s.enabled...)
		s.o.Log.Info("docker compose up", zap.Strings("services", s.enabled))
	}
	c := command.Cmd{Name: "docker", Args: args, Env: s.o.ComposeEnv, Inherit: inherit, Timeout: upTimeout}
	if _, err := s.o.Run.Run(ctx, c); err != nil {
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

// digestPaths hashes the files under paths, names and contents. A symlink
// counts by where it points, not by what it leads to: the textfile link
// leads to files monagent itself rewrites every run, and a bind mount
// follows a link only when its container starts.
func digestPaths(paths []string) (string, error) {
	h := sha256.New()
	for _, p := range paths {
		err := filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			switch {
			case err != nil || d.IsDir():
				return err
			case d.Type()&fs.ModeSymlink != 0:
				target, err := os.Readlink(path)
				if err != nil {
					return err
				}
				fmt.Fprintf(h, "%s -> %s\n", path, target)
				return nil
			case !d.Type().IsRegular():
				return nil // a socket or a fifo: no content to compare
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
