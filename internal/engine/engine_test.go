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
func (n *notes) Extend(d time.Duration) {
	n.mu.Lock()
	n.msgs = append(n.msgs, "extend "+d.String())
	n.mu.Unlock()
}

func nodes(steps ...*fakeStep) []Node {
	out := make([]Node, len(steps))
	for i, s := range steps {
		out[i] = Node{Name: s.name, Step: s}
	}
	return out
}

// fakeClock is a clock the steps move, read from the engine's goroutine.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// chain makes each step need the one before it.
func chain(e *Engine) *Engine {
	for i := 1; i < len(e.Nodes); i++ {
		e.Nodes[i].Needs = []string{e.Nodes[i-1].Name}
	}
	return e
}

func newEngine(t *testing.T, steps ...*fakeStep) (*Engine, *state.Store) {
	t.Helper()
	store := &state.Store{Path: filepath.Join(t.TempDir(), "state.json")}
	return &Engine{Nodes: nodes(steps...), Store: store, Log: zap.NewNop()}, store
}

// run loads the state as the CLI does and runs the engine once.
func run(t *testing.T, e *Engine, ctx context.Context, opts Options) error {
	t.Helper()
	st, _, err := e.Store.Open()
	if err != nil {
		t.Fatal(err)
	}
	return e.Run(ctx, st, opts)
}

func skipped(t *testing.T, store *state.Store, name string) bool {
	t.Helper()
	st, err := store.Load()
	if err != nil {
		t.Fatal(err)
	}
	return st.Steps[name].Skipped
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
			if err := run(t, e, context.Background(), Options{}); err != nil {
				t.Fatal(err)
			}
			if s.applies != tt.wantApplies || skipped(t, store, "volume") != tt.wantSkipped {
				t.Fatalf("applies=%d skipped=%v, want %d %v", s.applies, skipped(t, store, "volume"), tt.wantApplies, tt.wantSkipped)
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
		if err := run(t, e, context.Background(), Options{}); err != nil {
			t.Fatal(err)
		}
	}
	if a.applies != 1 || b.applies != 1 {
		t.Fatalf("applies a=%d b=%d, want 1 each", a.applies, b.applies)
	}
	// A fresh engine (a new process) reads the same state and skips too.
	e2 := &Engine{Nodes: nodes(a, b), Store: store, Log: zap.NewNop()}
	if err := run(t, e2, context.Background(), Options{}); err != nil {
		t.Fatal(err)
	}
	if !skipped(t, store, "a") || !skipped(t, store, "b") {
		t.Fatal("second process did not skip")
	}
}

func TestFailureStopsAndIsRecorded(t *testing.T) {
	a := &fakeStep{name: "a", fp: "1"}
	b := &fakeStep{name: "b", fp: "2", applyErr: errors.New("disk on fire")}
	c := &fakeStep{name: "c", fp: "3"}
	e, store := newEngine(t, a, b, c)
	chain(e)
	n := &notes{}
	e.Notify = n
	err := run(t, e, context.Background(), Options{})
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
	// systemctl status shows the failing step and its error.
	if last := n.msgs[len(n.msgs)-1]; last != "step b: failed: disk on fire" {
		t.Fatalf("last STATUS %q", last)
	}
}

func TestApplyWithoutEffectFails(t *testing.T) {
	s := &fakeStep{name: "a", fp: "1", noEffect: true}
	e, _ := newEngine(t, s)
	if err := run(t, e, context.Background(), Options{}); err == nil || !strings.Contains(err.Error(), "still not converged") {
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
	chain(e)
	err := run(t, e, ctx, Options{})
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

// An Apply that finishes its work although the run was cancelled meanwhile
// (an uninterruptible mkfs) is still an interrupted step, not a success.
func TestCancelledDuringApplyIsNotSuccess(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	s := &fakeStep{name: "mkfs", fp: "1", applyFunc: func(context.Context) error { cancel(); return nil }}
	e, store := newEngine(t, s)
	if err := run(t, e, ctx, Options{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
	st, _ := store.Load()
	if st.Steps["mkfs"].Status != state.Interrupted {
		t.Fatalf("status %s, want interrupted", st.Steps["mkfs"].Status)
	}
}

func TestOnlyUntil(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"all", Options{}, "a,b,c,d"},
		{"until", Options{Until: "b"}, "a,b"},
		{"only", Options{Only: []string{"c"}}, "c"},
		{"only two", Options{Only: []string{"d", "b"}}, "b,d"},
		{"only and until", Options{Only: []string{"b", "d"}, Until: "c"}, "b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var fakes []*fakeStep
			for _, n := range []string{"a", "b", "c", "d"} {
				fakes = append(fakes, &fakeStep{name: n, fp: n})
			}
			e, _ := newEngine(t, fakes...)
			if err := run(t, e, context.Background(), tt.opts); err != nil {
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
		if err := run(t, e, context.Background(), opts); err == nil || !strings.Contains(err.Error(), `unknown step "nope"`) {
			t.Fatalf("want unknown step error, got %v", err)
		}
	}
}

func TestMemoPersistsAcrossRuns(t *testing.T) {
	s := &memoStep{fakeStep{name: "signal", fp: "i-1"}}
	store := &state.Store{Path: filepath.Join(t.TempDir(), "state.json")}
	e := &Engine{Nodes: []Node{{Name: "signal", Step: s}}, Store: store, Log: zap.NewNop()}
	if err := run(t, e, context.Background(), Options{}); err != nil {
		t.Fatal(err)
	}
	s2 := &memoStep{fakeStep{name: "signal", fp: "i-1", converged: true}}
	e2 := &Engine{Nodes: []Node{{Name: "signal", Step: s2}}, Store: store, Log: zap.NewNop()}
	if err := run(t, e2, context.Background(), Options{}); err != nil {
		t.Fatal(err)
	}
	if s2.memo["applied"] != "i-1" {
		t.Fatalf("memo not restored: %v", s2.memo)
	}
}

func TestNotifyAndDurations(t *testing.T) {
	n := &notes{}
	clock := &fakeClock{t: time.Unix(0, 0)}
	s := &fakeStep{name: "a", fp: "1", applyFunc: func(context.Context) error { clock.add(3 * time.Second); return nil }}
	e, store := newEngine(t, s)
	e.Notify = n
	e.Now = clock.now
	if err := run(t, e, context.Background(), Options{}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(n.msgs, "|"); got != "running: a|1 of 1 steps converged" {
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
	_ = run(t, e, context.Background(), Options{})
	st, _ := store.Load()
	if got := st.Steps["env"].LastError; strings.Contains(got, "hunter2") || !strings.Contains(got, "[REDACTED]") {
		t.Fatalf("state holds %q", got)
	}
}

// A step whose Apply did its work while the run was being stopped keeps
// its memo (a signal that was sent stays sent), and stays unconfirmed.
func TestMemoKeptWhenStoppedAfterApply(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	s := &memoStep{fakeStep{name: "signal", fp: "i-1", applyFunc: func(context.Context) error { cancel(); return nil }}}
	store := &state.Store{Path: filepath.Join(t.TempDir(), "state.json")}
	e := &Engine{Nodes: []Node{{Name: "signal", Step: s}}, Store: store, Log: zap.NewNop(),
		Redact: func(v string) string { return strings.ReplaceAll(v, "i-1", "[REDACTED]") }}
	if err := run(t, e, ctx, Options{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
	st, _ := store.Load()
	r := st.Steps["signal"]
	if r.Status != state.Interrupted || r.Memo["applied"] != "[REDACTED]" {
		t.Fatalf("record %+v: want interrupted with the memo kept, secrets masked", r)
	}
}

// Steps that need nothing of each other run at the same time: each waits
// in Apply until the other has started too.
func TestIndependentStepsRunTogether(t *testing.T) {
	var wg sync.WaitGroup
	wg.Add(2)
	together := func(context.Context) error {
		wg.Done()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
			return nil
		case <-time.After(5 * time.Second):
			return errors.New("the other step never started")
		}
	}
	a := &fakeStep{name: "docker", fp: "1", applyFunc: together}
	b := &fakeStep{name: "volume", fp: "2", applyFunc: together}
	e, _ := newEngine(t, a, b)
	if err := run(t, e, context.Background(), Options{}); err != nil {
		t.Fatal(err)
	}
}

// A step starts only once every step it needs has converged, and as soon
// as they have.
func TestNeedsOrderSteps(t *testing.T) {
	var mu sync.Mutex
	var events []string
	note := func(s string) func(context.Context) error {
		return func(context.Context) error {
			mu.Lock()
			events = append(events, s)
			mu.Unlock()
			return nil
		}
	}
	slow := func(context.Context) error { time.Sleep(50 * time.Millisecond); return note("volume")(nil) }
	vol := &fakeStep{name: "volume", fp: "1", applyFunc: slow}
	bundle := &fakeStep{name: "bundle", fp: "2", applyFunc: note("bundle")}
	signal := &fakeStep{name: "signal", fp: "3", applyFunc: note("signal")}
	compose := &fakeStep{name: "compose", fp: "4", applyFunc: note("compose")}
	e, _ := newEngine(t, vol, bundle, signal, compose)
	e.Nodes[2].Needs = []string{"volume"}
	e.Nodes[3].Needs = []string{"volume", "bundle"}
	if err := run(t, e, context.Background(), Options{}); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(events, ",")
	if !strings.HasPrefix(got, "bundle,volume,") || len(events) != 4 {
		t.Fatalf("order %s: want bundle first (it needs nothing and is quick), then volume, then its dependants", got)
	}
}

// A failure starts nothing more, lets the steps already running finish,
// and is reported through OnFailure at once, before they do.
func TestFailureLetsRunningStepsFinish(t *testing.T) {
	release := make(chan struct{})
	var reported time.Time
	var finished time.Time
	docker := &fakeStep{name: "docker", fp: "1", applyFunc: func(context.Context) error {
		<-release
		finished = time.Now()
		return nil
	}}
	volume := &fakeStep{name: "volume", fp: "2", applyErr: errors.New("KMS key revoked")}
	signal := &fakeStep{name: "signal", fp: "3"}
	ready := &fakeStep{name: "docker-ready", fp: "4"}
	e, store := newEngine(t, docker, volume, signal, ready)
	e.Nodes[2].Needs = []string{"volume"}
	e.Nodes[3].Needs = []string{"docker"}
	e.OnFailure = func(se *StepError) {
		reported = time.Now()
		if se.Step != "volume" {
			t.Errorf("OnFailure for %s", se.Step)
		}
		close(release)
	}
	err := run(t, e, context.Background(), Options{})
	var se *StepError
	if !errors.As(err, &se) || se.Step != "volume" {
		t.Fatalf("err %v, want the volume's failure", err)
	}
	if reported.IsZero() || !reported.Before(finished) {
		t.Fatalf("failure reported at %v, docker finished at %v: want the report first", reported, finished)
	}
	if signal.checks != 0 || ready.checks != 0 {
		t.Fatal("a step started after the failure")
	}
	st, _ := store.Load()
	if st.Steps["docker"].Status != state.Succeeded || st.Steps["volume"].Status != state.Failed {
		t.Fatalf("records: docker %+v volume %+v", st.Steps["docker"], st.Steps["volume"])
	}
}

func TestNeedsListedLater(t *testing.T) {
	e, _ := newEngine(t, &fakeStep{name: "a"}, &fakeStep{name: "b"})
	e.Nodes[0].Needs = []string{"b"}
	if err := e.Validate(Options{}); err == nil || !strings.Contains(err.Error(), "step a needs b, which is not listed before it") {
		t.Fatalf("Validate: %v", err)
	}
}

// The start timeout is extended to the end of the longest budget of the
// steps running.
func TestExtendCoversLongestRunning(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	a, b := &fakeStep{name: "a", fp: "1"}, &fakeStep{name: "b", fp: "2"}
	e, _ := newEngine(t, a, b)
	e.Nodes[0].Budget, e.Nodes[1].Budget = time.Minute, 40*time.Minute
	e.Now = clock.now
	n := &notes{}
	e.Notify = n
	if err := run(t, e, context.Background(), Options{}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(n.msgs, "|"); !strings.Contains(got, "running: a, b|extend 40m0s") {
		t.Fatalf("notifications %q", got)
	}
}

// After an unrelated failure the steps marked KeepGoing still start once
// their needs converge (the signal and what it needs), the others do not,
// and every failure is reported.
func TestKeepGoingAfterAnUnrelatedFailure(t *testing.T) {
	slowVolume := &fakeStep{name: "volume", fp: "1", applyFunc: func(context.Context) error { time.Sleep(50 * time.Millisecond); return nil }}
	bundle := &fakeStep{name: "bundle", fp: "2", applyErr: errors.New("NoSuchBucket")}
	signal := &fakeStep{name: "signal", fp: "3"}
	env := &fakeStep{name: "env", fp: "4"}
	e, _ := newEngine(t, slowVolume, bundle, signal, env)
	e.Nodes[0].KeepGoing = true
	e.Nodes[2].Needs, e.Nodes[2].KeepGoing = []string{"volume"}, true
	e.Nodes[3].Needs = []string{"volume"}
	var reported []string
	e.OnFailure = func(se *StepError) { reported = append(reported, se.Step) }
	err := run(t, e, context.Background(), Options{})
	var se *StepError
	if !errors.As(err, &se) || se.Step != "bundle" {
		t.Fatalf("err %v, want the bundle's failure", err)
	}
	if signal.applies != 1 {
		t.Error("the signal did not start after the bundle failed: its outcome would depend on timing")
	}
	if env.checks != 0 {
		t.Error("a step that does not keep going started after the failure")
	}
	if strings.Join(reported, ",") != "bundle" {
		t.Errorf("reported %v", reported)
	}
}
