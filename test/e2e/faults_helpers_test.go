package e2e

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/compose-spec/compose-go/v2/dotenv"
	"golang.org/x/sys/unix"

	"github.com/monagent/monagent/internal/ebs"
	"github.com/monagent/monagent/internal/state"
)

// The fault suite's helpers: a light stack (one stand-in service) so that
// whole runs take seconds, runs that are killed at a chosen point, the
// invariants a kill must never break, and a watch for secrets.

// faultTally is what the suite tried and what it found, for its report:
// each test logs its own line.
type faultTally struct {
	faults, killed, dataLost, dupSignals, torn, tempLeft int
}

func (ft *faultTally) log(t *testing.T) {
	t.Helper()
	t.Logf("tally: faults tried %d, runs killed %d, data lost %d, duplicate signals %d, torn files %d, temporary files left %d",
		ft.faults, ft.killed, ft.dataLost, ft.dupSignals, ft.torn, ft.tempLeft)
}

// faultSecret is recognisable in any text: letters and digits only, so
// JSON and shell quoting leave it whole.
func faultSecret(t testing.TB, tag string) string {
	t.Helper()
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "FaultSecret" + tag + hex.EncodeToString(b[:])
}

// lightCompose is the stack of the fault tests: the Tempo stand-in, with
// values from .env in its environment and a named volume that monagent
// binds to the data volume. No network: nothing on the host's ports, no
// bridge on a private engine.
const lightCompose = `services:
  app:
    image: grafana/tempo:2.6.1
    network_mode: none
    environment:
      - APP_USER=${GRAFANA_ADMIN_USER}
      - APP_PASSWORD=${GRAFANA_ADMIN_PASSWORD}
    volumes:
      - app_data:/var/tempo
volumes:
  app_data: {}
`

// lightBundle writes the light stack's bundle: the compose file and a
// notes file whose content the tests change to make the bundle step work.
func lightBundle(t testing.TB, notes string) string {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "docker-compose.yml"), lightCompose)
	writeFile(t, filepath.Join(dir, "notes.txt"), notes)
	return dir
}

// faultScenario is stackScenario with latencies: an attachment that takes
// attach, a SignalResource answered after signal.
func faultScenario(bundleDir string, attach, signal time.Duration) string {
	s := stackScenario(bundleDir)
	s = strings.Replace(s, "ec2:\n", fmt.Sprintf("ec2:\n  attach_delay: %s\n", attach), 1)
	if signal > 0 {
		s += fmt.Sprintf("faults:\n  cloudformation.SignalResource: {delay: %s}\n", signal)
	}
	return s
}

// newLightHost is a stack host running the light bundle in project, with
// the Grafana password (bound for .env) set to secret, a settle time of
// one second, and the plugin served by awssim.
func newLightHost(t testing.TB, project, scen, secret string) (*host, string) {
	t.Helper()
	h, sum := newStackHost(t, hostOptions{scenario: scen, project: project}, "")
	cfg := readFile(t, h.config)
	if !strings.Contains(cfg, "settle: 5s") {
		t.Fatalf("stackConfig no longer sets settle: 5s:\n%s", cfg)
	}
	writeFile(t, h.config, strings.Replace(cfg, "settle: 5s", "settle: 1s", 1))
	putParameter(t, h, "/monitoring-production/grafana/admin-password", secret, true)
	return h, sum
}

// logLine is one JSON line of monagent's log.
type logLine struct {
	Msg   string   `json:"msg"`
	Step  string   `json:"step"`
	Time  string   `json:"time"`
	Level string   `json:"level"`
	Argv  []string `json:"argv"`
	at    time.Time
}

func parseLogLine(s string) (logLine, bool) {
	var l logLine
	if !strings.HasPrefix(s, "{") || json.Unmarshal([]byte(s), &l) != nil {
		return l, false
	}
	ts, err := time.Parse("2006-01-02T15:04:05.000Z0700", l.Time)
	if err != nil {
		return l, false
	}
	l.at = ts
	return l, true
}

func parseLog(out string) []logLine {
	var lines []logLine
	for _, s := range strings.Split(out, "\n") {
		if l, ok := parseLogLine(s); ok {
			lines = append(lines, l)
		}
	}
	return lines
}

// stepEnded is a line that ends a step's run.
func stepEnded(msg string) bool {
	return msg == "step finish" || msg == "step failed" || msg == "step interrupted"
}

// window is the span one process spent running steps.
type window struct {
	name       string
	began      time.Time // the run's first log line
	start, end time.Time
	steps      int
}

// stepWindows is the span from a run's first step start to its last step
// end, and the spans of each step.
func stepWindows(name, out string) (window, map[string][2]time.Time) {
	w := window{name: name}
	steps := map[string][2]time.Time{}
	for _, l := range parseLog(out) {
		if w.began.IsZero() {
			w.began = l.at
		}
		switch {
		case l.Msg == "step start":
			if w.start.IsZero() {
				w.start = l.at
			}
			w.steps++
			steps[l.Step] = [2]time.Time{l.at}
		case stepEnded(l.Msg):
			w.end = l.at
			s := steps[l.Step]
			s[1] = l.at
			steps[l.Step] = s
		}
	}
	return w, steps
}

// killPoint is where a run is killed: delay after the first log line with
// msg (and step) is read, or that match() accepts; after a delay from its
// start; once when() holds (polled every millisecond); or the moment a
// file whose path starts with created is made (inotify), as the temporary
// file of an atomic write is.
type killPoint struct {
	msg, step string
	match     func(logLine) bool
	delay     time.Duration
	after     time.Duration
	when      func() bool
	created   string
	name      string
}

// matches reports whether l is the point's line.
func (p killPoint) matches(l logLine) bool {
	if p.match != nil {
		return p.match(l)
	}
	return p.msg != "" && l.Msg == p.msg && l.Step == p.step
}

func (p killPoint) String() string {
	switch {
	case p.name != "":
		return p.name
	case p.msg != "":
		return fmt.Sprintf("%s %s", p.msg, p.step)
	case p.after > 0:
		return fmt.Sprintf("after %v", p.after)
	}
	return "no kill"
}

// killRun is one run of monagent that may have been killed.
type killRun struct {
	args           []string
	code           int
	killed         bool
	stdout, stderr string
	elapsed        time.Duration
	// inside lists the steps running when the kill came, and the last
	// command started.
	inside   []string
	lastExec string
}

// runUntil runs monagent and sends SIGKILL at p; a zero point never
// kills. Every wait is bounded: a run still going after limit is killed
// and the test fails.
func (h *host) runUntil(t *testing.T, p killPoint, limit time.Duration, env []string, args ...string) killRun {
	t.Helper()
	cmd := h.command(nil, args...)
	cmd.Env = append(cmd.Env, env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	var created *os.File
	if p.created != "" {
		created = watchCreate(t, filepath.Dir(p.created))
		defer created.Close()
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	var mu sync.Mutex
	var out strings.Builder
	r := killRun{args: args}
	kill := func() {
		once.Do(func() {
			mu.Lock()
			running := map[string]bool{}
			for _, l := range parseLog(out.String()) {
				switch {
				case l.Msg == "step start":
					running[l.Step] = true
				case stepEnded(l.Msg):
					delete(running, l.Step)
				case l.Msg == "exec":
					r.lastExec = strings.Join(l.Argv, " ")
				}
			}
			r.inside = slices.Sorted(maps.Keys(running))
			mu.Unlock()
			_ = cmd.Process.Kill()
		})
	}
	if p.after > 0 {
		tm := time.AfterFunc(p.after, kill)
		defer tm.Stop()
	}
	if created != nil {
		go func() {
			prefix := filepath.Base(p.created)
			buf := make([]byte, 64<<10)
			for {
				n, err := created.Read(buf)
				if err != nil {
					return
				}
				for off := 0; off+unix.SizeofInotifyEvent <= n; {
					ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
					name := strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+int(ev.Len)]), "\x00")
					if strings.HasPrefix(name, prefix) {
						kill()
						return
					}
					off += unix.SizeofInotifyEvent + int(ev.Len)
				}
			}
		}()
	}
	if p.when != nil {
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(time.Millisecond):
				}
				if p.when() {
					kill()
					return
				}
			}
		}()
	}
	var overdue atomic.Bool
	watchdog := time.AfterFunc(limit, func() { overdue.Store(true); _ = cmd.Process.Kill() })
	defer watchdog.Stop()
	matched := false
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		mu.Lock()
		out.WriteString(line + "\n")
		mu.Unlock()
		if l, ok := parseLogLine(line); ok && !matched && p.matches(l) {
			matched = true
			if p.delay > 0 {
				tm := time.AfterFunc(p.delay, kill)
				defer tm.Stop()
			} else {
				kill()
			}
		}
	}
	err = cmd.Wait()
	once.Do(func() {}) // a kill under way ends; none starts
	r.elapsed = time.Since(start)
	r.stdout, r.stderr = out.String(), stderr.String()
	r.code = exitCode(err)
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
		r.killed = true
	}
	if overdue.Load() {
		t.Fatalf("monagent %v still running after %v:\n%s\n%s", args, limit, r.stdout, r.stderr)
	}
	return r
}

// watchCreate is an inotify descriptor reporting the files made in dir;
// closing it ends a Read under way.
func watchCreate(t testing.TB, dir string) *os.File {
	t.Helper()
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_CREATE); err != nil {
		unix.Close(fd)
		t.Fatalf("watch %s: %v", dir, err)
	}
	return os.NewFile(uintptr(fd), "inotify:"+dir)
}

// invariants are what no kill may break: every file monagent owns holds
// its old or its new complete content, the volume keeps its one
// filesystem and the data on it, and CloudFormation has one SUCCESS.
type invariants struct {
	h          *host
	tally      *faultTally
	fstabOld   string
	uuid       string          // the volume's filesystem, once made
	sentinel   string          // written on the volume once mounted
	passwords  map[string]bool // every value the password parameter held
	notes      map[string]bool // every notes.txt the bundle held
	pluginSums map[string]bool // every plugin pinned so far
	token      string          // the generated metrics token, once made
	tempSeen   map[string]bool
}

func newInvariants(h *host, tally *faultTally, fstabOld, pluginSum string) *invariants {
	return &invariants{h: h, tally: tally, fstabOld: fstabOld, pluginSums: map[string]bool{pluginSum: true},
		passwords: map[string]bool{}, notes: map[string]bool{}, tempSeen: map[string]bool{}}
}

func (iv *invariants) device() string {
	dev, err := filepath.EvalSymlinks(filepath.Join(iv.h.root, byID))
	if err != nil {
		return ""
	}
	return dev
}

// check looks at the host as a kill left it. converged adds what a
// successful run must have left.
func (iv *invariants) check(t *testing.T, when string, converged bool) {
	t.Helper()
	h := iv.h
	// The state file parses, or is absent; none was moved aside.
	sp := filepath.Join(h.root, "var/lib/monagent/state.json")
	if _, err := (&state.Store{Path: sp}).Load(); err != nil {
		iv.tally.torn++
		t.Errorf("%s: state file: %v", when, err)
	}
	if m, _ := filepath.Glob(sp + ".corrupt-*"); len(m) > 0 {
		iv.tally.torn += len(m)
		t.Errorf("%s: state file moved aside as corrupt: %v", when, m)
		for _, f := range m {
			_ = os.Rename(f, f+".seen") // count each once
		}
	}
	// The volume: one filesystem, made once; the sentinel on it.
	if dev := iv.device(); dev != "" {
		p := blkid(t, dev)
		switch {
		case iv.uuid == "" && p["TYPE"] == "xfs":
			iv.uuid = p["UUID"]
		case iv.uuid != "" && p["UUID"] != iv.uuid:
			iv.tally.dataLost++
			t.Errorf("%s: the volume's filesystem changed: UUID %s -> %q (%v)", when, iv.uuid, p["UUID"], p)
		}
	}
	data := filepath.Join(h.root, "data")
	if m, _ := ebs.MountAt(data); m != nil && iv.sentinel != "" {
		if b, err := os.ReadFile(filepath.Join(data, "fault-sentinel")); err != nil || string(b) != iv.sentinel {
			iv.tally.dataLost++
			t.Errorf("%s: the sentinel on the volume: %q %v", when, b, err)
		}
	}
	// fstab: the old content, or the old with the volume's one line.
	fstab, _ := os.ReadFile(filepath.Join(h.root, "etc/fstab"))
	newFstab := iv.fstabOld + "UUID=" + iv.uuid + " /data xfs defaults,nofail 0 2\n"
	if string(fstab) != iv.fstabOld && (iv.uuid == "" || string(fstab) != newFstab) {
		iv.tally.torn++
		t.Errorf("%s: fstab is neither the old nor the new content:\n%q", when, fstab)
	}
	// .env: absent, or exactly what one of the password's values renders.
	envPath := filepath.Join(h.stackDir(), ".env")
	if b, err := os.ReadFile(envPath); err == nil {
		env, perr := dotenv.UnmarshalBytesWithLookup(b, func(string) (string, bool) { return "", false })
		if perr != nil || len(env) != 2 || env["GRAFANA_ADMIN_USER"] != "admin" || !iv.passwords[env["GRAFANA_ADMIN_PASSWORD"]] {
			iv.tally.torn++
			t.Errorf("%s: .env is neither an old nor a new content (%v): %d keys", when, perr, len(env))
		}
	} else if !errors.Is(err, fs.ErrNotExist) || converged {
		t.Errorf("%s: .env: %v", when, err)
	}
	// The generated token: one value, in its file whole or not at all.
	tokenPath := filepath.Join(h.stackDir(), "prometheus/secrets/metrics-token")
	if b, err := os.ReadFile(tokenPath); err == nil {
		if iv.token == "" {
			iv.token = getParameter(t, h, "/monitoring-production/prometheus/metrics-bearer-token")
		}
		if string(b) != iv.token {
			iv.tally.torn++
			t.Errorf("%s: the metrics token file holds %d bytes, not the token", when, len(b))
		}
	}
	// The bundle's file: one of the versions uploaded.
	if b, err := os.ReadFile(filepath.Join(h.stackDir(), "notes.txt")); err == nil && !iv.notes[string(b)] {
		iv.tally.torn++
		t.Errorf("%s: notes.txt is no version of the bundle: %q", when, b)
	}
	// The plugin: a binary pinned at some point, or nothing.
	plugin := filepath.Join(h.root, "usr/local/lib/docker/cli-plugins/docker-compose")
	if sum, err := sha256File(plugin); err == nil && !iv.pluginSums[sum] {
		iv.tally.torn++
		t.Errorf("%s: the plugin has sha256 %s, no pinned one", when, sum)
	} else if err != nil && (!errors.Is(err, fs.ErrNotExist) || converged) {
		t.Errorf("%s: the plugin: %v", when, err)
	}
	// Temporary files a kill left beside what it was replacing: allowed,
	// counted once each.
	for _, dir := range []string{"var/lib/monagent", "etc", "opt/monitoring", "usr/local/lib/docker/cli-plugins",
		"opt/monitoring/prometheus/secrets", "var/lib/node_exporter/textfile_collector"} {
		m, _ := filepath.Glob(filepath.Join(h.root, dir, ".*.tmp-*"))
		for _, f := range m {
			if !iv.tempSeen[f] {
				iv.tempSeen[f] = true
				iv.tally.tempLeft++
				t.Logf("%s: temporary file left: %s", when, strings.TrimPrefix(f, h.root))
			}
		}
	}
	// CloudFormation: at most one signal, a SUCCESS for this instance.
	sig := h.signals()
	if len(sig) > 1 {
		iv.tally.dupSignals += len(sig) - 1
	}
	want := "Received SUCCESS signal with UniqueId " + instanceID
	if len(sig) > 1 || (len(sig) == 1 && sig[0] != want) || (converged && len(sig) == 0) {
		t.Errorf("%s: signals %q, want one SUCCESS", when, sig)
	}
	if !converged {
		return
	}
	if m, _ := ebs.MountAt(data); m == nil || m.FSType != "xfs" {
		t.Errorf("%s: the volume is not mounted: %+v", when, m)
	}
	if string(fstab) != newFstab {
		t.Errorf("%s: fstab lacks the volume's line:\n%s", when, fstab)
	}
	c := containers(t, h.project)["app"]
	if c.Status != "running" {
		t.Errorf("%s: the app container: %+v", when, c)
	}
}

func sha256File(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:]), nil
}

// writeAtomic replaces path as an administrator's tool would: the test's
// own changes must not look like a torn file.
func writeAtomic(t testing.TB, path, content string) {
	t.Helper()
	tmp := path + ".fault-new"
	writeFile(t, tmp, content)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// secretWatch samples every process's argv while a test runs, collects
// every text monagent produced, and fails the test if a secret shows in
// any of them.
type secretWatch struct {
	t       testing.TB
	mu      sync.Mutex
	secrets []string
	argv    map[string]bool
	texts   map[string]string
	samples int
	stop    chan struct{}
	done    chan struct{}
}

// watchSecrets starts sampling /proc/*/cmdline every 20 ms until the test
// ends; the check runs in the test's cleanup.
func watchSecrets(t testing.TB) *secretWatch {
	t.Helper()
	w := &secretWatch{t: t, argv: map[string]bool{}, texts: map[string]string{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tk := time.NewTicker(20 * time.Millisecond)
		defer tk.Stop()
		for {
			w.sample()
			select {
			case <-w.stop:
				return
			case <-tk.C:
			}
		}
	}()
	t.Cleanup(func() {
		close(w.stop)
		<-w.done
		w.verify()
	})
	return w
}

// addSecret registers a value that must never show.
func (w *secretWatch) addSecret(s string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.secrets = append(w.secrets, s)
}

// add keeps a text monagent produced (a log, an error, a file).
func (w *secretWatch) add(where, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.texts[fmt.Sprintf("%03d %s", len(w.texts), where)] = text
}

func (w *secretWatch) addRun(r killRun) {
	w.add(fmt.Sprintf("stdout of %v", r.args), r.stdout)
	w.add(fmt.Sprintf("stderr of %v", r.args), r.stderr)
}

func (w *secretWatch) sample() {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	var seen []string
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || len(b) == 0 {
			continue
		}
		seen = append(seen, strings.ReplaceAll(strings.TrimRight(string(b), "\x00"), "\x00", " "))
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.samples++
	for _, s := range seen {
		w.argv[s] = true
	}
}

// sawArgv reports whether a sampled command line contains each of parts.
func (w *secretWatch) sawArgv(parts ...string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for a := range w.argv {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(a, p)
		}
		if ok {
			return true
		}
	}
	return false
}

// files adds what monagent keeps under the host root that must never hold
// a secret: the state (and any copy moved aside), the metrics.
func (w *secretWatch) files(h *host) {
	for _, pat := range []string{"var/lib/monagent/state.json*", "var/lib/node_exporter/textfile_collector/*",
		"var/lib/monagent/compose/*"} {
		m, _ := filepath.Glob(filepath.Join(h.root, pat))
		for _, f := range m {
			if b, err := os.ReadFile(f); err == nil {
				w.add(strings.TrimPrefix(f, h.root), string(b))
			}
		}
	}
}

func (w *secretWatch) verify() {
	w.mu.Lock()
	defer w.mu.Unlock()
	t := w.t
	leaks := 0
	for _, s := range w.secrets {
		for a := range w.argv {
			if strings.Contains(a, s) {
				leaks++
				t.Errorf("a process's argv holds a secret: %.200s", a)
			}
		}
		for where, text := range w.texts {
			if strings.Contains(text, s) {
				leaks++
				t.Errorf("%s holds a secret", where)
			}
		}
	}
	t.Logf("secrets: %d values checked against %d distinct argv (%d samples of /proc/*/cmdline) and %d texts: %d leaks",
		len(w.secrets), len(w.argv), w.samples, len(w.texts), leaks)
}

// bgRun is monagent started in the background, its output kept as it
// comes.
type bgRun struct {
	name    string
	args    []string
	mu      sync.Mutex
	out     strings.Builder
	stderr  bytes.Buffer
	done    chan struct{}
	code    int
	overdue atomic.Bool
}

// startBg starts monagent; it is killed, and the test fails, if it runs
// longer than limit.
func (h *host) startBg(t *testing.T, name string, limit time.Duration, args ...string) *bgRun {
	t.Helper()
	b := &bgRun{name: name, args: args, done: make(chan struct{})}
	cmd := h.command(nil, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = &b.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	watchdog := time.AfterFunc(limit, func() { b.overdue.Store(true); _ = cmd.Process.Kill() })
	go func() {
		defer close(b.done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			b.mu.Lock()
			b.out.WriteString(sc.Text() + "\n")
			b.mu.Unlock()
		}
		err := cmd.Wait()
		watchdog.Stop()
		b.code = exitCode(err)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-b.done
	})
	return b
}

func (b *bgRun) output() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.out.String()
}

// waitLine waits, up to d, for a log line that match accepts.
func (b *bgRun) waitLine(t *testing.T, d time.Duration, match func(logLine) bool) {
	t.Helper()
	waitForLong(t, d, func() bool {
		for _, l := range parseLog(b.output()) {
			if match(l) {
				return true
			}
		}
		return false
	})
}

// wait waits for the run's end (its own limit bounds it).
func (b *bgRun) wait(t *testing.T) killRun {
	t.Helper()
	<-b.done
	if b.overdue.Load() {
		t.Fatalf("%s: monagent %v overran its time limit:\n%s", b.name, b.args, b.output())
	}
	return killRun{args: b.args, code: b.code, stdout: b.output(), stderr: b.stderr.String()}
}

// privateEngine is a dockerd of the test's own, on its own socket, with
// its own bridge, data, exec root and containerd namespaces: it may be
// stopped without touching the host's engine or what runs on it.
type privateEngine struct {
	t      testing.TB
	dir    string
	sock   string
	bridge string
	cmd    *exec.Cmd
	done   chan struct{}
}

func newPrivateEngine(t testing.TB) *privateEngine {
	t.Helper()
	// Short paths: containerd's and libnetwork's sockets live under them.
	dir, err := os.MkdirTemp("", "mfd")
	if err != nil {
		t.Fatal(err)
	}
	// A bridge of its own: with --bridge none, dockerd deletes docker0,
	// the host engine's default bridge.
	e := &privateEngine{t: t, dir: dir, sock: filepath.Join(dir, "docker.sock"), bridge: fmt.Sprintf("mfd%d", os.Getpid()%100000)}
	run(t, "ip", "link", "add", "name", e.bridge, "type", "bridge")
	t.Cleanup(func() {
		e.stop()
		_ = exec.Command("ip", "link", "delete", e.bridge).Run()
		_ = os.RemoveAll(dir)
	})
	e.start()
	return e
}

// start starts the engine and waits, bounded, until it answers.
func (e *privateEngine) start() {
	e.t.Helper()
	ns := filepath.Base(e.dir)
	e.cmd = exec.Command("dockerd", "--host", "unix://"+e.sock, "--data-root", filepath.Join(e.dir, "d"),
		"--exec-root", filepath.Join(e.dir, "x"), "--pidfile", filepath.Join(e.dir, "docker.pid"),
		"--containerd-namespace", ns, "--containerd-plugins-namespace", ns+"-plugins", "--cgroup-parent", ns,
		"--bridge", e.bridge, "--iptables=false", "--ip6tables=false")
	log, err := os.OpenFile(filepath.Join(e.dir, "dockerd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		e.t.Fatal(err)
	}
	e.cmd.Stdout, e.cmd.Stderr = log, log
	if err := e.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	log.Close()
	e.done = make(chan struct{})
	go func(c *exec.Cmd, done chan struct{}) { _ = c.Wait(); close(done) }(e.cmd, e.done)
	waitForLong(e.t, 60*time.Second, func() bool { return e.docker("version").Run() == nil })
}

// stop stops the engine with SIGTERM, as systemctl stop docker does,
// bounded; SIGKILL after 30 s.
func (e *privateEngine) stop() {
	if e.cmd == nil {
		return
	}
	_ = e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.done:
	case <-time.After(30 * time.Second):
		_ = e.cmd.Process.Kill()
		<-e.done
	}
	e.cmd = nil
}

// docker is the docker CLI talking to this engine.
func (e *privateEngine) docker(args ...string) *exec.Cmd {
	return exec.Command("docker", append([]string{"--host", "unix://" + e.sock}, args...)...)
}

// load copies an image of the host's engine into this one.
func (e *privateEngine) load(image string) {
	e.t.Helper()
	save := exec.Command("docker", "save", image)
	load := e.docker("load", "--quiet")
	pipe, err := save.StdoutPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	load.Stdin = pipe
	if err := save.Start(); err != nil {
		e.t.Fatal(err)
	}
	if out, err := load.CombinedOutput(); err != nil {
		e.t.Fatalf("docker load: %v\n%s", err, out)
	}
	if err := save.Wait(); err != nil {
		e.t.Fatalf("docker save %s: %v", image, err)
	}
}

// state is the status of the project's container of service, or "".
func (e *privateEngine) state(project, service string) string {
	out, _ := e.docker("ps", "-a", "--filter", "label=com.docker.compose.project="+project,
		"--filter", "label=com.docker.compose.service="+service, "--format", "{{.State}}").Output()
	return strings.TrimSpace(string(out))
}
