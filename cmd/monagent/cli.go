package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/monagent/monagent/internal/config"
	"github.com/monagent/monagent/internal/lock"
	"github.com/monagent/monagent/internal/logging"
	"github.com/monagent/monagent/internal/retry"
)

// Set by the build with -ldflags -X.
var (
	version = "dev"
	commit  = "unknown"
)

// Exit codes other tools rely on (DESIGN.md). systemd restarts the unit on
// 1 and 3, not on 2 or 4 (RestartPreventExitStatus=2 4).
const (
	exitOK        = 0
	exitFailed    = 1 // a step failed; retrying may fix it
	exitUsage     = 2 // bad usage or configuration
	exitLock      = 3 // lock not obtained in time
	exitPermanent = 4 // retrying cannot fix it: KMS key unusable, wrong AZ, foreign filesystem
)

// exitError carries an exit code up to run.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageError(err error) error { return &exitError{code: exitUsage, err: err} }

// globals are the flags every verb shares, and the process's one
// redaction point.
type globals struct {
	configPath  string
	root        string
	logFormat   string
	logLevel    string
	lockTimeout time.Duration

	secrets *logging.Redactor
}

// runFlags select steps for bootstrap and reconcile.
type runFlags struct {
	only  []string
	until string
}

// run is the whole CLI. Everything it writes, to stdout and stderr alike,
// goes through one Redactor: log lines, the final error, status and smoke
// reports.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	g := &globals{secrets: logging.NewRedactor()}
	out, errOut := logging.NewWriter(stdout, g.secrets), logging.NewWriter(stderr, g.secrets)
	root := newRoot(g, out, errOut)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(errOut, "monagent:", err)
	return exitCode(err)
}

func exitCode(err error) int {
	var ee *exitError
	var ce *config.Error
	switch {
	case errors.As(err, &ee):
		return ee.code
	case retry.IsPermanent(err):
		return exitPermanent
	case errors.As(err, &ce):
		return exitUsage
	case errors.Is(err, lock.ErrTimeout):
		return exitLock
	}
	return exitFailed
}

func newRoot(g *globals, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "monagent",
		Short:         "Bring a singleton monitoring host to its converged state",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.Args = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return unknownVerb(args, cmd)
		}
		return nil
	}
	root.RunE = func(cmd *cobra.Command, _ []string) error {
		_ = cmd.Help()
		return usageError(errors.New("no command given"))
	}
	root.PersistentPreRunE = func(*cobra.Command, []string) error {
		if !filepath.IsAbs(g.root) {
			return usageError(fmt.Errorf("--root %q: want an absolute directory", g.root))
		}
		return nil
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError(err) })
	pf := root.PersistentFlags()
	pf.StringVar(&g.configPath, "config", config.DefaultPath, "configuration file")
	pf.StringVar(&g.root, "root", "/", "prefix for every host path (fstab, /data, /opt/monitoring, /var/lib/monagent, /dev/disk/by-id)")
	pf.StringVar(&g.logFormat, "log-format", "json", "log format: json or console")
	pf.StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	pf.DurationVar(&g.lockTimeout, "lock-timeout", 15*time.Minute, "how long to wait for another run to finish")

	root.AddCommand(
		convergeCmd(g, modeBootstrap, "First boot (user-data): converge; SUCCESS after the volume, FAILURE at once if that fails", stdout),
		convergeCmd(g, modeReconcile, "Converge the host (every boot, timer, or by hand); SUCCESS only on an instance's first run", stdout),
		statusCmd(g, stdout),
		smokeCmd(g, stdout),
		doctorCmd(g, stdout),
		backupCmd(g, stdout),
		restoreCmd(g, stdout),
		iamPolicyCmd(g, stdout, stderr),
		versionCmd(stdout),
	)
	for _, c := range root.Commands() {
		c.Args = wrapArgs(cobra.NoArgs)
	}
	return root
}

func wrapArgs(f cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := f(cmd, args); err != nil {
			return usageError(err)
		}
		return nil
	}
}

func convergeCmd(g *globals, mode string, short string, stdout io.Writer) *cobra.Command {
	rf := &runFlags{}
	c := &cobra.Command{
		Use:   mode,
		Short: short,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return converge(cmd.Context(), g, mode, rf, stdout)
		},
	}
	c.Flags().StringSliceVar(&rf.only, "only", nil, "run only these steps (comma-separated); instance metadata is always read")
	c.Flags().StringVar(&rf.until, "until", "", "stop after this step")
	return c
}

func versionCmd(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print version, commit and Go version",
		RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprintf(stdout, "monagent %s (commit %s, %s %s/%s)\n",
				version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return err
		},
	}
}

// unknownVerb gives exit 2 for "monagent frobnicate".
func unknownVerb(args []string, root *cobra.Command) error {
	var names []string
	for _, c := range root.Commands() {
		names = append(names, c.Name())
	}
	return usageError(fmt.Errorf("unknown command %q: want one of %s", args[0], strings.Join(names, ", ")))
}
