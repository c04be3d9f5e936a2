package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/monagent/monagent/internal/docker"
	"github.com/monagent/monagent/rig/instance"
)

const (
	// bakeRecipe names what the bake does besides dpkg -i; change it when
	// the bake changes, so that cached images are baked again.
	bakeRecipe = "bake-3"
	// bakeTimeout bounds one bake.
	bakeTimeout = 10 * time.Minute
	// keepImages is how many baked images the cache keeps (the newest).
	keepImages = 3
	// imageMarker is written into a finished image: it names the package.
	imageMarker = "etc/monagent-rig-image"

	// policyRCD makes installing a package start no service, as dnf on
	// Amazon Linux never does: monagent's docker step then starts
	// docker.service through systemd's D-Bus API, as it must there.
	policyRCD = "#!/bin/sh\n# rig/sim image: installing a package starts no service (as dnf on Amazon Linux).\nexit 101\n"
)

// BakeOptions describe the "AMI": a base rootfs with monagent's .deb
// installed.
type BakeOptions struct {
	Cache string // the rig's cache (/var/cache/monagent-rig)
	Base  string // the base rootfs, from instance.EnsureRootfs
	Deb   string // the .deb built by make package
	Logf  Logf
}

// Bake returns the baked image for the package: a plain root directory
// under the cache, keyed by the .deb's SHA-256 and the base rootfs, made
// once. The bake copies the base rootfs, boots it under real systemd with
// systemd-nspawn, installs the package with `dpkg -i` as an AMI bake does
// (the maintainer scripts run), checks that monagent.service and
// monagent-reconcile.timer end up enabled and not started, and powers
// off. Older images beyond the newest few are removed unless an instance
// uses them.
func Bake(ctx context.Context, o BakeOptions) (string, error) {
	if o.Logf == nil {
		o.Logf = nopLogf
	}
	sum, err := docker.FileSHA256(o.Deb)
	if err != nil {
		return "", fmt.Errorf("bake: %w", err)
	}
	key := "ami-" + sum[:16] + "-" + filepath.Base(o.Base) + "-" + bakeRecipe
	final := filepath.Join(o.Cache, key)
	ctx, cancel := context.WithTimeout(ctx, bakeTimeout)
	defer cancel()
	lock, err := lockFile(ctx, filepath.Join(o.Cache, key+".lock"), syscall.LOCK_EX)
	if err != nil {
		return "", fmt.Errorf("bake: %w", err)
	}
	defer lock.Close()
	if _, err := os.Stat(filepath.Join(final, imageMarker)); err == nil {
		o.Logf("image %s: cached", final)
		return final, nil
	}
	start := time.Now()
	if err := bake(ctx, o, final); err != nil {
		return "", fmt.Errorf("bake %s into %s: %w", filepath.Base(o.Deb), final, err)
	}
	o.Logf("image %s: baked in %s", final, time.Since(start).Round(100*time.Millisecond))
	pruneImages(o.Cache, final, o.Logf)
	return final, nil
}

// bake makes the image in a temporary directory beside final and renames
// it into place.
func bake(ctx context.Context, o BakeOptions, final string) error {
	if err := removeStale(final + ".tmp-*"); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(final), filepath.Base(final)+".tmp-")
	if err != nil {
		return fmt.Errorf("the bake's directory: %w", err)
	}
	// The image is renamed out of it; what stays is the bake's boot
	// directory (its console log) or a failed bake.
	defer os.RemoveAll(tmp)
	root := filepath.Join(tmp, "root")
	if _, err := command(ctx, nil, "", nil, "cp", "-a", "--reflink=auto", o.Base, root); err != nil {
		return fmt.Errorf("copy the base rootfs: %w", err)
	}
	if err := writeFile(root, "usr/sbin/policy-rc.d", policyRCD, 0o755); err != nil {
		return err
	}
	if err := copyFile(o.Deb, filepath.Join(root, "var/tmp/monagent.deb")); err != nil {
		return fmt.Errorf("put the package in the image: %w", err)
	}
	if err := installPackage(ctx, root, tmp, o.Logf); err != nil {
		return err
	}
	if err := finishImage(root, o.Deb); err != nil {
		return err
	}
	if err := os.Rename(root, final); err != nil {
		return fmt.Errorf("move the image into place: %w", err)
	}
	return nil
}

// installPackage boots root and installs /var/tmp/monagent.deb in it.
func installPackage(ctx context.Context, root, dir string, logf Logf) error {
	in, err := instance.Start(ctx, instance.Options{
		Name: "monagent-bake",
		Root: root,
		Dir:  filepath.Join(dir, "boot"),
		Logf: logf,
	})
	if err != nil {
		return err
	}
	defer in.Close()
	for _, step := range []struct{ what, script string }{
		{"dpkg -i", "dpkg -i /var/tmp/monagent.deb"},
		{"the units are enabled", `for u in monagent.service monagent-reconcile.timer; do
	s=$(systemctl is-enabled "$u" || true)
	[ "$s" = enabled ] || { echo "$u is $s after dpkg -i, want enabled"; exit 1; }
done`},
		{"the units are not started", `for u in monagent.service monagent-reconcile.timer; do
	s=$(systemctl is-active "$u" || true)
	[ "$s" = inactive ] || { echo "$u is $s after dpkg -i, want inactive: the package must not start it on the build instance"; exit 1; }
done`},
	} {
		out, err := in.Exec(ctx, "bash", "-euc", step.script)
		if err != nil {
			return fmt.Errorf("%s: %w", step.what, err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if line != "" {
				logf("  bake: %s: %s", step.what, line)
			}
		}
	}
	if err := in.Poweroff(ctx); err != nil {
		return err
	}
	return in.Close()
}

// finishImage removes the package file and what the boot left that
// instances must not share. /etc/monagent/config.yaml stays as the package
// installed it (the example): this AMI's user-data writes the real one.
func finishImage(root, deb string) error {
	for _, p := range []string{"var/tmp/monagent.deb", "var/lib/monagent/state.json"} {
		if err := os.Remove(filepath.Join(root, p)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("finish the image: %w", err)
		}
	}
	// A machine ID of its own for every instance (rig/instance writes one).
	if err := os.WriteFile(filepath.Join(root, "etc/machine-id"), nil, 0o444); err != nil {
		return fmt.Errorf("finish the image: %w", err)
	}
	return writeFile(root, imageMarker, "baked by rig/sim from "+filepath.Base(deb)+"\n", 0o644)
}

// pruneImages removes baked images other than keep beyond the newest
// keepImages, skipping any an instance holds (its lock is shared).
func pruneImages(cache, keep string, logf Logf) {
	dirs, _ := filepath.Glob(filepath.Join(cache, "ami-*"))
	type image struct {
		dir string
		mod time.Time
	}
	var images []image
	for _, d := range dirs {
		fi, err := os.Stat(filepath.Join(d, imageMarker))
		if err != nil || d == keep {
			continue
		}
		images = append(images, image{d, fi.ModTime()})
	}
	sort.Slice(images, func(i, j int) bool { return images[i].mod.After(images[j].mod) })
	for i, im := range images {
		if i < keepImages-1 {
			continue
		}
		f, err := os.OpenFile(im.dir+".lock", os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			continue
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			if err := os.RemoveAll(im.dir); err == nil {
				logf("image %s: removed (older than the newest %d)", im.dir, keepImages)
			}
		}
		f.Close()
	}
}

// lockFile takes an flock (how: LOCK_EX or LOCK_SH) on path, waiting as
// long as ctx allows. Closing the file releases it.
func lockFile(ctx context.Context, path string, how int) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	err = poll(ctx, 200*time.Millisecond, "the lock "+path, func() (bool, string, error) {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return false, "held by another process", nil
		}
		return err == nil, "", err
	})
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// removeStale removes what killed bakes left (temporary directories).
func removeStale(pattern string) error {
	stale, err := filepath.Glob(pattern)
	if err != nil {
		return err
	}
	for _, d := range stale {
		if err := os.RemoveAll(d); err != nil {
			return fmt.Errorf("remove a stale bake: %w", err)
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return out.Close()
}

// writeFile writes content to rel under root, creating directories; a
// symbolic link in its place is replaced, never followed (it would
// resolve on the host).
func writeFile(root, rel, content string, mode os.FileMode) error {
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("write %s in %s: %w", rel, root, err)
	}
	if fi, err := os.Lstat(p); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		if err := os.Remove(p); err != nil {
			return fmt.Errorf("write %s in %s: %w", rel, root, err)
		}
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		return fmt.Errorf("write %s in %s: %w", rel, root, err)
	}
	return os.Chmod(p, mode)
}
