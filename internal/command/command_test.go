package command

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestRun(t *testing.T) {
	t.Setenv("COMPOSE_PROFILES", "debug")
	t.Setenv("HOME", "/root")
	tests := []struct {
		name     string
		cmd      Cmd
		wantCode int
		wantOut  string
		wantErr  []string
	}{
		{"success", New("sh", "-c", "echo hello"), 0, "hello\n", nil},
		{"stdin", Cmd{Name: "cat", Stdin: []byte("from stdin")}, 0, "from stdin", nil},
		{"env added", Cmd{Name: "sh", Args: []string{"-c", "echo $DEBIAN_FRONTEND"}, Env: []string{"DEBIAN_FRONTEND=noninteractive"}}, 0, "noninteractive\n", nil},
		{"only inherited variables", Cmd{Name: "/bin/sh", Args: []string{"-c", `echo "${PATH:+path} ${HOME-nohome} ${COMPOSE_PROFILES-none} $X"`},
			Env: []string{"X=set"}, Inherit: []string{"PATH"}}, 0, "path nohome none set\n", nil},
		{"exit status and output in error", New("sh", "-c", "echo partial; echo 'it broke' >&2; exit 3"), 3, "partial\n",
			[]string{"sh -c", "exit status 3", "stderr: it broke", "stdout: partial"}},
		{"missing program", New("/nonexistent/prog"), -1, "", []string{"/nonexistent/prog"}},
		{"timeout", Cmd{Name: "sleep", Args: []string{"30"}, Timeout: 100 * time.Millisecond}, -1, "", []string{"sleep 30", "timed out after 100ms"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			core, logs := observer.New(zap.DebugLevel)
			res, err := Exec{Log: zap.New(core)}.Run(context.Background(), tt.cmd)
			if string(res.Stdout) != tt.wantOut {
				t.Errorf("stdout %q, want %q", res.Stdout, tt.wantOut)
			}
			if got := ExitCode(err); err != nil && got != tt.wantCode {
				t.Errorf("exit code %d, want %d", got, tt.wantCode)
			}
			if (err != nil) != (tt.wantErr != nil) {
				t.Fatalf("err %v", err)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			// Every command is logged with its argv at info, the level a
			// production journal keeps.
			execs := logs.FilterMessage("exec").FilterLevelExact(zapcore.InfoLevel).All()
			if len(execs) != 1 || !strings.Contains(fmt.Sprint(execs[0].ContextMap()["argv"]), tt.cmd.Name) {
				t.Errorf("argv not logged at info: %v", logs.All())
			}
		})
	}
}

// A cancelled run asks the program to stop with SIGTERM, so a package
// manager can finish its write; it does not SIGKILL it.
func TestCancelSendsSIGTERM(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "got-term")
	script := "trap 'echo term >" + marker + "; exit 143' TERM; echo started; while :; do sleep 0.05; done"
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	start := time.Now()
	_, err := Exec{}.Run(ctx, New("sh", "-c", script))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("stopping took %v", d)
	}
	if b, err := os.ReadFile(marker); err != nil || strings.TrimSpace(string(b)) != "term" {
		t.Fatalf("program did not get SIGTERM: %q %v", b, err)
	}
}

// A stop reaches what the command started, too: nothing outlives it, and
// Run returns at once instead of waiting for the grandchild's pipes.
func TestCancelReachesGrandchildren(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "pid")
	start := time.Now()
	_, err := Exec{}.Run(context.Background(), Cmd{Name: "sh", Args: []string{"-c", "sleep 300 & echo $! >" + marker + "; wait"},
		Timeout: 500 * time.Millisecond})
	if err == nil || !errors.Is(err, ErrTimeout) {
		t.Fatalf("want a timeout, got %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Run returned after %v: it waited for the grandchild", d)
	}
	b, err := os.ReadFile(marker)
	if err != nil {
		t.Fatal(err)
	}
	pid := strings.TrimSpace(string(b))
	waitGone := time.Now().Add(2 * time.Second)
	for {
		if _, err := os.Stat("/proc/" + pid); errors.Is(err, os.ErrNotExist) {
			return
		}
		if st, _ := os.ReadFile("/proc/" + pid + "/stat"); strings.Contains(string(st), ") Z ") {
			return // dead, waiting to be reaped by its new parent
		}
		if time.Now().After(waitGone) {
			t.Fatalf("the grandchild (pid %s) outlived the command", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// mkfs and mount, once started, finish even when the run is cancelled.
func TestUninterruptibleFinishes(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "done")
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	_, err := Exec{}.Run(ctx, Cmd{Name: "sh", Args: []string{"-c", "sleep 0.5; echo done >" + marker},
		Uninterruptible: true, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("uninterruptible command failed: %v", err)
	}
	if ctx.Err() == nil {
		t.Fatal("the run was not cancelled while the command ran")
	}
	if b, err := os.ReadFile(marker); err != nil || strings.TrimSpace(string(b)) != "done" {
		t.Fatalf("command did not finish: %q %v", b, err)
	}
}

// Its own timeout still bounds an uninterruptible command.
func TestUninterruptibleStillTimesOut(t *testing.T) {
	start := time.Now()
	_, err := Exec{}.Run(context.Background(), Cmd{Name: "sleep", Args: []string{"30"}, Uninterruptible: true, Timeout: 200 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("want timeout, got %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
}

func TestOutputIsClipped(t *testing.T) {
	_, err := Exec{}.Run(context.Background(), New("sh", "-c", "head -c 100000 /dev/zero | tr '\\0' x >&2; exit 1"))
	if err == nil || len(err.Error()) > 2*maxOutput {
		t.Fatalf("error not clipped: %d bytes", len(err.Error()))
	}
}

// A quiet probe leaves nothing at info and above, not even its failure.
func TestQuiet(t *testing.T) {
	for _, quiet := range []bool{false, true} {
		core, logs := observer.New(zap.InfoLevel)
		_, err := Exec{Log: zap.New(core)}.Run(context.Background(), Cmd{Name: "sh", Args: []string{"-c", "exit 1"}, Quiet: quiet})
		if err == nil {
			t.Fatal("exit 1 succeeded")
		}
		if n := logs.Len(); (n == 0) != quiet {
			t.Errorf("quiet=%t: %d entries at info and above", quiet, n)
		}
	}
}

// An uninterruptible command writes to files, not pipes: killed, the agent
// takes no reader away from it, and no SIGPIPE ends it halfway.
func TestUninterruptibleWritesToFiles(t *testing.T) {
	script := `for fd in 1 2; do if [ -p /proc/self/fd/$fd ]; then echo "$fd pipe" >&$fd; else echo "$fd file" >&$fd; fi; done`
	for _, tt := range []struct {
		uninterruptible bool
		want            string
	}{{false, "pipe"}, {true, "file"}} {
		res, err := Exec{}.Run(context.Background(), Cmd{Name: "sh", Args: []string{"-c", script}, Uninterruptible: tt.uninterruptible})
		if err != nil {
			t.Fatal(err)
		}
		if string(res.Stdout) != "1 "+tt.want+"\n" || string(res.Stderr) != "2 "+tt.want+"\n" {
			t.Errorf("uninterruptible=%t: stdout %q stderr %q, want both on a %s", tt.uninterruptible, res.Stdout, res.Stderr, tt.want)
		}
	}
}

// A background command, and what it starts after it, runs 10 nicer than
// the agent and at the lowest best-effort I/O level.
func TestBackgroundPriority(t *testing.T) {
	probe := func(bg bool) (nice int, io string) {
		t.Helper()
		res, err := Exec{}.Run(context.Background(), Cmd{Name: "sh", Args: []string{"-c", "sleep 0.3; nice; ionice"}, Background: bg})
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.SplitN(strings.TrimSpace(string(res.Stdout)), "\n", 2)
		if len(lines) != 2 {
			t.Fatalf("nice; ionice printed %q", res.Stdout)
		}
		n, err := strconv.Atoi(lines[0])
		if err != nil {
			t.Fatal(err)
		}
		return n, lines[1]
	}
	base, _ := probe(false)
	nice, io := probe(true)
	if want := min(base+10, 19); nice != want {
		t.Errorf("background command at nice %d, want %d (the agent's %d + 10)", nice, want, base)
	}
	if io != "best-effort: prio 7" {
		t.Errorf("background command's I/O priority %q, want best-effort: prio 7", io)
	}
}
