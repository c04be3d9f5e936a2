package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	cfntypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/coreos/go-systemd/v22/daemon"
	"go.uber.org/zap"

	"github.com/monagent/monagent/internal/awsclient"
	"github.com/monagent/monagent/internal/cfnsignal"
	"github.com/monagent/monagent/internal/command"
	"github.com/monagent/monagent/internal/config"
	"github.com/monagent/monagent/internal/dr"
	"github.com/monagent/monagent/internal/engine"
	"github.com/monagent/monagent/internal/host"
	"github.com/monagent/monagent/internal/lock"
	"github.com/monagent/monagent/internal/logging"
	"github.com/monagent/monagent/internal/metrics"
	"github.com/monagent/monagent/internal/seal"
	"github.com/monagent/monagent/internal/state"
)

// failureSignalTimeout bounds the FAILURE signal: CloudFormation must hear
// of a failed bootstrap in seconds.
const failureSignalTimeout = 20 * time.Second

// app is what every verb loads first: configuration, logger, AWS settings.
// Everything that fails with exit 2 fails here, before any lock or AWS call.
type app struct {
	g   *globals
	cfg *config.Config // as loaded: instance placeholders not yet filled
	log *zap.Logger
	aws aws.Config
	// failureSent: this run sent FAILURE, the moment a step before the
	// signal failed; no later failure sends another.
	failureSent bool
	// held is the run lock once taken: mkfs and mount inherit it, so a run
	// killed while one of them goes on does not let the next run start.
	held *lock.Lock
}

func newApp(ctx context.Context, g *globals, stdout io.Writer) (*app, error) {
	log, err := logging.New(logging.Options{Format: g.logFormat, Level: g.logLevel, Out: stdout}, g.secrets)
	if err != nil {
		return nil, usageError(err)
	}
	cfg, err := config.Load(g.configPath)
	if err != nil {
		return nil, err
	}
	awsCfg, err := awsclient.Load(ctx, awsclient.Options{
		Region:      cfg.Region,
		CallTimeout: cfg.AWS.CallTimeout.Duration,
		MaxAttempts: cfg.AWS.MaxAttempts,
		Log:         log,
	})
	if err != nil {
		return nil, err
	}
	return &app{g: g, cfg: cfg, log: log, aws: awsCfg}, nil
}

// path puts an absolute host path under --root.
func (a *app) path(p string) string { return filepath.Join(a.g.root, p) }

func (a *app) store() *state.Store { return &state.Store{Path: statePath(a.g.root)} }

// statePath is the state file under --root.
func statePath(root string) string { return filepath.Join(root, "/var/lib/monagent/state.json") }

// journalPath is where a restore records its swaps until the last is done.
func journalPath(root string) string {
	return filepath.Join(root, "/var/lib/monagent/restore-journal.json")
}

// restoreCutShort is a permanent error while a restore's journal is left:
// the host holds some parts from an archive and the others from before.
func restoreCutShort(root string) error {
	j, err := dr.Interrupted(journalPath(root))
	if err != nil {
		return err
	}
	if j != nil {
		return &exitError{code: exitPermanent, err: j}
	}
	return nil
}

func (a *app) lockPath() string { return a.path("/run/monagent.lock") }

// discover is the metadata phase: the Host every step is built from.
func (a *app) discover(ctx context.Context) (*host.Host, error) {
	return host.Discover(ctx, host.Options{
		Root:    a.g.root,
		Config:  a.cfg,
		AWS:     a.aws,
		Run:     command.Exec{Log: a.log, Redact: a.g.secrets.Redact, Hold: a.hold},
		Log:     a.log,
		Secrets: a.g.secrets,
	})
}

// converge is bootstrap and reconcile: metadata, the lock, the state, the
// steps; then the metrics textfile and, when bootstrap fails before the
// signal, the FAILURE signal.
func converge(ctx context.Context, g *globals, mode string, rf *runFlags, stdout io.Writer) error {
	a, err := newApp(ctx, g, stdout)
	if err != nil {
		return err
	}
	defer a.log.Sync() //nolint:errcheck // stdout sync errors are not actionable
	table := stepTable()
	if err := validateSelection(table, mode, rf); err != nil {
		return usageError(err)
	}
	notify := sdNotifier{log: a.log}
	if a.cfg.Example {
		return a.unconfigured(mode, notify)
	}
	start := time.Now()
	a.log.Info("run start", zap.String("mode", mode), zap.String("version", version), zap.String("root", g.root))
	notify.Status("reading instance metadata")
	h, err := a.discover(ctx)
	var st *state.State
	if err == nil {
		st, err = a.runSteps(ctx, h, mode, table, engine.Options{Only: rf.only, Until: rf.until}, start, notify)
	}
	// The last STATUS= stays on `systemctl status monagent` until the next
	// run: the outcome, and for a failure the step and its error.
	d := time.Since(start).Round(time.Millisecond)
	if err != nil {
		if mode == modeBootstrap {
			a.signalFailure(h, table, st, err)
		}
		notify.Status(fmt.Sprintf("%s failed after %v: %s", mode, d, firstLine(g.secrets.Redact(err.Error()))))
		a.log.Error("run failed", append([]zap.Field{zap.String("mode", mode), zap.Duration("duration", d), zap.Error(err)}, usage()...)...)
		return err
	}
	notify.Status(fmt.Sprintf("%s converged in %v", mode, d))
	a.log.Info("run converged", append([]zap.Field{zap.String("mode", mode), zap.Duration("duration", d)}, usage()...)...)
	return nil
}

// usage is this process's own cost so far, for the run's last line: its
// peak resident set and CPU time (the commands it ran aside). The peak is
// the kernel's VmHWM: getrusage's ru_maxrss keeps the high-water mark of
// the image before exec, so it reports the parent's size when that is
// larger.
func usage() []zap.Field {
	var fields []zap.Field
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) == 3 && f[0] == "VmHWM:" { // "VmHWM:  30924 kB"
				if kib, err := strconv.Atoi(f[1]); err == nil {
					fields = append(fields, zap.Float64("peak_rss_mib", float64(kib)/1024))
				}
			}
		}
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		fields = append(fields, zap.Duration("cpu", time.Duration(ru.Utime.Nano()+ru.Stime.Nano())))
	}
	return fields
}

// unconfigured is a run on the package's example configuration: the boot
// unit's run on a first boot whose user-data writes the configuration
// later does nothing, successfully; a bootstrap, which user-data runs to
// converge this host, is refused.
func (a *app) unconfigured(mode string, notify sdNotifier) error {
	msg := fmt.Sprintf("%s is the package's example configuration (example: true): write this host's configuration there, "+
		"without that line (user-data does, or the AMI bake)", a.g.configPath)
	if mode == modeBootstrap {
		return usageError(errors.New(msg))
	}
	a.log.Warn("not configured: nothing done", zap.String("config", a.g.configPath), zap.String("fix", msg))
	notify.Status("not configured: " + msg)
	return nil
}

// runSteps takes the lock and runs the mode's steps on h. It returns the
// run's state once loaded, so that what this run did is known even when
// the state file could not be written.
func (a *app) runSteps(ctx context.Context, h *host.Host, mode string, table []stepDef, opts engine.Options,
	start time.Time, notify sdNotifier) (*state.State, error) {
	key, err := seal.Load(h.Path(seal.Path))
	if err != nil {
		return nil, err
	}
	h.Seal = key
	var st *state.State
	eng := &engine.Engine{
		Nodes:  nodes(table, mode, h),
		Store:  a.store(),
		Log:    a.log,
		Notify: notify,
		Redact: a.g.secrets.Redact,
	}
	if mode == modeBootstrap {
		// At once, while the steps beside the failed one finish: called
		// from the engine's goroutine, the only one that touches st.
		eng.OnFailure = func(se *engine.StepError) { a.signalFailure(h, table, st, se) }
	}
	if err := eng.Validate(opts); err != nil {
		// The name is a step, but this configuration turns it off.
		return nil, usageError(fmt.Errorf("%w; the step is off in this configuration", err))
	}
	notify.Status("waiting for the run lock")
	// The wait is bounded by --lock-timeout, not by the unit's start
	// timeout: a reconcile from the timer that meets a backup's capture or
	// a run by hand must not be killed and restarted while it waits.
	notify.Extend(a.g.lockTimeout + time.Minute)
	l, err := lock.Acquire(ctx, a.lockPath(), a.g.lockTimeout)
	if err != nil {
		return nil, err
	}
	defer l.Release() //nolint:errcheck // the kernel drops it at exit anyway
	a.held = l
	// After a long wait, the state and the SSM read before the first step
	// (which extends the timeout itself) get what a run's start has.
	notify.Extend(startTimeout)
	if err := restoreCutShort(a.g.root); err != nil {
		return nil, err
	}

	store := eng.Store
	st, recovered, err := store.Open()
	if err != nil {
		return nil, err
	}
	if recovered != nil {
		a.log.Warn("the state file could not be read back; it was moved aside and every step is checked against the host",
			zap.String("state", store.Path), zap.String("moved_to", recovered.MovedTo), zap.NamedError("cause", recovered.Cause))
	}
	st.LastRun, st.Mode, st.InstanceID = start, mode, h.Identity.InstanceID
	a.textfileLink(h)
	// One batched SSM read for every parameter the steps will ask for.
	if err := h.Params.Prefetch(ctx, h.Config.Parameters()); err != nil {
		a.log.Warn("SSM parameters not read up front; the steps will say what they miss", zap.Error(err))
	}
	runErr := eng.Run(ctx, st, opts)
	a.writeMetrics(h, st)
	return st, runErr
}

// hold is what an uninterruptible command inherits: the run lock, once
// taken.
func (a *app) hold() []*os.File {
	if a.held == nil {
		return nil
	}
	return []*os.File{a.held.File()}
}

// signalFailure tells CloudFormation at once that bootstrap failed, instead
// of letting it wait out the CreationPolicy: for any failure once the
// instance is known (lock timeout, state file, a step), unless the failure
// comes after the signal or SUCCESS is already settled for this instance.
// A failure of the SUCCESS call itself sends nothing: the stack may well
// have counted it. run is this run's state, when it got that far: what the
// run did counts, whatever reached the file; without it the file decides,
// and a file that cannot be read sends nothing, rather than a FAILURE
// after a SUCCESS.
func (a *app) signalFailure(h *host.Host, table []stepDef, run *state.State, runErr error) {
	if a.failureSent {
		return
	}
	if h == nil {
		a.log.Error("cannot send the FAILURE signal: the instance id is unknown (instance metadata failed); "+
			"CloudFormation will wait for its timeout", zap.String("stack", a.cfg.Stack.Name))
		return
	}
	stack := h.Config.Stack
	if !h.OnAWS() || !stack.Signals() {
		return
	}
	// A step the signal does not need fails: no FAILURE. The signal and
	// its needs keep going after it (engine.Node.KeepGoing), so whether
	// SUCCESS or FAILURE goes out depends on them alone, not on timing.
	var se *engine.StepError
	if errors.As(runErr, &se) && !beforeSignal(table, se.Step) {
		return
	}
	if run == nil {
		st, err := a.store().Load()
		if err != nil {
			a.log.Error("no FAILURE signal: the state file cannot tell whether SUCCESS was sent", zap.Error(err))
			return
		}
		run = st
	}
	if r := run.Steps["signal"]; r != nil && cfnsignal.Settled(r.Memo, h.Identity.InstanceID) {
		a.log.Info("no FAILURE signal: this instance's SUCCESS is already settled")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), failureSignalTimeout)
	defer cancel()
	a.failureSent = true
	if _, err := signaler(h).Send(ctx, h.Identity.InstanceID, cfntypes.ResourceSignalStatusFailure); err != nil {
		a.log.Error("FAILURE signal not sent", zap.Error(err))
	}
}

// writeMetrics leaves the run's result for node-exporter.
func (a *app) writeMetrics(h *host.Host, st *state.State) {
	info := metrics.Info{InstanceID: h.Identity.InstanceID, Version: version}
	if err := metrics.Write(h.Path(h.Config.Metrics.TextfileDir), st, info); err != nil {
		a.log.Warn("metrics textfile not written", zap.Error(err))
	}
}

// textfileLink keeps the link a stack's node-exporter mounts, before any
// step: a bind source missing when its container starts becomes an empty
// directory, and a link made later never replaces it for that container.
func (a *app) textfileLink(h *host.Host) {
	m := h.Config.Metrics
	if m.TextfileLink == "" {
		return
	}
	if err := os.MkdirAll(h.Path(m.TextfileDir), 0o755); err != nil {
		a.log.Warn("metrics textfile directory not made", zap.Error(err))
	}
	if err := metrics.Link(h.Root, m.TextfileLink, m.TextfileDir); err != nil {
		a.log.Warn("metrics textfile link not kept", zap.String("link", m.TextfileLink), zap.Error(err))
	}
}

// startTimeout is monagent.service's TimeoutStartSec.
const startTimeout = 5 * time.Minute

// sdNotifier reports progress to systemd when NOTIFY_SOCKET is set.
type sdNotifier struct{ log *zap.Logger }

func (n sdNotifier) Status(msg string) { n.send("STATUS=" + msg) }

// Extend moves the unit's start timeout to now plus d.
func (n sdNotifier) Extend(d time.Duration) {
	n.send(fmt.Sprintf("EXTEND_TIMEOUT_USEC=%d", d.Microseconds()))
}

func (n sdNotifier) send(state string) {
	if os.Getenv("NOTIFY_SOCKET") == "" {
		return
	}
	if _, err := daemon.SdNotify(false, state); err != nil {
		n.log.Debug("sd_notify failed", zap.Error(err))
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
