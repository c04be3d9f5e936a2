package images_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"

	"golang.org/x/crypto/bcrypt"
	"gopkg.in/yaml.v3"
)

// The ACGS bundle (examples/acgs) is checked against the real programs of
// the rig's images: its templates rendered as monagent renders them, the
// configurations through promtool and amtool (TestACGSConfigs), and the
// whole stack up with the Compose plugin (TestACGSStack).

const acgsImages = "prometheus alertmanager grafana node-exporter haproxy-exporter"

var (
	acgsContainers = []string{"acgs_prometheus", "acgs_alertmanager", "acgs_grafana", "acgs_node_exporter", "acgs_haproxy_exporter"}
	acgsPorts      = []string{":9090", ":9093", ":3000", "127.0.0.1:9100", "127.0.0.1:9101"}
	// The secrets the bundle reads from files, by env key.
	acgsSecretFiles = map[string]string{
		"PROMETHEUS_PASSWORD":       "prometheus_password",
		"SMTP_PASSWORD":             "smtp_password",
		"SLACK_WEBHOOK_URL":         "slack_webhook_url",
		"PAGERDUTY_INTEGRATION_KEY": "pagerduty_integration_key",
	}
	// The notifiers each present or absent, and the receiver each adds.
	acgsNotifiers = []struct{ key, receiver string }{
		{"SMTP_PASSWORD", "email"},
		{"SLACK_WEBHOOK_URL", "slack"},
		{"PAGERDUTY_INTEGRATION_KEY", "pagerduty"},
	}
)

// acgsFuncs mimics the template functions monagent gives the bundle's
// templates. The bundle's templates are all rendered world-readable, so
// value, which monagent allows in 0600 templates only, always fails here.
func acgsFuncs(env map[string]string) template.FuncMap {
	return template.FuncMap{
		"has": func(k string) bool { return env[k] != "" },
		"value": func(k string) (string, error) {
			return "", fmt.Errorf("value %q: not allowed in a template rendered world-readable", k)
		},
		"bcrypt": func(k string) (string, error) {
			if env[k] == "" {
				return "", fmt.Errorf("bcrypt %q: no such secret", k)
			}
			h, err := bcrypt.GenerateFromPassword([]byte(env[k]), bcrypt.DefaultCost)
			return string(h), err
		},
		"hostname": os.Hostname,
	}
}

// render renders the template file src to dst (mode 0644).
func render(t *testing.T, src, dst string, env map[string]string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := template.New(filepath.Base(src)).Option("missingkey=error").Funcs(acgsFuncs(env)).Parse(string(b))
	if err != nil {
		t.Fatalf("parse %s: %v", src, err)
	}
	var out bytes.Buffer
	if err := tmpl.Execute(&out, nil); err != nil {
		t.Fatalf("render %s: %v", src, err)
	}
	if err := os.WriteFile(dst, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// stageACGS copies the bundle to dir and writes what monagent would beside
// it: the rendered templates, certs/prometheus.{crt,key}, secrets/* and
// .env. It returns the certificate (PEM).
func stageACGS(t *testing.T, root, dir string, env map[string]string) []byte {
	t.Helper()
	if err := copyTree(filepath.Join(root, "examples", "acgs", "stack"), dir); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".tmpl") {
			render(t, p, strings.TrimSuffix(p, ".tmpl"), env)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	crt := writeCert(t, filepath.Join(dir, "certs"))
	writeSecrets(t, filepath.Join(dir, "secrets"), env)
	var envFile strings.Builder
	for _, k := range []string{"GRAFANA_ADMIN_PASSWORD", "GRAFANA_SECRET_KEY", "PROMETHEUS_PASSWORD"} {
		fmt.Fprintf(&envFile, "%s=%s\n", k, env[k])
	}
	writeFile(t, filepath.Join(dir, ".env"), envFile.String(), 0o600)
	return crt
}

// writeCert writes a self-signed certificate for the names Prometheus,
// Alertmanager and their clients use, and its key, readable by uid 65534
// (Prometheus and Alertmanager run as nobody) and no one else.
func writeCert(t *testing.T, dir string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "monitoring.acgs.ai", Organization: []string{"ACGS"}},
		DNSNames:              []string{"prometheus", "alertmanager", "localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	crt := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	os.MkdirAll(dir, 0o755)
	writeFile(t, filepath.Join(dir, "prometheus.crt"), string(crt), 0o644)
	writeOwned(t, filepath.Join(dir, "prometheus.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}))
	return crt
}

// writeSecrets writes one file per secret that has a value, as monagent
// does: no trailing newline (Alertmanager 0.25 sends the SMTP password
// file's bytes as they are), mode 0600, owner 65534.
func writeSecrets(t *testing.T, dir string, env map[string]string) {
	t.Helper()
	os.MkdirAll(dir, 0o755)
	for k, name := range acgsSecretFiles {
		if env[k] != "" {
			writeOwned(t, filepath.Join(dir, name), []byte(env[k]))
		}
	}
}

func writeOwned(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, 65534, 65534); err != nil {
		t.Fatal(err)
	}
}

// acgsEnv is a full set of generated secrets.
func acgsEnv() map[string]string {
	return map[string]string{
		"GRAFANA_ADMIN_PASSWORD":    "gf-" + randHex(12),
		"GRAFANA_SECRET_KEY":        randHex(16),
		"PROMETHEUS_PASSWORD":       "pm-" + randHex(12),
		"SMTP_PASSWORD":             "smtp-" + randHex(8),
		"SLACK_WEBHOOK_URL":         "https://hooks.slack.com/services/T000/B000/" + randHex(8),
		"PAGERDUTY_INTEGRATION_KEY": randHex(16),
	}
}

// rigTools brings up the engine and the bundle's images (and the Compose
// plugin when compose is true), returning the plugin's path.
func rigTools(t *testing.T, ctx context.Context, root string, compose bool) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the ACGS tests need root (they start dockerd, build images and chown secrets to uid 65534); run go test as root")
	}
	script(t, ctx, 2*time.Minute, filepath.Join(root, "rig/docker/dockerd.sh"), "ensure")
	var plugin string
	if compose {
		plugin = lastLine(script(t, ctx, 20*time.Minute, filepath.Join(root, "rig/docker/compose-plugin.sh")))
		if fi, err := os.Stat(plugin); err != nil || fi.Mode()&0o111 == 0 {
			t.Fatalf("compose-plugin.sh printed %q, not an executable: %v", plugin, err)
		}
	}
	script(t, ctx, 25*time.Minute, filepath.Join(root, "rig/images/build.sh"), append([]string{"--no-plugin"}, strings.Fields(acgsImages)...)...)
	return plugin
}

// testContext ends 30 s before the test's deadline, leaving time to clean up.
func testContext(t *testing.T) context.Context {
	dl, ok := t.Deadline()
	if !ok {
		return context.Background()
	}
	ctx, cancel := context.WithDeadline(context.Background(), dl.Add(-30*time.Second))
	t.Cleanup(cancel)
	return ctx
}

// dockerRun runs an image's tool with mounts (host path -> container path,
// read-only) and returns its combined output and error.
func dockerRun(ctx context.Context, image, entrypoint string, mounts [][2]string, args ...string) (string, error) {
	argv := []string{"run", "--rm", "--network", "none", "--entrypoint", entrypoint}
	for _, m := range mounts {
		argv = append(argv, "-v", m[0]+":"+m[1]+":ro")
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", append(append(argv, image), args...)...).CombinedOutput()
	return string(out), err
}

// TestACGSConfigs renders the bundle's templates and has the real programs
// check the results: promtool (the rig image's, v3.9.1's) on Prometheus's
// configuration, both web configurations and the rules with their unit
// tests; amtool 0.25 on alertmanager.yml for each of the 8 combinations of
// notifier secrets present and absent.
func TestACGSConfigs(t *testing.T) {
	root := repoRoot(t)
	ctx := testContext(t)
	rigTools(t, ctx, root, false)
	env := acgsEnv()
	dir := t.TempDir()
	stageACGS(t, root, dir, env)

	// Prometheus's side, mounted where the compose file mounts it.
	mounts := [][2]string{
		{dir + "/prometheus", "/etc/prometheus"},
		{dir + "/certs", "/etc/prometheus/certs"},
		{dir + "/secrets", "/etc/prometheus/secrets"},
		{dir + "/alertmanager", "/etc/alertmanager"},
		{dir + "/certs", "/etc/alertmanager/certs"},
	}
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"check", "config", "/etc/prometheus/prometheus.yml"}, []string{"SUCCESS: /etc/prometheus/prometheus.yml is valid", "SUCCESS: 12 rules found"}},
		{[]string{"check", "web-config", "/etc/prometheus/web.yml", "/etc/alertmanager/web.yml"}, []string{"/etc/prometheus/web.yml SUCCESS", "/etc/alertmanager/web.yml SUCCESS"}},
		{[]string{"check", "config", "/etc/prometheus/healthcheck.yml"}, nil}, // not a Prometheus config: must fail
		{[]string{"test", "rules", "/etc/prometheus/rules/acgs_test.yml"}, []string{"SUCCESS"}},
	} {
		out, err := dockerRun(ctx, "prom/prometheus:v3.9.1", "/bin/promtool", mounts, c.args...)
		if c.want == nil {
			if err == nil {
				t.Errorf("promtool %s accepted a file it must refuse (is promtool checking anything?):\n%s", strings.Join(c.args, " "), out)
			}
			continue
		}
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(c.args, " "), err, out)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				t.Errorf("promtool %s: no %q in:\n%s", strings.Join(c.args, " "), w, out)
			}
		}
	}
	for _, f := range []string{"prometheus/web.yml", "alertmanager/web.yml"} {
		b, _ := os.ReadFile(filepath.Join(dir, f))
		var wc struct {
			Users map[string]string `yaml:"basic_auth_users"`
		}
		if err := yaml.Unmarshal(b, &wc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if err := bcrypt.CompareHashAndPassword([]byte(wc.Users["acgs_monitor"]), []byte(env["PROMETHEUS_PASSWORD"])); err != nil {
			t.Errorf("%s: acgs_monitor's hash does not match PROMETHEUS_PASSWORD: %v", f, err)
		}
	}

	// alertmanager.yml for every combination of notifier secrets.
	amDir := filepath.Join(dir, "am")
	var files []string
	want := map[string][]string{} // file in the container -> receivers
	for mask := 0; mask < 1<<len(acgsNotifiers); mask++ {
		e := map[string]string{"PROMETHEUS_PASSWORD": env["PROMETHEUS_PASSWORD"]}
		receivers := []string{"default"}
		var names []string
		for i, n := range acgsNotifiers {
			if mask&(1<<i) != 0 {
				e[n.key] = env[n.key]
				receivers = append(receivers, n.receiver)
				names = append(names, n.receiver)
			}
		}
		name := "none"
		if len(names) > 0 {
			name = strings.Join(names, "+")
		}
		os.MkdirAll(filepath.Join(amDir, name), 0o755)
		out := filepath.Join(amDir, name, "alertmanager.yml")
		render(t, filepath.Join(dir, "alertmanager", "alertmanager.yml.tmpl"), out, e)
		b, _ := os.ReadFile(out)
		for _, k := range []string{"SMTP_PASSWORD", "SLACK_WEBHOOK_URL", "PAGERDUTY_INTEGRATION_KEY", "PROMETHEUS_PASSWORD"} {
			if bytes.Contains(b, []byte(env[k])) {
				t.Errorf("%s: holds the value of %s; secrets belong in files under secrets/", name, k)
			}
		}
		checkRoutes(t, name, b, receivers)
		files = append(files, "/am/"+name+"/alertmanager.yml")
		slices.Sort(receivers)
		want["/am/"+name+"/alertmanager.yml"] = receivers
	}
	out, err := dockerRun(ctx, "prom/alertmanager:v0.25.0", "/bin/amtool",
		[][2]string{{amDir, "/am"}, {dir + "/secrets", "/etc/alertmanager/secrets"}}, append([]string{"check-config"}, files...)...)
	if err != nil {
		t.Errorf("amtool check-config: %v\n%s", err, out)
	}
	for _, f := range files {
		re := regexp.MustCompile(`Checking '` + regexp.QuoteMeta(f) + `'  SUCCESS\nFound:\n(?: - .*\n)*? - (\d+) receivers`)
		m := re.FindStringSubmatch(out)
		if m == nil || m[1] != fmt.Sprint(len(want[f])) {
			t.Errorf("amtool check-config %s: want SUCCESS with %d receivers %v; output:\n%s", f, len(want[f]), want[f], out)
		}
	}
	t.Logf("amtool check-config, 8 combinations:\n%s", out)

	// amtool must refuse what Alertmanager would refuse: a broken render.
	bad := filepath.Join(amDir, "none", "alertmanager.yml")
	b, _ := os.ReadFile(bad)
	os.WriteFile(bad, bytes.Replace(b, []byte("receiver: default"), []byte("receiver: nobody"), 1), 0o644)
	if out, err := dockerRun(ctx, "prom/alertmanager:v0.25.0", "/bin/amtool", [][2]string{{amDir, "/am"}}, "check-config", "/am/none/alertmanager.yml"); err == nil {
		t.Errorf("amtool accepted a route to an undefined receiver:\n%s", out)
	}
}

// checkRoutes checks that the rendered configuration defines exactly the
// receivers expected, each notifier receiver with its route.
func checkRoutes(t *testing.T, name string, b []byte, receivers []string) {
	t.Helper()
	var c struct {
		Route struct {
			Receiver string `yaml:"receiver"`
			Routes   []struct {
				Receiver string `yaml:"receiver"`
			} `yaml:"routes"`
		} `yaml:"route"`
		Receivers []struct {
			Name string `yaml:"name"`
		} `yaml:"receivers"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Errorf("%s: not YAML: %v\n%s", name, err, b)
		return
	}
	var got, routed []string
	for _, r := range c.Receivers {
		got = append(got, r.Name)
	}
	routed = append(routed, c.Route.Receiver)
	for _, r := range c.Route.Routes {
		if !slices.Contains(routed, r.Receiver) {
			routed = append(routed, r.Receiver)
		}
	}
	slices.Sort(got)
	slices.Sort(routed)
	want := slices.Sorted(slices.Values(receivers))
	if !slices.Equal(got, want) || !slices.Equal(routed, want) {
		t.Errorf("%s: receivers %v, routed to %v; want %v for both", name, got, routed, want)
	}
}

// TestACGSStack brings the bundle up with the rig's Compose plugin and
// images and checks it as an operator would: TLS and basic auth in front of
// Prometheus and Alertmanager, alerts flowing from one to the other,
// Grafana's hardened configuration and its provisioned https datasource,
// the scrape targets, the admin API's snapshot. The stack has fixed
// container names and ports that overlap the seed stack's, so it takes
// TestSeedStack's lock.
func TestACGSStack(t *testing.T) {
	root := repoRoot(t)
	ctx := testContext(t)
	cache := envOr("MONAGENT_RIG_CACHE", "/var/cache/monagent-rig")
	compose := rigTools(t, ctx, root, true)

	lock(t, ctx, filepath.Join(cache, "seed-stack-test.lock"), 15*time.Minute)
	removeStaleProjects(t, ctx, compose, "monagent-acgs-")
	checkNoConflicts(t, ctx, "the ACGS stack", acgsContainers, acgsPorts)

	env := acgsEnv()
	dir := t.TempDir()
	crt := stageACGS(t, root, dir, env)
	project := "monagent-acgs-" + randHex(4)
	dc := func(ctx context.Context, timeout time.Duration, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, compose, append([]string{"-p", project, "-f", "docker-compose.monitoring.yml"}, args...)...)
		cmd.Dir = dir
		cmd.Env = slices.DeleteFunc(composeEnv(), func(kv string) bool { return strings.HasPrefix(kv, "PROMETHEUS_") })
		cmd.WaitDelay = 5 * time.Second
		b, err := cmd.CombinedOutput()
		return string(b), err
	}

	// A missing or empty secret stops compose before anything starts.
	for name, content := range map[string]string{
		"missing": "GRAFANA_ADMIN_PASSWORD=a\nPROMETHEUS_PASSWORD=b\n",
		"empty":   "GRAFANA_ADMIN_PASSWORD=a\nGRAFANA_SECRET_KEY=\nPROMETHEUS_PASSWORD=b\n",
	} {
		writeFile(t, filepath.Join(dir, name+".env"), content, 0o600)
		out, err := dc(ctx, time.Minute, "--env-file", name+".env", "config", "-q")
		if err == nil || !strings.Contains(out, "GRAFANA_SECRET_KEY must be set in the env file") {
			t.Errorf("compose config with GRAFANA_SECRET_KEY %s: %v\n%s", name, err, out)
		}
	}

	t.Cleanup(func() {
		if t.Failed() {
			ps, _ := dc(context.Background(), time.Minute, "ps", "-a")
			t.Logf("docker-compose ps -a:\n%s", ps)
			logs, _ := dc(context.Background(), time.Minute, "logs", "--no-color", "--tail", "40")
			t.Logf("docker-compose logs --tail 40:\n%s", logs)
		}
		start := time.Now()
		if out, err := dc(context.Background(), 3*time.Minute, "down", "-v", "--remove-orphans", "-t", "10"); err != nil {
			t.Errorf("docker-compose -p %s down -v: %v\n%s", project, err, out)
		} else {
			t.Logf("down -v in %.1f s", time.Since(start).Seconds())
		}
	})

	// --wait: every service running, Prometheus and Alertmanager healthy by
	// their own healthchecks (promtool and amtool over TLS with basic auth).
	start := time.Now()
	if out, err := dc(ctx, 3*time.Minute, "up", "-d", "--wait", "--wait-timeout", "120"); err != nil {
		t.Fatalf("docker-compose -p %s up -d --wait: %v\n%s", project, err, out)
	}
	t.Logf("up -d --wait in %.1f s", time.Since(start).Seconds())
	sts := states(ctx, project)
	if len(sts) != len(acgsContainers) {
		t.Errorf("services %v, want %d", sts, len(acgsContainers))
	}
	for svc, st := range sts {
		if st.status != "running" || st.restarts != 0 {
			t.Errorf("service %s: %s after %d restarts, want running without restarts", svc, st.status, st.restarts)
		}
	}
	for _, c := range []string{"acgs_prometheus", "acgs_alertmanager"} {
		out, err := exec.CommandContext(ctx, "docker", "inspect", "-f", "{{.State.Health.Status}}", c).Output()
		if err != nil || strings.TrimSpace(string(out)) != "healthy" {
			t.Errorf("%s: health %q (%v), want healthy", c, bytes.TrimSpace(out), err)
		}
	}

	// The healthchecks check the credentials, not only that something
	// answers TLS: the same commands with a wrong password fail.
	for _, h := range []struct {
		container, cfgDir string
		cmd               []string
	}{
		{"acgs_prometheus", "/etc/prometheus", []string{"/bin/promtool", "check", "healthy", "--url=https://localhost:9090", "--http.config.file=/tmp/wrong.yml"}},
		{"acgs_alertmanager", "/etc/alertmanager", []string{"/bin/amtool", "--alertmanager.url=https://localhost:9093", "--http.config.file=/tmp/wrong.yml", "cluster", "show"}},
	} {
		wrong := filepath.Join(t.TempDir(), "wrong.yml")
		writeFile(t, wrong, "basic_auth:\n  username: acgs_monitor\n  password: wrong\ntls_config:\n  ca_file: "+h.cfgDir+"/certs/prometheus.crt\n  server_name: localhost\n", 0o644)
		if out, err := exec.CommandContext(ctx, "docker", "cp", wrong, h.container+":/tmp/wrong.yml").CombinedOutput(); err != nil {
			t.Fatalf("docker cp: %v\n%s", err, out)
		}
		out, err := exec.CommandContext(ctx, "docker", append([]string{"exec", h.container}, h.cmd...)...).CombinedOutput()
		if err == nil || !strings.Contains(strings.ToLower(string(out)), "unauthorized") && !strings.Contains(string(out), "401") {
			t.Errorf("%s's healthcheck with a wrong password: %v, want a failure naming 401:\n%s", h.container, err, out)
		}
	}

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(crt)
	tc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	pw := env["PROMETHEUS_PASSWORD"]
	get := func(url, user, pass string) (int, []byte) { return do(ctx, tc, http.MethodGet, url, user, pass) }

	// 1. TLS and basic auth in front of Prometheus and Alertmanager.
	for _, base := range []string{"https://127.0.0.1:9090", "https://127.0.0.1:9093"} {
		if code, body := get(base+"/-/healthy", "acgs_monitor", pw); code != 200 || !strings.Contains(string(body), "Healthy") && !strings.Contains(string(body), "OK") {
			t.Errorf("%s/-/healthy with credentials: HTTP %d %q", base, code, body)
		}
		if code, _ := get(base+"/-/healthy", "", ""); code != http.StatusUnauthorized {
			t.Errorf("%s/-/healthy without credentials: HTTP %d, want 401", base, code)
		}
		if code, _ := get(base+"/-/healthy", "acgs_monitor", pw+"x"); code != http.StatusUnauthorized {
			t.Errorf("%s/-/healthy with a wrong password: HTTP %d, want 401", base, code)
		}
		plain := "http" + strings.TrimPrefix(base, "https")
		if code, _ := do(ctx, http.DefaultClient, http.MethodGet, plain+"/-/healthy", "acgs_monitor", pw); code == 200 {
			t.Errorf("%s answers plain HTTP", plain)
		}
	}
	code, body := get("https://127.0.0.1:9093/api/v2/alerts", "acgs_monitor", pw)
	var alerts []struct {
		Labels    map[string]string `json:"labels"`
		Receivers []struct {
			Name string `json:"name"`
		} `json:"receivers"`
	}
	if code != 200 || json.Unmarshal(body, &alerts) != nil {
		t.Errorf("Alertmanager /api/v2/alerts: HTTP %d, want a JSON list: %.300s", code, body)
	}

	// 2. Prometheus sends its alerts to Alertmanager over TLS with basic
	// auth: the Watchdog arrives, with the external labels, routed to the
	// default receiver.
	if err := poll(ctx, 90*time.Second, func() error {
		code, body := get("https://127.0.0.1:9093/api/v2/alerts?filter=alertname%3D%22Watchdog%22", "acgs_monitor", pw)
		alerts = nil
		if code != 200 || json.Unmarshal(body, &alerts) != nil || len(alerts) != 1 {
			return fmt.Errorf("HTTP %d %.300s", code, body)
		}
		a := alerts[0]
		if a.Labels["cluster"] != "acgs-1-production" || len(a.Receivers) != 1 || a.Receivers[0].Name != "default" {
			return fmt.Errorf("the Watchdog arrived as %+v, want cluster=acgs-1-production, receiver default", a)
		}
		return nil
	}); err != nil {
		t.Errorf("the Watchdog alert did not reach Alertmanager: %v", err)
	} else {
		t.Logf("Watchdog in Alertmanager %.1f s after up", time.Since(start).Seconds())
	}

	// 3. The scrape targets, read back over https: Prometheus and
	// Alertmanager (TLS, basic auth) and the exporters up, the ACGS
	// services (absent here) down.
	wantUp := map[string]string{"prometheus": "1", "alertmanager": "1", "node-exporter": "1", "haproxy-exporter": "1", "acgs-auth-service": "0", "postgres-exporter": "0"}
	if err := poll(ctx, 90*time.Second, func() error {
		got, err := query(ctx, tc, pw, "up")
		if err != nil {
			return err
		}
		for job, v := range wantUp {
			if got[job] != v {
				return fmt.Errorf("up by job %v, want %v among them", got, wantUp)
			}
		}
		if len(got) != 13 {
			return fmt.Errorf("up has %d jobs, want the 13 of prometheus.yml: %v", len(got), got)
		}
		return nil
	}); err != nil {
		t.Errorf("the up query: %v", err)
	}
	if got, err := query(ctx, tc, pw, "haproxy_up"); err != nil || got["haproxy-exporter"] != "0" {
		t.Errorf("haproxy_up: %v %v, want 0 (no HAProxy here, the exporter runs anyway)", got, err)
	}

	// 4. Grafana: the ini's admin and secrets, no anonymous access, the
	// provisioned https datasource healthy, the dashboard.
	gf := "http://127.0.0.1:3000"
	if _, err := waitHTTP(ctx, gf+"/api/health", `"database":"ok"`, 60*time.Second, "", ""); err != nil {
		t.Errorf("Grafana /api/health: %v", err)
	}
	gpw := env["GRAFANA_ADMIN_PASSWORD"]
	for _, c := range []struct {
		user, pass string
		want       int
	}{{"acgs_admin", gpw, 200}, {"", "", 401}, {"admin", "admin", 401}, {"admin", gpw, 401}} {
		if code, body := httpGet(ctx, gf+"/api/datasources", c.user, c.pass); code != c.want {
			t.Errorf("Grafana /api/datasources as %q: HTTP %d %.200s, want %d", c.user, code, body, c.want)
		}
	}
	code, body = httpGet(ctx, gf+"/api/datasources/uid/acgs-prometheus/health", "acgs_admin", gpw)
	if code != 200 || !strings.Contains(string(body), `"status":"OK"`) {
		t.Errorf("Grafana's Prometheus datasource health: HTTP %d %s", code, body)
	}
	code, body = httpGet(ctx, gf+"/api/search?query=ACGS", "acgs_admin", gpw)
	if code != 200 || !strings.Contains(string(body), `"uid":"acgs-overview"`) || !strings.Contains(string(body), `"folderTitle":"ACGS"`) {
		t.Errorf("Grafana /api/search: HTTP %d %s, want the ACGS Monitoring Overview in folder ACGS", code, body)
	}

	// 5. The admin API: a TSDB snapshot lands in the data volume.
	code, body = do(ctx, tc, http.MethodPost, "https://127.0.0.1:9090/api/v1/admin/tsdb/snapshot", "acgs_monitor", pw)
	var snap struct {
		Status string `json:"status"`
		Data   struct {
			Name string `json:"name"`
		} `json:"data"`
	}
	if code != 200 || json.Unmarshal(body, &snap) != nil || snap.Status != "success" || snap.Data.Name == "" {
		t.Errorf("POST /api/v1/admin/tsdb/snapshot: HTTP %d %s", code, body)
	} else if mp, err := exec.CommandContext(ctx, "docker", "volume", "inspect", "-f", "{{.Mountpoint}}", project+"_prometheus_data").Output(); err != nil {
		t.Errorf("docker volume inspect: %v", err)
	} else if fi, err := os.Stat(filepath.Join(strings.TrimSpace(string(mp)), "snapshots", snap.Data.Name)); err != nil || !fi.IsDir() {
		t.Errorf("snapshot %s is not in the prometheus_data volume: %v", snap.Data.Name, err)
	}
	if code, _ := do(ctx, tc, http.MethodPost, "https://127.0.0.1:9090/api/v1/admin/tsdb/snapshot", "", ""); code != http.StatusUnauthorized {
		t.Errorf("snapshot without credentials: HTTP %d, want 401", code)
	}

	// 6. The lifecycle API reloads the configuration.
	if code, body := do(ctx, tc, http.MethodPost, "https://127.0.0.1:9090/-/reload", "acgs_monitor", pw); code != 200 {
		t.Errorf("POST /-/reload: HTTP %d %s", code, body)
	} else if got, err := query(ctx, tc, pw, "prometheus_config_last_reload_successful"); err != nil || got["prometheus"] != "1" {
		t.Errorf("after reload, prometheus_config_last_reload_successful: %v %v", got, err)
	}

	// 7. The data volumes start with the images' owners.
	for _, v := range []struct {
		volume string
		uid    uint32
	}{{"prometheus_data", 65534}, {"alertmanager_data", 65534}, {"grafana_data", 472}} {
		mp, err := exec.CommandContext(ctx, "docker", "volume", "inspect", "-f", "{{.Mountpoint}}", project+"_"+v.volume).Output()
		if err != nil {
			t.Errorf("docker volume inspect %s_%s: %v", project, v.volume, err)
			continue
		}
		if fi, err := os.Stat(strings.TrimSpace(string(mp))); err != nil || fi.Sys().(*syscall.Stat_t).Uid != v.uid {
			t.Errorf("volume %s: %v, want owned by uid %d", v.volume, err, v.uid)
		}
	}
	t.Logf("checks done %.1f s after up", time.Since(start).Seconds())
}

func do(ctx context.Context, c *http.Client, method, url, user, pass string) (int, []byte) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return 0, []byte(err.Error())
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, b
}

// query runs an instant query on the published Prometheus and returns each
// series' value by its job label.
func query(ctx context.Context, c *http.Client, pw, q string) (map[string]string, error) {
	code, body := do(ctx, c, http.MethodGet, "https://127.0.0.1:9090/api/v1/query?query="+q, "acgs_monitor", pw)
	var r struct {
		Status string `json:"status"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if code != 200 || json.Unmarshal(body, &r) != nil || r.Status != "success" {
		return nil, fmt.Errorf("query %s: HTTP %d %.300s", q, code, body)
	}
	out := map[string]string{}
	for _, s := range r.Data.Result {
		v, _ := s.Value[1].(string)
		out[s.Metric["job"]] = v
	}
	return out, nil
}

// poll calls f every 0.5 s until it succeeds or within has passed.
func poll(ctx context.Context, within time.Duration, f func() error) error {
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return errors.Join(fmt.Errorf("not within %v", within), err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
