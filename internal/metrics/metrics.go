// Package metrics writes the Prometheus textfile node-exporter serves: per
// step success, duration and the last run time.
package metrics

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/monagent/monagent/internal/atomicfile"
	"github.com/monagent/monagent/internal/state"
)

// FileName is the textfile's name in node-exporter's textfile directory.
const FileName = "monagent.prom"

// Render formats st in the Prometheus text exposition format.
func Render(st *state.State) []byte {
	names := make([]string, 0, len(st.Steps))
	for n := range st.Steps {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("# HELP monagent_step_success Whether the step's last run converged (1) or not (0).\n")
	b.WriteString("# TYPE monagent_step_success gauge\n")
	for _, n := range names {
		v := 0
		if st.Steps[n].Status == state.Succeeded {
			v = 1
		}
		fmt.Fprintf(&b, "monagent_step_success{step=%q} %d\n", n, v)
	}
	b.WriteString("# HELP monagent_step_duration_seconds How long the step's last run took.\n")
	b.WriteString("# TYPE monagent_step_duration_seconds gauge\n")
	for _, n := range names {
		fmt.Fprintf(&b, "monagent_step_duration_seconds{step=%q} %g\n", n, st.Steps[n].Duration.Seconds())
	}
	b.WriteString("# HELP monagent_last_run_timestamp_seconds When monagent last ran.\n")
	b.WriteString("# TYPE monagent_last_run_timestamp_seconds gauge\n")
	fmt.Fprintf(&b, "monagent_last_run_timestamp_seconds %d\n", st.LastRun.Unix())
	return []byte(b.String())
}

// Write renders st into dir atomically (node-exporter must never read half a
// file). The file and a directory it creates are readable by all, because
// node-exporter runs as its own user.
func Write(dir string, st *state.State) error {
	if st.LastRun.IsZero() {
		st.LastRun = time.Now()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("metrics: create %s: %w", dir, err)
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, FileName), Render(st), 0o644); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}

// Link keeps a symlink at link pointing to dir (both host paths, under
// root), so that a stack mounting link finds the textfile: Docker resolves
// a bind mount's source through symlinks. The link is relative, so it
// resolves the same under a --root prefix. An empty directory in its place
// (Docker creates one for a missing bind source) is replaced; anything
// else is left alone and reported.
func Link(root, link, dir string) error {
	full := filepath.Join(root, link)
	target, err := filepath.Rel(filepath.Dir(link), dir)
	if err != nil {
		return fmt.Errorf("metrics: link %s to %s: %w", link, dir, err)
	}
	if cur, err := os.Readlink(full); err == nil && cur == target {
		return nil
	}
	fi, err := os.Lstat(full)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("metrics: %w", err)
	case fi.IsDir():
		// Remove fails on a directory that is not empty, which is kept.
		if err := os.Remove(full); err != nil {
			return fmt.Errorf("metrics: %s is a directory, not a link to %s, and cannot be replaced: %w", link, dir, err)
		}
	case fi.Mode()&fs.ModeSymlink == 0:
		return fmt.Errorf("metrics: %s is a file, not a link to %s: remove it or set metrics.textfile_link", link, dir)
	}
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	tmp := full + ".tmp-link"
	_ = os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	if err := os.Rename(tmp, full); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}
