package metrics

import (
	"os"
	"path/filepath"
	"strings"
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
