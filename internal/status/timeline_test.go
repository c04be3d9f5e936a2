package status

import (
	"slices"
	"testing"
	"time"
)

func TestTimeline(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 3, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	step := func(name string, start, dur int) Step {
		return Step{Name: name, Start: at(start), duration: time.Duration(dur) * time.Millisecond,
			DurationSeconds: float64(dur) / 1000, InLastRun: true}
	}
	seq := map[string][]string{"volume": {"packages"}, "signal": {"volume"}, "docker": {"signal"}}
	graph := map[string][]string{"signal": {"volume"}, "docker-ready": {"docker"}, "compose": {"volume", "docker-ready", "bundle"}}
	tests := []struct {
		name     string
		steps    []Step
		needs    map[string][]string
		critical []string
		total    float64
	}{
		{"one after another", []Step{step("packages", 0, 10), step("volume", 11, 1000), step("signal", 1012, 50), step("docker", 1063, 200)},
			seq, []string{"packages", "volume", "signal", "docker"}, 1.263},
		// docker and bundle run beside volume; compose waits for both
		// volume and bundle, bundle ending later.
		{"in parallel", []Step{step("volume", 0, 1000), step("docker", 0, 3000), step("bundle", 0, 500),
			step("signal", 1001, 40), step("docker-ready", 3001, 100), step("compose", 3102, 2000)},
			graph, []string{"docker", "docker-ready", "compose"}, 5.102},
		// bundle ends just before docker-ready starts, but docker-ready
		// waited on docker, not on it.
		{"a step that ended just before is not what it waited on", []Step{step("docker", 0, 100), step("bundle", 0, 101),
			step("docker-ready", 101, 50)}, graph, []string{"docker", "docker-ready"}, 0.151},
		{"a step of an earlier run is not on it", []Step{{Name: "old", Start: t0.Add(-time.Hour), duration: time.Hour}, step("volume", 0, 5)},
			seq, []string{"volume"}, 0.005},
		{"no step ran", nil, seq, []string{}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			steps := tt.steps
			for i := range steps {
				if steps[i].Start.Before(t0) {
					steps[i].InLastRun = false
				}
			}
			tl := timeline(steps, t0, tt.needs)
			if !slices.Equal(tl.CriticalPath, tt.critical) {
				t.Errorf("critical path %v, want %v", tl.CriticalPath, tt.critical)
			}
			if d := tl.TotalSeconds - tt.total; d > 1e-9 || d < -1e-9 {
				t.Errorf("total %v, want %v", tl.TotalSeconds, tt.total)
			}
			for _, e := range tl.Entries {
				if e.Critical != slices.Contains(tt.critical, e.Step) {
					t.Errorf("entry %s critical=%t", e.Step, e.Critical)
				}
			}
		})
	}
}

func TestResult(t *testing.T) {
	tests := []struct {
		name  string
		steps []Step
		ran   bool
		want  string
	}{
		{"never", nil, false, ResultNever},
		{"converged", []Step{{Status: "succeeded", InLastRun: true}}, true, ResultConverged},
		{"an old failure does not count", []Step{{Status: "failed"}, {Status: "succeeded", InLastRun: true}}, true, ResultConverged},
		{"failed", []Step{{Status: "interrupted", InLastRun: true}, {Status: "failed", InLastRun: true}}, true, ResultFailed},
		{"interrupted", []Step{{Status: "succeeded", InLastRun: true}, {Status: "interrupted", InLastRun: true}}, true, ResultInterrupted},
	}
	for _, tt := range tests {
		if got := result(tt.steps, tt.ran); got != tt.want {
			t.Errorf("%s: result %q, want %q", tt.name, got, tt.want)
		}
	}
}
