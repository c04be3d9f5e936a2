package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/monagent/monagent/internal/cfnsignal"
	"github.com/monagent/monagent/internal/ebs"
	"github.com/monagent/monagent/internal/engine"
	"github.com/monagent/monagent/internal/host"
	"github.com/monagent/monagent/internal/osupdate"
)

const (
	modeBootstrap = "bootstrap"
	modeReconcile = "reconcile"
)

var bothModes = []string{modeBootstrap, modeReconcile}

// stepDef is one row of the step table, the only place that lists steps.
type stepDef struct {
	name string
	// modes that run the step.
	modes []string
	// beforeSignal: a failure here during bootstrap sends FAILURE at once.
	beforeSignal bool
	// needs are the steps whose results this one needs.
	needs []string
	// enabled, when set, says whether the configuration wants the step.
	enabled func(*host.Host) bool
	build   func(*host.Host) engine.Step
}

// stepTable lists the steps in the order they run.
//
// SUCCESS goes out right after the volume, before any Docker work, from
// whichever run gets there first on an instance: bootstrap (user-data) or
// the boot unit's reconcile, which on first boot runs before cloud-init's
// final stage. Once an instance has signalled, the state file remembers it
// and no later run signals again.
func stepTable() []stepDef {
	return []stepDef{
		{name: "packages", modes: bothModes, beforeSignal: true, build: packagesStep},
		{name: "volume", modes: bothModes, beforeSignal: true, build: volumeStep},
		{name: "signal", modes: bothModes, needs: []string{"packages", "volume"},
			enabled: func(h *host.Host) bool { return h.Config.Stack.Signals() }, build: signalStep},
	}
}

func packagesStep(h *host.Host) engine.Step {
	return &osupdate.Step{Enabled: h.Config.Packages.Update, Run: h.Run}
}

func volumeStep(h *host.Host) engine.Step { return newVolumeStep(h) }

func newVolumeStep(h *host.Host) *ebs.Step {
	return ebs.New(h.Config.Volume, ebs.Options{
		Root:     h.Root,
		Identity: h.Identity,
		EC2:      h.EC2,
		Params:   h.Params,
		Run:      h.Run,
		Log:      h.Log,
	})
}

func signalStep(h *host.Host) engine.Step {
	return &cfnsignal.Step{Signaler: signaler(h), InstanceID: h.Identity.InstanceID}
}

func signaler(h *host.Host) *cfnsignal.Signaler {
	return &cfnsignal.Signaler{API: h.CFN, Stack: h.Config.Stack.Name, Resource: h.Config.Stack.Resource, Log: h.Log}
}

// stepNames lists the steps mode can run, for --only and --until.
func stepNames(table []stepDef, mode string) []string {
	var names []string
	for _, d := range table {
		if slices.Contains(d.modes, mode) {
			names = append(names, d.name)
		}
	}
	return names
}

// validateSelection checks --only and --until before anything runs.
func validateSelection(table []stepDef, mode string, rf *runFlags) error {
	names := stepNames(table, mode)
	for _, n := range append(append([]string(nil), rf.only...), rf.until) {
		if n != "" && !slices.Contains(names, n) {
			return fmt.Errorf("unknown step %q: %s runs %s", n, mode, strings.Join(names, ", "))
		}
	}
	return nil
}

// nodes builds the steps mode runs on h.
func nodes(table []stepDef, mode string, h *host.Host) []engine.Node {
	var out []engine.Node
	for _, d := range table {
		if !slices.Contains(d.modes, mode) || (d.enabled != nil && !d.enabled(h)) {
			continue
		}
		out = append(out, engine.Node{Name: d.name, Needs: d.needs, Step: d.build(h)})
	}
	return out
}

// beforeSignal reports whether a failure of step comes before the signal.
func beforeSignal(table []stepDef, step string) bool {
	for _, d := range table {
		if d.name == step {
			return d.beforeSignal
		}
	}
	return false
}
