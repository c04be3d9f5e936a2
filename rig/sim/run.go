package sim

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Logf receives progress lines.
type Logf func(format string, args ...any)

// nopLogf discards progress.
func nopLogf(string, ...any) {}

// errLines is how many lines of a failed command's output its error
// quotes.
const errLines = 30

// command runs argv on the host in dir ("" for the current one) with env
// added to this process's environment, and returns its standard output.
// Every line the command writes (either stream) also goes to logf, so a
// long build shows its progress; the error names the command and quotes
// the last lines of its output. When ctx ends, the command's whole process
// group is killed.
func command(ctx context.Context, logf Logf, dir string, env []string, argv ...string) (string, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	// A line log each, so a partial line of one stream never runs into a
	// line of the other; one lock for both, so logf is never called twice
	// at once.
	var mu sync.Mutex
	outLines, errLines := &lineLog{logf: logf, prefix: "  ", mu: &mu}, &lineLog{logf: logf, prefix: "  ", mu: &mu}
	var stdout bytes.Buffer
	cmd.Stdout = io.MultiWriter(&stdout, outLines)
	cmd.Stderr = errLines
	start := time.Now()
	err := cmd.Run()
	outLines.flush()
	errLines.flush()
	if err != nil {
		return stdout.String(), fmt.Errorf("%s (after %s): %w\n%s\n%s", strings.Join(argv, " "),
			time.Since(start).Round(100*time.Millisecond), err, errLines.tail(), outLines.tail())
	}
	return stdout.String(), nil
}

// lastLine returns the last non-empty line of s, trimmed.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// lineLog is an io.Writer that passes each complete line to logf and
// keeps the last errLines lines.
type lineLog struct {
	logf   Logf
	prefix string

	mu      *sync.Mutex
	partial []byte
	last    []string
}

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		l.line(string(l.partial[:i]))
		l.partial = l.partial[i+1:]
	}
}

func (l *lineLog) line(s string) {
	s = strings.TrimRight(s, "\r")
	if l.logf != nil {
		l.logf("%s%s", l.prefix, s)
	}
	l.last = append(l.last, s)
	if len(l.last) > errLines {
		l.last = l.last[len(l.last)-errLines:]
	}
}

// flush passes on an unterminated last line.
func (l *lineLog) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.partial) > 0 {
		l.line(string(l.partial))
		l.partial = nil
	}
}

// tail returns the kept lines, indented.
func (l *lineLog) tail() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.last) == 0 {
		return "\t(no output)"
	}
	return "\t" + strings.Join(l.last, "\n\t")
}

// poll calls cond every interval until it reports done, returns an error,
// or ctx ends; the error then says what was awaited and cond's last note.
func poll(ctx context.Context, interval time.Duration, what string, cond func() (done bool, note string, err error)) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	note := ""
	for {
		done, n, err := cond()
		if err != nil {
			return fmt.Errorf("wait for %s: %w", what, err)
		}
		if done {
			return nil
		}
		if n != "" {
			note = n
		}
		select {
		case <-ctx.Done():
			if note != "" {
				return fmt.Errorf("wait for %s: %w (last: %s)", what, ctx.Err(), note)
			}
			return fmt.Errorf("wait for %s: %w", what, ctx.Err())
		case <-tick.C:
		}
	}
}
