package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cfntypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/monagent/monagent/internal/awsclient"
	"github.com/monagent/monagent/internal/cfnsignal"
	"github.com/monagent/monagent/internal/command"
	"github.com/monagent/monagent/internal/config"
	"github.com/monagent/monagent/internal/ebs"
	"github.com/monagent/monagent/internal/engine"
	"github.com/monagent/monagent/internal/imds"
	"github.com/monagent/monagent/internal/lock"
	"github.com/monagent/monagent/internal/logging"
	"github.com/monagent/monagent/internal/metrics"
	"github.com/monagent/monagent/internal/osupdate"
	"github.com/monagent/monagent/internal/state"
	"go.uber.org/zap"
)

const (
	modeBootstrap = "bootstrap"
	modeReconcile = "reconcile"
)

// failureSignalTimeout bounds the FAILURE signal: CloudFormation must hear
// of a failed bootstrap in seconds.
const failureSignalTimeout = 20 * time.Second

// app is one invocation: configuration, logger, and what the steps learn.
type app struct {
	g    *globals
	cfg  *config.Config // {prefix} expanded; instance templates once known
	log  *zap.Logger
	red  *logging.Redactor
	run  command.Runner
	aws  aws.Config
	id   imds.Identity
	mode string
	plan []engine.Step // the mode's steps, in order
}

// hostPath puts p under --root.
func (a *app) hostPath(p string) string { return filepath.Join(a.g.root, p) }

func (a *app) statePath() string { return a.hostPath("/var/lib/monagent/state.json") }
func (a *app) lockPath() string  { return a.hostPath("/run/monagent.lock") }

// newApp loads configuration and builds the logger: everything that can
// fail with exit 2 fails here, before any lock or AWS call.
func newApp(ctx context.Context, g *globals, mode string, stdout io.Writer) (*app, error) {
	red := logging.NewRedactor()
	log, err := logging.New(logging.Options{Format: g.logFormat, Level: g.logLevel, Out: stdout}, red)
	if err != nil {
		return nil, usageError(err)
	}
	if !filepath.IsAbs(g.root) {
		return nil, usageError(fmt.Errorf("--root %q: want an absolute directory", g.root))
	}
	cfg, err := config.Load(g.configPath)
	if err != nil {
		return nil, err
	}
	a := &app{g: g, cfg: cfg, log: log, red: red, run: command.Runner{Log: log}, mode: mode}
	a.aws, err = awsclient.Load(ctx, awsclient.Options{
		Region:      cfg.Region,
		CallTimeout: cfg.AWS.CallTimeout.Duration,
		MaxAttempts: cfg.AWS.MaxAttempts,
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// learned runs once the metadata step knows the instance.
func (a *app) learned(_ context.Context, id imds.Identity) error {
	if a.aws.Region == "" {
		a.aws.Region = id.Region
	}
	cfg, err := a.cfg.Expand(config.Vars{InstanceID: id.InstanceID, Region: id.Region, AZ: id.AZ, PrivateIP: id.PrivateIP})
	if err != nil {
		return err
	}
	a.cfg = cfg
	a.log.Info("instance identity", zap.String("instance_id", id.InstanceID), zap.String("region", id.Region),
		zap.String("az", id.AZ), zap.String("private_ip", id.PrivateIP))
	return nil
}

func converge(ctx context.Context, g *globals, mode string, rf *runFlags, stdout io.Writer) error {
	a, err := newApp(ctx, g, mode, stdout)
	if err != nil {
		return err
	}
	defer a.log.Sync() //nolint:errcheck // stdout sync errors are not actionable
	a.plan = a.steps()
	eng := &engine.Engine{
		Steps:  a.plan,
		Store:  &state.Store{Path: a.statePath()},
		Log:    a.log,
		Notify: sdNotifier{log: a.log},
		Redact: a.red.Redact,
	}
	opts := engine.Options{Only: rf.only, Until: rf.until, Always: []string{"metadata"}}
	if err := eng.Validate(opts); err != nil {
		return usageError(err)
	}
	l, err := lock.Acquire(ctx, a.lockPath(), g.lockTimeout)
	if err != nil {
		return err
	}
	defer l.Release() //nolint:errcheck // the kernel drops it at exit anyway

	start := time.Now()
	a.log.Info("run start", zap.String("mode", mode), zap.String("version", version), zap.String("root", g.root))
	_, runErr := eng.Run(ctx, opts)
	a.writeMetrics(eng.Store)
	if runErr != nil {
		if mode == modeBootstrap {
			a.signalFailure(runErr)
		}
		a.log.Error("run failed", zap.Duration("duration", time.Since(start)), zap.Error(runErr))
		return &exitError{code: exitCodeFor(runErr), err: runErr}
	}
	a.log.Info("run converged", zap.String("mode", mode), zap.Duration("duration", time.Since(start)))
	return nil
}

func exitCodeFor(err error) int {
	var se *engine.StepError
	if errors.As(err, &se) {
		return exitFailed
	}
	return exitCode(err)
}

// steps is the verb table: the ordered steps each mode runs.
func (a *app) steps() []engine.Step {
	steps := []engine.Step{
		&imds.Step{Client: imds.NewClient(a.aws), ID: &a.id, Learned: a.learned},
		engine.Lazy("packages", a.packagesStep),
		engine.Lazy("volume", a.volumeStep),
	}
	if a.mode == modeBootstrap && a.cfg.Stack.Signals() {
		steps = append(steps, engine.Lazy("signal", a.signalStep))
	}
	return steps
}

func (a *app) signaler() *cfnsignal.Signaler {
	return &cfnsignal.Signaler{
		API:      cloudformation.NewFromConfig(a.aws),
		Stack:    a.cfg.Stack.Name,
		Resource: a.cfg.Stack.Resource,
		Log:      a.log,
	}
}

func (a *app) volumeStep(context.Context) (engine.Step, error) {
	return ebs.New(a.cfg.Volume, ebs.Options{
		Root:     a.g.root,
		Identity: &a.id,
		EC2:      ec2.NewFromConfig(a.aws),
		SSM:      ssm.NewFromConfig(a.aws),
		Run:      a.run,
		Log:      a.log,
	}), nil
}

func (a *app) packagesStep(context.Context) (engine.Step, error) {
	return &osupdate.Step{Enabled: a.cfg.Packages.Update, Run: a.run}, nil
}

func (a *app) signalStep(context.Context) (engine.Step, error) {
	return &cfnsignal.Step{Signaler: a.signaler(), ID: &a.id}, nil
}

// signalFailure tells CloudFormation at once that bootstrap failed before
// the signal step, instead of letting it wait out the CreationPolicy.
func (a *app) signalFailure(runErr error) {
	var se *engine.StepError
	if !a.cfg.Stack.Signals() || !errors.As(runErr, &se) || !a.beforeSignal(se.Step) {
		return
	}
	if a.id.InstanceID == "" {
		a.log.Error("cannot send the FAILURE signal: the instance id is unknown (metadata failed); "+
			"CloudFormation will wait for its timeout", zap.String("stack", a.cfg.Stack.Name))
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), failureSignalTimeout)
	defer cancel()
	if err := a.signaler().Send(ctx, a.id.InstanceID, cfntypes.ResourceSignalStatusFailure); err != nil {
		a.log.Error("FAILURE signal not sent", zap.Error(err))
	}
}

func (a *app) beforeSignal(step string) bool {
	for _, s := range a.plan {
		switch s.Name() {
		case step:
			return true
		case "signal":
			return false
		}
	}
	return false
}

func (a *app) writeMetrics(store *state.Store) {
	st, err := store.Load()
	if err == nil {
		err = metrics.Write(a.hostPath(a.cfg.Metrics.TextfileDir), st)
	}
	if err != nil {
		a.log.Warn("metrics textfile not written", zap.Error(err))
	}
}

// sdNotifier reports step progress to systemd when NOTIFY_SOCKET is set.
type sdNotifier struct{ log *zap.Logger }

func (n sdNotifier) Status(msg string) {
	if os.Getenv("NOTIFY_SOCKET") == "" {
		return
	}
	if _, err := daemon.SdNotify(false, "STATUS="+msg); err != nil {
		n.log.Debug("sd_notify failed", zap.Error(err))
	}
}
