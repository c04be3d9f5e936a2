// Package docker is the docker step: the Docker engine installed with the
// host's package manager, enabled and started through systemd's D-Bus API,
// the configured user in the docker group, and the Compose v2 plugin
// installed from a pinned URL and checksum.
package docker

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/moby/moby/client"
	"go.uber.org/zap"

	"github.com/monagent/monagent/internal/command"
	"github.com/monagent/monagent/internal/config"
	"github.com/monagent/monagent/internal/pkgmgr"
	"github.com/monagent/monagent/internal/retry"
)

// PluginPath is where the Compose plugin goes, under the host root: the
// first directory the docker CLI searches for system-wide plugins.
const PluginPath = "/usr/local/lib/docker/cli-plugins/docker-compose"

const pingTimeout = 2 * time.Second

// Engine is the part of the Docker API client the step needs.
type Engine interface {
	Ping(ctx context.Context, options client.PingOptions) (client.PingResult, error)
}

// Units starts systemd units; *systemdbus.Units is one.
type Units interface {
	Available() bool
	EnableAndStart(ctx context.Context, unit string) error
}

// Options are the step's collaborators.
type Options struct {
	Root   string
	Config config.Docker
	Run    command.Runner
	Engine Engine
	Units  Units
	// HTTP downloads the plugin; nil means one that honours the proxy
	// variables (HTTPS_PROXY, NO_PROXY).
	HTTP    *http.Client
	Log     *zap.Logger
	Backoff retry.Backoff
}

// Step converges Docker.
type Step struct {
	o Options
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
		// Spaces the plugin download's retries: a network failure.
		o.Backoff = retry.Backoff{Initial: 500 * time.Millisecond, Max: 10 * time.Second}
	}
	if o.HTTP == nil {
		o.HTTP = &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment}}
	}
	return &Step{o: o}
}

// Fingerprint digests the pinned plugin and the user.
func (s *Step) Fingerprint(context.Context) (string, error) {
	p := s.o.Config.ComposePlugin
	return strings.Join([]string{p.Version, p.URL, p.SHA256, s.o.Config.User}, "|"), nil
}

// Check passes when the engine answers, the plugin is the pinned one and
// the user is in the docker group. An engine that answers needs no D-Bus:
// whoever started it, it runs.
func (s *Step) Check(ctx context.Context) (bool, error) {
	if !s.engineAnswers(ctx) {
		s.o.Log.Info("the Docker engine does not answer")
		return false, nil
	}
	ok, err := s.pluginInstalled(ctx)
	if err != nil || !ok {
		return false, err
	}
	return s.userInGroup()
}

// Apply installs and starts what is missing.
func (s *Step) Apply(ctx context.Context) error {
	if err := s.ensureEngine(ctx); err != nil {
		return err
	}
	if err := s.ensureUser(ctx); err != nil {
		return err
	}
	return s.ensurePlugin(ctx)
}

func (s *Step) engineAnswers(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	_, err := s.o.Engine.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true})
	return err == nil
}

// ensureEngine installs the engine package when it is missing, then
// enables and starts docker.service, waiting for the start job's result.
func (s *Step) ensureEngine(ctx context.Context) error {
	if s.engineAnswers(ctx) {
		return nil
	}
	if s.o.Root != "/" {
		return retry.PermanentError(fmt.Errorf("docker: the Docker engine does not answer, and under --root %s monagent neither installs packages nor starts units: start dockerd", s.o.Root))
	}
	m, err := pkgmgr.Detect(s.o.Root, s.o.Run)
	if err != nil {
		return fmt.Errorf("docker: %w", err)
	}
	pkg := m.DockerPackage()
	installed, err := m.Installed(ctx, pkg)
	if err != nil {
		return fmt.Errorf("docker: %w", err)
	}
	if !installed {
		s.o.Log.Info("installing the Docker engine", zap.String("package", pkg))
		if err := m.Install(ctx, pkg); err != nil {
			return fmt.Errorf("docker: %w", err)
		}
	}
	if !s.o.Units.Available() {
		return fmt.Errorf("docker: the Docker engine is installed but does not answer, and there is no systemd to start it: start dockerd")
	}
	start := time.Now()
	if err := s.o.Units.EnableAndStart(ctx, "docker.service"); err != nil {
		return fmt.Errorf("docker: %w", err)
	}
	s.o.Log.Info("docker.service enabled and started", zap.Duration("duration", time.Since(start)))
	return nil
}

// ensureUser puts the configured user in the docker group.
func (s *Step) ensureUser(ctx context.Context) error {
	user := s.o.Config.User
	if ok, err := s.userInGroup(); err != nil || ok {
		return err
	}
	args := []string{"-a", "-G", "docker", user}
	if s.o.Root != "/" {
		args = append([]string{"--root", s.o.Root}, args...)
	}
	if _, err := s.o.Run.Run(ctx, command.Cmd{Name: "usermod", Args: args, Timeout: time.Minute}); err != nil {
		return fmt.Errorf("docker: add %s to the docker group: %w", user, err)
	}
	s.o.Log.Info("user added to the docker group", zap.String("user", user))
	return nil
}

// userInGroup reads <root>/etc/passwd and group; no user configured is
// converged. A user that does not exist is a permanent error naming the
// key: monagent does not create accounts.
func (s *Step) userInGroup() (bool, error) {
	user := s.o.Config.User
	if user == "" {
		return true, nil
	}
	if _, err := entry(filepath.Join(s.o.Root, "etc", "passwd"), user); err != nil {
		return false, retry.PermanentError(fmt.Errorf("docker: docker.user %q: %w; create the user, or set docker.user to an existing one (or \"\" for none)", user, err))
	}
	g, err := entry(filepath.Join(s.o.Root, "etc", "group"), "docker")
	if err != nil {
		return false, nil // the engine package creates the group
	}
	return len(g) > 3 && slices.Contains(strings.Split(g[3], ","), user), nil
}

var errNoEntry = errors.New("no such entry")

// entry returns the colon-separated fields of the line of file whose first
// field is name.
func entry(file, name string) ([]string, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Split(sc.Text(), ":"); fields[0] == name {
			return fields, nil
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("%w in %s", errNoEntry, file)
}
