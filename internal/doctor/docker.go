package doctor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/moby/moby/client"

	"github.com/monagent/monagent/internal/command"
	"github.com/monagent/monagent/internal/config"
	"github.com/monagent/monagent/internal/docker"
)

// Bounds of the local probes: both answer in milliseconds when well.
const (
	pingTimeout    = 2 * time.Second
	versionTimeout = 15 * time.Second
)

// Engine is the part of the Docker API client the checks use.
type Engine interface {
	Ping(ctx context.Context, options client.PingOptions) (client.PingResult, error)
	DaemonHost() string
}

// DockerEngine asks whether the engine answers (seed section 10, "Docker
// status: systemctl is-active docker").
func DockerEngine(ctx context.Context, e Engine) Check {
	const name = "docker engine"
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	res, err := e.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true})
	if err != nil {
		return Failed(name, fmt.Sprintf("the Docker engine does not answer at %s (%v): systemctl status docker and journalctl -u docker; "+
			"`monagent reconcile --only docker` installs and starts it", e.DaemonHost(), err))
	}
	return Pass(name, fmt.Sprintf("answers at %s (API %s)", e.DaemonHost(), res.APIVersion))
}

// Plugin is what the Compose plugin check needs.
type Plugin struct {
	Root   string
	Config config.ComposePlugin
	// Env is `docker compose`'s environment (DOCKER_CONFIG under --root).
	Env []string
	Run command.Runner
}

// ComposePlugin asks what docker-ready asks (seed section 6 and section
// 10, "Docker Compose available?"): `docker compose version` answers with
// the pinned version, from the file the docker step installs, with the
// pinned checksum when one is configured.
func ComposePlugin(ctx context.Context, p Plugin) Check {
	const name = "compose plugin"
	path := filepath.Join(p.Root, docker.PluginPath)
	want := p.Config.Version
	fix := "`monagent reconcile --only docker` installs " + want + " from " + p.Config.URL
	if p.Config.SHA256 == "" {
		fix = "set docker.compose_plugin.sha256 to the sha256sum of " + p.Config.URL + ", then `monagent reconcile --only docker` installs it"
	}
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return Failed(name, fmt.Sprintf("not installed: %s does not exist, so `docker compose up -d` fails with \"unknown shorthand flag: 'd'\" (seed section 6): %s", path, fix))
	case err != nil:
		return Failed(name, err.Error())
	case fi.Mode().Perm()&0o111 == 0:
		return Failed(name, fmt.Sprintf("%s is not executable (mode %v): %s", path, fi.Mode().Perm(), fix))
	}
	got, err := composeVersion(ctx, p)
	if err != nil {
		return Failed(name, fmt.Sprintf("`docker compose version` fails with %s in place (%v): the docker CLI must be installed and run the plugin: %s", path, err, fix))
	}
	if strings.TrimPrefix(got, "v") != strings.TrimPrefix(want, "v") {
		return Failed(name, fmt.Sprintf("`docker compose version` reports %s, want %s (docker.compose_plugin.version), from %s: %s", got, want, path, fix))
	}
	detail := fmt.Sprintf("%s at %s", want, path)
	if sum := p.Config.SHA256; sum != "" {
		have, err := docker.FileSHA256(path)
		if err != nil {
			return Failed(name, err.Error())
		}
		if have != sum {
			return Failed(name, fmt.Sprintf("%s has sha256 %s, docker.compose_plugin.sha256 is %s: %s", path, have, sum, fix))
		}
		detail += ", sha256 as pinned"
	}
	return Pass(name, detail)
}

// composeVersion runs `docker compose version --short` through the docker
// CLI, as the compose step will use it.
func composeVersion(ctx context.Context, p Plugin) (string, error) {
	res, err := p.Run.Run(ctx, command.Cmd{Name: "docker", Args: []string{"compose", "version", "--short"},
		Env: p.Env, Timeout: versionTimeout, Quiet: true})
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(res.Stdout)), nil
}
