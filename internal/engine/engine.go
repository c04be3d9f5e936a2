// Package engine runs monagent's steps, skipping those already converged,
// and records what each did.
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

// Notifier reports progress to the service manager: a status line
// (sd_notify STATUS=), and how much longer the run may take now that a
// step with that bound starts (EXTEND_TIMEOUT_USEC=).
type Notifier interface {
	Status(msg string)
	Extend(d time.Duration)
}

// Engine runs steps.
type Engine struct {
	Nodes  []Node
	Store  *state.Store
	Log    *zap.Logger
	Notify Notifier         // optional
	Now    func() time.Time // optional, for tests
	// Redact masks secrets in what reaches the state file.
	Redact func(string) string
	// OnFailure, when set, is called as soon as each step fails, while the
	// steps already running go on: a failure before the signal is told to
	// CloudFormation at once, not after a Docker install beside it ends.
	OnFailure func(*StepError)
}

// Options select which steps run.
type Options struct {
	Only  []string // run just these
	Until string   // stop after this step
}

// StepError is a failed step.
type StepError struct {
	Step string
	Err  error
}

func (e *StepError) Error() string { return fmt.Sprintf("step %s: %v", e.Step, e.Err) }
func (e *StepError) Unwrap() error { return e.Err }

// Validate checks the steps and opts, for exit code 2 before any work
// starts. A step may only need steps listed before it: the table's order is
// then one the steps can run in, and no set of needs can wait on itself.
func (e *Engine) Validate(opts Options) error {
	names := make(map[string]bool, len(e.Nodes))
	all := make([]string, 0, len(e.Nodes))
	for _, n := range e.Nodes {
		names[n.Name] = true
		all = append(all, n.Name)
	}
	seen := map[string]bool{}
	for _, n := range e.Nodes {
		for _, need := range n.Needs {
			if names[need] && !seen[need] {
				return fmt.Errorf("step %s needs %s, which is not listed before it", n.Name, need)
			}
		}
		seen[n.Name] = true
	}
	for _, n := range append(append([]string(nil), opts.Only...), opts.Until) {
		if n != "" && !names[n] {
			return fmt.Errorf("unknown step %q: want one of %s", n, strings.Join(all, ", "))
		}
	}
	return nil
}

// Run converges the host from st, the state loaded under the run lock.
// Each selected step starts as soon as the selected steps it needs have
// converged, so independent steps run side by side. After a failure only
// KeepGoing steps start; those already running finish, so that no step is
// cut off halfway by another's failure. Run returns the first failure as a
// *StepError; st and the state file record every step that ran.
func (e *Engine) Run(ctx context.Context, st *state.State, opts Options) error {
	if err := e.Validate(opts); err != nil {
		return err
	}
	return e.newPass(st, e.selected(opts)).run(ctx)
}

func (e *Engine) selected(opts Options) []Node {
	only := make(map[string]bool, len(opts.Only))
	for _, n := range opts.Only {
		only[n] = true
	}
	var out []Node
	for _, n := range e.Nodes {
		if len(only) == 0 || only[n.Name] {
			out = append(out, n)
		}
		if n.Name == opts.Until {
			break
		}
	}
	return out
}

// runStep converges one step on rec, its record, which the pass puts back
// into the state when the step ends: only the pass touches the state.
func (e *Engine) runStep(ctx context.Context, n Node, rec *state.Record, start time.Time) error {
	log := e.Log.With(zap.String("step", n.Name))
	log.Info("step start")

	skipped, err := e.converge(ctx, n.Step, rec, log)

	d := e.now().Sub(start)
	rec.Start, rec.Duration, rec.Skipped, rec.Warning = start, d, skipped, ""
	if w, ok := n.Step.(Warner); ok && err == nil {
		rec.Warning = e.redact(w.Warning())
	}
	switch {
	case err == nil:
		rec.Status, rec.LastError, rec.LastSuccess = state.Succeeded, "", start
		log.Info("step finish", zap.Duration("duration", d), zap.Bool("skipped", skipped))
	case ctx.Err() != nil:
		rec.Status, rec.LastError = state.Interrupted, e.redact(err.Error())
		log.Warn("step interrupted", zap.Duration("duration", d), zap.Error(err))
	default:
		rec.Status, rec.LastError = state.Failed, e.redact(err.Error())
		log.Error("step failed", zap.Duration("duration", d), zap.Error(err))
	}
	return err
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
	if err := s.Apply(ctx); err != nil {
		return false, err
	}
	if err := ctx.Err(); err != nil {
		// Apply finished its work although the run was stopped meanwhile:
		// what it did (a signal sent) is kept, the step still unconfirmed.
		e.keepMemo(s, rec)
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
	e.keepMemo(s, rec)
	return false, nil
}

// keepMemo records the step's memo, with any secret in it masked: a
// SecureString volume id must not reach the state file.
func (e *Engine) keepMemo(s Step, rec *state.Record) {
	m, ok := s.(Memoizer)
	if !ok {
		return
	}
	rec.Memo = m.Memo()
	for k, v := range rec.Memo {
		rec.Memo[k] = e.redact(v)
	}
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

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
