package engine

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/monagent/monagent/internal/state"
	"go.uber.org/zap"
)

// fakeStep converges a boolean; it counts what the engine asks of it.
type fakeStep struct {
	name      string
	fp        string
	converged bool
	applyErr  error
	applyFunc func(ctx context.Context) error
	noEffect  bool // Apply "succeeds" but leaves the host unconverged
	applies   int
	checks    int
	memo      map[string]string
}

func (f *fakeStep) Name() string                                { return f.name }
func (f *fakeStep) Fingerprint(context.Context) (string, error) { return f.fp, nil }
func (f *fakeStep) Check(context.Context) (bool, error)         { f.checks++; return f.converged, nil }
func (f *fakeStep) Apply(ctx context.Context) error {
	f.applies++
	if f.applyFunc != nil {
		if err := f.applyFunc(ctx); err != nil {
			return err
		}
	}
	if f.applyErr != nil {
		return f.applyErr
	}
	if !f.noEffect {
		f.converged = true
	}
	return nil
}

type memoStep struct {
	fakeStep
}

func (m *memoStep) Restore(memo map[string]string) { m.memo = memo }
func (m *memoStep) Memo() map[string]string        { return map[string]string{"applied": m.fp} }

type notes struct {
	mu   sync.Mutex
	msgs []string
}

func (n *notes) Status(s string) { n.mu.Lock(); n.msgs = append(n.msgs, s); n.mu.Unlock() }

func newEngine(t *testing.T, steps ...Step) (*Engine, *state.Store) {
	t.Helper()
	store := &state.Store{Path: filepath.Join(t.TempDir(), "state.json")}
	return &Engine{Steps: steps, Store: store, Log: zap.NewNop()}, store
}

func TestSkipRules(t *testing.T) {
	tests := []struct {
		name        string
		prior       *state.Record
		fp          string
		converged   bool
		wantApplies int
		wantSkipped bool
	}{
		{"never ran", nil, "a", false, 1, false},
		{"never ran but host converged", nil, "a", true, 1, false},
		{"succeeded, same inputs, converged", &state.Record{Status: state.Succeeded, Fingerprint: "a"}, "a", true, 0, true},
		{"succeeded, inputs changed", &state.Record{Status: state.Succeeded, Fingerprint: "old"}, "a", true, 1, false},
		{"succeeded, drifted", &state.Record{Status: state.Succeeded, Fingerprint: "a"}, "a", false, 1, false},
		{"failed last time", &state.Record{Status: state.Failed, Fingerprint: "a"}, "a", true, 1, false},
		{"interrupted last time", &state.Record{Status: state.Interrupted, Fingerprint: "a"}, "a", true, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &fakeStep{name: "volume", fp: tt.fp, converged: tt.converged}
			e, store := newEngine(t, s)
			if tt.prior != nil {
				if err := store.Save(&state.State{Steps: map[string]*state.Record{"volume": tt.prior}}); err != nil {
					t.Fatal(err)
				}
			}
			out, err := e.Run(context.Background(), Options{})
			if err != nil {
				t.Fatal(err)
			}
			if s.applies != tt.wantApplies || out[0].Skipped != tt.wantSkipped {
				t.Fatalf("applies=%d skipped=%v, want %d %v", s.applies, out[0].Skipped, tt.wantApplies, tt.wantSkipped)
			}
			st, _ := store.Load()
			if r := st.Steps["volume"]; r.Status != state.Succeeded || r.Fingerprint != tt.fp {
				t.Fatalf("record %+v", r)
			}
		})
	}
}

func TestSecondRunSkipsEverything(t *testing.T) {
	a, b := &fakeStep{name: "a", fp: "1"}, &fakeStep{name: "b", fp: "2"}
	e, store := newEngine(t, a, b)
	for i := 0; i < 2; i++ {
		if _, err := e.Run(context.Background(), Options{}); err != nil {
			t.Fatal(err)
		}
	}
	if a.applies != 1 || b.applies != 1 {
		t.Fatalf("applies a=%d b=%d, want 1 each", a.applies, b.applies)
	}
	// A fresh engine (a new process) reads the same state and skips too.
	e2 := &Engine{Steps: []Step{a, b}, Store: store, Log: zap.NewNop()}
	out, err := e2.Run(context.Background(), Options{})
	if err != nil || !out[0].Skipped || !out[1].Skipped {
		t.Fatalf("second process did not skip: %+v %v", out, err)
	}
}

func TestFailureStopsAndIsRecorded(t *testing.T) {
	a := &fakeStep{name: "a", fp: "1"}
	b := &fakeStep{name: "b", fp: "2", applyErr: errors.New("disk on fire")}
	c := &fakeStep{name: "c", fp: "3"}
	e, store := newEngine(t, a, b, c)
	_, err := e.Run(context.Background(), Options{})
	var se *StepError
	if !errors.As(err, &se) || se.Step != "b" || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("want StepError for b, got %v", err)
	}
	if c.applies != 0 || c.checks != 0 {
		t.Fatal("step after the failure ran")
	}
	st, _ := store.Load()
	if r := st.Steps["b"]; r.Status != state.Failed || r.LastError != "disk on fire" || r.Attempts != 1 {
		t.Fatalf("record %+v", r)
	}
	if st.Steps["a"].Status != state.Succeeded {
		t.Fatal("earlier success not recorded")
	}
}

func TestApplyWithoutEffectFails(t *testing.T) {
	s := &fakeStep{name: "a", fp: "1", noEffect: true}
	e, _ := newEngine(t, s)
	if _, err := e.Run(context.Background(), Options{}); err == nil || !strings.Contains(err.Error(), "still not converged") {
		t.Fatalf("want not-converged error, got %v", err)
	}
}

func TestInterruptIsRecorded(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	s := &fakeStep{name: "slow", fp: "1", applyFunc: func(ctx context.Context) error {
		cancel() // SIGTERM arrives mid-step
		<-ctx.Done()
		return ctx.Err()
	}}
	next := &fakeStep{name: "next", fp: "2"}
	e, store := newEngine(t, s, next)
	_, err := e.Run(ctx, Options{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
	st, _ := store.Load()
	if st.Steps["slow"].Status != state.Interrupted {
		t.Fatalf("status %s, want interrupted", st.Steps["slow"].Status)
	}
	if next.checks != 0 {
		t.Fatal("a step ran after the interrupt")
	}
}

func TestOnlyUntilAlways(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"all", Options{}, "meta,a,b,c"},
		{"until", Options{Until: "a"}, "meta,a"},
		{"only", Options{Only: []string{"b"}, Always: []string{"meta"}}, "meta,b"},
		{"only two", Options{Only: []string{"c", "a"}}, "a,c"},
		{"only and until", Options{Only: []string{"a", "c"}, Until: "b"}, "a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var steps []Step
			var fakes []*fakeStep
			for _, n := range []string{"meta", "a", "b", "c"} {
				f := &fakeStep{name: n, fp: n}
				fakes = append(fakes, f)
				steps = append(steps, f)
			}
			e, _ := newEngine(t, steps...)
			if _, err := e.Run(context.Background(), tt.opts); err != nil {
				t.Fatal(err)
			}
			var ran []string
			for _, f := range fakes {
				if f.applies > 0 {
					ran = append(ran, f.name)
				}
			}
			if got := strings.Join(ran, ","); got != tt.want {
				t.Fatalf("ran %s, want %s", got, tt.want)
			}
		})
	}
}

func TestUnknownStepName(t *testing.T) {
	e, _ := newEngine(t, &fakeStep{name: "a"})
	for _, opts := range []Options{{Only: []string{"nope"}}, {Until: "nope"}} {
		if _, err := e.Run(context.Background(), opts); err == nil || !strings.Contains(err.Error(), `unknown step "nope"`) {
			t.Fatalf("want unknown step error, got %v", err)
		}
	}
}

func TestMemoPersistsAcrossRuns(t *testing.T) {
	s := &memoStep{fakeStep{name: "signal", fp: "i-1"}}
	e, store := newEngine(t, s)
	if _, err := e.Run(context.Background(), Options{}); err != nil {
		t.Fatal(err)
	}
	s2 := &memoStep{fakeStep{name: "signal", fp: "i-1", converged: true}}
	e2 := &Engine{Steps: []Step{Lazy("signal", func(context.Context) (Step, error) { return s2, nil })}, Store: store, Log: zap.NewNop()}
	if _, err := e2.Run(context.Background(), Options{}); err != nil {
		t.Fatal(err)
	}
	if s2.memo["applied"] != "i-1" {
		t.Fatalf("memo not restored through Lazy: %v", s2.memo)
	}
}

func TestLazyBuildError(t *testing.T) {
	e, _ := newEngine(t, Lazy("x", func(context.Context) (Step, error) { return nil, errors.New("no region") }))
	if _, err := e.Run(context.Background(), Options{}); err == nil || !strings.Contains(err.Error(), "no region") {
		t.Fatalf("got %v", err)
	}
}

func TestNotifyAndDurations(t *testing.T) {
	n := &notes{}
	clock := time.Unix(0, 0)
	s := &fakeStep{name: "a", fp: "1", applyFunc: func(context.Context) error { clock = clock.Add(3 * time.Second); return nil }}
	e, store := newEngine(t, s)
	e.Notify = n
	e.Now = func() time.Time { return clock }
	if _, err := e.Run(context.Background(), Options{}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(n.msgs, "|"); got != "step a: running|step a: done|converged" {
		t.Fatalf("notifications %q", got)
	}
	st, _ := store.Load()
	if st.Steps["a"].Duration != 3*time.Second {
		t.Fatalf("duration %v", st.Steps["a"].Duration)
	}
}

func TestErrorsAreRedactedInState(t *testing.T) {
	s := &fakeStep{name: "env", fp: "1", applyErr: errors.New("bad token hunter2 in .env")}
	e, store := newEngine(t, s)
	e.Redact = func(v string) string { return strings.ReplaceAll(v, "hunter2", "[REDACTED]") }
	_, _ = e.Run(context.Background(), Options{})
	st, _ := store.Load()
	if got := st.Steps["env"].LastError; strings.Contains(got, "hunter2") || !strings.Contains(got, "[REDACTED]") {
		t.Fatalf("state holds %q", got)
	}
}
