package metrics

import (
	"time"

	"github.com/monagent/monagent/internal/smoke"
)

// SmokeFileName is the smoke run's textfile, beside FileName. It is a file
// of its own because smoke runs apart from reconcile, which must not
// overwrite what smoke found.
const SmokeFileName = "monagent-smoke.prom"

// The smoke run's metric names.
const (
	SmokeChecks           = "monagent_smoke_checks"
	SmokeSuccess          = "monagent_smoke_success"
	SmokeLastRunTimestamp = "monagent_smoke_last_run_timestamp_seconds"
)

// smokeResults are the values of the result label, one series each for
// every category so that a count of 0 is a 0, not a missing series.
var smokeResults = [...]smoke.Status{smoke.Pass, smoke.Fail, smoke.Warn}

// RenderSmoke formats rep, the smoke run made at at, in the Prometheus
// text format: per category, the checks by result and whether none failed.
func RenderSmoke(rep smoke.Report, at time.Time) ([]byte, error) {
	counts := make(map[string]map[smoke.Status]int)
	for _, cat := range smoke.Categories {
		counts[cat] = map[smoke.Status]int{}
	}
	for _, c := range rep.Checks {
		if counts[c.Category] == nil {
			counts[c.Category] = map[smoke.Status]int{}
		}
		counts[c.Category][c.Status]++
	}
	b := newBuilder()
	checks := b.gauge(SmokeChecks, "How many of the category's checks had each result in the last smoke run.", "category", "result")
	success := b.gauge(SmokeSuccess, "Whether none of the category's checks failed in the last smoke run (1) or some did (0).", "category")
	for cat, n := range counts {
		for _, r := range smokeResults {
			checks.WithLabelValues(cat, string(r)).Set(float64(n[r]))
		}
		success.WithLabelValues(cat).Set(boolValue(n[smoke.Fail] == 0))
	}
	b.gauge(SmokeLastRunTimestamp, "When the last smoke run finished, in Unix seconds.").
		WithLabelValues().Set(unixSeconds(at))
	return b.encode()
}

// WriteSmoke renders rep into dir atomically, as Write does the run's.
func WriteSmoke(dir string, rep smoke.Report, at time.Time) error {
	b, err := RenderSmoke(rep, at)
	if err != nil {
		return err
	}
	return writeFile(dir, SmokeFileName, b)
}
