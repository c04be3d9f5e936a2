// Package dockerwait is the docker-ready step: the host is ready when the
// Docker API answers a ping AND `docker compose version` answers with the
// pinned plugin version. Checking the engine alone is the race of seed
// section 6: the engine was up before the Compose plugin existed, and
// `docker compose up -d` failed with "unknown shorthand flag: 'd'".
package dockerwait

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/moby/moby/client"
	"go.uber.org/zap"

	"github.com/monagent/monagent/internal/command"
	"github.com/monagent/monagent/internal/retry"
)

// Polls start in tens of milliseconds and stay well under a second, so
// readiness is noticed within half a second of it happening; a probe is
// two local calls, cheap enough to repeat that often.
var readyBackoff = retry.Backoff{Initial: 25 * time.Millisecond, Max: 100 * time.Millisecond}

// Bounds of one probe.
const (
	pingTimeout    = 2 * time.Second
	versionTimeout = 15 * time.Second
)

// Engine is the part of the Docker API client readiness needs.
type Engine interface {
	Ping(ctx context.Context, options client.PingOptions) (client.PingResult, error)
}

// Options are the step's collaborators.
type Options struct {
	Engine Engine
	Run    command.Runner
	// ComposeEnv is added to `docker compose`'s environment (DOCKER_CONFIG
	// under a --root prefix, where the plugin is not on the CLI's path).
	ComposeEnv []string
	// Version is the pinned plugin version, e.g. v2.24.0.
	Version string
	// PluginPath is where the docker step installs the plugin, for messages.
	PluginPath string
	Timeout    time.Duration
	Log        *zap.Logger
	// Backoff spaces the probes; zero means 25 ms doubling to 400 ms.
	Backoff retry.Backoff
}

// Step waits for Docker and the Compose plugin.
type Step struct {
	o Options
}

// New returns the step.
func New(o Options) *Step {
	if o.Backoff.Initial <= 0 {
		o.Backoff = readyBackoff
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	return &Step{o: o}
}

// Fingerprint is the pinned version.
func (s *Step) Fingerprint(context.Context) (string, error) { return s.o.Version, nil }

// Check probes both once.
func (s *Step) Check(ctx context.Context) (bool, error) {
	p := s.probe(ctx)
	if !p.ready() {
		s.o.Log.Info("docker not ready", zap.NamedError("engine", p.engineErr), zap.NamedError("compose", p.composeErr))
	}
	return p.ready(), nil
}

// Apply waits, up to the timeout, for both to answer. The error says which
// of the two is missing and what to check.
func (s *Step) Apply(ctx context.Context) error {
	start := time.Now()
	var last probe
	err := retry.Poll(ctx, s.o.Backoff, s.o.Timeout, nil, func(ctx context.Context) (bool, error) {
		last = s.probe(ctx)
		return last.ready(), nil
	})
	if err == nil {
		s.o.Log.Info("docker ready", zap.String("api", last.api), zap.String("compose", last.compose),
			zap.Duration("waited", time.Since(start)))
		return nil
	}
	if !errors.Is(err, retry.ErrTimeout) {
		return err
	}
	return s.explain(last, err)
}

// probe is one look at both.
type probe struct {
	api, compose          string
	engineErr, composeErr error
}

func (p probe) ready() bool { return p.engineErr == nil && p.composeErr == nil }

func (s *Step) probe(ctx context.Context) probe {
	var p probe
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	res, err := s.o.Engine.Ping(pctx, client.PingOptions{NegotiateAPIVersion: true})
	cancel()
	if err != nil {
		p.engineErr = err
	} else {
		p.api = res.APIVersion
	}
	p.compose, p.composeErr = s.composeVersion(ctx)
	return p
}

// composeVersion runs `docker compose version --short` through the docker
// CLI, exactly as the compose step will use it.
func (s *Step) composeVersion(ctx context.Context) (string, error) {
	res, err := s.o.Run.Run(ctx, command.Cmd{Name: "docker", Args: []string{"compose", "version", "--short"},
		Env: s.o.ComposeEnv, Timeout: versionTimeout, Quiet: true})
	if err != nil {
		return "", err
	}
	got := strings.TrimSpace(string(res.Stdout))
	if strings.TrimPrefix(got, "v") != strings.TrimPrefix(s.o.Version, "v") {
		return got, fmt.Errorf("docker compose reports version %s, want %s", got, s.o.Version)
	}
	return got, nil
}

func (s *Step) explain(p probe, err error) error {
	switch {
	case p.engineErr != nil && p.composeErr != nil:
		return fmt.Errorf("docker-ready: %w: neither the Docker engine (%v) nor the Compose plugin (%v) answers; "+
			"check `systemctl status docker`, `journalctl -u docker` and that the docker step installed %s",
			err, p.engineErr, p.composeErr, s.o.PluginPath)
	case p.engineErr != nil:
		return fmt.Errorf("docker-ready: %w: the Compose plugin answers (%s) but the Docker engine does not (%v); "+
			"check `systemctl status docker` and `journalctl -u docker`", err, p.compose, p.engineErr)
	}
	return fmt.Errorf("docker-ready: %w: the Docker engine answers (API %s) but `docker compose version` does not (%v): "+
		"the Compose v2 plugin %s is missing or not the pinned version at %s — the race of seed section 6, where "+
		"`docker compose up -d` then fails with \"unknown shorthand flag: 'd'\"; check that the docker step installed it "+
		"(docker.compose_plugin) and that the file is executable", err, p.api, p.composeErr, s.o.Version, s.o.PluginPath)
}
