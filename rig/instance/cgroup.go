package instance

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// cgroupSet is one fresh cgroup, of the same name, in every cgroup
// hierarchy the calling process belongs to (each v1 controller hierarchy,
// the named systemd one and the unified one), each a child of the caller's
// own cgroup there.
//
// systemd-nspawn is started from inside it: with --keep-unit nspawn puts
// its supervisor and payload cgroups below the cgroup it was started in,
// which would otherwise be the host's root cgroup, and a Docker engine
// inside the container would put its cgroups beside the host's.
type cgroupSet struct {
	dirs []string
}

// newCgroupSet creates the cgroup name below the caller's cgroup in every
// hierarchy. An existing empty cgroup of that name (left by a killed run)
// is removed and created afresh; one that holds processes is an error.
func newCgroupSet(name string) (*cgroupSet, error) {
	parents, err := ownCgroups()
	if err != nil {
		return nil, err
	}
	cg := &cgroupSet{}
	for _, parent := range parents {
		dir := filepath.Join(parent, name)
		if _, err := os.Stat(dir); err == nil {
			if pids := cgroupPIDs(dir); len(pids) > 0 {
				return nil, errors.Join(
					fmt.Errorf("cgroup %s already holds processes %s: is an instance named %q running?", dir, strings.Join(pids, " "), name),
					cg.remove())
			}
			if err := removeCgroupTree(dir, 5*time.Second); err != nil {
				return nil, errors.Join(fmt.Errorf("remove leftover cgroup: %w", err), cg.remove())
			}
		}
		if err := os.Mkdir(dir, 0o755); err != nil {
			return nil, errors.Join(fmt.Errorf("create cgroup: %w", err), cg.remove())
		}
		cg.dirs = append(cg.dirs, dir)
		// A new v1 cpuset cgroup has no CPUs and no memory nodes: no
		// process could join it.
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			v, err := os.ReadFile(filepath.Join(parent, f))
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err == nil {
				err = os.WriteFile(filepath.Join(dir, f), v, 0o644)
			}
			if err != nil {
				return nil, errors.Join(fmt.Errorf("copy %s into cgroup %s: %w", f, dir, err), cg.remove())
			}
		}
	}
	return cg, nil
}

// procsFiles lists the cgroup.procs file of each cgroup: writing a PID to
// all of them moves that process into the set.
func (cg *cgroupSet) procsFiles() []string {
	files := make([]string, len(cg.dirs))
	for i, d := range cg.dirs {
		files[i] = filepath.Join(d, "cgroup.procs")
	}
	return files
}

// remove removes the cgroups and everything below them, bottom-up,
// waiting up to 10 s for exiting processes to leave them.
func (cg *cgroupSet) remove() error {
	var errs []error
	for _, d := range cg.dirs {
		if err := removeCgroupTree(d, 10*time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	cg.dirs = nil
	return errors.Join(errs...)
}

// removeCgroupTree removes the cgroup dir and its descendants, deepest
// first. A cgroup that still holds processes cannot be removed: it retries
// until timeout, then names the processes.
func removeCgroupTree(dir string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var dirs []string
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("remove cgroup %s: %w", dir, err)
		}
		slices.Reverse(dirs)
		var busy error
		for _, d := range dirs {
			if err := os.Remove(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
				busy = fmt.Errorf("remove cgroup %s (processes: %s): %w",
					d, strings.Join(cgroupPIDs(d), " "), err)
				break
			}
		}
		if busy == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return busy
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// cgroupPIDs lists the processes in cgroup dir itself.
func cgroupPIDs(dir string) []string {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil
	}
	return strings.Fields(string(b))
}

// ownCgroups returns, for every hierarchy in /proc/self/cgroup, the
// directory of the calling process's cgroup under that hierarchy's mount.
func ownCgroups() ([]string, error) {
	mounts, err := readMountInfo()
	if err != nil {
		return nil, err
	}
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return nil, fmt.Errorf("read own cgroups: %w", err)
	}
	defer f.Close()
	var dirs []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// hierarchy-ID:controller-list:cgroup-path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			return nil, fmt.Errorf("read own cgroups: malformed line %q", sc.Text())
		}
		controllers, path := parts[1], parts[2]
		m, ok := cgroupMount(mounts, controllers, path)
		if !ok {
			return nil, fmt.Errorf("no mount of the cgroup hierarchy %q that holds %s (from /proc/self/cgroup)", controllers, path)
		}
		rel := strings.TrimPrefix(path, m.root)
		dirs = append(dirs, filepath.Join(m.mountPoint, rel))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read own cgroups: %w", err)
	}
	if len(dirs) == 0 {
		return nil, errors.New("read own cgroups: /proc/self/cgroup is empty")
	}
	return dirs, nil
}

// cgroupMount finds the mount of the hierarchy with the given controllers
// ("" for the unified hierarchy) whose root contains path.
func cgroupMount(mounts []mountInfo, controllers, path string) (mountInfo, bool) {
	for _, m := range mounts {
		if path != m.root && !strings.HasPrefix(path, strings.TrimSuffix(m.root, "/")+"/") {
			continue
		}
		if controllers == "" {
			if m.fsType == "cgroup2" {
				return m, true
			}
			continue
		}
		if m.fsType != "cgroup" {
			continue
		}
		all := true
		for _, c := range strings.Split(controllers, ",") {
			if !slices.Contains(m.superOpts, c) {
				all = false
				break
			}
		}
		if all {
			return m, true
		}
	}
	return mountInfo{}, false
}
