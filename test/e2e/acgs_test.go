package e2e

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"golang.org/x/crypto/bcrypt"

	"github.com/monagent/monagent/internal/ebs"
	"github.com/monagent/monagent/internal/smoke"
)

// The ACGS profile (the second guide) on hosts with and without AWS, with
// the real Prometheus and Alertmanager behind TLS and basic auth.

const acgsProject = "acgs"

// plainHost is a host off AWS: a root, a configuration, no awssim.
type plainHost struct {
	t      testing.TB
	root   string
	config string
}

// newPlainACGSHost is a host off AWS running the example configuration.
func newPlainACGSHost(t testing.TB, extra string) *plainHost {
	t.Helper()
	dir, sum := plugin(t)
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	t.Cleanup(srv.Close)
	h := &plainHost{t: t, root: t.TempDir(), config: filepath.Join(t.TempDir(), "config.yaml")}
	cfg := acgsConfig(t, h.root, srv.URL, sum)
	writeFile(t, h.config, strings.Replace(cfg, "\ncloud: auto\n", "\ncloud: none\n", 1)+extra)
	t.Cleanup(func() { acgsDown(h.root) })
	return h
}

// acgsConfig is the example configuration made to run under root: the
// bundle copied where the package puts it, the plugin from pluginURL.
func acgsConfig(t testing.TB, root, pluginURL, sum string) string {
	t.Helper()
	src := filepath.Join(root, "usr/share/monagent/examples/acgs/stack")
	if err := os.MkdirAll(filepath.Dir(src), 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, "cp", "-a", "../../examples/acgs/stack", src)
	cfg := readFile(t, "../../examples/acgs/monagent.yaml")
	cfg = strings.Replace(cfg, "docker:\n  user: \"\"\n", fmt.Sprintf(`docker:
  user: ""
  ready_timeout: 60s
  compose_plugin:
    version: v5.6.0
    url: %s/docker-compose
    sha256: %q
`, pluginURL, sum), 1)
	return strings.Replace(cfg, "  health_timeout: 180s\n", "  health_timeout: 120s\n  settle: 5s\n", 1)
}

func (h *plainHost) path(p string) string { return filepath.Join(h.root, p) }

func (h *plainHost) command(args ...string) *exec.Cmd {
	cmd := exec.Command(bins.monagent, append([]string{"--root", h.root, "--config", h.config}, args...)...)
	// No AWS at all: a metadata endpoint nobody answers on, no credentials.
	cmd.Env = append(os.Environ(), "AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:9", "AWS_CONFIG_FILE=/dev/null",
		"AWS_SHARED_CREDENTIALS_FILE=/dev/null")
	return cmd
}

// killWhen runs monagent and sends it SIGKILL as soon as cond holds; it
// fails the test if the run ends first or is still going after limit.
func (h *plainHost) killWhen(cond func() bool, limit time.Duration, args ...string) {
	h.t.Helper()
	cmd := h.command(args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.After(limit)
	for {
		select {
		case err := <-done:
			h.t.Fatalf("monagent %v ended (%v) before the point it was to be killed at:\n%s", args, err, lastLines(out.String(), 40))
		case <-deadline:
			_ = cmd.Process.Kill()
			<-done
			h.t.Fatalf("monagent %v did not reach the point it was to be killed at in %v:\n%s", args, limit, lastLines(out.String(), 40))
		case <-time.After(time.Millisecond):
		}
		if cond() {
			_ = cmd.Process.Kill()
			<-done
			return
		}
	}
}

func (h *plainHost) monagent(args ...string) result {
	h.t.Helper()
	cmd := h.command(args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String(), elapsed: time.Since(start)}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		h.t.Fatalf("monagent did not run: %v", err)
	}
	return r
}

func (h *plainHost) must(args ...string) result {
	h.t.Helper()
	r := h.monagent(args...)
	if r.code != 0 {
		h.t.Fatalf("monagent %v: exit %d\nstdout:\n%s\nstderr:\n%s", args, r.code, r.stdout, lastLines(r.stderr, 40))
	}
	return r
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}

// acgsDown removes the project's containers and Docker volumes.
func acgsDown(root string) {
	dir := filepath.Join(root, "opt/acgs-1/monitoring")
	args := []string{"compose", "--project-name", acgsProject, "--project-directory", dir, "--file", filepath.Join(dir, "docker-compose.monitoring.yml")}
	if _, err := os.Stat(filepath.Join(root, "etc/acgs/monitoring.env")); err == nil {
		args = append(args, "--env-file", filepath.Join(root, "etc/acgs/monitoring.env"))
	}
	cmd := exec.Command("docker", append(args, "down", "--volumes", "--timeout", "5")...)
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+filepath.Join(root, "usr/local/lib/docker"))
	_ = cmd.Run()
}

// promClient reaches Prometheus as the smoke test does: TLS against the
// stack's certificate, basic auth.
type promClient struct {
	t          testing.TB
	http       *http.Client
	base, user string
	password   string
}

func newPromClient(t testing.TB, root, base string, env map[string]string, passwordFile string) *promClient {
	t.Helper()
	c, err := smoke.HTTPClient(filepath.Join(root, "opt/acgs-1/monitoring/certs/prometheus.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pw := env["PROMETHEUS_PASSWORD"]
	if pw == "" {
		pw = readFile(t, passwordFile)
	}
	return &promClient{t: t, http: c, base: base, user: "acgs_monitor", password: pw}
}

func (p *promClient) do(method, path string) (int, []byte) {
	p.t.Helper()
	req, _ := http.NewRequest(method, p.base+path, nil)
	if p.user != "" {
		req.SetBasicAuth(p.user, p.password)
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// valueAt is the query's first value at time at, or -1 when it has none.
func (p *promClient) valueAt(query string, at time.Time) float64 {
	p.t.Helper()
	code, b := p.do(http.MethodGet, "/api/v1/query?query="+url.QueryEscape(query)+fmt.Sprintf("&time=%d", at.Unix()))
	if code != http.StatusOK {
		p.t.Fatalf("query %s: %d %s", query, code, b)
	}
	var r struct {
		Data struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		p.t.Fatal(err)
	}
	if len(r.Data.Result) == 0 {
		return -1
	}
	var v float64
	fmt.Sscan(r.Data.Result[0].Value[1].(string), &v)
	return v
}

type fileID struct {
	ino   uint64
	mtime time.Time
}

func idOf(t testing.TB, path string) fileID {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fileID{fi.Sys().(*syscall.Stat_t).Ino, fi.ModTime()}
}

// TestACGSOffAWS: the guide's host on a machine with no AWS at all.
// Bootstrap from nothing to a stack that passes smoke; every secret the
// guide generates, kept and never rotated; an operator's secret turning
// its receiver on; a backup; a tampered archive refused with nothing
// changed; the backup restored onto a fresh host, with the metrics
// written before it queryable there.
func TestACGSOffAWS(t *testing.T) {
	lockSeedStack(t)
	h := newPlainACGSHost(t, "")
	r := h.must("bootstrap")
	t.Logf("bootstrap off AWS to a running stack: %v", r.elapsed)

	envPath := h.path("etc/acgs/monitoring.env")
	checkFile(t, envPath, 0o600, 0, 0)
	env := readEnv(t, envPath)
	for _, k := range []string{"GRAFANA_ADMIN_PASSWORD", "GRAFANA_SECRET_KEY", "PROMETHEUS_PASSWORD"} {
		if len(env[k]) != 44 {
			t.Errorf("%s: %d characters, want the 44 of base64 of 32 bytes", k, len(env[k]))
		}
	}
	if !strings.HasPrefix(env["BACKUP_ENCRYPTION_KEY"], "AGE-SECRET-KEY-1") {
		t.Error("BACKUP_ENCRYPTION_KEY is not an age identity")
	}
	if _, ok := env["SMTP_PASSWORD"]; ok {
		t.Error("an absent SMTP_PASSWORD is in the env file")
	}
	for _, v := range env {
		if len(v) > 8 && (strings.Contains(r.stdout, v) || strings.Contains(r.stderr, v)) {
			t.Fatal("a secret value is in the output")
		}
	}
	secrets := h.path("etc/acgs/secrets")
	checkFile(t, secrets, 0o700, 0, 0)
	checkFile(t, filepath.Join(secrets, "GRAFANA_ADMIN_PASSWORD"), 0o600, 0, 0)
	stack := h.path("opt/acgs-1/monitoring")
	checkFile(t, filepath.Join(stack, "secrets/prometheus_password"), 0o600, 65534, 65534)
	checkFile(t, filepath.Join(stack, "certs/prometheus.key"), 0o600, 65534, 65534)
	checkFile(t, filepath.Join(stack, "certs/prometheus.crt"), 0o644, 0, 0)
	checkCert(t, filepath.Join(stack, "certs/prometheus.crt"), "localhost", "prometheus", "alertmanager", "127.0.0.1")
	checkWebYML(t, filepath.Join(stack, "prometheus/web.yml"), env["PROMETHEUS_PASSWORD"])
	am := readFile(t, filepath.Join(stack, "alertmanager/alertmanager.yml"))
	for _, r := range []string{"name: slack", "name: email", "name: pagerduty"} {
		if strings.Contains(am, r) {
			t.Errorf("alertmanager.yml has %q without its secret", r)
		}
	}
	if !strings.Contains(r.stdout, `"key":"SLACK_WEBHOOK_URL"`) || !strings.Contains(r.stdout, "operator.env") {
		t.Error("no warning names the missing SLACK_WEBHOOK_URL and where to put it")
	}

	sm := h.must("smoke")
	for _, want := range []string{"prometheus /-/healthy", "alertmanager /api/v2/alerts", "query p95", "scrape duration", "401 without"} {
		if !strings.Contains(sm.stdout, want) {
			t.Errorf("smoke output lacks %q:\n%s", want, sm.stdout)
		}
	}
	t.Logf("smoke:\n%s", sm.stdout)

	st := h.must("status", "--json")
	if !strings.Contains(st.stdout, `"/etc/acgs/monitoring.env"`) {
		t.Errorf("status does not show the env file:\n%s", st.stdout)
	}
	for _, v := range env {
		if len(v) > 8 && strings.Contains(st.stdout, v) {
			t.Fatal("status shows a secret value")
		}
	}

	// A rerun changes nothing: no secret rotated, no file rewritten.
	watched := []string{envPath, filepath.Join(secrets, "PROMETHEUS_PASSWORD.bcrypt"), filepath.Join(stack, "prometheus/web.yml"),
		filepath.Join(stack, "certs/prometheus.crt"), filepath.Join(stack, "alertmanager/alertmanager.yml")}
	before := map[string]fileID{}
	for _, p := range watched {
		before[p] = idOf(t, p)
	}
	h.must("reconcile")
	for _, p := range watched {
		if idOf(t, p) != before[p] {
			t.Errorf("a converged rerun rewrote %s", p)
		}
	}
	if !mapsEqual(readEnv(t, envPath), env) {
		t.Error("a rerun changed the generated secrets")
	}

	// The operator's Slack webhook turns its receiver on.
	writeFile(t, h.path("etc/acgs/operator.env"), "SLACK_WEBHOOK_URL='https://hooks.example.com/services/T0/B0/x'\n")
	if err := os.Chmod(h.path("etc/acgs/operator.env"), 0o600); err != nil {
		t.Fatal(err)
	}
	h.must("reconcile")
	if am := readFile(t, filepath.Join(stack, "alertmanager/alertmanager.yml")); !strings.Contains(am, "name: slack") {
		t.Errorf("the Slack receiver is not in alertmanager.yml once its secret exists:\n%s", am)
	}
	checkFile(t, filepath.Join(stack, "secrets/slack_webhook_url"), 0o600, 65534, 65534)

	// Metrics written before the backup.
	prom := newPromClient(t, h.root, "https://127.0.0.1:9090", env, "")
	waitUntil(t, time.Minute, "Prometheus has scraped itself", func() bool { return prom.valueAt(`up{job="prometheus"}`, time.Now()) == 1 })
	var written time.Time
	var marker float64
	waitUntil(t, time.Minute, "a sample to compare after the restore", func() bool {
		written = time.Now()
		marker = prom.valueAt(`prometheus_tsdb_head_series`, written)
		return marker > 0
	})

	// A backup killed while Prometheus makes its snapshot, which it
	// finishes all the same: the next backup removes it (checked below).
	snapshots := h.path("var/lib/acgs/monitoring/*/snapshots/*")
	made := func() bool { m, _ := filepath.Glob(snapshots); return len(m) > 0 }
	h.killWhen(made, 2*time.Minute, "backup")
	ledger := h.path("var/lib/acgs/monitoring/.monagent-snapshots")
	if l := readFile(t, ledger); !strings.HasPrefix(l, "requested ") && !strings.HasPrefix(l, "made ") {
		t.Errorf("the killed backup's snapshot is not in the ledger: %q", l)
	} else {
		t.Logf("killed with the snapshot in the ledger as %q", strings.TrimSpace(l))
	}
	// Grafana may have been stopped for the copy: the timer's reconcile
	// starts it again.
	h.must("reconcile")

	b := h.must("backup")
	t.Logf("%s (%v)", strings.TrimSpace(b.stdout), b.elapsed)
	archives, _ := filepath.Glob(h.path("var/backups/acgs-monitoring/*.tar.gz.age"))
	if len(archives) != 1 {
		t.Fatalf("%d archives after one backup", len(archives))
	}
	archive := filepath.Join(t.TempDir(), filepath.Base(archives[0]))
	run(t, "cp", archives[0], archive)
	keyFile := filepath.Join(t.TempDir(), "backup.key")
	writeFile(t, keyFile, env["BACKUP_ENCRYPTION_KEY"]+"\n")
	checkAgeCLI(t, archive, keyFile)
	if snaps, _ := filepath.Glob(snapshots); len(snaps) != 0 {
		t.Errorf("a Prometheus snapshot was left behind: %v", snaps)
	}
	if _, err := os.Stat(ledger); !os.IsNotExist(err) {
		t.Errorf("the snapshot ledger is left: %v %q", err, readFile(t, ledger))
	}
	if containers(t, acgsProject)["grafana"].Status != "running" {
		t.Error("grafana is not running again after the backup")
	}

	// A tampered archive is refused, and the host is left as it was.
	tampered := filepath.Join(t.TempDir(), "tampered.tar.gz.age")
	data := []byte(readFile(t, archive))
	data[len(data)/2] ^= 0x01
	writeFile(t, tampered, string(data))
	envBefore := readFile(t, envPath)
	if r := h.monagent("restore", "--from", tampered, "--identity", keyFile); r.code == 0 || !strings.Contains(r.stderr, "nothing on this host was changed") {
		t.Errorf("restore of a tampered archive: exit %d\n%s", r.code, lastLines(r.stderr, 5))
	}
	truncated := filepath.Join(t.TempDir(), "truncated.tar.gz.age")
	writeFile(t, truncated, string(data[:len(data)-100]))
	if r := h.monagent("restore", "--from", truncated, "--identity", keyFile); r.code == 0 {
		t.Error("restore of a truncated archive succeeded")
	}
	if readFile(t, envPath) != envBefore || containers(t, acgsProject)["prometheus"].Status != "running" {
		t.Error("a refused restore changed the host")
	}

	// The old host goes away; a fresh one is restored from the archive.
	acgsDown(h.root)
	fresh := newPlainACGSHost(t, "")
	// A restore cut short between two parts (/etc/acgs is a file in the
	// way of the secrets, once the data and the stack are in): reconcile
	// refuses to start the stack on that mix, doctor says so, and the
	// restore run again completes it.
	writeFile(t, fresh.path("etc/acgs"), "in the way\n")
	if r := fresh.monagent("restore", "--from", archive, "--identity", keyFile); r.code == 0 || !strings.Contains(r.stderr, "the parts before it are restored: ") {
		t.Fatalf("restore with /etc/acgs in the way: exit %d\n%s", r.code, lastLines(r.stderr, 5))
	}
	if err := os.Remove(fresh.path("etc/acgs")); err != nil {
		t.Fatal(err)
	}
	if r := fresh.monagent("reconcile"); r.code != 4 || !strings.Contains(r.stderr, "was cut short") {
		t.Errorf("reconcile after a restore cut short: exit %d, want 4 naming the restore\n%s", r.code, lastLines(r.stderr, 5))
	}
	if len(containers(t, acgsProject)) != 0 {
		t.Error("a stack was started on a host a restore left half done")
	}
	if r := fresh.monagent("doctor"); r.code != 1 || !strings.Contains(r.stdout, "FAIL  restore: a restore of ") {
		t.Errorf("doctor after a restore cut short: exit %d\n%s", r.code, r.stdout)
	}
	rr := fresh.must("restore", "--from", archive, "--identity", keyFile)
	if _, err := os.Stat(fresh.path("var/lib/monagent/restore-journal.json")); !os.IsNotExist(err) {
		t.Errorf("the restore journal is left after a complete restore: %v", err)
	}
	t.Logf("restore onto a fresh host, reconcile and smoke: %v", rr.elapsed)
	if !strings.Contains(rr.stdout, "passed") {
		t.Errorf("restore did not report smoke:\n%s", rr.stdout)
	}
	if am := readFile(t, fresh.path("opt/acgs-1/monitoring/alertmanager/alertmanager.yml")); !strings.Contains(am, "name: slack") {
		t.Error("the operator's Slack webhook did not come back with the restore")
	}
	freshEnv := readEnv(t, fresh.path("etc/acgs/monitoring.env"))
	if !mapsEqual(freshEnv, env) {
		t.Error("the fresh host's secrets are not the restored ones")
	}
	prom2 := newPromClient(t, fresh.root, "https://127.0.0.1:9090", freshEnv, "")
	waitUntil(t, time.Minute, "the restored Prometheus answers", func() bool { code, _ := prom2.do(http.MethodGet, "/-/ready"); return code == 200 })
	if got := prom2.valueAt(`prometheus_tsdb_head_series`, written); got != marker || got < 0 {
		t.Errorf("restored Prometheus at the time before the backup: %v, want %v", got, marker)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func waitUntil(t testing.TB, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func checkCert(t testing.TB, path string, names ...string) {
	t.Helper()
	blk, _ := pem.Decode([]byte(readFile(t, path)))
	if blk == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if err := c.VerifyHostname(n); err != nil {
			t.Errorf("%s: %v", path, err)
		}
	}
}

// checkWebYML: the hash in web.yml is the password's, so the password
// the scrapers use logs in (the guide's htpasswd line lost it).
func checkWebYML(t testing.TB, path, password string) {
	t.Helper()
	b := readFile(t, path)
	i := strings.Index(b, "$2")
	if i < 0 {
		t.Fatalf("%s holds no bcrypt hash", path)
	}
	hash := strings.Trim(strings.Fields(b[i:])[0], `'"`)
	if err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)); err != nil {
		t.Errorf("%s: the hash does not verify the password: %v", path, err)
	}
}

// checkAgeCLI: operators open an archive with the age tool alone.
func checkAgeCLI(t testing.TB, archive, keyFile string) {
	t.Helper()
	out, err := exec.CommandContext(context.Background(), "sh", "-c", fmt.Sprintf("age -d -i %q %q | tar -tz", keyFile, archive)).CombinedOutput()
	if err != nil {
		t.Fatalf("age -d | tar -tz: %v\n%s", err, out)
	}
	for _, want := range []string{"MANIFEST.json", "data/prometheus_data/", "stack/docker-compose.monitoring.yml", "secrets/"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the archive lacks %s", want)
		}
	}
}

// TestACGSOnAWS: the same profile on an instance (the host rig with
// awssim): cloud: auto finds instance metadata, the generated secrets
// live in SSM as SecureStrings and nowhere on the host but the env file,
// the EBS volume holds the data, the stack is signalled, and the backup
// goes to S3 and comes back from it.
func TestACGSOnAWS(t *testing.T) {
	lockSeedStack(t)
	dir, sum := plugin(t)
	h := startHost(t, hostOptions{files: dir, project: acgsProject, scenario: scenario("", `s3:
  buckets:
    - name: acgs-backups
`)})
	h.until = ""
	t.Cleanup(func() { acgsDown(h.root) })
	cfg := acgsConfig(t, h.root, h.url+"/_files", sum)
	cfg = strings.Replace(cfg, `volume:
  kind: directory
  mount_point: /var/lib/acgs
  owner: "0:0"
`, fmt.Sprintf(`stack:
  name: %s
  resource: MonitoringAsg
volume:
  kind: ebs
  id: %s
  mount_point: /data
  owner: "0:0"
  attach_timeout: 20s
  device_timeout: 10s
`, stackName, volumeID), 1)
	cfg = strings.Replace(cfg, "data_dir: /var/lib/acgs/monitoring", "data_dir: /data/acgs", 1)
	cfg = strings.Replace(cfg, "location: /var/backups/acgs-monitoring", "location: s3://acgs-backups/hosts/", 1)
	writeFile(t, h.config, cfg)

	r := h.mustConverge("bootstrap")
	t.Logf("bootstrap on AWS to a running stack: %v", r.elapsed)
	if got := h.signals(); len(got) != 1 || !strings.Contains(got[0], "SUCCESS") {
		t.Errorf("signals %v, want one SUCCESS", got)
	}
	env := readEnv(t, filepath.Join(h.root, "etc/acgs/monitoring.env"))
	for k, p := range map[string]string{"GRAFANA_ADMIN_PASSWORD": "/acgs/grafana/admin-password", "PROMETHEUS_PASSWORD": "/acgs/prometheus/password",
		"BACKUP_ENCRYPTION_KEY": "/acgs/backup/age-identity"} {
		if v := getParameter(t, h, p); v == "" || v != env[k] {
			t.Errorf("%s: the env file's value is not SSM parameter %s's", k, p)
		}
	}
	// On AWS the host keeps only what belongs to it: hashes and its TLS pair.
	kept, _ := filepath.Glob(filepath.Join(h.root, "etc/acgs/secrets/*"))
	for _, f := range kept {
		if b := filepath.Base(f); !strings.HasSuffix(b, ".bcrypt") && !strings.HasPrefix(b, "prometheus.") {
			t.Errorf("a generated value is kept on the host besides SSM: %s", b)
		}
	}
	checkWebYML(t, filepath.Join(h.root, "opt/acgs-1/monitoring/prometheus/web.yml"), env["PROMETHEUS_PASSWORD"])
	if m, _ := ebsMount(filepath.Join(h.root, "data")); !m {
		t.Error("the data volume is not mounted")
	}
	if _, err := os.Stat(filepath.Join(h.root, "data/acgs/prometheus_data")); err != nil {
		t.Errorf("Prometheus' data is not on the data volume: %v", err)
	}
	h.mustConverge("smoke")

	b := h.mustConverge("backup")
	t.Logf("%s", strings.TrimSpace(b.stdout))
	names := s3Keys(t, h, "acgs-backups", "hosts/")
	if len(names) != 1 || !strings.HasSuffix(names[0], ".tar.gz.age") {
		t.Fatalf("S3 holds %v after one backup", names)
	}
	rr := h.mustConverge("restore", "--from", "s3://acgs-backups/hosts/")
	if !strings.Contains(rr.stdout, "restored "+filepath.Base(names[0])) {
		t.Errorf("restore did not say what it restored:\n%s", rr.stdout)
	}
}

func ebsMount(dir string) (bool, error) {
	m, err := ebs.MountAt(dir)
	return m != nil, err
}

func s3Keys(t testing.TB, h *host, bucket, prefix string) []string {
	t.Helper()
	out, err := s3.NewFromConfig(h.awsConfig(), func(o *s3.Options) { o.UsePathStyle = true }).ListObjectsV2(context.Background(),
		&s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range out.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	return keys
}
