package metrics

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/monagent/monagent/internal/smoke"
	"github.com/monagent/monagent/internal/state"
)

func smokeReport(checks ...smoke.Check) smoke.Report {
	rep := smoke.Report{Checks: checks}
	for _, c := range checks {
		switch c.Status {
		case smoke.Pass:
			rep.Passed++
		case smoke.Fail:
			rep.Failed++
		default:
			rep.Warnings++
		}
	}
	return rep
}

func TestRenderSmoke(t *testing.T) {
	check := func(cat string, s smoke.Status) smoke.Check {
		return smoke.Check{Category: cat, Name: cat + " check", Status: s, Detail: "detail"}
	}
	tests := []struct {
		name string
		rep  smoke.Report
		want map[string]float64
	}{
		{
			name: "mixed results",
			rep: smokeReport(
				check(smoke.Containers, smoke.Pass), check(smoke.Containers, smoke.Pass), check(smoke.Containers, smoke.Fail),
				check(smoke.Grafana, smoke.Pass), check(smoke.Grafana, smoke.Warn),
				check(smoke.Infrastructure, smoke.Fail),
			),
			want: map[string]float64{
				`monagent_smoke_checks{category="containers",result="pass"}`:     2,
				`monagent_smoke_checks{category="containers",result="fail"}`:     1,
				`monagent_smoke_checks{category="containers",result="warn"}`:     0,
				`monagent_smoke_checks{category="grafana",result="pass"}`:        1,
				`monagent_smoke_checks{category="grafana",result="warn"}`:        1,
				`monagent_smoke_checks{category="grafana",result="fail"}`:        0,
				`monagent_smoke_checks{category="infrastructure",result="fail"}`: 1,
				`monagent_smoke_success{category="containers"}`:                  0,
				`monagent_smoke_success{category="grafana"}`:                     1, // a warning is not a failure
				`monagent_smoke_success{category="infrastructure"}`:              0,
				`monagent_smoke_last_run_timestamp_seconds`:                      1700000000,
			},
		},
		{
			name: "a category without checks is zeros and a success",
			rep:  smokeReport(check(smoke.Endpoints, smoke.Pass)),
			want: map[string]float64{
				`monagent_smoke_checks{category="pipeline",result="pass"}`: 0,
				`monagent_smoke_checks{category="pipeline",result="fail"}`: 0,
				`monagent_smoke_checks{category="pipeline",result="warn"}`: 0,
				`monagent_smoke_success{category="pipeline"}`:              1,
				`monagent_smoke_success{category="endpoints"}`:             1,
			},
		},
		{
			name: "a category smoke did not list is still counted",
			rep:  smokeReport(check("extra", smoke.Fail)),
			want: map[string]float64{
				`monagent_smoke_checks{category="extra",result="fail"}`: 1,
				`monagent_smoke_success{category="extra"}`:              0,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := RenderSmoke(tt.rep, runAt)
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
			// Every category of the seed has its four series, so that a
			// query sees a 0 rather than nothing.
			for _, cat := range smoke.Categories {
				for _, k := range []string{
					`monagent_smoke_checks{category="` + cat + `",result="pass"}`,
					`monagent_smoke_checks{category="` + cat + `",result="fail"}`,
					`monagent_smoke_checks{category="` + cat + `",result="warn"}`,
					`monagent_smoke_success{category="` + cat + `"}`,
				} {
					if _, ok := got[k]; !ok {
						t.Errorf("%s missing", k)
					}
				}
			}
			for name := range mfs {
				if name != SmokeChecks && name != SmokeSuccess && name != SmokeLastRunTimestamp {
					t.Errorf("unexpected family %s", name)
				}
			}
		})
	}
}

// TestSmokeFileIsSeparate: reconcile's textfile and smoke's live side by
// side; writing one leaves the other as it was.
func TestSmokeFileIsSeparate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "textfile")
	rep := smokeReport(smoke.Check{Category: smoke.Grafana, Name: "health", Status: smoke.Fail})
	if err := WriteSmoke(dir, rep, runAt); err != nil {
		t.Fatal(err)
	}
	smokeBytes := mustRead(t, filepath.Join(dir, SmokeFileName))
	st := &state.State{LastRun: runAt, Steps: map[string]*state.Record{"volume": {Status: state.Succeeded}}}
	if err := Write(dir, st, Info{}); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, filepath.Join(dir, SmokeFileName)); string(got) != string(smokeBytes) {
		t.Errorf("the run's write changed the smoke file:\n%s", got)
	}
	if err := WriteSmoke(dir, smokeReport(), runAt.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := series(t, parse(t, mustRead(t, filepath.Join(dir, FileName)))); got[LastRunSuccess] != 1 {
		t.Errorf("the smoke write changed the run's file")
	}
	got := series(t, parse(t, mustRead(t, filepath.Join(dir, SmokeFileName))))
	if got[`monagent_smoke_success{category="grafana"}`] != 1 || got[SmokeLastRunTimestamp] != float64(runAt.Add(time.Hour).Unix()) {
		t.Errorf("the second smoke run did not replace the first: %v", got)
	}
}

// TestWriteSmokeError: a directory that cannot be made is an error naming it.
func TestWriteSmokeError(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	err := WriteSmoke(filepath.Join(file, "textfile"), smokeReport(), runAt)
	if err == nil {
		t.Fatal("WriteSmoke under a file succeeded")
	}
	if want := filepath.Join(file, "textfile"); !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not name %s", err, want)
	}
}
