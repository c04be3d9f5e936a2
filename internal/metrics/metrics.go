// Package metrics writes the Prometheus textfile node-exporter serves: per
// step success, duration and the last run time.
package metrics

import (
	"fmt"
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
