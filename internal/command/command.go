// Package command runs external programs. Every program monagent starts goes
// through Runner so that its argv is logged and, on failure, its output
// travels inside the returned error.
package command

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"go.uber.org/zap"
)

// maxOutput bounds how much of a command's output is kept in an error.
const maxOutput = 4096

// Runner starts programs and logs them.
type Runner struct {
	Log *zap.Logger
}

// Result is what a finished program left behind.
type Result struct {
	Stdout   []byte
	Stderr   []byte
	ExitCode int
}

// Error describes a program that could not start or exited non-zero.
type Error struct {
	Argv     []string
	ExitCode int // -1 when the program did not start or was killed
	Stdout   string
	Stderr   string
	Err      error
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %v", strings.Join(e.Argv, " "), e.Err)
	if s := strings.TrimSpace(e.Stderr); s != "" {
		fmt.Fprintf(&b, "; stderr: %s", s)
	}
	if s := strings.TrimSpace(e.Stdout); s != "" {
		fmt.Fprintf(&b, "; stdout: %s", s)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// ExitCode returns the exit status carried by err, or -1 when err is not a
// program that ran to completion.
func ExitCode(err error) int {
	var ce *Error
	if errors.As(err, &ce) {
		return ce.ExitCode
	}
	return -1
}

// Run starts name with args, waits for it and returns its output. A non-zero
// exit is an *Error that carries stdout and stderr. Arguments are logged, so
// never pass a secret in argv: give it on stdin with RunInput.
func (r Runner) Run(ctx context.Context, name string, args ...string) (Result, error) {
	return r.RunInput(ctx, nil, name, args...)
}

// RunInput is Run with stdin.
func (r Runner) RunInput(ctx context.Context, stdin []byte, name string, args ...string) (Result, error) {
	argv := append([]string{name}, args...)
	log := r.logger()
	log.Debug("exec", zap.Strings("argv", argv))

	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = 5 * time.Second
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr

	start := time.Now()
	err := cmd.Run()
	res := Result{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), ExitCode: cmd.ProcessState.ExitCode()}
	if err == nil {
		log.Debug("exec done", zap.Strings("argv", argv), zap.Duration("duration", time.Since(start)))
		return res, nil
	}
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (%w)", ctx.Err(), err)
	}
	cerr := &Error{
		Argv:     argv,
		ExitCode: res.ExitCode,
		Stdout:   clip(stdout.String()),
		Stderr:   clip(stderr.String()),
		Err:      err,
	}
	log.Info("exec failed", zap.Strings("argv", argv), zap.Int("exit_code", res.ExitCode),
		zap.String("stderr", cerr.Stderr), zap.String("stdout", cerr.Stdout))
	return res, cerr
}

func (r Runner) logger() *zap.Logger {
	if r.Log == nil {
		return zap.NewNop()
	}
	return r.Log
}

func clip(s string) string {
	if len(s) <= maxOutput {
		return s
	}
	return s[:maxOutput] + "...(truncated)"
}
