package command

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestRun(t *testing.T) {
	tests := []struct {
		name     string
		argv     []string
		stdin    string
		wantCode int
		wantOut  string
		wantErr  []string
	}{
		{"success", []string{"sh", "-c", "echo hello"}, "", 0, "hello\n", nil},
		{"stdin", []string{"cat"}, "from stdin", 0, "from stdin", nil},
		{"exit status and output in error", []string{"sh", "-c", "echo partial; echo 'it broke' >&2; exit 3"}, "", 3, "partial\n",
			[]string{"sh -c", "exit status 3", "stderr: it broke", "stdout: partial"}},
		{"missing program", []string{"/nonexistent/prog"}, "", -1, "", []string{"/nonexistent/prog"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			core, logs := observer.New(zap.DebugLevel)
			r := Runner{Log: zap.New(core)}
			var stdin []byte
			if tt.stdin != "" {
				stdin = []byte(tt.stdin)
			}
			res, err := r.RunInput(context.Background(), stdin, tt.argv[0], tt.argv[1:]...)
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
			if logs.FilterMessage("exec").Len() != 1 {
				t.Errorf("argv not logged: %v", logs.All())
			}
		})
	}
}

func TestRunCancelled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Runner{}.Run(ctx, "sleep", "30")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want deadline exceeded, got %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("cancel took %v", d)
	}
}

func TestOutputIsClipped(t *testing.T) {
	_, err := Runner{}.Run(context.Background(), "sh", "-c", "head -c 100000 /dev/zero | tr '\\0' x >&2; exit 1")
	if err == nil || len(err.Error()) > 2*maxOutput {
		t.Fatalf("error not clipped: %d bytes", len(err.Error()))
	}
}
