package sim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The user-data is packaging/user-data.sh with the configuration written
// before its exec: run with the paths moved into a temporary directory, it
// writes the configuration byte for byte, 0600, then execs monagent
// bootstrap.
func TestUserData(t *testing.T) {
	r := &Rig{opts: Options{Repo: "../.."}}
	config := "prefix: monitoring-production\nsmoke:\n  note: \"$HOME `x` \\\\ 'q'\"\n"
	ud, err := r.userData(config, "")
	if err != nil {
		t.Fatal(err)
	}
	orig, err := os.ReadFile("../../packaging/user-data.sh")
	if err != nil {
		t.Fatal(err)
	}
	exec0 := strings.Index(string(orig), "\nexec ")
	if !strings.HasPrefix(ud, string(orig)[:exec0]) || !strings.HasSuffix(ud, string(orig)[exec0:]) {
		t.Fatalf("the user-data is not packaging/user-data.sh with a block before its exec:\n%s", ud)
	}
	dir := t.TempDir()
	script := strings.ReplaceAll(ud, "/etc/monagent", dir+"/etc/monagent")
	script = strings.Replace(script, "exec /usr/bin/monagent bootstrap", "exec echo bootstrap", 1)
	out, err := exec.Command("bash", "-c", script).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "bootstrap --config "+dir+"/etc/monagent/config.yaml") {
		t.Fatalf("running the user-data: %v\n%s", err, out)
	}
	p := filepath.Join(dir, "etc/monagent/config.yaml")
	got, err := os.ReadFile(p)
	if err != nil || string(got) != config {
		t.Fatalf("config.yaml %q, %v; want %q", got, err, config)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("config.yaml mode %v, want 0600", fi.Mode().Perm())
	}
}

func TestParseLog(t *testing.T) {
	text := `Started monagent.service.
{"level":"info","time":"2026-11-23T03:06:24.101Z","msg":"run start","mode":"bootstrap"}
not json {
{"level":"info","time":"2026-11-23T03:06:37.275Z","msg":"step finish","step":"docker","duration":"13.174s","skipped":false}
{"level":"info","time":"bad","msg":"dropped"}
`
	lines := parseLog(text)
	if len(lines) != 2 {
		t.Fatalf("parsed %d lines, want 2: %+v", len(lines), lines)
	}
	if l := lines[0]; l.Msg != "run start" || l.Mode != "bootstrap" || l.Time.UnixMilli() != time.Date(2026, 11, 23, 3, 6, 24, 101e6, time.UTC).UnixMilli() {
		t.Errorf("first line %+v", l)
	}
	if l, ok := Find(lines, "step finish", "docker"); !ok || l.Duration("duration") != 13174*time.Millisecond {
		t.Errorf("docker's finish %+v, %v", l, ok)
	}
	if _, ok := Find(lines, "step finish", "compose"); ok {
		t.Error("found a step that is not there")
	}
}

// command passes each output line to logf and quotes the last ones in its
// error; cancelling ctx kills the whole process group.
func TestCommand(t *testing.T) {
	var logged []string
	logf := func(format string, args ...any) {
		logged = append(logged, strings.TrimSpace(fmt.Sprintf(format, args...)))
	}
	out, err := command(context.Background(), logf, "", nil, "sh", "-c", "echo out1; echo err1 >&2; printf out2")
	if err != nil || out != "out1\nout2" || len(logged) != 3 {
		t.Fatalf("out %q, err %v, logged %q", out, err, logged)
	}
	_, err = command(context.Background(), nil, "", nil, "sh", "-c", "echo why >&2; exit 3")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !strings.Contains(err.Error(), "why") {
		t.Fatalf("error %v: want the exit status and the output", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := command(ctx, nil, "", nil, "sh", "-c", "sleep 30 & wait"); err == nil {
		t.Fatal("a cancelled command succeeded")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("a cancelled command took %s to end", d)
	}
}

func TestPollNamesWhatItWaitedFor(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := poll(ctx, 10*time.Millisecond, "the thing", func() (bool, string, error) { return false, "still cold", nil })
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "the thing") || !strings.Contains(err.Error(), "still cold") {
		t.Fatalf("poll: %v", err)
	}
}

// A log level reaches both runs of a first boot: user-data's bootstrap
// and the boot unit's reconcile (a drop-in that keeps the unit's argv).
func TestLogLevel(t *testing.T) {
	r := &Rig{opts: Options{Repo: "../.."}}
	ud, err := r.userData("prefix: p\n", "debug")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ud, "\nexec /usr/bin/monagent bootstrap --config /etc/monagent/config.yaml --log-level debug\n") {
		t.Errorf("user-data's exec has no --log-level debug:\n%s", ud)
	}
	dropIn, err := r.logLevelDropIn("debug")
	if err != nil {
		t.Fatal(err)
	}
	want := "[Service]\nExecStart=\nExecStart=/usr/bin/monagent reconcile --config /etc/monagent/config.yaml --log-level debug\n"
	if !strings.HasSuffix(dropIn, want) {
		t.Errorf("drop-in:\n%s\nwant it to end with\n%s", dropIn, want)
	}
}
