package images_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSeedStack brings the seed stack (the fixture's docker-compose.yml,
// unmodified) up on this host with the rig's Docker engine, Compose plugin
// and images, checks what the seed runbook's smoke tests check, and takes it
// down again.
//
// It needs root, and a warm cache to fit go test's default 10-minute timeout
// (`make images` first, or -timeout 30m: a cold cache builds the Compose
// plugin and Loki, about 7 minutes on 2 cores). The seed stack has fixed
// container names and host ports, so runs of this test (from any checkout)
// take turns through an flock in the cache directory.
func TestSeedStack(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("TestSeedStack needs root (it starts dockerd and builds images); run go test as root")
	}
	root := repoRoot(t)
	seed := seedStackDir(t, root)
	cache := envOr("MONAGENT_RIG_CACHE", "/var/cache/monagent-rig")
	ctx := context.Background()
	if dl, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, dl.Add(-30*time.Second))
		defer cancel()
	}

	// 1. Engine, plugin, images.
	script(t, ctx, 2*time.Minute, filepath.Join(root, "rig/docker/dockerd.sh"), "ensure")
	out := script(t, ctx, 20*time.Minute, filepath.Join(root, "rig/docker/compose-plugin.sh"))
	compose := lastLine(out)
	if fi, err := os.Stat(compose); err != nil || fi.Mode()&0o111 == 0 {
		t.Fatalf("compose-plugin.sh printed %q, not an executable: %v", compose, err)
	}
	script(t, ctx, 25*time.Minute, filepath.Join(root, "rig/images/build.sh"), "--no-plugin")

	// 2. One run at a time, on this host.
	lock(t, ctx, filepath.Join(cache, "seed-stack-test.lock"), 15*time.Minute)
	removeStaleProjects(t, ctx, compose, "monagent-seed-")
	checkNoConflicts(t, ctx, "the seed stack", seedContainers, seedPorts)

	// 3. The stack's directory: the fixture, a .env, the metrics token.
	dir := t.TempDir()
	if err := copyTree(seed, dir); err != nil {
		t.Fatalf("copy %s: %v", seed, err)
	}
	os.Chmod(dir, 0o755)
	password := "rig-" + randHex(6)
	writeFile(t, filepath.Join(dir, ".env"), "GRAFANA_ADMIN_PASSWORD="+password+"\nGITHUB_TOKEN=\n", 0o644)
	os.MkdirAll(filepath.Join(dir, "prometheus", "secrets"), 0o755)
	writeFile(t, filepath.Join(dir, "prometheus", "secrets", "metrics-token"), "rig-metrics-token\n", 0o644)

	project := "monagent-seed-" + randHex(4)
	dc := func(ctx context.Context, timeout time.Duration, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, compose, append([]string{"-p", project}, args...)...)
		cmd.Dir = dir
		cmd.Env = composeEnv()
		cmd.WaitDelay = 5 * time.Second
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	t.Cleanup(func() {
		if t.Failed() {
			ps, _ := dc(context.Background(), time.Minute, "ps", "-a")
			t.Logf("docker-compose ps -a:\n%s", ps)
			logs, _ := dc(context.Background(), time.Minute, "logs", "--no-color", "--tail", "30")
			t.Logf("docker-compose logs --tail 30:\n%s", logs)
		}
		start := time.Now()
		if out, err := dc(context.Background(), 3*time.Minute, "down", "-v", "--remove-orphans", "-t", "10"); err != nil {
			t.Errorf("docker-compose -p %s down -v: %v\n%s", project, err, out)
		} else {
			t.Logf("down -v in %.1f s", time.Since(start).Seconds())
		}
	})

	start := time.Now()
	if out, err := dc(ctx, 3*time.Minute, "up", "-d"); err != nil {
		t.Fatalf("docker-compose -p %s up -d: %v\n%s", project, err, out)
	}
	t.Logf("up -d in %.1f s", time.Since(start).Seconds())

	// 4. Containers: all running except the exporter, in its restart loop.
	waitStates(t, ctx, project)
	logs, _ := exec.CommandContext(ctx, "docker", "logs", "github-actions-exporter").CombinedOutput()
	for _, want := range []string{
		"authenticating with Github App",
		"Error: Client creation failed.authentication failed: could not read private key: open : no such file or directory",
	} {
		if !strings.Contains(string(logs), want) {
			t.Errorf("github-actions-exporter logs lack %q:\n%s", want, logs)
		}
	}

	// 5. The smoke tests' HTTP endpoints on the published ports.
	for _, c := range []struct {
		name, url, want string
		within          time.Duration
	}{
		{"Prometheus", "http://127.0.0.1:9090/-/healthy", "Healthy", 60 * time.Second},
		{"Grafana", "http://127.0.0.1:3000/api/health", `"database":"ok"`, 60 * time.Second},
		{"Node Exporter", "http://127.0.0.1:9100/metrics", "node_", 60 * time.Second},
		{"Promtail", "http://127.0.0.1:9080/ready", "Ready", 60 * time.Second},
		{"Tempo", "http://127.0.0.1:3200/ready", "ready", 60 * time.Second},
		{"Loki", "http://127.0.0.1:3100/ready", "ready", 90 * time.Second},
	} {
		_, err := waitHTTP(ctx, c.url, c.want, c.within, "", "")
		if err != nil {
			t.Errorf("%s (%s) did not answer 200 with %q within %v: %v", c.name, c.url, c.want, c.within, err)
			continue
		}
		t.Logf("%s answers %.1f s after up", c.name, time.Since(start).Seconds())
	}

	// 6. Grafana: credentials from .env, provisioned datasources and dashboards.
	if code, _ := httpGet(ctx, "http://127.0.0.1:3000/api/datasources", "", ""); code != http.StatusUnauthorized {
		t.Errorf("Grafana /api/datasources without credentials: HTTP %d, want 401", code)
	}
	code, body := httpGet(ctx, "http://127.0.0.1:3000/api/datasources", "admin", password)
	var dss []map[string]any
	if code != 200 || json.Unmarshal(body, &dss) != nil || len(dss) < 4 {
		t.Errorf("Grafana /api/datasources: HTTP %d, want 4+ datasources: %s", code, body)
	}
	code, body = httpGet(ctx, "http://127.0.0.1:3000/api/search?type=dash-db", "admin", password)
	var hits []map[string]any
	if code != 200 || json.Unmarshal(body, &hits) != nil || len(hits) != 7 {
		t.Errorf("Grafana /api/search: HTTP %d, want the fixture's 7 dashboards: %s", code, body)
	}
	code, body = httpGet(ctx, "http://127.0.0.1:3000/api/datasources/uid/prometheus/health", "admin", password)
	if code != 200 || !strings.Contains(string(body), `"status":"OK"`) {
		t.Errorf("Grafana Prometheus datasource health: HTTP %d %s", code, body)
	}

	// 7. Named volumes start with the images' owners and get the data.
	for _, v := range []struct {
		volume, path string
		uid          uint32
	}{
		{"prometheus_data", ".", 65534},
		{"prometheus_data", "wal", 65534},
		{"loki_data", ".", 10001},
		{"grafana_data", "grafana.db", 472},
		{"tempo_data", "traces/tempo_cluster_seed.json", 10001},
	} {
		mp, err := exec.CommandContext(ctx, "docker", "volume", "inspect", "-f", "{{.Mountpoint}}", project+"_"+v.volume).Output()
		if err != nil {
			t.Errorf("docker volume inspect %s_%s: %v", project, v.volume, err)
			continue
		}
		p := filepath.Join(strings.TrimSpace(string(mp)), v.path)
		fi, err := os.Stat(p)
		if err != nil {
			t.Errorf("volume %s: %v", v.volume, err)
			continue
		}
		if uid := fi.Sys().(*syscall.Stat_t).Uid; uid != v.uid {
			t.Errorf("volume %s: %s is owned by uid %d, want %d (the image's)", v.volume, v.path, uid, v.uid)
		}
	}

	// 8. A dashboard saved through Grafana's API survives the container's
	// recreation (it lives on the grafana_data volume).
	if t.Failed() {
		return
	}
	saveDashboard(t, ctx, password)
	if out, err := dc(ctx, 2*time.Minute, "up", "-d", "--force-recreate", "--no-deps", "grafana"); err != nil {
		t.Fatalf("recreate grafana: %v\n%s", err, out)
	}
	if _, err := waitHTTP(ctx, "http://127.0.0.1:3000/api/search?query=rig%20seed%20stack", `"uid":"rig-seed-stack"`, 60*time.Second, "admin", password); err != nil {
		t.Errorf("the saved dashboard is gone after recreating grafana: %v", err)
	}
}

func saveDashboard(t *testing.T, ctx context.Context, password string) {
	t.Helper()
	body := `{"dashboard":{"id":null,"uid":"rig-seed-stack","title":"Rig Seed Stack","tags":["rig"],"panels":[]},"overwrite":false}`
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://127.0.0.1:3000/api/dashboards/db", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth("admin", password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST /api/dashboards/db: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"status":"success"`) {
		t.Fatalf("POST /api/dashboards/db: HTTP %d %s", resp.StatusCode, b)
	}
}

func repoRoot(t *testing.T) string {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Clean(filepath.Join(wd, "..", ".."))
}

// seedStackDir finds the seed-stack fixture: $MONAGENT_SEED_STACK, or
// shared/fixtures/seed-stack beside the checkout.
func seedStackDir(t *testing.T, root string) string {
	d := os.Getenv("MONAGENT_SEED_STACK")
	if d == "" {
		d = filepath.Join(root, "..", "shared", "fixtures", "seed-stack")
	}
	if _, err := os.Stat(filepath.Join(d, "docker-compose.yml")); err != nil {
		t.Fatalf("seed-stack fixture not found (%v): set MONAGENT_SEED_STACK to the directory holding its docker-compose.yml", err)
	}
	return d
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// composeEnv is the test's environment without variables that would
// override the stack's .env (Compose prefers the shell's).
func composeEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "GRAFANA_") || strings.HasPrefix(k, "GITHUB_") || strings.HasPrefix(k, "COMPOSE_") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// script runs one of the rig's scripts, logs its output, fails on error.
func script(t *testing.T, ctx context.Context, timeout time.Duration, path string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.WaitDelay = 10 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	t.Logf("%s %s (%.1f s):\n%s%s", filepath.Base(path), strings.Join(args, " "), time.Since(start).Seconds(), stderr.String(), stdout.String())
	if err != nil {
		if ctx.Err() != nil {
			t.Fatalf("%s timed out after %v (a cold cache needs about 7 minutes: run `make images` first or go test -timeout 30m)", path, timeout)
		}
		t.Fatalf("%s %s: %v", path, strings.Join(args, " "), err)
	}
	return stdout.String()
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// lock takes an exclusive flock on path, waiting at most wait; it is
// released when the test ends.
func lock(t *testing.T, ctx context.Context, path string, wait time.Duration) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(wait)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			t.Fatalf("flock %s: %v", path, err)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("another stack test (TestSeedStack, TestACGSStack) held %s for over %v; it must finish first (the stacks share fixed names and ports)", path, wait)
		}
		time.Sleep(time.Second)
	}
	f.Truncate(0)
	fmt.Fprintf(f, "pid %d\n", os.Getpid())
	t.Cleanup(func() { f.Close() })
}

// The seed stack's fixed container names and published host ports.
var (
	seedContainers = []string{"prometheus", "grafana", "node-exporter", "loki", "promtail", "tempo", "github-actions-exporter", "steampipe"}
	seedPorts      = []string{"127.0.0.1:9090", "127.0.0.1:3000", "127.0.0.1:9100", "127.0.0.1:3100", "127.0.0.1:9080", "127.0.0.1:3200", ":4317", ":4318", "127.0.0.1:9101", "127.0.0.1:9193"}
)

// removeStaleProjects takes down what an interrupted run of a stack test
// left (its projects are named prefix*; we hold the lock, so none runs).
func removeStaleProjects(t *testing.T, ctx context.Context, compose, prefix string) {
	out, err := exec.CommandContext(ctx, "docker", "ps", "-a", "--filter", "label=com.docker.compose.project", "--format", `{{.Label "com.docker.compose.project"}}`).Output()
	if err != nil {
		t.Fatalf("docker ps: %v", err)
	}
	seen := map[string]bool{}
	for _, p := range strings.Fields(string(out)) {
		if !strings.HasPrefix(p, prefix) || seen[p] {
			continue
		}
		seen[p] = true
		cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		b, err := exec.CommandContext(cctx, compose, "-p", p, "down", "-v", "--remove-orphans", "-t", "5").CombinedOutput()
		cancel()
		t.Logf("removed the stale project %s left by an interrupted run: %v\n%s", p, err, b)
	}
}

// checkNoConflicts fails early, naming the culprit, when a container name or
// host port of a stack is taken.
func checkNoConflicts(t *testing.T, ctx context.Context, stack string, containers, ports []string) {
	var problems []string
	for _, n := range containers {
		out, err := exec.CommandContext(ctx, "docker", "inspect", "-f", `{{index .Config.Labels "com.docker.compose.project"}}`, n).Output()
		if err == nil {
			problems = append(problems, fmt.Sprintf("a container named %s exists (compose project %q): remove it (docker rm -f %s) or take its project down", n, strings.TrimSpace(string(out)), n))
		}
	}
	for _, a := range ports {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			problems = append(problems, fmt.Sprintf("host port %s is taken (%v): see `ss -ltnp`", a, err))
			continue
		}
		ln.Close()
	}
	if len(problems) > 0 {
		t.Fatalf("%s cannot start here:\n  %s", stack, strings.Join(problems, "\n  "))
	}
}

type state struct {
	status   string
	restarts int
}

// waitStates waits (90 s at most) until all eight services exist, seven run
// without restarts and github-actions-exporter is restarting.
func waitStates(t *testing.T, ctx context.Context, project string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	var last map[string]state
	for {
		last = states(ctx, project)
		ok := len(last) == len(seedContainers)
		for svc, st := range last {
			if svc == "github-actions-exporter" {
				ok = ok && st.status == "restarting" && st.restarts >= 1
			} else {
				ok = ok && st.status == "running" && st.restarts == 0
			}
		}
		if ok {
			t.Logf("containers: %v", last)
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("after 90 s, containers are %v; want every service running without restarts, github-actions-exporter restarting", last)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func states(ctx context.Context, project string) map[string]state {
	ids, err := exec.CommandContext(ctx, "docker", "ps", "-aq", "--filter", "label=com.docker.compose.project="+project).Output()
	out := map[string]state{}
	if err != nil || len(bytes.TrimSpace(ids)) == 0 {
		return out
	}
	args := append([]string{"inspect", "-f", `{{index .Config.Labels "com.docker.compose.service"}} {{.State.Status}} {{.RestartCount}}`}, strings.Fields(string(ids))...)
	b, _ := exec.CommandContext(ctx, "docker", args...).Output()
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var svc string
		var st state
		if n, _ := fmt.Sscan(line, &svc, &st.status, &st.restarts); n == 3 {
			out[svc] = st
		}
	}
	return out
}

func httpGet(ctx context.Context, url, user, pass string) (int, []byte) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, []byte(err.Error())
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, b
}

// waitHTTP polls url every 0.5 s until it answers 200 with a body containing want.
func waitHTTP(ctx context.Context, url, want string, within time.Duration, user, pass string) (time.Duration, error) {
	start := time.Now()
	var code int
	var body []byte
	for {
		code, body = httpGet(ctx, url, user, pass)
		if code == 200 && strings.Contains(string(body), want) {
			return time.Since(start), nil
		}
		if time.Since(start) > within || ctx.Err() != nil {
			if len(body) > 300 {
				body = body[:300]
			}
			return 0, fmt.Errorf("last answer: HTTP %d %q", code, body)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("%s: not a regular file", p)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
