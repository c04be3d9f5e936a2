// Package metrics writes the Prometheus textfiles node-exporter serves:
// monagent.prom after every bootstrap or reconcile run (per step success,
// duration and skip, the run's time and result, the signal) and
// monagent-smoke.prom after every smoke run (results per category).
//
// The families are built with client_golang in a registry of their own
// for each render and encoded with expfmt, so that the output is the text
// format node-exporter parses, escaped and ordered as it expects. The
// names are an interface (alert rules, dashboards): docs/metrics.md lists
// them, and they change only with it.
package metrics

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/monagent/monagent/internal/atomicfile"
	"github.com/monagent/monagent/internal/cfnsignal"
	"github.com/monagent/monagent/internal/state"
)

// FileName is the run's textfile in node-exporter's textfile directory.
const FileName = "monagent.prom"

// The run's metric names.
const (
	StepSuccess          = "monagent_step_success"
	StepDuration         = "monagent_step_duration_seconds"
	StepSkipped          = "monagent_step_skipped"
	LastRunTimestamp     = "monagent_last_run_timestamp_seconds"
	LastRunSuccess       = "monagent_last_run_success"
	LastSuccessTimestamp = "monagent_last_success_timestamp_seconds"
	SignalSent           = "monagent_signal_sent"
	InfoMetric           = "monagent_info"
)

// Info is what the textfile says beyond the state file.
type Info struct {
	// InstanceID is the instance running now: a signal settled for an
	// instance this volume was attached to before does not count.
	InstanceID string
	// Version is monagent's version.
	Version string
}

// Render formats the run recorded in st in the Prometheus text format.
func Render(st *state.State, info Info) ([]byte, error) {
	b := newBuilder()
	success := b.gauge(StepSuccess, "Whether the step's last run converged (1) or not (0: failed or interrupted).", "step")
	duration := b.gauge(StepDuration, "How long the step's last run took, in seconds.", "step")
	skipped := b.gauge(StepSkipped, "Whether the step's last run found it converged and applied nothing (1) or not (0).", "step")
	for name, rec := range st.Steps {
		success.WithLabelValues(name).Set(boolValue(rec.Status == state.Succeeded))
		duration.WithLabelValues(name).Set(rec.Duration.Seconds())
		skipped.WithLabelValues(name).Set(boolValue(rec.Skipped))
	}
	ok := runSucceeded(st)
	b.gauge(LastRunTimestamp, "When the last bootstrap or reconcile run started, in Unix seconds.").
		WithLabelValues().Set(unixSeconds(st.LastRun))
	b.gauge(LastRunSuccess, "Whether every step in the state succeeded after the last run (1) or not (0).").
		WithLabelValues().Set(boolValue(ok))
	b.gauge(LastSuccessTimestamp, "When the last run in which every step succeeded started, in Unix seconds (0: never).").
		WithLabelValues().Set(unixSeconds(lastSuccess(st, ok)))
	b.gauge(SignalSent, "Whether this instance's CloudFormation SUCCESS signal is settled (1: sent, or no longer awaited) or not (0).").
		WithLabelValues().Set(boolValue(signalSettled(st, info.InstanceID)))
	b.gauge(InfoMetric, "monagent's version and the mode of the last run; always 1.", "version", "mode").
		WithLabelValues(info.Version, st.Mode).Set(1)
	return b.encode()
}

// runSucceeded: every step in the state succeeded. A state without steps
// has not converged anything.
func runSucceeded(st *state.State) bool {
	for _, rec := range st.Steps {
		if rec.Status != state.Succeeded {
			return false
		}
	}
	return len(st.Steps) > 0
}

// lastSuccess is when the host last stood converged: this run when it
// succeeded; otherwise the oldest of the steps' last successes, which
// stops advancing while any step keeps failing (so "no success for an
// hour" fires), or zero when a step never succeeded.
func lastSuccess(st *state.State, ok bool) time.Time {
	if ok && !st.LastRun.IsZero() {
		return st.LastRun
	}
	var oldest time.Time
	for _, rec := range st.Steps {
		t := rec.LastSuccess
		if t.IsZero() {
			return time.Time{}
		}
		if oldest.IsZero() || t.Before(oldest) {
			oldest = t
		}
	}
	return oldest
}

// signalSettled reads the signal step's memo the way the FAILURE signal
// does: only a SUCCESS settled for this very instance counts.
func signalSettled(st *state.State, instanceID string) bool {
	rec := st.Steps["signal"]
	return rec != nil && cfnsignal.Settled(rec.Memo, instanceID)
}

// Write renders st into dir atomically (node-exporter must never read half a
// file). The file and a directory it creates are readable by all, because
// node-exporter runs as its own user.
func Write(dir string, st *state.State, info Info) error {
	if st.LastRun.IsZero() {
		st.LastRun = time.Now()
	}
	b, err := Render(st, info)
	if err != nil {
		return err
	}
	return writeFile(dir, FileName, b)
}

// writeFile replaces dir/name with b, making dir (mode 0755 whatever the
// umask) when it is missing.
func writeFile(dir, name string, b []byte) error {
	if err := atomicfile.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("metrics: create %s: %w", dir, err)
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}

// builder collects gauges in a registry made for one render: nothing is
// global, so two renders (a test's, a run's) never share a value.
type builder struct {
	reg  *prometheus.Registry
	errs []error
}

func newBuilder() *builder { return &builder{reg: prometheus.NewRegistry()} }

// gauge registers a gauge family; one without labels is set with
// WithLabelValues(). A family with no value set is left out of the output.
func (b *builder) gauge(name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
	if err := b.reg.Register(g); err != nil {
		b.errs = append(b.errs, fmt.Errorf("register %s: %w", name, err))
	}
	return g
}

// encode gathers the families, sorted by name and labels, and writes them
// in the text format (version 0.0.4) that node-exporter's textfile
// collector reads.
func (b *builder) encode() ([]byte, error) {
	if err := errors.Join(b.errs...); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	mfs, err := b.reg.Gather()
	if err != nil {
		return nil, fmt.Errorf("metrics: gather: %w", err)
	}
	var out bytes.Buffer
	enc := expfmt.NewEncoder(&out, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return nil, fmt.Errorf("metrics: encode %s: %w", mf.GetName(), err)
		}
	}
	if c, ok := enc.(expfmt.Closer); ok {
		if err := c.Close(); err != nil {
			return nil, fmt.Errorf("metrics: encode: %w", err)
		}
	}
	return out.Bytes(), nil
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// unixSeconds is t in whole Unix seconds; the zero time is 0, not year 1.
func unixSeconds(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.Unix())
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
