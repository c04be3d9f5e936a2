package packaging_test

// The packages built by `make package`: their contents and scripts
// (dpkg-deb, rpm), and their install, upgrade and removal under real
// systemd 252 in a booted rig/instance. Root is needed (CI runs as root):
// the tests fail, never skip, without it.

import (
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/monagent/monagent/rig/instance"
)

const (
	// The two versions the tests build: the second upgrades the first.
	oldTag, oldVersion = "v1.0.0", "1.0.0"
	newTag, newVersion = "v1.0.1", "1.0.1"

	// buildTimeout bounds one `make package` (a cold nfpm build and a cold
	// go build included).
	buildTimeout = 15 * time.Minute
	// guestTimeout bounds one command inside an instance.
	guestTimeout = 3 * time.Minute

	units = "monagent.service monagent-reconcile.timer"
	// backupUnits are shipped disabled: the operator enables the timer
	// once backup.location is set.
	backupUnits = "monagent-backup.timer monagent-backup.service"
)

// repoRoot is the repository's top directory.
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "packaging", "nfpm.yaml")); err != nil {
		t.Fatalf("repository root %s: %v", root, err)
	}
	return root
}

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("packaging tests need root (nfpm's cache under /var/cache/monagent-rig, dpkg, systemd-nspawn); running as uid %d", os.Geteuid())
	}
}

func cacheDir() string {
	if d := os.Getenv("MONAGENT_RIG_CACHE"); d != "" {
		return d
	}
	return "/var/cache/monagent-rig"
}

// built is one `make package` output.
type built struct {
	version  string // the package version, 1.0.0
	binary   string
	deb, rpm string
}

var (
	buildMu  sync.Mutex
	builds   = map[string]*built{}
	buildDir string // removed by TestMain
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// build runs `make package VERSION=tag DIST=<temp dir>` once per tag in
// this test process and returns what it made.
func build(t *testing.T, tag, wantVersion string) *built {
	t.Helper()
	needRoot(t)
	buildMu.Lock()
	defer buildMu.Unlock()
	if b, ok := builds[tag]; ok {
		return b
	}
	root := repoRoot(t)
	if buildDir == "" {
		d, err := os.MkdirTemp("", "monagent-packaging-test-")
		if err != nil {
			t.Fatal(err)
		}
		buildDir = d
	}
	dist := filepath.Join(buildDir, tag)
	ctx, cancel := context.WithTimeout(t.Context(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", "-C", root, "--no-print-directory", "package", "VERSION="+tag, "DIST="+dist)
	if _, err := exec.LookPath("make"); err != nil {
		// No make on this machine: the script `make package` runs, with
		// what the Makefile would pass.
		cmd = exec.CommandContext(ctx, filepath.Join(root, "packaging/build.sh"))
		cmd.Env = append(os.Environ(), "VERSION="+tag, "DIST="+dist)
	}
	cmd.WaitDelay = 10 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("make package VERSION=%s DIST=%s: %v (after %s)\nstdout:\n%s\nstderr:\n%s", tag, dist, err,
			time.Since(start).Round(time.Millisecond), stdout.String(), stderr.String())
	}
	t.Logf("make package VERSION=%s: %s\n%s", tag, time.Since(start).Round(time.Millisecond), strings.TrimSpace(stderr.String()))
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if len(lines) < 3 {
		t.Fatalf("make package VERSION=%s printed %q, want the binary, the .deb and the .rpm on its last three lines", tag, stdout.String())
	}
	lines = lines[len(lines)-3:]
	b := &built{version: wantVersion, binary: lines[0], deb: lines[1], rpm: lines[2]}
	want := built{
		version: wantVersion,
		binary:  filepath.Join(dist, "monagent"),
		deb:     filepath.Join(dist, "monagent_"+wantVersion+"-1_amd64.deb"),
		rpm:     filepath.Join(dist, "monagent-"+wantVersion+"-1.x86_64.rpm"),
	}
	if *b != want {
		t.Fatalf("make package VERSION=%s made %+v, want %+v", tag, *b, want)
	}
	for _, p := range []string{b.binary, b.deb, b.rpm} {
		if fi, err := os.Stat(p); err != nil || fi.Size() == 0 {
			t.Fatalf("make package VERSION=%s: %s: %v", tag, p, err)
		}
	}
	builds[tag] = b
	return b
}

// host runs argv on the host (bounded) and returns its standard output;
// the test fails, naming the command and its output, if it fails.
func host(t *testing.T, argv ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(argv, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Every path the packages hold and its mode ("-rwxr-xr-x"), owned by
// root:root. The units' directory differs per packager.
func wantFiles(unitDir string) map[string]string {
	want := map[string]string{
		"/usr/bin/monagent":                   "-rwxr-xr-x",
		unitDir + "/monagent.service":         "-rw-r--r--",
		unitDir + "/monagent-reconcile.timer": "-rw-r--r--",
		unitDir + "/monagent-backup.service":  "-rw-r--r--",
		unitDir + "/monagent-backup.timer":    "-rw-r--r--",
		"/etc/monagent":                       "drwxr-xr-x",
		"/etc/monagent/config.yaml":           "-rw-------",
		"/var/lib/monagent":                   "drwx------",
		"/usr/share/doc/monagent/README.md":   "-rw-r--r--",
	}
	for _, f := range exampleFiles() {
		want["/usr/share/monagent/"+f] = "-rw-r--r--"
	}
	return want
}

// exampleFiles are the ACGS example's files, as the repository has them
// (dotfiles included: the bundle's mount-point markers), relative to
// examples/.. .
func exampleFiles() []string {
	var out []string
	root := filepath.Join("..", "examples")
	_ = filepath.WalkDir(filepath.Join(root, "acgs"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			rel, _ := filepath.Rel("..", p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	return out
}

// The packaged files and the repository files they come from.
var sources = map[string]string{
	"monagent.service":          "systemd/monagent.service",
	"monagent-reconcile.timer":  "systemd/monagent-reconcile.timer",
	"monagent-backup.service":   "systemd/monagent-backup.service",
	"monagent-backup.timer":     "systemd/monagent-backup.timer",
	"/etc/monagent/config.yaml": "packaging/config.example.yaml",
	"README.md":                 "README.md",
}

func TestPackageVersion(t *testing.T) {
	root := repoRoot(t)
	for in, want := range map[string]string{
		"v1.2.3":                  "1.2.3",
		"1.2.3":                   "1.2.3",
		"v1.2.3-rc1":              "1.2.3~rc1",
		"v1.2.3-4-gabc1234":       "1.2.3+4.gabc1234",
		"v1.2.3-rc1-4-gabc1234":   "1.2.3~rc1+4.gabc1234",
		"v1.2.3-4-gabc1234-dirty": "1.2.3+4.gabc1234.dirty",
		"v1.2.3-dirty":            "1.2.3+0.dirty",
	} {
		out, err := exec.Command(filepath.Join(root, "packaging/build.sh"), "--print-version", in).CombinedOutput()
		if got := strings.TrimSpace(string(out)); err != nil || got != want {
			t.Errorf("build.sh --print-version %s = %q, %v; want %q", in, got, err, want)
		}
	}
	// A bare commit (no tag yet): 0.0.0+git<count>.g<hash>.
	out, err := exec.Command(filepath.Join(root, "packaging/build.sh"), "--print-version", "abc1234").CombinedOutput()
	if got := strings.TrimSpace(string(out)); err != nil || !regexp.MustCompile(`^0\.0\.0\+git[0-9]+\.gabc1234$`).MatchString(got) {
		t.Errorf("build.sh --print-version abc1234 = %q, %v; want 0.0.0+git<N>.gabc1234", got, err)
	}
	// Not a version: an error that says what to do.
	out, err = exec.Command(filepath.Join(root, "packaging/build.sh"), "--print-version", "dev").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "PKG_VERSION") {
		t.Errorf("build.sh --print-version dev = %q, %v; want an error naming PKG_VERSION", out, err)
	}
	// Each sorts after the one before, for dpkg and for rpm.
	order := []string{"0.0.0+git35.gabc1234", "1.2.3~rc1", "1.2.3~rc1+4.gabc1234", "1.2.3", "1.2.3+0.dirty", "1.2.3+4.gabc1234", "1.2.3+4.gabc1234.dirty", "1.2.3+5.gdef5678", "1.2.4"}
	for i := 1; i < len(order); i++ {
		a, b := order[i-1], order[i]
		if err := exec.Command("dpkg", "--compare-versions", a, "lt", b).Run(); err != nil {
			t.Errorf("dpkg --compare-versions %s lt %s: %v", a, b, err)
		}
		if _, err := exec.LookPath("rpm"); err == nil {
			out, err := exec.Command("rpm", "--eval", fmt.Sprintf("%%{lua: print(rpm.vercmp(%q, %q))}", a, b)).CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != "-1" {
				t.Errorf("rpm.vercmp(%s, %s) = %q, %v; want -1", a, b, out, err)
			}
		}
	}
}

func TestPackageContents(t *testing.T) {
	root := repoRoot(t)
	b := build(t, oldTag, oldVersion)

	t.Run("binary", func(t *testing.T) {
		f, err := elf.Open(b.binary)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s has an ELF interpreter: not a static binary (CGO_ENABLED=0)", b.binary)
			}
		}
		if out := host(t, b.binary, "version"); !strings.Contains(out, "monagent "+oldTag+" (commit ") {
			t.Errorf("%s version = %q, want the version %s stamped", b.binary, out, oldTag)
		}
	})

	t.Run("deb", func(t *testing.T) {
		got := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(host(t, "dpkg-deb", "-c", b.deb)), "\n") {
			// drwxr-xr-x root/root 0 2026-01-01 00:00 ./etc/monagent/
			f := strings.Fields(line)
			if len(f) != 6 {
				t.Fatalf("dpkg-deb -c: unexpected line %q", line)
			}
			if f[1] != "root/root" {
				t.Errorf("dpkg-deb -c: %s is owned by %s, want root/root", f[5], f[1])
			}
			p := strings.TrimSuffix(strings.TrimPrefix(f[5], "."), "/")
			got[p] = f[0]
		}
		want := wantFiles("/lib/systemd/system")
		for p, mode := range want {
			if got[p] != mode {
				t.Errorf("dpkg-deb -c: %s has mode %q, want %q", p, got[p], mode)
			}
		}
		for p, mode := range got {
			if _, ok := want[p]; !ok && mode != "drwxr-xr-x" {
				t.Errorf("dpkg-deb -c: unexpected %s %s", mode, p)
			}
			if strings.HasPrefix(p, "/usr/lib/systemd") {
				t.Errorf("dpkg-deb -c: %s: the deb's units belong in /lib/systemd/system", p)
			}
		}

		info := host(t, "dpkg-deb", "-I", b.deb)
		for _, s := range []string{"preinst", "postinst", "prerm", "postrm", "conffiles"} {
			if !regexp.MustCompile(`(?m)^\s+\d+ bytes,\s+\d+ lines\s+\*?\s+` + s + `\b`).MatchString(info) {
				t.Errorf("dpkg-deb -I: no %s in the control archive:\n%s", s, info)
			}
		}
		if got := host(t, "dpkg-deb", "-I", b.deb, "conffiles"); got != "/etc/monagent/config.yaml\n" {
			t.Errorf("conffiles = %q, want /etc/monagent/config.yaml alone", got)
		}
		fields := map[string]string{
			"Package":      "monagent",
			"Version":      oldVersion + "-1",
			"Architecture": "amd64",
			"Depends":      "util-linux, mount",
			"Recommends":   "xfsprogs, e2fsprogs",
		}
		for k, want := range fields {
			if got := strings.TrimSpace(host(t, "dpkg-deb", "-f", b.deb, k)); got != want {
				t.Errorf("dpkg-deb -f %s = %q, want %q", k, got, want)
			}
		}

		// The maintainer scripts are the repository's, and bash parses them.
		ctrl := t.TempDir()
		host(t, "dpkg-deb", "-e", b.deb, ctrl)
		for _, s := range []string{"preinst", "postinst", "prerm", "postrm"} {
			p := filepath.Join(ctrl, s)
			if readFile(t, p) != readFile(t, filepath.Join(root, "packaging/scripts/deb", s)) {
				t.Errorf("the deb's %s differs from packaging/scripts/deb/%s", s, s)
			}
			if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o755 {
				t.Errorf("the deb's %s: mode %v, %v; want 0755", s, fi.Mode(), err)
			}
			host(t, "bash", "-n", p)
		}

		// Packaged files are the repository's.
		data := t.TempDir()
		host(t, "dpkg-deb", "-x", b.deb, data)
		for dst, src := range sources {
			p := dst
			switch dst {
			case "monagent.service", "monagent-reconcile.timer", "monagent-backup.service", "monagent-backup.timer":
				p = "/lib/systemd/system/" + dst
			case "README.md":
				p = "/usr/share/doc/monagent/README.md"
			}
			if readFile(t, filepath.Join(data, p)) != readFile(t, filepath.Join(root, src)) {
				t.Errorf("the deb's %s differs from %s", p, src)
			}
		}
		if !bytes.Equal([]byte(readFile(t, filepath.Join(data, "usr/bin/monagent"))), []byte(readFile(t, b.binary))) {
			t.Errorf("the deb's /usr/bin/monagent is not %s", b.binary)
		}
	})

	t.Run("rpm", func(t *testing.T) {
		if _, err := exec.LookPath("rpm"); err != nil {
			t.Fatalf("rpm not found (scripts/setup.sh installs it: apt-get install rpm): %v", err)
		}
		want := wantFiles("/usr/lib/systemd/system")
		var wantList []string
		for p := range want {
			wantList = append(wantList, p)
		}
		sort.Strings(wantList)
		if got := strings.Fields(host(t, "rpm", "-qpl", b.rpm)); strings.Join(got, " ") != strings.Join(wantList, " ") {
			t.Errorf("rpm -qpl =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantList, "\n"))
		}
		modes := host(t, "rpm", "-qp", "--queryformat", `[%{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILEFLAGS:fflags} %{FILENAMES}\n]`, b.rpm)
		for _, line := range strings.Split(strings.TrimSpace(modes), "\n") {
			f := strings.Fields(line)
			if len(f) == 3 { // no flags
				f = []string{f[0], f[1], "", f[2]}
			}
			if len(f) != 4 {
				t.Fatalf("rpm -qp --queryformat: unexpected line %q", line)
			}
			mode, owner, flags, p := f[0], f[1], f[2], f[3]
			if mode != want[p] {
				t.Errorf("rpm: %s has mode %s, want %s", p, mode, want[p])
			}
			if owner != "root:root" {
				t.Errorf("rpm: %s is owned by %s, want root:root", p, owner)
			}
			wantFlags := ""
			switch p {
			case "/etc/monagent/config.yaml":
				wantFlags = "cn" // %config(noreplace)
			case "/usr/share/doc/monagent/README.md":
				wantFlags = "d" // %doc
			}
			if flags != wantFlags {
				t.Errorf("rpm: %s has flags %q, want %q", p, flags, wantFlags)
			}
		}
		if got := host(t, "rpm", "-qpc", b.rpm); got != "/etc/monagent/config.yaml\n" {
			t.Errorf("rpm -qpc = %q, want /etc/monagent/config.yaml alone", got)
		}
		if got := strings.TrimSpace(host(t, "rpm", "-qp", "--queryformat", `%{NAME} %{VERSION}-%{RELEASE} %{ARCH}`, b.rpm)); got != "monagent "+oldVersion+"-1 x86_64" {
			t.Errorf("rpm name, version, arch = %q", got)
		}
		var requires []string
		for _, r := range strings.Fields(host(t, "rpm", "-qp", "--requires", b.rpm)) {
			if !strings.HasPrefix(r, "rpmlib(") && r != "<=" && r != "=" && !regexp.MustCompile(`^[0-9.-]+$`).MatchString(r) {
				requires = append(requires, r)
			}
		}
		if strings.Join(requires, " ") != "util-linux" {
			t.Errorf("rpm -qp --requires: %q, want util-linux (and rpmlib's own)", requires)
		}
		if got := strings.Fields(host(t, "rpm", "-qp", "--recommends", b.rpm)); strings.Join(got, " ") != "xfsprogs e2fsprogs" {
			t.Errorf("rpm -qp --recommends = %q, want xfsprogs e2fsprogs", got)
		}

		// The scriptlets are the repository's scripts, run by /bin/sh, and
		// parse as POSIX sh (dash is stricter than the RHEL family's bash).
		scripts := host(t, "rpm", "-qp", "--scripts", b.rpm)
		for name, file := range map[string]string{
			"postinstall":   "post",
			"preuninstall":  "preun",
			"postuninstall": "postun",
		} {
			body, ok := scriptlet(scripts, name)
			if !ok {
				t.Errorf("rpm -qp --scripts: no %s scriptlet using /bin/sh:\n%s", name, scripts)
				continue
			}
			if want := readFile(t, filepath.Join(root, "packaging/scripts/rpm", file)); strings.TrimSpace(body) != strings.TrimSpace(want) {
				t.Errorf("the rpm's %s scriptlet differs from packaging/scripts/rpm/%s:\n%s", name, file, body)
			}
			host(t, "dash", "-n", "-c", body)
		}
		if strings.Contains(scripts, "preinstall scriptlet") {
			t.Errorf("rpm -qp --scripts: unexpected preinstall scriptlet")
		}

		data := t.TempDir()
		extract := exec.Command("sh", "-c", `set -e; rpm2archive - <"$1" | tar -xzf -`, "sh", b.rpm)
		extract.Dir = data
		if out, err := extract.CombinedOutput(); err != nil {
			t.Fatalf("rpm2archive (Debian's rpm2cpio package, a dependency of rpm) | tar: %v\n%s", err, out)
		}
		for dst, src := range sources {
			p := dst
			switch dst {
			case "monagent.service", "monagent-reconcile.timer", "monagent-backup.service", "monagent-backup.timer":
				p = "/usr/lib/systemd/system/" + dst
			case "README.md":
				p = "/usr/share/doc/monagent/README.md"
			}
			if readFile(t, filepath.Join(data, p)) != readFile(t, filepath.Join(root, src)) {
				t.Errorf("the rpm's %s differs from %s", p, src)
			}
		}
	})
}

// scriptlet returns the body of the named scriptlet in `rpm -qp --scripts`
// output, if it is there and runs with /bin/sh.
func scriptlet(out, name string) (string, bool) {
	head := regexp.MustCompile(`(?m)^(\w+) scriptlet \(using ([^)]+)\):$`)
	idx := head.FindAllStringSubmatchIndex(out, -1)
	for i, m := range idx {
		if out[m[2]:m[3]] != name {
			continue
		}
		end := len(out)
		if i+1 < len(idx) {
			end = idx[i+1][0]
		}
		return out[m[1]:end], out[m[4]:m[5]] == "/bin/sh"
	}
	return "", false
}

// guest runs commands in a booted instance.
type guest struct {
	t  *testing.T
	in *instance.Instance
}

// try runs a bash script inside (set -euo pipefail) and returns its
// combined output, trimmed.
func (g guest) try(script string) (string, error) {
	ctx, cancel := context.WithTimeout(g.t.Context(), guestTimeout)
	defer cancel()
	out, err := g.in.Exec(ctx, "bash", "-c", "set -euo pipefail\nexport DEBIAN_FRONTEND=noninteractive\n"+script)
	return strings.TrimSpace(string(out)), err
}

// run is try that fails the test on an error.
func (g guest) run(script string) string {
	g.t.Helper()
	out, err := g.try(script)
	if err != nil {
		g.t.Fatalf("%v", err)
	}
	return out
}

// timed is run that logs how long the script took.
func (g guest) timed(what, script string) string {
	g.t.Helper()
	start := time.Now()
	out := g.run(script)
	g.t.Logf("%s: %s\n%s", what, time.Since(start).Round(time.Millisecond), out)
	return out
}

// expect checks that script prints want.
func (g guest) expect(what, script, want string) {
	g.t.Helper()
	if got := g.run(script); got != want {
		g.t.Errorf("%s: %q, want %q", what, got, want)
	}
}

// enabledNotStarted checks that both units are enabled and not running,
// and that monagent.service never ran.
func (g guest) enabledNotStarted(when string) {
	g.t.Helper()
	g.expect(when+": systemctl is-enabled", "systemctl is-enabled "+units+" || true", "enabled\nenabled")
	g.expect(when+": the [Install] links", "readlink /etc/systemd/system/multi-user.target.wants/monagent.service /etc/systemd/system/timers.target.wants/monagent-reconcile.timer | xargs -n1 basename",
		"monagent.service\nmonagent-reconcile.timer")
	g.expect(when+": monagent.service never started",
		"systemctl show -p ActiveState -p InvocationID -p ExecMainStartTimestampMonotonic -p NRestarts monagent.service | sort",
		"ActiveState=inactive\nExecMainStartTimestampMonotonic=0\nInvocationID=\nNRestarts=0")
	g.expect(when+": systemd's view of the unit files is current",
		"for u in "+units+"; do systemctl show -p NeedDaemonReload --value $u; done", "no\nno")
	g.expect(when+": the backup units loaded, left to the operator",
		"for u in "+backupUnits+"; do for p in LoadState UnitFileState ActiveState; do systemctl show -p $p --value $u; done; done | paste -sd' '",
		"loaded disabled inactive loaded static inactive")
}

// removed checks that both units are stopped, disabled and forgotten.
func (g guest) removed(when string) {
	g.t.Helper()
	g.expect(when+": systemctl is-active", "systemctl is-active "+units+" || true", "inactive\ninactive")
	g.expect(when+": LoadState", "for u in "+units+"; do systemctl show -p LoadState --value $u; done", "not-found\nnot-found")
	g.expect(when+": [Install] links", `for f in /etc/systemd/system/multi-user.target.wants/monagent.service /etc/systemd/system/timers.target.wants/monagent-reconcile.timer; do
		if [ -L "$f" ] || [ -e "$f" ]; then echo "$f is left"; fi
	done`, "")
	g.expect(when+": systemctl is-enabled", "systemctl is-enabled "+units+" 2>/dev/null || true", "")
	g.expect(when+": the backup units", "for u in "+backupUnits+"; do for p in LoadState ActiveState; do systemctl show -p $p --value $u; done; done | paste -sd' '",
		"not-found inactive not-found inactive")
	g.expect(when+": the backup timer's [Install] link", "test ! -L /etc/systemd/system/timers.target.wants/monagent-backup.timer && echo gone", "gone")
}

// bootInstance boots a fresh instance with the given files copied to its
// /var/tmp (the instance's /tmp is a tmpfs of its own).
func bootInstance(t *testing.T, name string, files []string, binds ...string) guest {
	t.Helper()
	needRoot(t)
	ctx, cancel := context.WithTimeout(t.Context(), 25*time.Minute)
	defer cancel()
	base, err := instance.EnsureRootfs(ctx, cacheDir())
	if err != nil {
		t.Fatalf("instance.EnsureRootfs(%s): %v", cacheDir(), err)
	}
	in := instance.Boot(t, instance.Options{
		Name:  name,
		Base:  base,
		Binds: binds,
		Setup: func(root string) error {
			for _, f := range files {
				b, err := os.ReadFile(f)
				if err != nil {
					return err
				}
				if err := os.WriteFile(filepath.Join(root, "var/tmp", filepath.Base(f)), b, 0o644); err != nil {
					return err
				}
			}
			return nil
		},
	})
	return guest{t: t, in: in}
}

const editedLine = "# edited after installation: an upgrade and a removal keep this line"

// TestDebUnderSystemd installs, upgrades, reinstalls, removes and purges
// the .deb with dpkg inside a booted instance (real systemd 252).
func TestDebUnderSystemd(t *testing.T) {
	root := repoRoot(t)
	oldPkg, newPkg := build(t, oldTag, oldVersion), build(t, newTag, newVersion)
	g := bootInstance(t, "pkg-deb", []string{oldPkg.deb, newPkg.deb})
	oldDeb, newDeb := "/var/tmp/"+filepath.Base(oldPkg.deb), "/var/tmp/"+filepath.Base(newPkg.deb)
	example := readFile(t, filepath.Join(root, "packaging/config.example.yaml"))
	config := filepath.Join(g.in.Root(), "etc/monagent/config.yaml")

	// Install: enabled, not started.
	g.timed("dpkg -i "+oldDeb, "dpkg -i "+oldDeb)
	g.expect("dpkg status", "dpkg-query -W -f='${Status} ${Version}' monagent", "install ok installed "+oldVersion+"-1")
	g.enabledNotStarted("after install")
	g.expect("after install: systemctl is-active", "systemctl is-active "+units+" || true", "inactive\ninactive")
	g.expect("after install: modes", "stat -c '%a %U:%G %n' /usr/bin/monagent /lib/systemd/system/monagent.service /lib/systemd/system/monagent-reconcile.timer /etc/monagent /etc/monagent/config.yaml /var/lib/monagent /usr/share/doc/monagent/README.md",
		"755 root:root /usr/bin/monagent\n644 root:root /lib/systemd/system/monagent.service\n644 root:root /lib/systemd/system/monagent-reconcile.timer\n755 root:root /etc/monagent\n600 root:root /etc/monagent/config.yaml\n700 root:root /var/lib/monagent\n644 root:root /usr/share/doc/monagent/README.md")
	g.expect("conffiles", "dpkg-query -W -f='${Conffiles}' monagent | awk '{print $1}'", "/etc/monagent/config.yaml")
	if got := readFile(t, config); got != example {
		t.Errorf("after install: /etc/monagent/config.yaml is not packaging/config.example.yaml")
	}
	if got := g.run("/usr/bin/monagent version"); !strings.HasPrefix(got, "monagent "+oldTag+" ") {
		t.Errorf("monagent version = %q, want %s", got, oldTag)
	}

	// The operator (or user-data) edits the config; the timer runs.
	g.run("echo '" + editedLine + "' >>/etc/monagent/config.yaml")
	g.run("systemctl start monagent-reconcile.timer")
	timerID := g.run("systemctl show -p InvocationID --value monagent-reconcile.timer")
	g.expect("timer started", "systemctl is-active monagent-reconcile.timer", "active")

	// Upgrade: nothing stopped, disabled or restarted; the edited config kept.
	g.timed("dpkg -i "+newDeb+" (upgrade)", "dpkg -i "+newDeb)
	g.expect("after upgrade: dpkg status", "dpkg-query -W -f='${Status} ${Version}' monagent", "install ok installed "+newVersion+"-1")
	g.enabledNotStarted("after upgrade")
	g.expect("after upgrade: the timer was not restarted", "systemctl show -p ActiveState -p InvocationID monagent-reconcile.timer | sort",
		"ActiveState=active\nInvocationID="+timerID)
	if got := readFile(t, config); got != example+editedLine+"\n" {
		t.Errorf("after upgrade: /etc/monagent/config.yaml lost its edit:\n%s", lastLines(got, 3))
	}
	g.expect("after upgrade: no dpkg copies of the config", "ls -A /etc/monagent", "config.yaml")
	if got := g.run("/usr/bin/monagent version"); !strings.HasPrefix(got, "monagent "+newTag+" ") {
		t.Errorf("after upgrade: monagent version = %q, want %s", got, newTag)
	}

	// An upgrade (here a reinstall of the same version) keeps a unit the
	// operator disabled disabled.
	g.run("systemctl disable --now monagent-reconcile.timer")
	g.timed("dpkg -i "+newDeb+" (reinstall, timer disabled by the operator)", "dpkg -i "+newDeb)
	g.expect("reinstall: the operator's choice kept", "systemctl is-enabled "+units+" || true", "enabled\ndisabled")
	g.run("systemctl enable --now monagent-reconcile.timer")

	// The operator enables the backup timer; its service runs monagent
	// backup, which refuses the package's example configuration (exit 2).
	g.run("systemctl enable --now monagent-backup.timer")
	g.expect("backup timer enabled", "systemctl is-active monagent-backup.timer", "active")
	g.run("systemctl start monagent-backup.service || true")
	g.expect("monagent-backup.service ran monagent backup", "for p in Result ExecMainStatus; do systemctl show -p $p --value monagent-backup.service; done | paste -sd' '", "exit-code 2")
	g.expect("its error in the journal", "journalctl --sync; journalctl -q -o cat -u monagent-backup.service | grep 'example configuration' >/dev/null && echo found", "found")

	// State as monagent leaves it.
	g.run(`printf '{"version":1}\n' >/var/lib/monagent/state.json && chmod 0600 /var/lib/monagent/state.json`)

	// Remove: stopped and disabled; config, state and data kept.
	g.timed("dpkg -r monagent", "dpkg -r monagent")
	g.removed("after dpkg -r")
	g.expect("after dpkg -r: dpkg status", "dpkg-query -W -f='${Status}' monagent", "deinstall ok config-files")
	g.expect("after dpkg -r: binary gone", "test ! -e /usr/bin/monagent && echo gone", "gone")
	g.expect("after dpkg -r: kept", "stat -c '%a %n' /etc/monagent /etc/monagent/config.yaml /var/lib/monagent /var/lib/monagent/state.json",
		"755 /etc/monagent\n600 /etc/monagent/config.yaml\n700 /var/lib/monagent\n600 /var/lib/monagent/state.json")
	if got := readFile(t, config); got != example+editedLine+"\n" {
		t.Errorf("after dpkg -r: /etc/monagent/config.yaml lost its edit:\n%s", lastLines(got, 3))
	}

	// Installed again after a removal: enabled again, as a first install.
	g.timed("dpkg -i "+newDeb+" (after dpkg -r)", "dpkg -i "+newDeb)
	g.enabledNotStarted("reinstall after dpkg -r")
	g.expect("reinstall after dpkg -r: the config kept, preinst's mark gone", "ls -A /etc/monagent /var/lib/monagent", "/etc/monagent:\nconfig.yaml\n\n/var/lib/monagent:\nstate.json")
	if got := readFile(t, config); got != example+editedLine+"\n" {
		t.Errorf("reinstall after dpkg -r: /etc/monagent/config.yaml lost its edit")
	}

	// Purge: the state stays; dpkg itself deletes the conffile.
	g.run("systemctl start monagent-reconcile.timer")
	g.timed("dpkg -P monagent", "dpkg -P monagent")
	g.removed("after dpkg -P")
	g.expect("after dpkg -P: dpkg status", "dpkg-query -W -f='${Status}' monagent 2>&1 || true", "dpkg-query: no packages found matching monagent")
	g.expect("after dpkg -P: state kept", "stat -c '%a %n' /var/lib/monagent /var/lib/monagent/state.json", "700 /var/lib/monagent\n600 /var/lib/monagent/state.json")
}

// TestDebInChroot installs and removes the .deb in a chroot with no
// systemd running, as an image build does: enable makes the links.
func TestDebInChroot(t *testing.T) {
	needRoot(t)
	b := build(t, oldTag, oldVersion)
	ctx, cancel := context.WithTimeout(t.Context(), 25*time.Minute)
	defer cancel()
	base, err := instance.EnsureRootfs(ctx, cacheDir())
	if err != nil {
		t.Fatalf("instance.EnsureRootfs(%s): %v", cacheDir(), err)
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	for _, d := range []string{"upper", "work", "root"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", base, filepath.Join(dir, "upper"), filepath.Join(dir, "work"))
	if err := syscall.Mount("overlay", root, "overlay", 0, opts); err != nil {
		t.Fatalf("mount overlay on %s (%s): %v", root, opts, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(root, 0); err != nil {
			t.Errorf("unmount %s: %v", root, err)
		}
	})
	if err := os.WriteFile(filepath.Join(root, "var/tmp/monagent.deb"), []byte(readFile(t, b.deb)), 0o644); err != nil {
		t.Fatal(err)
	}
	chroot := func(script string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), guestTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, "chroot", root, "/bin/bash", "-c", "set -euo pipefail\n"+script)
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND=noninteractive", "LANG=C.UTF-8"}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("chroot %s: %s: %v\n%s", root, script, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	start := time.Now()
	out := chroot("dpkg -i /var/tmp/monagent.deb")
	t.Logf("dpkg -i in a chroot: %s\n%s", time.Since(start).Round(time.Millisecond), out)
	for link, target := range map[string]string{
		"etc/systemd/system/multi-user.target.wants/monagent.service":     "/lib/systemd/system/monagent.service",
		"etc/systemd/system/timers.target.wants/monagent-reconcile.timer": "/lib/systemd/system/monagent-reconcile.timer",
	} {
		if got, err := os.Readlink(filepath.Join(root, link)); err != nil || got != target {
			t.Errorf("in the chroot, /%s -> %q, %v; want %s", link, got, err, target)
		}
	}
	if got := chroot("systemctl is-enabled " + units); got != "enabled\nenabled" {
		t.Errorf("in the chroot, systemctl is-enabled = %q", got)
	}
	chroot("dpkg -r monagent")
	if got := chroot("systemctl is-enabled " + units + " 2>/dev/null || true"); got != "" {
		t.Errorf("in the chroot after dpkg -r, systemctl is-enabled = %q", got)
	}
	for _, link := range []string{"etc/systemd/system/multi-user.target.wants/monagent.service", "etc/systemd/system/timers.target.wants/monagent-reconcile.timer"} {
		if _, err := os.Lstat(filepath.Join(root, link)); !os.IsNotExist(err) {
			t.Errorf("in the chroot after dpkg -r, /%s: %v; want it gone", link, err)
		}
	}
}

// TestRPMUnderSystemd runs the .rpm's scriptlets for real: Debian's rpm
// inside a booted instance (real systemd 252) installs, upgrades, erases
// and installs again the package, its scriptlets run by /bin/sh (dash,
// stricter than the RHEL family's bash).
func TestRPMUnderSystemd(t *testing.T) {
	root := repoRoot(t)
	oldPkg, newPkg := build(t, oldTag, oldVersion), build(t, newTag, newVersion)
	// apt's downloads are kept in the rig's cache across runs.
	archives := filepath.Join(cacheDir(), "packaging-apt-archives")
	if err := os.MkdirAll(filepath.Join(archives, "partial"), 0o755); err != nil {
		t.Fatal(err)
	}
	g := bootInstance(t, "pkg-rpm", []string{oldPkg.rpm, newPkg.rpm}, archives+":/var/cache/apt/archives")
	oldRPM, newRPM := "/var/tmp/"+filepath.Base(oldPkg.rpm), "/var/tmp/"+filepath.Base(newPkg.rpm)
	example := readFile(t, filepath.Join(root, "packaging/config.example.yaml"))
	config := filepath.Join(g.in.Root(), "etc/monagent/config.yaml")

	g.timed("apt-get install rpm (inside)", "timeout 60 apt-get -q update >/dev/null && timeout 300 apt-get install -y -q --no-install-recommends rpm >/dev/null && rpm --version")
	// Debian's rpm acts on the system only with --force-debian; the
	// dependencies are Debian packages rpm does not know of.
	rpmCmd := "rpm --force-debian --nodeps"

	g.timed("rpm -i "+oldRPM, rpmCmd+" -i "+oldRPM)
	g.enabledNotStarted("after rpm -i")
	g.expect("after rpm -i: systemctl is-active", "systemctl is-active "+units+" || true", "inactive\ninactive")
	g.expect("after rpm -i: modes", "stat -c '%a %n' /usr/bin/monagent /usr/lib/systemd/system/monagent.service /etc/monagent /etc/monagent/config.yaml /var/lib/monagent",
		"755 /usr/bin/monagent\n644 /usr/lib/systemd/system/monagent.service\n755 /etc/monagent\n600 /etc/monagent/config.yaml\n700 /var/lib/monagent")

	g.run("echo '" + editedLine + "' >>/etc/monagent/config.yaml")
	g.run("systemctl start monagent-reconcile.timer")
	timerID := g.run("systemctl show -p InvocationID --value monagent-reconcile.timer")

	g.timed("rpm -U "+newRPM, rpmCmd+" -U "+newRPM)
	g.expect("after rpm -U: version", "rpm -q monagent", "monagent-"+newVersion+"-1.x86_64")
	g.enabledNotStarted("after rpm -U")
	g.expect("after rpm -U: the timer was not restarted", "systemctl show -p ActiveState -p InvocationID monagent-reconcile.timer | sort",
		"ActiveState=active\nInvocationID="+timerID)
	if got := readFile(t, config); got != example+editedLine+"\n" {
		t.Errorf("after rpm -U: /etc/monagent/config.yaml lost its edit:\n%s", lastLines(got, 3))
	}
	g.expect("after rpm -U: no rpm copies of the config", "ls -A /etc/monagent", "config.yaml")

	g.run("systemctl enable --now monagent-backup.timer")
	g.run(`printf '{"version":1}\n' >/var/lib/monagent/state.json && chmod 0600 /var/lib/monagent/state.json`)
	g.timed("rpm -e monagent", "rpm --force-debian -e monagent")
	g.removed("after rpm -e")
	g.expect("after rpm -e: kept", "ls -A /etc/monagent /var/lib/monagent && stat -c '%a %n' /etc/monagent/config.yaml /var/lib/monagent",
		"/etc/monagent:\nconfig.yaml\n\n/var/lib/monagent:\nstate.json\n600 /etc/monagent/config.yaml\n700 /var/lib/monagent")
	if got := readFile(t, config); got != example+editedLine+"\n" {
		t.Errorf("after rpm -e: /etc/monagent/config.yaml lost its edit:\n%s", lastLines(got, 3))
	}

	g.timed("rpm -i "+newRPM+" (after rpm -e)", rpmCmd+" -i "+newRPM)
	g.enabledNotStarted("rpm -i after rpm -e")
	if got := readFile(t, config); got != example+editedLine+"\n" {
		t.Errorf("rpm -i after rpm -e: /etc/monagent/config.yaml lost its edit:\n%s", lastLines(got, 3))
	}
	// The package's own copy, beside the kept one (noreplace).
	g.expect("rpm -i after rpm -e: /etc/monagent", "ls -A /etc/monagent", "config.yaml\nconfig.yaml.rpmnew")
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
