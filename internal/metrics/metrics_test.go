package metrics

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/monagent/monagent/internal/state"
)

// parse reads b back as node-exporter does: the text format, metric names
// in the legacy character set (node-exporter 1.5 knows no other).
func parse(t *testing.T, b []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("output does not parse: %v\n%s", err, b)
	}
	return mfs
}

// series flattens families to `name{label="value",...}` -> value, labels
// sorted by name, and checks what every family must have: a gauge with help.
func series(t *testing.T, mfs map[string]*dto.MetricFamily) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for name, mf := range mfs {
		if mf.GetType() != dto.MetricType_GAUGE {
			t.Errorf("%s: type %v, want gauge", name, mf.GetType())
		}
		if mf.GetHelp() == "" {
			t.Errorf("%s: no HELP", name)
		}
		for _, m := range mf.GetMetric() {
			if m.TimestampMs != nil {
				t.Errorf("%s: has a timestamp, which node-exporter's textfile collector refuses", name)
			}
			out[seriesKey(name, m.GetLabel())] = m.GetGauge().GetValue()
		}
	}
	return out
}

func seriesKey(name string, labels []*dto.LabelPair) string {
	if len(labels) == 0 {
		return name
	}
	parts := make([]string, 0, len(labels))
	for _, l := range labels {
		parts = append(parts, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
	}
	sort.Strings(parts)
	return name + "{" + strings.Join(parts, ",") + "}"
}

const (
	thisInstance  = "i-0123456789abcdef0"
	otherInstance = "i-0fedcba9876543210"
)

var (
	runAt   = time.Unix(1700000000, 0)
	before  = time.Unix(1699990000, 0) // an earlier run
	earlier = time.Unix(1699980000, 0) // a run before that
)

// signalRecord is a signal step whose memo settles SUCCESS for id.
func signalRecord(id string, at time.Time) *state.Record {
	return &state.Record{Status: state.Succeeded, Skipped: true, Start: at, LastSuccess: at, Duration: 3 * time.Millisecond,
		Memo: map[string]string{"signaled_instance": id, "signaled_at": "2023-11-14T22:13:20Z", "outcome": "sent"}}
}

func TestRender(t *testing.T) {
	tests := []struct {
		name string
		st   *state.State
		info Info
		want map[string]float64
		// absent are families the output must not have.
		absent []string
	}{
		{
			name: "converged, signal sent, one step skipped",
			st: &state.State{LastRun: runAt, Mode: "reconcile", Steps: map[string]*state.Record{
				"packages": {Status: state.Succeeded, Skipped: true, Start: runAt, LastSuccess: runAt, Duration: 20 * time.Millisecond},
				"volume":   {Status: state.Succeeded, Start: runAt, LastSuccess: runAt, Duration: 1500 * time.Millisecond},
				"signal":   signalRecord(thisInstance, runAt),
			}},
			info: Info{InstanceID: thisInstance, Version: "1.2.3"},
			want: map[string]float64{
				`monagent_step_success{step="packages"}`:          1,
				`monagent_step_success{step="volume"}`:            1,
				`monagent_step_success{step="signal"}`:            1,
				`monagent_step_duration_seconds{step="packages"}`: 0.02,
				`monagent_step_duration_seconds{step="volume"}`:   1.5,
				`monagent_step_duration_seconds{step="signal"}`:   0.003,
				`monagent_step_skipped{step="packages"}`:          1,
				`monagent_step_skipped{step="volume"}`:            0,
				`monagent_step_skipped{step="signal"}`:            1,
				`monagent_last_run_timestamp_seconds`:             1700000000,
				`monagent_last_run_success`:                       1,
				`monagent_last_success_timestamp_seconds`:         1700000000,
				`monagent_signal_sent`:                            1,
				`monagent_info{mode="reconcile",version="1.2.3"}`: 1,
			},
		},
		{
			name: "a failed step: the last success is the oldest step success",
			st: &state.State{LastRun: runAt, Mode: "reconcile", Steps: map[string]*state.Record{
				"packages": {Status: state.Succeeded, Skipped: true, Start: runAt, LastSuccess: runAt},
				"volume": {Status: state.Failed, Start: runAt, LastSuccess: before, Duration: 20 * time.Second,
					LastError: "attach: timed out"},
				// Not reached this run: its record is from the run before.
				"docker": {Status: state.Succeeded, Start: earlier, LastSuccess: earlier},
				"signal": signalRecord(thisInstance, before),
			}},
			info: Info{InstanceID: thisInstance, Version: "1.2.3"},
			want: map[string]float64{
				`monagent_step_success{step="volume"}`:          0,
				`monagent_step_success{step="packages"}`:        1,
				`monagent_step_duration_seconds{step="volume"}`: 20,
				`monagent_step_skipped{step="volume"}`:          0,
				`monagent_last_run_timestamp_seconds`:           1700000000,
				`monagent_last_run_success`:                     0,
				`monagent_last_success_timestamp_seconds`:       float64(earlier.Unix()),
				`monagent_signal_sent`:                          1,
			},
		},
		{
			name: "an interrupted step is not a success",
			st: &state.State{LastRun: runAt, Mode: "bootstrap", Steps: map[string]*state.Record{
				"volume": {Status: state.Interrupted, Start: runAt, LastSuccess: before},
			}},
			info: Info{InstanceID: thisInstance, Version: "dev"},
			want: map[string]float64{
				`monagent_step_success{step="volume"}`:          0,
				`monagent_last_run_success`:                     0,
				`monagent_last_success_timestamp_seconds`:       float64(before.Unix()),
				`monagent_signal_sent`:                          0,
				`monagent_info{mode="bootstrap",version="dev"}`: 1,
			},
		},
		{
			name: "first bootstrap failing: never a success",
			st: &state.State{LastRun: runAt, Mode: "bootstrap", Steps: map[string]*state.Record{
				"packages": {Status: state.Succeeded, Start: runAt, LastSuccess: runAt},
				"volume":   {Status: state.Failed, Start: runAt, LastError: "no such volume"},
			}},
			info: Info{InstanceID: thisInstance},
			want: map[string]float64{
				`monagent_last_run_success`:               0,
				`monagent_last_success_timestamp_seconds`: 0,
				`monagent_signal_sent`:                    0,
			},
		},
		{
			name: "signal settled for another instance: a restored volume's memo does not count",
			st: &state.State{LastRun: runAt, Mode: "reconcile", Steps: map[string]*state.Record{
				"signal": signalRecord(otherInstance, before),
			}},
			info: Info{InstanceID: thisInstance},
			want: map[string]float64{
				`monagent_signal_sent`:      0,
				`monagent_last_run_success`: 1,
			},
		},
		{
			name: "instance unknown: no signal counts",
			st: &state.State{LastRun: runAt, Steps: map[string]*state.Record{
				"signal": signalRecord(thisInstance, before),
			}},
			info: Info{},
			want: map[string]float64{`monagent_signal_sent`: 0},
		},
		{
			name: "no steps: nothing converged, no step series",
			st:   &state.State{Steps: map[string]*state.Record{}},
			want: map[string]float64{
				`monagent_last_run_timestamp_seconds`:     0,
				`monagent_last_run_success`:               0,
				`monagent_last_success_timestamp_seconds`: 0,
				`monagent_signal_sent`:                    0,
				`monagent_info{mode="",version=""}`:       1,
			},
			absent: []string{StepSuccess, StepDuration, StepSkipped},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Render(tt.st, tt.info)
			if err != nil {
				t.Fatal(err)
			}
			mfs := parse(t, b)
			got := series(t, mfs)
			for k, want := range tt.want {
				v, ok := got[k]
				switch {
				case !ok:
					t.Errorf("%s missing in:\n%s", k, b)
				case v != want:
					t.Errorf("%s = %v, want %v", k, v, want)
				}
			}
			for _, name := range tt.absent {
				if mfs[name] != nil {
					t.Errorf("%s present in:\n%s", name, b)
				}
			}
			for name := range mfs {
				if !slices.Contains(runFamilies, name) {
					t.Errorf("family %s is not in runFamilies (docs/metrics.md lists every family)", name)
				}
			}
		})
	}
}

// runFamilies are the families Render may write; docs/metrics.md and the
// alert rules depend on them.
var runFamilies = []string{StepSuccess, StepDuration, StepSkipped, LastRunTimestamp, LastRunSuccess,
	LastSuccessTimestamp, SignalSent, InfoMetric}

// TestRenderIsDeterministic: the same state gives the same bytes, so that
// a textfile's content changes only with what it says.
func TestRenderIsDeterministic(t *testing.T) {
	st := &state.State{LastRun: runAt, Mode: "reconcile", Steps: map[string]*state.Record{}}
	for _, n := range []string{"packages", "volume", "signal", "docker", "docker-ready", "bundle", "env", "compose"} {
		st.Steps[n] = &state.Record{Status: state.Succeeded, Duration: time.Second}
	}
	first, err := Render(st, Info{Version: "1"})
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		b, err := Render(st, Info{Version: "1"})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, first) {
			t.Fatalf("render differs:\n%s\nthen:\n%s", first, b)
		}
	}
	if !bytes.Contains(first, []byte(`monagent_step_success{step="bundle"} 1`+"\n")) {
		t.Errorf("not the text format:\n%s", first)
	}
}

// TestRenderEscapes: a label value is escaped by the encoder, not pasted.
func TestRenderEscapes(t *testing.T) {
	st := &state.State{LastRun: runAt, Mode: "re\"con\\cile\n", Steps: map[string]*state.Record{}}
	b, err := Render(st, Info{Version: `v"1"`})
	if err != nil {
		t.Fatal(err)
	}
	got := series(t, parse(t, b))
	if got[seriesKey(InfoMetric, []*dto.LabelPair{label("mode", "re\"con\\cile\n"), label("version", `v"1"`)})] != 1 {
		t.Errorf("info labels not read back:\n%s", b)
	}
}

func label(name, value string) *dto.LabelPair { return &dto.LabelPair{Name: &name, Value: &value} }

func TestWrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "textfile")
	st := &state.State{Mode: "reconcile", Steps: map[string]*state.Record{
		"volume": {Status: state.Succeeded, Duration: 1500 * time.Millisecond},
	}}
	startedBefore := time.Now().Truncate(time.Second)
	if err := Write(dir, st, Info{InstanceID: thisInstance, Version: "1"}); err != nil {
		t.Fatal(err)
	}
	if st.LastRun.Before(startedBefore) {
		t.Errorf("a zero LastRun is not stamped now: %v", st.LastRun)
	}
	b, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	got := series(t, parse(t, b))
	if got[LastRunTimestamp] != float64(st.LastRun.Unix()) {
		t.Errorf("%s = %v, want %d", LastRunTimestamp, got[LastRunTimestamp], st.LastRun.Unix())
	}
	if got[`monagent_step_duration_seconds{step="volume"}`] != 1.5 {
		t.Errorf("volume duration missing:\n%s", b)
	}
}

// TestWriteIsAtomic: a reader that opened the old file (node-exporter in
// the middle of a scrape) reads it whole; the new file replaces it by
// rename, and nothing else is left in the directory, where node-exporter
// would read any *.prom.
func TestWriteIsAtomic(t *testing.T) {
	dir := t.TempDir()
	old := &state.State{LastRun: before, Steps: map[string]*state.Record{"volume": {Status: state.Failed}}}
	if err := Write(dir, old, Info{}); err != nil {
		t.Fatal(err)
	}
	oldBytes, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	reader, err := os.Open(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	st := &state.State{LastRun: runAt, Steps: map[string]*state.Record{"volume": {Status: state.Succeeded}}}
	if err := Write(dir, st, Info{}); err != nil {
		t.Fatal(err)
	}
	var seen bytes.Buffer
	if _, err := seen.ReadFrom(reader); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(seen.Bytes(), oldBytes) {
		t.Errorf("the open file changed under its reader:\n%s", seen.Bytes())
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != FileName {
		t.Errorf("directory holds %v, want only %s", entries, FileName)
	}
	if got := series(t, parse(t, mustRead(t, filepath.Join(dir, FileName)))); got[LastRunSuccess] != 1 {
		t.Errorf("new file not in place: %s = %v", LastRunSuccess, got[LastRunSuccess])
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestWriteReadableByNodeExporter: node-exporter runs as its own user, so
// the textfile directory monagent creates and the files must be readable
// by all whatever the umask (monagent's state directory, 0700, is not a
// model here).
func TestWriteReadableByNodeExporter(t *testing.T) {
	for _, umask := range []int{0o022, 0o077} {
		t.Run(fmt.Sprintf("umask %03o", umask), func(t *testing.T) {
			defer syscall.Umask(syscall.Umask(umask))
			dir := filepath.Join(t.TempDir(), "node-exporter", "textfile")
			if err := Write(dir, &state.State{Steps: map[string]*state.Record{}}, Info{}); err != nil {
				t.Fatal(err)
			}
			if err := WriteSmoke(dir, smokeReport(), runAt); err != nil {
				t.Fatal(err)
			}
			for p, want := range map[string]os.FileMode{
				filepath.Dir(dir):                 0o755,
				dir:                               0o755,
				filepath.Join(dir, FileName):      0o644,
				filepath.Join(dir, SmokeFileName): 0o644,
			} {
				fi, err := os.Stat(p)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != want {
					t.Errorf("%s: mode %v, want %v", p, fi.Mode().Perm(), want)
				}
			}
		})
	}
}

func TestLink(t *testing.T) {
	const dir, link = "/var/lib/node_exporter/textfile_collector", "/opt/monitoring/node-exporter/textfile"
	tests := []struct {
		name    string
		before  func(t *testing.T, full string)
		wantErr string
	}{
		{"absent", func(*testing.T, string) {}, ""},
		{"empty directory made by Docker", func(t *testing.T, full string) {
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
		}, ""},
		{"stale link", func(t *testing.T, full string) {
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("/elsewhere", full); err != nil {
				t.Fatal(err)
			}
		}, ""},
		{"directory with files is kept", func(t *testing.T, full string) {
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(full, "other.prom"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}, "cannot be replaced"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			full := filepath.Join(root, link)
			tt.before(t, full)
			if err := Write(filepath.Join(root, dir), &state.State{Steps: map[string]*state.Record{}}, Info{}); err != nil {
				t.Fatal(err)
			}
			err := Link(root, link, dir)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Link = %v, want %q", err, tt.wantErr)
				}
				if _, err := os.Stat(filepath.Join(full, "other.prom")); err != nil {
					t.Fatalf("the directory's file is gone: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// Through the link, under the root prefix, the textfile is there.
			if _, err := os.Stat(filepath.Join(full, FileName)); err != nil {
				t.Fatalf("textfile not reachable through the link: %v", err)
			}
			if err := Link(root, link, dir); err != nil {
				t.Fatalf("second Link: %v", err)
			}
		})
	}
}
