package lock

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// holder starts a real second process that takes the lock and holds it
// until its stdin closes.
func holder(t *testing.T, path string) (release func()) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperHolder$")
	cmd.Env = append(os.Environ(), "LOCK_HOLD_PATH="+path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("holder did not lock: %q %v", line, err)
	}
	return func() {
		stdin.Close()
		_ = cmd.Wait()
	}
}

func TestHelperHolder(t *testing.T) {
	p := os.Getenv("LOCK_HOLD_PATH")
	if p == "" {
		return // only meaningful as a child of the tests below
	}
	l, err := Acquire(context.Background(), p, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	os.Stdout.WriteString("locked\n")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	_ = l.Release()
}

func TestTimeoutWhileAnotherProcessHolds(t *testing.T) {
	p := filepath.Join(t.TempDir(), "run/monagent.lock")
	release := holder(t, p)
	defer release()
	start := time.Now()
	_, err := Acquire(context.Background(), p, 300*time.Millisecond)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("want ErrTimeout, got %v", err)
	}
	if waited := time.Since(start); waited < 300*time.Millisecond {
		t.Fatalf("gave up after %v, before the timeout", waited)
	}
}

func TestWaitsThenAcquires(t *testing.T) {
	p := filepath.Join(t.TempDir(), "monagent.lock")
	release := holder(t, p)
	go func() {
		time.Sleep(200 * time.Millisecond)
		release()
	}()
	l, err := Acquire(context.Background(), p, 10*time.Second)
	if err != nil {
		t.Fatalf("lock not taken after the holder exited: %v", err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
}

func TestCancelledWait(t *testing.T) {
	p := filepath.Join(t.TempDir(), "monagent.lock")
	release := holder(t, p)
	defer release()
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(100 * time.Millisecond); cancel() }()
	_, err := Acquire(ctx, p, time.Minute)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
}

func TestReacquireAfterRelease(t *testing.T) {
	p := filepath.Join(t.TempDir(), "monagent.lock")
	for i := 0; i < 2; i++ {
		l, err := Acquire(context.Background(), p, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Release(); err != nil {
			t.Fatal(err)
		}
	}
}
