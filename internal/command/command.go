// Package command runs external programs. Every program monagent starts goes
// through a Runner so that its argv is logged, it has a timeout, a
// cancelled run asks it to stop with SIGTERM rather than killing it
// mid-write, and on failure its output travels inside the returned error.
package command

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// maxOutput bounds how much of a command's output is kept in an error.
const maxOutput = 4096

// DefaultTimeout bounds a command that sets no timeout of its own.
const DefaultTimeout = 2 * time.Minute

// stopGrace is how long a program has to exit after SIGTERM before it is
// killed.
const stopGrace = 10 * time.Second

// Cmd is one program to run.
type Cmd struct {
	Name  string
	Args  []string
	Stdin []byte
	// Env is added to the agent's environment (KEY=VALUE).
	Env []string
	// Inherit, when not nil, names the only variables of the agent's
	// environment the program gets besides Env: for a program whose
	// environment would otherwise override what monagent chose.
	Inherit []string
	// Timeout bounds the run; zero means DefaultTimeout.
	Timeout time.Duration
	// Uninterruptible commands (mkfs, mount), once started, run to the end
	// under their own Timeout even when the run is cancelled: stopping
	// them halfway would leave the disk in a state no one chose.
	Uninterruptible bool
	// Answers are exit codes that are an answer, not a failure (blkid's 2,
	// "nothing found"): Run still returns an *Error carrying the code, but
	// logs it as an answer.
	Answers []int
	// Quiet is a probe run again and again while waiting: it is logged at
	// debug, its failures too, since the wait reports the outcome.
	Quiet bool
	// Background runs the command, and all it starts, at a lower CPU and
	// I/O priority (nice 10, best-effort I/O level 7): work off the
	// critical path (a package install beside the volume's mkfs) yields
	// to work on it whenever both want the machine.
	Background bool
}

// New is a Cmd with the default timeout.
func New(name string, args ...string) Cmd { return Cmd{Name: name, Args: args} }

// Argv is the command line, as logged.
func (c Cmd) Argv() []string { return append([]string{c.Name}, c.Args...) }

// Runner starts programs. Exec is the real one; tests may stand in.
type Runner interface {
	Run(ctx context.Context, c Cmd) (Result, error)
}

// Result is what a finished program left behind.
type Result struct {
	Stdout   []byte
	Stderr   []byte
	ExitCode int
}

// Error describes a program that could not start, timed out or exited
// non-zero.
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

// ErrTimeout is wrapped by the error of a command that ran out of time.
var ErrTimeout = errors.New("timed out")

// ExitCode returns the exit status carried by err, or -1 when err is not a
// program that ran to completion.
func ExitCode(err error) int {
	var ce *Error
	if errors.As(err, &ce) {
		return ce.ExitCode
	}
	return -1
}

// Exec runs programs on this host and logs each one at info with its argv.
// Never pass a secret in argv: give it on Stdin.
type Exec struct {
	Log *zap.Logger
	// Redact, when set, masks secrets in a failed command's output before
	// it is cut to size: cut first, a secret could be left half shown.
	Redact func(string) string
	// Hold, when set, returns files an Uninterruptible command inherits
	// (the run lock): one that outlives a killed agent keeps the next run
	// waiting until it ends.
	Hold func() []*os.File
}

// Run starts c, waits for it and returns its output. A non-zero exit is an
// *Error that carries stdout and stderr.
func (r Exec) Run(ctx context.Context, c Cmd) (Result, error) {
	log := r.Log
	if log == nil {
		log = zap.NewNop()
	}
	argv := c.Argv()
	level := func(l zapcore.Level) zapcore.Level {
		if c.Quiet {
			return zapcore.DebugLevel
		}
		return l
	}
	log.Log(level(zapcore.InfoLevel), "exec", zap.Strings("argv", argv))
	parent := ctx
	if c.Uninterruptible {
		parent = context.WithoutCancel(ctx)
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	cctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()

	cmd := exec.CommandContext(cctx, c.Name, c.Args...)
	// A group of its own: a stop reaches what the program started too
	// (dpkg under apt-get, a mount helper), and a terminal's Ctrl-C does
	// not reach an uninterruptible mkfs behind the agent's back.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = stopGrace
	if c.Uninterruptible && r.Hold != nil {
		cmd.ExtraFiles = r.Hold()
	}
	switch {
	case c.Inherit != nil:
		cmd.Env = append(inherited(c.Inherit), c.Env...)
	case len(c.Env) > 0:
		cmd.Env = append(os.Environ(), c.Env...)
	}
	if c.Stdin != nil {
		cmd.Stdin = bytes.NewReader(c.Stdin)
	}
	out, err := newOutput(c.Uninterruptible)
	if err != nil {
		return Result{}, fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
	}
	defer out.close()
	cmd.Stdout, cmd.Stderr = out.stdout, out.stderr

	start := time.Now()
	err = run(cmd, c.Background, log)
	if cctx.Err() != nil && cmd.Process != nil {
		// Stopped or timed out: nothing it started may outlive it.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	stdout, stderr := out.read()
	res := Result{Stdout: stdout, Stderr: stderr, ExitCode: cmd.ProcessState.ExitCode()}
	if err == nil {
		log.Debug("exec done", zap.Strings("argv", argv), zap.Duration("duration", time.Since(start)))
		return res, nil
	}
	switch {
	case ctx.Err() != nil && !c.Uninterruptible:
		err = fmt.Errorf("%w (%w)", ctx.Err(), err)
	case cctx.Err() != nil:
		err = fmt.Errorf("%w after %v (%w)", ErrTimeout, timeout, err)
	}
	cerr := &Error{
		Argv:     argv,
		ExitCode: res.ExitCode,
		Stdout:   clip(r.redact(string(stdout))),
		Stderr:   clip(r.redact(string(stderr))),
		Err:      err,
	}
	if slices.Contains(c.Answers, res.ExitCode) {
		log.Log(level(zapcore.InfoLevel), "exec answered", zap.Strings("argv", argv), zap.Int("exit_code", res.ExitCode), zap.Duration("duration", time.Since(start)))
		return res, cerr
	}
	log.Log(level(zapcore.WarnLevel), "exec failed", zap.Strings("argv", argv), zap.Int("exit_code", res.ExitCode),
		zap.Duration("duration", time.Since(start)), zap.String("stderr", cerr.Stderr), zap.String("stdout", cerr.Stdout))
	return res, cerr
}

// run is cmd.Run, lowering the priority of the command's process group
// right after it starts when background is set: what it starts later
// (dpkg under apt-get) inherits it.
func run(cmd *exec.Cmd, background bool, log *zap.Logger) error {
	if !background {
		return cmd.Run()
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	pid := cmd.Process.Pid
	if err := syscall.Setpriority(syscall.PRIO_PGRP, pid, backgroundNice); err != nil {
		log.Debug("could not lower the command's CPU priority", zap.Error(err))
	}
	if _, _, errno := syscall.Syscall(syscall.SYS_IOPRIO_SET, ioprioWhoPgrp, uintptr(pid), ioprioBestEffortLowest); errno != 0 {
		log.Debug("could not lower the command's I/O priority", zap.Error(errno))
	}
	return cmd.Wait()
}

// Background priorities: nice 10, and the best-effort I/O class at its
// lowest level (class 2 << 13 | level 7), never the idle class, which a
// busy disk could starve for ever.
const (
	backgroundNice         = 10
	ioprioWhoPgrp          = 2
	ioprioBestEffortLowest = 2<<13 | 7
)

func (r Exec) redact(s string) string {
	if r.Redact == nil {
		return s
	}
	return r.Redact(s)
}

func clip(s string) string {
	if len(s) <= maxOutput {
		return s
	}
	return s[:maxOutput] + "...(truncated)"
}

// inherited is the agent's environment cut down to names; never nil, so
// that an empty result is an empty environment, not the whole of it.
func inherited(names []string) []string {
	out := []string{}
	for _, n := range names {
		if v, ok := os.LookupEnv(n); ok {
			out = append(out, n+"="+v)
		}
	}
	return out
}

// maxReadBack bounds what is read back of an uninterruptible command's
// output.
const maxReadBack = 1 << 20

// output is where a command writes: buffers, or for an uninterruptible
// command unlinked files. A program writing to a pipe whose reader, the
// agent, was killed dies of SIGPIPE at its next write: mkfs.ext4 prints
// its progress as it goes, and would stop halfway. A file takes its
// output whoever is left to read it.
type output struct {
	stdout, stderr io.Writer
	files          []*os.File
}

func newOutput(toFiles bool) (*output, error) {
	if !toFiles {
		return &output{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}}, nil
	}
	o := &output{}
	for range 2 {
		f, err := os.CreateTemp("", "monagent-output-")
		if err != nil {
			o.close()
			return nil, err
		}
		_ = os.Remove(f.Name()) // unlinked: gone with the last descriptor
		o.files = append(o.files, f)
	}
	o.stdout, o.stderr = o.files[0], o.files[1]
	return o, nil
}

func (o *output) read() (stdout, stderr []byte) {
	if o.files == nil {
		return o.stdout.(*bytes.Buffer).Bytes(), o.stderr.(*bytes.Buffer).Bytes()
	}
	return readBack(o.files[0]), readBack(o.files[1])
}

func readBack(f *os.File) []byte {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil
	}
	b, _ := io.ReadAll(io.LimitReader(f, maxReadBack))
	return b
}

func (o *output) close() {
	for _, f := range o.files {
		f.Close()
	}
}
