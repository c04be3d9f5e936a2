package instance

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// mountInfo is one line of /proc/self/mountinfo.
type mountInfo struct {
	root       string // the path within the filesystem mounted here
	mountPoint string
	fsType     string
	superOpts  []string
}

// readMountInfo parses /proc/self/mountinfo, in the kernel's order (a
// mount comes after the mounts it sits on).
func readMountInfo() ([]mountInfo, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	defer f.Close()
	var mounts []mountInfo
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			return nil, fmt.Errorf("read mount table: malformed line %q", sc.Text())
		}
		a, b := strings.Fields(pre), strings.Fields(post)
		if len(a) < 5 || len(b) < 3 {
			return nil, fmt.Errorf("read mount table: malformed line %q", sc.Text())
		}
		mounts = append(mounts, mountInfo{
			root:       unescapeMountPath(a[3]),
			mountPoint: unescapeMountPath(a[4]),
			fsType:     b[0],
			superOpts:  strings.Split(b[2], ","),
		})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	return mounts, nil
}

// unescapeMountPath undoes the kernel's octal escapes (\040 for a space).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// mountsUnder returns the mount points at or below dir, innermost first
// (the order to unmount them in).
func mountsUnder(dir string) ([]string, error) {
	mounts, err := readMountInfo()
	if err != nil {
		return nil, err
	}
	dir = filepath.Clean(dir)
	var under []string
	for i := len(mounts) - 1; i >= 0; i-- {
		p := mounts[i].mountPoint
		if p == dir || strings.HasPrefix(p, dir+"/") {
			under = append(under, p)
		}
	}
	return under, nil
}

// unmountAll unmounts everything at or below dir, innermost first. A mount
// that stays busy for a few seconds is detached lazily; the error then
// says so.
func unmountAll(dir string) error {
	var errs []error
	for range 10 { // a mount may hide others below it: look again after each round
		points, err := mountsUnder(dir)
		if err != nil {
			return err
		}
		if len(points) == 0 {
			return errors.Join(errs...)
		}
		for _, p := range points {
			if err := unmountBounded(p); err != nil {
				errs = append(errs, err)
			}
		}
	}
	points, err := mountsUnder(dir)
	if err != nil {
		return err
	}
	if len(points) > 0 {
		errs = append(errs, fmt.Errorf("still mounted under %s: %s", dir, strings.Join(points, ", ")))
	}
	return errors.Join(errs...)
}

// unmountBounded unmounts p, retrying while it is busy for up to 5 s, then
// detaches it lazily.
func unmountBounded(p string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := unix.Unmount(p, 0)
		switch {
		case err == nil, errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
			// EINVAL: no longer a mount point (unmounted with its parent).
			return nil
		case errors.Is(err, unix.EBUSY) && time.Now().Before(deadline):
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if derr := unix.Unmount(p, unix.MNT_DETACH); derr != nil {
			return fmt.Errorf("unmount %s: %w; lazy unmount: %w", p, err, derr)
		}
		return fmt.Errorf("unmount %s: %w (detached it lazily instead)", p, err)
	}
}

// RemoveTree unmounts everything at or below dir and then removes it (a
// missing dir is not an error): for the directory of instances a killed
// process left behind. It refuses to remove anything while a mount
// remains, so that it never deletes files through a mount into another
// filesystem.
func RemoveTree(dir string) error { return removeTree(dir) }

func removeTree(dir string) error {
	if err := unmountAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	points, err := mountsUnder(dir)
	if err != nil {
		return err
	}
	if len(points) > 0 {
		return fmt.Errorf("remove %s: still mounted: %s", dir, strings.Join(points, ", "))
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}

// mountOverlay mounts an overlayfs at target with lower as its read-only
// lower layer and upper and work as its writable layer.
func mountOverlay(lower, upper, work, target string) error {
	for _, p := range []string{lower, upper, work} {
		if strings.ContainsAny(p, ",:\\") {
			return fmt.Errorf("mount overlay on %s: path %q has a character overlayfs options cannot hold", target, p)
		}
	}
	opts := "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work
	if err := unix.Mount("overlay", target, "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount overlay (%s) on %s: %w", opts, target, err)
	}
	return nil
}
