package sim

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// execTimeout bounds one command run inside by these helpers.
const execTimeout = 2 * time.Minute

// Exec runs argv inside the instance (in its init's namespaces) and
// returns its combined output, trimmed.
func (m *Machine) Exec(ctx context.Context, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, execTimeout)
	defer cancel()
	out, err := m.Instance().Exec(ctx, argv[0], argv[1:]...)
	return strings.TrimSpace(string(out)), err
}

// UnitProps are the properties Show reads.
var UnitProps = []string{"ActiveState", "SubState", "Result", "ExecMainStatus", "NRestarts", "StatusText",
	"ConditionResult", "InvocationID"}

// Show returns unit's properties (UnitProps) as `systemctl show` reports them.
func (m *Machine) Show(ctx context.Context, unit string) (map[string]string, error) {
	out, err := m.Exec(ctx, "systemctl", "show", "-p", strings.Join(UnitProps, ","), unit)
	if err != nil {
		return nil, err
	}
	props := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			props[k] = v
		}
	}
	return props, nil
}

// Journal returns this boot's journal of units (all with none), message
// text only.
func (m *Machine) Journal(ctx context.Context, units ...string) (string, error) {
	argv := []string{"journalctl", "-b", "--no-pager", "-o", "cat"}
	for _, u := range units {
		argv = append(argv, "-u", u)
	}
	return m.Exec(ctx, argv...)
}

// LogLine is one of monagent's JSON log lines.
type LogLine struct {
	Time  time.Time
	Level string
	Msg   string
	Mode  string // on run start and finish lines
	Step  string // on a step's lines
	Err   string
	// Fields are all of the line's fields.
	Fields map[string]any
}

// logTimeLayout is the time format of monagent's JSON logs.
const logTimeLayout = "2006-01-02T15:04:05.000Z0700"

// parseLog returns the monagent log lines in text, skipping anything else.
func parseLog(text string) []LogLine {
	var lines []LogLine
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	for sc.Scan() {
		if l, ok := parseLogLine(sc.Text()); ok {
			lines = append(lines, l)
		}
	}
	return lines
}

func parseLogLine(s string) (LogLine, bool) {
	var f map[string]any
	if !strings.HasPrefix(s, "{") || json.Unmarshal([]byte(s), &f) != nil {
		return LogLine{}, false
	}
	str := func(k string) string { v, _ := f[k].(string); return v }
	t, err := time.Parse(logTimeLayout, str("time"))
	if err != nil {
		return LogLine{}, false
	}
	return LogLine{Time: t, Level: str("level"), Msg: str("msg"), Mode: str("mode"), Step: str("step"),
		Err: str("error"), Fields: f}, true
}

// Logs returns monagent's log lines in this boot's journal of unit.
func (m *Machine) Logs(ctx context.Context, unit string) ([]LogLine, error) {
	text, err := m.Journal(ctx, unit)
	if err != nil {
		return nil, err
	}
	return parseLog(text), nil
}

// Find returns the first line with msg (and, if step is set, that step).
func Find(lines []LogLine, msg, step string) (LogLine, bool) {
	for _, l := range lines {
		if l.Msg == msg && (step == "" || l.Step == step) {
			return l, true
		}
	}
	return LogLine{}, false
}

// Follow passes each monagent log line of this boot's journal of units
// to fn, from the boot's start and then as they are written, until ctx
// ends. journalctl is started again (after the last line it showed) if it
// ends early, as it does when journald is not up yet.
func (m *Machine) Follow(ctx context.Context, fn func(unit string, l LogLine), units ...string) {
	cursor := ""
	for ctx.Err() == nil {
		cursor = m.follow(ctx, cursor, fn, units)
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// follow runs one journalctl -f and returns the cursor of the last entry
// it showed.
func (m *Machine) follow(ctx context.Context, cursor string, fn func(unit string, l LogLine), units []string) string {
	argv := []string{"-b", "--no-pager", "-f", "-n", "all", "-o", "json"}
	if cursor != "" {
		argv = append(argv, "--after-cursor="+cursor)
	}
	for _, u := range units {
		argv = append(argv, "-u", u)
	}
	cmd := m.Instance().Command(ctx, "journalctl", argv...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return cursor
	}
	if err := cmd.Start(); err != nil {
		return cursor
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	for sc.Scan() {
		var e struct {
			Cursor  string `json:"__CURSOR"`
			Message any    `json:"MESSAGE"`
			Unit    string `json:"_SYSTEMD_UNIT"`
		}
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		cursor = e.Cursor
		msg, _ := e.Message.(string) // journald gives a byte array for non-UTF-8
		if l, ok := parseLogLine(msg); ok {
			fn(e.Unit, l)
		}
	}
	_ = cmd.Wait()
	return cursor
}

// Duration returns a duration field of the line (monagent logs them as
// Go durations, "1.5s"), zero if there is none.
func (l LogLine) Duration(key string) time.Duration {
	s, _ := l.Fields[key].(string)
	d, _ := time.ParseDuration(s)
	return d
}

// Monagent runs /usr/bin/monagent with args inside the instance, with the
// account's endpoints (as a login shell there has them). code is its exit
// status; err is set only if it could not run.
func (m *Machine) Monagent(ctx context.Context, args ...string) (stdout, stderr string, code int, err error) {
	ctx, cancel := context.WithTimeout(ctx, execTimeout)
	defer cancel()
	argv := append(append([]string{}, awsEnv(m.aws)...), append([]string{"/usr/bin/monagent"}, args...)...)
	o, e, err := m.Instance().Output(ctx, "env", argv...)
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(o), string(e), ee.ExitCode(), nil
	}
	return string(o), string(e), 0, err
}

// Container is what a test compares across runs.
type Container struct {
	ID, Name, Status, StartedAt string
	Restarts                    int
}

// Containers lists the Compose project's containers inside the instance,
// by service.
func (m *Machine) Containers(ctx context.Context, project string) (map[string]Container, error) {
	out, err := m.Exec(ctx, "sh", "-c",
		`ids=$(docker ps -aq --filter label=com.docker.compose.project="$1"); [ -z "$ids" ] && echo '[]' || docker inspect $ids`,
		"sh", project)
	if err != nil {
		return nil, err
	}
	var list []struct {
		ID           string `json:"Id"`
		Name         string
		RestartCount int
		State        struct{ Status, StartedAt string }
		Config       struct{ Labels map[string]string }
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		return nil, fmt.Errorf("docker inspect: %w\n%s", err, out)
	}
	got := map[string]Container{}
	for _, c := range list {
		got[c.Config.Labels["com.docker.compose.service"]] = Container{
			ID: c.ID, Name: strings.TrimPrefix(c.Name, "/"), Status: c.State.Status, StartedAt: c.State.StartedAt, Restarts: c.RestartCount}
	}
	return got, nil
}

// FirstBoot is what a first boot did, and when.
type FirstBoot struct {
	Started     time.Time // the boot was started (host clock)
	Settled     time.Time // every job of the boot done (cloud-final included)
	Signal      Signal    // the stack's SUCCESS event for this instance
	DockerStart time.Time // user-data's bootstrap started its docker step (the engine's install)
	DockerDone  time.Time // ... and finished it
	Converged   time.Time // user-data's bootstrap converged: the stack runs healthy
	Unit        map[string]string
	CloudFinal  map[string]string
}

// ToSignal is the time from the boot's start to the SUCCESS signal.
func (f FirstBoot) ToSignal() time.Duration { return f.Signal.Time.Sub(f.Started) }

// ToHealthy is the time from the boot's start to a converged stack.
func (f FirstBoot) ToHealthy() time.Duration { return f.Converged.Sub(f.Started) }

// WaitFirstBoot waits for the first boot's jobs to end (the boot unit,
// then cloud-final's user-data: monagent bootstrap) and returns when the
// SUCCESS signal and the converged run happened. An error quotes the
// journal of what failed.
func (m *Machine) WaitFirstBoot(ctx context.Context) (FirstBoot, error) {
	f := FirstBoot{Started: m.start}
	if _, err := m.Instance().WaitRunning(ctx); err != nil {
		return f, err
	}
	f.Settled = time.Now()
	var err error
	if f.CloudFinal, err = m.Show(ctx, "cloud-final.service"); err != nil {
		return f, err
	}
	if f.Unit, err = m.Show(ctx, "monagent.service"); err != nil {
		return f, err
	}
	logs, err := m.Logs(ctx, "cloud-final.service")
	if err != nil {
		return f, err
	}
	done, ok := Find(logs, "run converged", "")
	if f.CloudFinal["Result"] != "success" || !ok || done.Mode != "bootstrap" {
		journal, _ := m.Journal(ctx, "cloud-final.service", "monagent.service")
		return f, fmt.Errorf("user-data's monagent bootstrap did not converge (cloud-final %v):\n%s", f.CloudFinal, lastLines(journal, 40))
	}
	f.Converged = done.Time
	if l, ok := Find(logs, "step start", "docker"); ok {
		f.DockerStart = l.Time
	}
	if l, ok := Find(logs, "step finish", "docker"); ok {
		f.DockerDone = l.Time
	}
	sig, err := m.aws.Signals(ctx)
	if err != nil {
		return f, err
	}
	for _, s := range sig {
		if s.Status == "SUCCESS" && s.UniqueID == m.aws.InstanceID() {
			f.Signal = s
			break
		}
	}
	return f, nil
}

// WaitBoot waits for a boot's jobs to end (after Reboot: the boot unit's
// reconcile) and returns monagent.service's properties and its run's
// converged line; an error quotes the unit's journal.
func (m *Machine) WaitBoot(ctx context.Context) (map[string]string, LogLine, error) {
	if _, err := m.Instance().WaitRunning(ctx); err != nil {
		return nil, LogLine{}, err
	}
	props, err := m.Show(ctx, "monagent.service")
	if err != nil {
		return nil, LogLine{}, err
	}
	logs, err := m.Logs(ctx, "monagent.service")
	if err != nil {
		return props, LogLine{}, err
	}
	done, ok := Find(logs, "run converged", "")
	if !ok || props["Result"] != "success" {
		journal, _ := m.Journal(ctx, "monagent.service")
		return props, done, fmt.Errorf("the boot unit's reconcile did not converge (%v):\n%s", props, lastLines(journal, 40))
	}
	return props, done, nil
}

// lastLines returns the last n lines of s, indented.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "\t" + strings.Join(lines, "\n\t")
}
