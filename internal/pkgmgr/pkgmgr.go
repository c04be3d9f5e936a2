// Package pkgmgr installs OS packages with the host's own package manager,
// chosen from /etc/os-release: dnf on Amazon Linux 2023 and the RHEL
// family, apt on Debian and Ubuntu. Installs never ask anything and keep
// existing configuration files.
package pkgmgr

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/monagent/monagent/internal/command"
)

// Bounds of a package manager run: an install downloads, so it may take
// minutes, but a hung mirror must not hold the boot for ever.
const (
	queryTimeout   = time.Minute
	refreshTimeout = 10 * time.Minute
	installTimeout = 20 * time.Minute
)

// noninteractive keeps apt and dpkg from asking: no one would answer.
var noninteractive = []string{"DEBIAN_FRONTEND=noninteractive", "NEEDRESTART_MODE=a"}

// Family is a package manager.
type Family string

const (
	Apt Family = "apt"
	Dnf Family = "dnf"
)

// Manager installs packages on one host.
type Manager struct {
	Family Family
	Run    command.Runner
}

// Detect reads <root>/etc/os-release.
func Detect(root string, run command.Runner) (*Manager, error) {
	path := filepath.Join(root, "etc", "os-release")
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("packages: read %s to choose a package manager: %w", path, err)
	}
	ids := osIDs(b)
	switch {
	case slices.ContainsFunc(ids, func(id string) bool { return id == "debian" || id == "ubuntu" }):
		return &Manager{Family: Apt, Run: run}, nil
	case slices.ContainsFunc(ids, func(id string) bool {
		return id == "amzn" || id == "rhel" || id == "fedora" || id == "centos" || id == "rocky" || id == "almalinux"
	}):
		return &Manager{Family: Dnf, Run: run}, nil
	}
	return nil, fmt.Errorf("packages: %s names %q, which monagent has no package manager for (apt for Debian and Ubuntu, dnf for Amazon Linux and the RHEL family)",
		path, strings.Join(ids, " "))
}

// osIDs are ID and the words of ID_LIKE.
func osIDs(osRelease []byte) []string {
	var ids []string
	sc := bufio.NewScanner(bytes.NewReader(osRelease))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if !ok || (k != "ID" && k != "ID_LIKE") {
			continue
		}
		ids = append(ids, strings.Fields(strings.Trim(v, `"'`))...)
	}
	return ids
}

// Installed reports whether pkg is installed.
func (m *Manager) Installed(ctx context.Context, pkg string) (bool, error) {
	var c command.Cmd
	switch m.Family {
	case Apt:
		c = command.Cmd{Name: "dpkg-query", Args: []string{"-W", "-f", "${db:Status-Status}", pkg}, Timeout: queryTimeout}
	default:
		c = command.Cmd{Name: "rpm", Args: []string{"-q", pkg}, Timeout: queryTimeout}
	}
	res, err := m.Run.Run(ctx, c)
	if err != nil {
		var ce *command.Error
		if errors.As(err, &ce) && ce.ExitCode > 0 {
			return false, nil // not known to the package database
		}
		return false, fmt.Errorf("packages: is %s installed: %w", pkg, err)
	}
	return m.Family != Apt || strings.TrimSpace(string(res.Stdout)) == "installed", nil
}

// Install installs pkgs, refreshing apt's lists first.
func (m *Manager) Install(ctx context.Context, pkgs ...string) error {
	var cmds []command.Cmd
	switch m.Family {
	case Apt:
		cmds = []command.Cmd{
			{Name: "apt-get", Args: []string{"-q", "update"}, Env: noninteractive, Timeout: refreshTimeout},
			{Name: "apt-get", Args: append([]string{"-q", "-y", "-o", "Dpkg::Options::=--force-confdef",
				"-o", "Dpkg::Options::=--force-confold", "install"}, pkgs...), Env: noninteractive, Timeout: installTimeout},
		}
	default:
		cmds = []command.Cmd{{Name: "dnf", Args: append([]string{"-y", "install"}, pkgs...), Timeout: installTimeout}}
	}
	for _, c := range cmds {
		// An install (Docker's) runs beside the volume, off the critical
		// path to the signal: it yields the machine to mkfs and mount.
		c.Background = true
		if _, err := m.Run.Run(ctx, c); err != nil {
			return fmt.Errorf("packages: install %s: %w", strings.Join(pkgs, " "), err)
		}
	}
	return nil
}

// Upgrade upgrades every installed package: the seed's `dnf update -y`.
func (m *Manager) Upgrade(ctx context.Context) error {
	var cmds []command.Cmd
	switch m.Family {
	case Apt:
		cmds = []command.Cmd{
			{Name: "apt-get", Args: []string{"-q", "update"}, Env: noninteractive, Timeout: refreshTimeout},
			{Name: "apt-get", Args: []string{"-q", "-y", "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold", "upgrade"},
				Env: noninteractive, Timeout: installTimeout},
		}
	default:
		cmds = []command.Cmd{{Name: "dnf", Args: []string{"-y", "update"}, Timeout: installTimeout}}
	}
	for _, c := range cmds {
		if _, err := m.Run.Run(ctx, c); err != nil {
			return fmt.Errorf("OS update: %w", err)
		}
	}
	return nil
}

// DockerPackage is the engine's package name in this family.
func (m *Manager) DockerPackage() string {
	if m.Family == Apt {
		return "docker.io"
	}
	return "docker"
}
