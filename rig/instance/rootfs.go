package instance

import (
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// mkrootfsScript builds the base root filesystem. Its content names the
// cache entry, so changing the package list (or anything else in it)
// builds a fresh rootfs.
//
//go:embed mkrootfs.sh
var mkrootfsScript []byte

const (
	// buildTimeout bounds one rootfs build (debootstrap takes about a minute).
	buildTimeout = 20 * time.Minute
	// aptTimeout bounds installing the host's tools.
	aptTimeout = 10 * time.Minute
)

// RootfsKey is the name of the cache entry EnsureRootfs builds:
// "rootfs-bookworm-" and the first 12 hex digits of the SHA-256 of
// mkrootfs.sh.
func RootfsKey() string {
	sum := sha256.Sum256(mkrootfsScript)
	return "rootfs-bookworm-" + hex.EncodeToString(sum[:6])
}

// EnsureRootfs returns the directory of a debootstrapped Debian bookworm
// root filesystem cached under cacheDir (for example
// /var/cache/monagent-rig), building it first if it is not there.
//
// It installs systemd-container and debootstrap on the host with apt when
// they are missing. The build runs mkrootfs.sh into a temporary directory
// beside the cache entry and renames it into place, so a killed build never
// leaves a half rootfs under the entry's name; an flock on
// cacheDir/<key>.lock keeps two processes from building at once. The
// returned directory must not be modified: Boot gives every instance a
// private overlay on top of it.
func EnsureRootfs(ctx context.Context, cacheDir string) (string, error) {
	if os.Geteuid() != 0 {
		return "", errors.New("rig/instance: building and booting instances needs root")
	}
	if cacheDir == "" {
		return "", errors.New("rig/instance: empty rootfs cache directory")
	}
	cacheDir, err := filepath.Abs(cacheDir)
	if err != nil {
		return "", fmt.Errorf("rootfs cache directory: %w", err)
	}
	key := RootfsKey()
	final := filepath.Join(cacheDir, key)
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", fmt.Errorf("create rootfs cache directory: %w", err)
	}

	lock, err := lockFile(ctx, filepath.Join(cacheDir, key+".lock"), buildTimeout)
	if err != nil {
		return "", err
	}
	defer lock.Close()

	if err := ensureHostTools(ctx); err != nil {
		return "", err
	}
	if err := checkRootfs(final); err == nil {
		return final, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("cached rootfs %s is broken (remove it to rebuild): %w", final, err)
	}

	// Builds that were killed leave their temporary directories (and
	// possibly debootstrap's /proc and /sys mounts in them).
	stale, err := filepath.Glob(filepath.Join(cacheDir, key+".tmp-*"))
	if err != nil {
		return "", fmt.Errorf("list stale rootfs builds: %w", err)
	}
	for _, dir := range stale {
		if err := removeTree(dir); err != nil {
			return "", fmt.Errorf("remove stale rootfs build: %w", err)
		}
	}

	tmp, err := os.MkdirTemp(cacheDir, key+".tmp-")
	if err != nil {
		return "", fmt.Errorf("create rootfs build directory: %w", err)
	}
	if err := buildRootfs(ctx, tmp, lock, filepath.Join(cacheDir, key+".log")); err != nil {
		if rerr := removeTree(tmp); rerr != nil {
			err = errors.Join(err, fmt.Errorf("remove failed rootfs build: %w", rerr))
		}
		return "", err
	}
	if err := checkRootfs(tmp); err != nil {
		return "", fmt.Errorf("rootfs built in %s is incomplete: %w", tmp, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return "", fmt.Errorf("move built rootfs into place: %w", err)
	}
	return final, nil
}

// checkRootfs reports whether dir holds a bootable rootfs; the error wraps
// os.ErrNotExist when dir itself is missing.
func checkRootfs(dir string) error {
	if _, err := os.Stat(dir); err != nil {
		return err
	}
	for _, p := range []string{"usr/lib/systemd/systemd", "usr/bin/systemctl", "sbin/init", "etc/os-release"} {
		if _, err := os.Lstat(filepath.Join(dir, p)); err != nil {
			return fmt.Errorf("rootfs %s lacks %s: %v", dir, p, err)
		}
	}
	return nil
}

// buildRootfs runs mkrootfs.sh into dir, logging to logPath. The lock file
// is passed to the script (as fd 3) so that if this process dies, the lock
// stays held until every process of the build has exited.
func buildRootfs(ctx context.Context, dir string, lock *os.File, logPath string) error {
	script, err := os.CreateTemp("", "mkrootfs-*.sh")
	if err != nil {
		return fmt.Errorf("write mkrootfs.sh: %w", err)
	}
	defer os.Remove(script.Name())
	if _, err := script.Write(mkrootfsScript); err != nil {
		script.Close()
		return fmt.Errorf("write mkrootfs.sh: %w", err)
	}
	if err := script.Close(); err != nil {
		return fmt.Errorf("write mkrootfs.sh: %w", err)
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("create rootfs build log: %w", err)
	}
	defer logFile.Close()

	ctx, cancel := context.WithTimeout(ctx, buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", script.Name(), dir)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.ExtraFiles = []*os.File{lock}
	killGroupOnCancel(cmd)
	start := time.Now()
	err = cmd.Run()
	if err != nil {
		return fmt.Errorf("build rootfs: %s (after %s): %w\nlast lines of %s:\n%s",
			quoteArgs(cmd.Args), time.Since(start).Round(time.Second), err, logPath, tailFile(logPath, 30))
	}
	return nil
}

// ensureHostTools installs systemd-container and debootstrap with apt when
// systemd-nspawn or debootstrap is missing.
func ensureHostTools(ctx context.Context) error {
	missing := false
	for _, name := range []string{"systemd-nspawn", "debootstrap", "nsenter"} {
		if _, err := exec.LookPath(name); err != nil {
			missing = true
		}
	}
	if !missing {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, aptTimeout)
	defer cancel()
	install := []string{"apt-get", "-o", "DPkg::Lock::Timeout=300", "install", "-y", "--no-install-recommends",
		"systemd-container", "debootstrap", "util-linux"}
	if _, err := runCommand(ctx, install...); err != nil {
		// The package lists may be missing or stale on a fresh machine.
		if _, uerr := runCommand(ctx, "apt-get", "-o", "DPkg::Lock::Timeout=300", "update"); uerr != nil {
			return fmt.Errorf("install host tools: %w; then: %w", err, uerr)
		}
		if _, err := runCommand(ctx, install...); err != nil {
			return fmt.Errorf("install host tools: %w", err)
		}
	}
	for _, name := range []string{"systemd-nspawn", "debootstrap", "nsenter"} {
		if _, err := exec.LookPath(name); err != nil {
			return fmt.Errorf("after installing systemd-container and debootstrap: %w", err)
		}
	}
	return nil
}

// runCommand runs argv on the host and returns its combined output; the
// error names the command and carries its output.
func runCommand(ctx context.Context, argv ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	killGroupOnCancel(cmd)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("%s: %w\n%s", quoteArgs(argv), err, tailString(out.String(), 40))
	}
	return out.Bytes(), nil
}

// killGroupOnCancel makes cmd lead a process group of its own and kills the
// whole group when its context ends, so that children (debootstrap's dpkg,
// nsenter's forked child) do not outlive it. Waiting for its output is
// bounded too.
func killGroupOnCancel(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = 5 * time.Second
}

// lockFile takes an exclusive flock on path, waiting at most timeout (and
// no longer than ctx). Closing the returned file releases the lock.
func lockFile(ctx context.Context, path string, timeout time.Duration) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	deadline := time.Now().Add(timeout)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("lock %s: still held by another build after %s", path, timeout)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// quoteArgs renders argv as a shell-like command line for error messages.
func quoteArgs(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		if a == "" || strings.ContainsAny(a, " \t\n'\"\\$*?;&|<>()") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}
