package engine

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/monagent/monagent/internal/state"
)

// pass is one run of the engine over the selected steps. Only its own
// goroutine touches the state; each step works on a copy of its record.
type pass struct {
	e     *Engine
	st    *state.State
	nodes []Node
	in    map[string]bool // selected

	started map[string]bool
	done    map[string]bool      // converged in this pass
	running map[string]time.Time // name -> the end of its budget
	results chan outcome

	failed  *StepError
	saveErr error
}

// outcome is a step that ended, with its record.
type outcome struct {
	node Node
	rec  *state.Record
	err  error
}

func (e *Engine) newPass(st *state.State, nodes []Node) *pass {
	p := &pass{e: e, st: st, nodes: nodes, in: map[string]bool{}, started: map[string]bool{}, done: map[string]bool{},
		running: map[string]time.Time{}, results: make(chan outcome, len(nodes))}
	for _, n := range nodes {
		p.in[n.Name] = true
	}
	return p
}

func (p *pass) run(ctx context.Context) error {
	for {
		if p.saveErr == nil {
			p.startReady(ctx)
		}
		if len(p.running) == 0 {
			break
		}
		p.finish(<-p.results)
	}
	switch {
	case p.saveErr != nil:
		return p.saveErr
	case p.failed != nil:
		return p.failed
	}
	return nil
}

// ready reports whether every step n needs has converged in this pass; a
// step that is not selected (--only, or off in this configuration) counts
// as done.
func (p *pass) ready(n Node) bool {
	for _, need := range n.Needs {
		if p.in[need] && !p.done[need] {
			return false
		}
	}
	return true
}

// startReady starts every step whose needs have converged, in table order.
func (p *pass) startReady(ctx context.Context) {
	var now []string
	for _, n := range p.nodes {
		if p.started[n.Name] || !p.ready(n) || (p.failed != nil && !n.KeepGoing) {
			continue
		}
		p.started[n.Name] = true
		rec := copyRecord(p.st.Steps[n.Name])
		start := p.e.now()
		p.running[n.Name] = start.Add(n.Budget)
		now = append(now, n.Name)
		go func() { p.results <- outcome{node: n, rec: rec, err: p.e.runStep(ctx, n, rec, start)} }()
	}
	if len(now) > 0 {
		p.status()
		p.extend()
	}
}

// finish puts an ended step's record into the state and saves it.
func (p *pass) finish(o outcome) {
	name := o.node.Name
	delete(p.running, name)
	p.st.Steps[name] = o.rec
	if err := p.e.Store.Save(p.st); err != nil && p.saveErr == nil {
		p.saveErr = fmt.Errorf("save state after step %s: %w", name, err)
	}
	if o.err == nil {
		p.done[name] = true
		p.status()
		return
	}
	p.e.status("step " + name + ": " + string(o.rec.Status) + ": " + firstLine(o.rec.LastError))
	se := &StepError{Step: name, Err: o.err}
	if p.failed == nil {
		p.failed = se
	}
	if p.e.OnFailure != nil {
		p.e.OnFailure(se)
	}
}

// status shows the steps running, or the last that converged.
func (p *pass) status() {
	if p.failed != nil {
		return // the first failure stays shown
	}
	if len(p.running) > 0 {
		p.e.status("running: " + strings.Join(slices.Sorted(maps.Keys(p.running)), ", "))
		return
	}
	p.e.status(fmt.Sprintf("%d of %d steps converged", len(p.done), len(p.nodes)))
}

// extend moves the service manager's start timeout to the furthest end of
// the budgets of the steps running.
func (p *pass) extend() {
	if p.e.Notify == nil {
		return
	}
	var last time.Time
	for _, end := range p.running {
		if end.After(last) {
			last = end
		}
	}
	if d := last.Sub(p.e.now()); d > 0 {
		p.e.Notify.Extend(d)
	}
}

// copyRecord is a record a step may change without touching the state.
func copyRecord(r *state.Record) *state.Record {
	if r == nil {
		return &state.Record{}
	}
	c := *r
	c.Memo = maps.Clone(r.Memo)
	return &c
}
