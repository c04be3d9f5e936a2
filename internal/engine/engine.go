// Package engine runs monagent's steps in order, skipping those already
// converged, and records what each did.
package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/monagent/monagent/internal/state"
	"go.uber.org/zap"
)

// Memoizer is a step that keeps a little data of its own across runs (the
// signal step remembers which instance it signalled for). The engine
// restores the memo before Check and saves it after a successful Apply.
type Memoizer interface {
	Restore(memo map[string]string)
	Memo() map[string]string
}

// Notifier reports progress to the service manager (sd_notify STATUS=).
type Notifier interface {
	Status(msg string)
}

// Engine runs steps.
type Engine struct {
	Steps  []Step
	Store  *state.Store
	Log    *zap.Logger
	Notify Notifier         // optional
	Now    func() time.Time // optional, for tests
	// Redact masks secrets in errors before they reach the state file.
	Redact func(string) string
}

// Options select which steps run.
type Options struct {
	Only  []string // run just these (plus every step in Always)
	Until string   // stop after this step
	// Always lists steps that run even when Only leaves them out: the
	// metadata every other step depends on.
	Always []string
}

// StepError is a failed step.
type StepError struct {
	Step string
	Err  error
}

func (e *StepError) Error() string { return fmt.Sprintf("step %s: %v", e.Step, e.Err) }
func (e *StepError) Unwrap() error { return e.Err }

// Outcome is what happened to one step in a run.
type Outcome struct {
	Step     string
	Skipped  bool
	Duration time.Duration
	Err      error
}

// Validate checks opts against the step list, for exit code 2 before any
// work starts.
func (e *Engine) Validate(opts Options) error {
	names := map[string]bool{}
	var all []string
	for _, s := range e.Steps {
		names[s.Name()] = true
		all = append(all, s.Name())
	}
	for _, n := range append(append([]string(nil), opts.Only...), opts.Until) {
		if n != "" && !names[n] {
			return fmt.Errorf("unknown step %q: want one of %s", n, strings.Join(all, ", "))
		}
	}
	return nil
}

// Run converges the host. It stops at the first failing step and returns a
// *StepError; the state file records every step it touched.
func (e *Engine) Run(ctx context.Context, opts Options) ([]Outcome, error) {
	if err := e.Validate(opts); err != nil {
		return nil, err
	}
	st, err := e.Store.Load()
	if err != nil {
		return nil, err
	}
	st.LastRun = e.now()
	var outcomes []Outcome
	for _, s := range e.selected(opts) {
		o := e.runStep(ctx, st, s)
		outcomes = append(outcomes, o)
		if err := e.Store.Save(st); err != nil {
			return outcomes, fmt.Errorf("save state after step %s: %w", s.Name(), err)
		}
		if o.Err != nil {
			return outcomes, &StepError{Step: s.Name(), Err: o.Err}
		}
	}
	e.status("converged")
	return outcomes, nil
}

func (e *Engine) selected(opts Options) []Step {
	only := map[string]bool{}
	for _, n := range opts.Only {
		only[n] = true
	}
	for _, n := range opts.Always {
		if len(only) > 0 {
			only[n] = true
		}
	}
	var out []Step
	for _, s := range e.Steps {
		if len(only) == 0 || only[s.Name()] {
			out = append(out, s)
		}
		if s.Name() == opts.Until {
			break
		}
	}
	return out
}

func (e *Engine) runStep(ctx context.Context, st *state.State, s Step) Outcome {
	name := s.Name()
	rec := st.Steps[name]
	if rec == nil {
		rec = &state.Record{}
		st.Steps[name] = rec
	}
	log := e.Log.With(zap.String("step", name))
	start := e.now()
	log.Info("step start")
	e.status("step " + name + ": running")

	skipped, err := e.converge(ctx, s, rec, log)

	d := e.now().Sub(start)
	rec.Start, rec.Duration, rec.Skipped = start, d, skipped
	switch {
	case err == nil:
		rec.Status, rec.LastError, rec.LastSuccess = state.Succeeded, "", start
		log.Info("step finish", zap.Duration("duration", d), zap.Bool("skipped", skipped))
		e.status("step " + name + ": done")
	case ctx.Err() != nil:
		rec.Status, rec.LastError = state.Interrupted, e.redact(err.Error())
		log.Warn("step interrupted", zap.Duration("duration", d), zap.Error(err))
		e.status("step " + name + ": interrupted")
	default:
		rec.Status, rec.LastError = state.Failed, e.redact(err.Error())
		log.Error("step failed", zap.Duration("duration", d), zap.Error(err))
		e.status("step " + name + ": failed")
	}
	return Outcome{Step: name, Skipped: skipped, Duration: d, Err: err}
}

// converge skips s when its inputs are unchanged since it last succeeded
// and its check passes; otherwise it applies s and confirms with Check.
func (e *Engine) converge(ctx context.Context, s Step, rec *state.Record, log *zap.Logger) (skipped bool, err error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if m, ok := s.(Memoizer); ok {
		m.Restore(rec.Memo)
	}
	fp, err := s.Fingerprint(ctx)
	if err != nil {
		return false, fmt.Errorf("fingerprint: %w", err)
	}
	ok, err := s.Check(ctx)
	if err != nil {
		return false, fmt.Errorf("check: %w", err)
	}
	if ok && rec.Status == state.Succeeded && rec.Fingerprint == fp {
		log.Info("step skipped: inputs unchanged and host converged", zap.String("fingerprint", fp))
		return true, nil
	}
	rec.Attempts++
	rec.Status = state.Running
	if err := s.Apply(ctx); err != nil {
		return false, err
	}
	ok, err = s.Check(ctx)
	if err != nil {
		return false, fmt.Errorf("check after apply: %w", err)
	}
	if !ok {
		return false, errors.New("apply finished but the host is still not converged; see the lines above for what was done")
	}
	rec.Fingerprint = fp
	if m, ok := s.(Memoizer); ok {
		rec.Memo = m.Memo()
	}
	return false, nil
}

func (e *Engine) status(msg string) {
	if e.Notify != nil {
		e.Notify.Status(msg)
	}
}

func (e *Engine) redact(s string) string {
	if e.Redact != nil {
		return e.Redact(s)
	}
	return s
}

func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}
