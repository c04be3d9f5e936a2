package metrics

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/monagent/monagent/internal/state"
)

func TestWrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "textfile")
	st := &state.State{LastRun: time.Unix(1700000000, 0), Steps: map[string]*state.Record{
		"volume": {Status: state.Succeeded, Duration: 1500 * time.Millisecond},
		"signal": {Status: state.Failed, Duration: 2 * time.Second},
	}}
	if err := Write(dir, st); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`monagent_step_success{step="signal"} 0`,
		`monagent_step_success{step="volume"} 1`,
		`monagent_step_duration_seconds{step="volume"} 1.5`,
		`monagent_last_run_timestamp_seconds 1700000000`,
	} {
		if !strings.Contains(string(b), want+"\n") {
			t.Errorf("missing %q in:\n%s", want, b)
		}
	}
}

// TestWriteReadableByNodeExporter: node-exporter runs as its own user, so
// the textfile directory monagent creates and the file must be readable by
// all (monagent's state directory, 0700, is not a model here).
func TestWriteReadableByNodeExporter(t *testing.T) {
	defer syscall.Umask(syscall.Umask(0o022)) // the usual umask, whatever the test runner's
	dir := filepath.Join(t.TempDir(), "node-exporter", "textfile")
	if err := Write(dir, &state.State{Steps: map[string]*state.Record{}}); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{
		filepath.Dir(dir):            0o755,
		dir:                          0o755,
		filepath.Join(dir, FileName): 0o644,
	} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode().Perm(), want)
		}
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
			if err := Write(filepath.Join(root, dir), &state.State{Steps: map[string]*state.Record{}}); err != nil {
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
