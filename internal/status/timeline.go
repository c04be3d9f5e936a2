package status

import (
	"slices"
	"time"
)

// Timeline is the last run laid out in time, like `cloud-init analyze
// blame` and `systemd-analyze critical-chain`.
type Timeline struct {
	TotalSeconds float64 `json:"total_seconds"`
	Entries      []Entry `json:"entries"`
	// CriticalPath is the chain of steps the run's end waited on, first
	// to last.
	CriticalPath []string `json:"critical_path"`
}

// Entry is one step of the last run.
type Entry struct {
	Step            string  `json:"step"`
	OffsetSeconds   float64 `json:"offset_seconds"`
	DurationSeconds float64 `json:"duration_seconds"`
	Critical        bool    `json:"critical"`
	// Needs are the steps this one waited for (the step graph's edges).
	Needs []string `json:"needs"`
}

// timeline lays out the steps of the run that started at start. The
// critical path is found backwards from the step that ended last: each
// step waited on the step it needs that ended last; a step that needs
// none of those that ran started with the run.
func timeline(steps []Step, start time.Time, needs map[string][]string) Timeline {
	t := Timeline{Entries: []Entry{}, CriticalPath: []string{}}
	var ran []Step
	for _, s := range steps {
		if s.InLastRun {
			ran = append(ran, s)
		}
	}
	if len(ran) == 0 {
		return t
	}
	end := func(s Step) time.Time { return s.Start.Add(s.duration) }
	last := slices.MaxFunc(ran, func(a, b Step) int { return end(a).Compare(end(b)) })
	t.TotalSeconds = end(last).Sub(start).Seconds()
	critical := map[string]bool{}
	for cur, ok := last, true; ok; cur, ok = blocker(ran, cur, needs[cur.Name], end) {
		critical[cur.Name] = true
		t.CriticalPath = append([]string{cur.Name}, t.CriticalPath...)
	}
	for _, s := range ran {
		t.Entries = append(t.Entries, Entry{Step: s.Name, OffsetSeconds: s.Start.Sub(start).Seconds(),
			DurationSeconds: s.DurationSeconds, Critical: critical[s.Name], Needs: append([]string{}, needs[s.Name]...)})
	}
	return t
}

// blocker is the step of needs that ended last before cur started.
func blocker(ran []Step, cur Step, needs []string, end func(Step) time.Time) (Step, bool) {
	var best Step
	found := false
	for _, s := range ran {
		if !slices.Contains(needs, s.Name) || end(s).After(cur.Start) {
			continue
		}
		if !found || end(s).After(end(best)) {
			best, found = s, true
		}
	}
	return best, found
}
