package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"github.com/compose-spec/compose-go/v2/dotenv"
)

// These tests take a host from a blank volume to the running seed stack
// with the real Docker engine, the real Compose plugin (built from source,
// downloaded by monagent from awssim) and the rig's images.

const project = "monitoring"

// dockerRig is the engine, the plugin and the images, made once.
var dockerRig = sync.OnceValues(func() (string, error) {
	for _, c := range [][]string{{"../../rig/docker/dockerd.sh", "ensure"}, {"../../rig/images/build.sh", "--no-plugin"}} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			return "", fmt.Errorf("%v: %v\n%s", c, err, out)
		}
	}
	out, err := exec.Command("../../rig/docker/compose-plugin.sh").Output()
	if err != nil {
		return "", fmt.Errorf("compose-plugin.sh: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
})

// plugin returns a directory serving the Compose plugin, and its sha256.
func plugin(t testing.TB) (dir, sum string) {
	t.Helper()
	path, err := dockerRig()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "docker-compose"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return dir, hex.EncodeToString(s[:])
}

// lockSeedStack takes the machine-wide turn for the seed stack, whose
// container names and host ports are fixed (the rig's own stack test
// takes the same lock).
func lockSeedStack(t testing.TB) {
	t.Helper()
	if err := os.MkdirAll(rigCache(), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(rigCache(), "seed-stack-test.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Minute)
	for syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		if time.Now().After(deadline) {
			t.Fatal("another seed stack run holds the lock for 15 minutes")
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Cleanup(func() { f.Close() })
}

func seedFixture(t testing.TB) string {
	t.Helper()
	p, err := filepath.Abs("../../../shared/fixtures/seed-stack")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(p, "docker-compose.yml")); err != nil {
		t.Fatalf("the seed stack fixture is not beside the checkout: %v", err)
	}
	return p
}

// seedBundle is the seed stack with node-exporter's textfile mount made
// relative to the stack directory: on an instance, /opt/monitoring/... is
// the stack directory; under --root, only ./... leads there. The mount's
// source is then the textfile link monagent keeps, as on an instance.
func seedBundle(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "bundle")
	run(t, "cp", "-a", seedFixture(t), dir)
	compose := filepath.Join(dir, "docker-compose.yml")
	const abs = "- /opt/monitoring/node-exporter/textfile:"
	b := readFile(t, compose)
	if !strings.Contains(b, abs) {
		t.Fatalf("the fixture's node-exporter no longer mounts %s", abs)
	}
	writeFile(t, compose, strings.Replace(b, abs, "- ./node-exporter/textfile:", 1))
	return dir
}

const grafanaPassword = `demo-Grafana-pa$$word "q" \ x`

// stackScenario is the seed guide's account: the volume, the discovery
// parameters, the Grafana password, the stack waiting for a signal, and
// the bundle in the scripts bucket.
func stackScenario(bundleDir string) string {
	return fmt.Sprintf(`ec2:
  volumes:
    - {id: %s, size_gib: 2, az: eu-west-1a, encrypted: true}
ssm:
  parameters:
    - {name: /monitoring-production/ebs/volume-id, value: %s, type: String}
    - {name: /monitoring-production/ssm/scripts-bucket-name, value: monitoring-production-scripts, type: String}
cloudformation:
  stacks:
    - name: %s
      template: |
%s
s3:
  buckets:
    - name: monitoring-production-scripts
      dirs:
        - {path: %q, prefix: scripts/}
`, volumeID, volumeID, stackName, indent(stackTemplate, "        "), bundleDir)
}

// stackConfig adds the application half to baseConfig; the settle time is
// cut to keep the suite short, still longer than a crash the tests stage.
func stackConfig(h *host, sum, extra string) string {
	return fmt.Sprintf(baseConfig, "30s") + fmt.Sprintf(`docker:
  user: ""
  ready_timeout: 60s
  compose_plugin:
    version: v5.6.0
    url: %s/_files/docker-compose
    sha256: %q
compose:
  project: %s
  health_timeout: 120s
  settle: 5s
smoke:
  min_dashboards: 7
  optional_datasources: [CloudWatch, Steampipe]
`, h.url, sum, h.project) + extra
}

// newStackHost starts a host whose configuration runs the whole stack.
func newStackHost(t testing.TB, o hostOptions, extraConfig string) (*host, string) {
	t.Helper()
	dir, sum := plugin(t)
	o.files = dir
	h := startHost(t, o)
	h.until = ""
	writeFile(t, h.config, stackConfig(h, sum, extraConfig))
	putParameter(t, h, "/monitoring-production/grafana/admin-password", grafanaPassword, true)
	t.Cleanup(func() { h.composeDown(false) })
	return h, sum
}

func putParameter(t testing.TB, h *host, name, value string, overwrite bool) {
	t.Helper()
	_, err := ssm.NewFromConfig(h.awsConfig()).PutParameter(context.Background(), &ssm.PutParameterInput{
		Name: aws.String(name), Value: aws.String(value), Type: ssmtypes.ParameterTypeSecureString, Overwrite: aws.Bool(overwrite)})
	if err != nil {
		t.Fatal(err)
	}
}

func getParameter(t testing.TB, h *host, name string) string {
	t.Helper()
	out, err := ssm.NewFromConfig(h.awsConfig()).GetParameter(context.Background(), &ssm.GetParameterInput{
		Name: aws.String(name), WithDecryption: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.Parameter.Value)
}

func (h *host) stackDir() string { return filepath.Join(h.root, "opt/monitoring") }

// composeDown takes the project's containers away, as the instance's end
// would; its data stays on the data volume. keepVolumes leaves Docker's
// volume objects too.
func (h *host) composeDown(keepVolumes bool) {
	args := []string{"compose", "--project-name", h.project, "--project-directory", h.stackDir(), "down", "--timeout", "5"}
	if !keepVolumes {
		args = append(args, "--volumes")
	}
	cmd := exec.Command("docker", args...)
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+filepath.Join(h.root, "usr/local/lib/docker"))
	_ = cmd.Run()
}

// containerInfo is what the tests compare across runs.
type containerInfo struct {
	ID, Status, StartedAt string
	Restarts              int
}

// containers lists the project's containers by service.
func containers(t testing.TB, projectName string) map[string]containerInfo {
	t.Helper()
	out, err := exec.Command("docker", "ps", "-aq", "--filter", "label=com.docker.compose.project="+projectName).Output()
	if err != nil {
		t.Fatal(err)
	}
	ids := strings.Fields(string(out))
	got := map[string]containerInfo{}
	if len(ids) == 0 {
		return got
	}
	b, err := exec.Command("docker", append([]string{"inspect"}, ids...)...).Output()
	if err != nil {
		t.Fatal(err)
	}
	var list []struct {
		ID           string `json:"Id"`
		RestartCount int
		State        struct{ Status, StartedAt string }
		Config       struct{ Labels map[string]string }
	}
	if err := json.Unmarshal(b, &list); err != nil {
		t.Fatal(err)
	}
	for _, c := range list {
		got[c.Config.Labels["com.docker.compose.service"]] = containerInfo{c.ID, c.State.Status, c.State.StartedAt, c.RestartCount}
	}
	return got
}

// seedServices are the services that run without a GitHub token.
var seedServices = []string{"grafana", "loki", "node-exporter", "prometheus", "promtail", "steampipe", "tempo"}

// A blank host to the running seed stack; then reconcile runs that change
// nothing; then the GitHub token added, which starts the exporter alone.
func TestStackBootstrapAndReconcile(t *testing.T) {
	lockSeedStack(t)
	h, _ := newStackHost(t, hostOptions{scenario: stackScenario(seedBundle(t))}, "")
	h.clearCalls()
	r := h.mustConverge("bootstrap")
	t.Logf("bootstrap to a running stack: %v", r.elapsed)

	got := containers(t, project)
	for _, svc := range seedServices {
		if got[svc].Status != "running" {
			t.Errorf("%s: %+v, want running", svc, got[svc])
		}
	}
	if _, ok := got["github-actions-exporter"]; ok {
		t.Errorf("the exporter was started without a token: %+v", got["github-actions-exporter"])
	}
	if !strings.Contains(r.stdout, "/monitoring-production/github/api-token") || !strings.Contains(r.stdout, "aws ssm put-parameter") {
		t.Errorf("no warning naming the parameter and the command to create it:\n%s", r.stdout)
	}
	// .env: root-only, the SSM values read back exactly by Compose's parser.
	envPath := filepath.Join(h.stackDir(), ".env")
	env := readEnv(t, envPath)
	if env["GRAFANA_ADMIN_PASSWORD"] != grafanaPassword || env["GRAFANA_ADMIN_USER"] != "admin" {
		t.Errorf(".env holds %q", env)
	}
	if _, ok := env["GITHUB_TOKEN"]; ok {
		t.Error(".env holds an empty GITHUB_TOKEN")
	}
	checkFile(t, envPath, 0o600, 0, 0)
	// The metrics token: generated once in SSM, written to its file for Prometheus.
	token := getParameter(t, h, "/monitoring-production/prometheus/metrics-bearer-token")
	tokenPath := filepath.Join(h.stackDir(), "prometheus/secrets/metrics-token")
	if b, _ := os.ReadFile(tokenPath); len(token) != 64 || string(b) != token {
		t.Errorf("metrics token %q, file %q", token, b)
	}
	checkFile(t, tokenPath, 0o600, 65534, 65534)
	if n := h.callCount("ssm", "PutParameter"); n != 3 {
		t.Errorf("PutParameter called %d times, want 3: the token and the two endpoints", n)
	}
	if v := getParameter(t, h, "/monitoring-production/loki/endpoint"); v != "http://10.0.1.10:3100/loki/api/v1/push" {
		t.Errorf("loki endpoint %q", v)
	}
	// The stack's data is on the data volume.
	if ents, _ := os.ReadDir(filepath.Join(h.root, "data/monitoring/prometheus_data")); len(ents) == 0 {
		t.Error("nothing of Prometheus's under /data/monitoring/prometheus_data")
	}

	// A second run: nothing to do, nothing done.
	envBefore, _ := os.Stat(envPath)
	h.clearCalls()
	r = h.mustConverge("reconcile")
	t.Logf("no-op reconcile with the stack: %v, calls %v", r.elapsed, h.countCalls())
	if strings.Contains(r.stdout, "docker compose up") {
		t.Error("a converged stack was brought up again")
	}
	if after := containers(t, project); !sameContainers(got, after, seedServices) {
		t.Errorf("containers changed:\nbefore %+v\nafter  %+v", got, after)
	}
	envAfter, _ := os.Stat(envPath)
	if !os.SameFile(envBefore, envAfter) || !envBefore.ModTime().Equal(envAfter.ModTime()) {
		t.Error(".env was rewritten")
	}
	if n := h.callCount("ssm", "PutParameter"); n != 0 {
		t.Errorf("PutParameter called %d times on a converged host", n)
	}
	if n := h.callCount("s3", "GetObject"); n != 0 {
		t.Errorf("GetObject called %d times on a converged host", n)
	}
	if getParameter(t, h, "/monitoring-production/prometheus/metrics-bearer-token") != token {
		t.Error("the metrics token was rotated")
	}

	// The token is created: the exporter starts, nothing else moves.
	putParameter(t, h, "/monitoring-production/github/api-token", "github_pat_test", false)
	h.mustConverge("reconcile")
	after := containers(t, project)
	if after["github-actions-exporter"].Status != "running" || after["github-actions-exporter"].Restarts != 0 {
		t.Errorf("exporter %+v, want running", after["github-actions-exporter"])
	}
	if !sameContainers(got, after, seedServices) {
		t.Errorf("adding the token recreated other services:\nbefore %+v\nafter  %+v", got, after)
	}

	// The optional token goes again: the exporter's container goes with
	// it, rather than running on with a value that is no longer there.
	if _, err := ssm.NewFromConfig(h.awsConfig()).DeleteParameter(context.Background(),
		&ssm.DeleteParameterInput{Name: aws.String("/monitoring-production/github/api-token")}); err != nil {
		t.Fatal(err)
	}
	h.mustConverge("reconcile")
	after = containers(t, project)
	if c, ok := after["github-actions-exporter"]; ok {
		t.Errorf("the exporter's container is still there once its token is gone: %+v", c)
	}
	if !sameContainers(got, after, seedServices) {
		t.Errorf("removing the token recreated other services:\nbefore %+v\nafter  %+v", got, after)
	}

	// The run's metrics reach node-exporter through the textfile link, a
	// bind source under the stack directory.
	_, b := httpGet(t, "http://127.0.0.1:9100/metrics", "", "")
	if !strings.Contains(string(b), "monagent_") {
		t.Errorf("node-exporter serves no monagent_ metrics:\n%.2000s", b)
	}
	// The state file keeps no bare digest of .env to test guesses against.
	envBytes, _ := os.ReadFile(envPath)
	bare := sha256.Sum256(envBytes)
	if st := readFile(t, filepath.Join(h.root, "var/lib/monagent/state.json")); strings.Contains(st, hex.EncodeToString(bare[:])) {
		t.Error("the state file holds the bare SHA-256 of .env")
	}
	checkFile(t, filepath.Join(h.root, "var/lib/monagent/seal.key"), 0o600, 0, 0)

	checkStatus(t, h)

	// The seed's six categories pass on the running stack.
	r = h.monagent("smoke")
	if r.code != 0 || !strings.Contains(r.stdout, "Results: ") || strings.Contains(r.stdout, "FAIL") {
		t.Fatalf("smoke: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, cat := range []string{"[containers]", "[endpoints]", "[grafana]", "[prometheus]", "[pipeline]", "[infrastructure]"} {
		if !strings.Contains(r.stdout, cat) {
			t.Errorf("smoke has no %s check:\n%s", cat, r.stdout)
		}
	}
	smokeFailures(t, h)
}

// smokeFailures breaks the running stack one way at a time; smoke names
// each with its line and exits 1. (A wrong filesystem at the mount point:
// TestSmokeChecksTheVolumesFilesystem.)
func smokeFailures(t testing.TB, h *host) {
	config := readFile(t, h.config)
	quick := strings.Replace(config, "smoke:\n", "smoke:\n  attempts: 1\n  timeout: 2s\n", 1)
	tests := []struct {
		name        string
		break_, fix func()
		want        []string
	}{
		{"disk over its threshold",
			func() {
				// 200 MiB of the 2 GiB volume: over 2% whatever the
				// filesystem's own overhead.
				run(t, "fallocate", "-l", "200M", filepath.Join(h.root, "data/filler"))
				writeFile(t, h.config, strings.Replace(quick, "smoke:\n", "smoke:\n  disk_warn_percent: 1\n  disk_fail_percent: 2\n", 1))
			},
			func() { writeFile(t, h.config, config); run(t, "rm", filepath.Join(h.root, "data/filler")) },
			[]string{"FAIL  [infrastructure] disk usage: " + filepath.Join(h.root, "data") + " is ", "(smoke.disk_fail_percent 2): Loki, Tempo and Prometheus will fail to write"}},
		{"a stopped container",
			func() { writeFile(t, h.config, quick); run(t, "docker", "stop", "--time", "5", "loki") },
			func() { writeFile(t, h.config, config); run(t, "docker", "start", "loki") },
			[]string{"FAIL  [containers] loki: exited (exit code ", "docker logs loki", "FAIL  [endpoints] loki /ready"}},
	}
	for _, tt := range tests {
		tt.break_()
		r := h.monagent("smoke")
		tt.fix()
		if r.code != 1 {
			t.Errorf("%s: smoke exit %d, want 1:\n%s", tt.name, r.code, r.stdout)
		}
		for _, w := range tt.want {
			if !strings.Contains(r.stdout, w) {
				t.Errorf("%s: smoke does not say %q:\n%s", tt.name, w, r.stdout)
			}
		}
	}
}

// checkStatus reads status of a converged stack host, as text and JSON.
func checkStatus(t testing.TB, h *host) {
	t.Helper()
	text := h.mustConverge("status").stdout
	flat := strings.Join(strings.Fields(text), " ")
	for _, want := range []string{"(reconcile): converged in", "instance " + instanceID, volumeID + " on /dev/",
		"SUCCESS sent for " + instanceID, "compose 5.6.0", ".env /opt/monitoring/.env (0600): GRAFANA_ADMIN_PASSWORD, GRAFANA_ADMIN_USER",
		"prometheus prometheus running", "→ compose → endpoints ("} {
		if !strings.Contains(flat, want) {
			t.Errorf("status does not say %q:\n%s", want, text)
		}
	}
	js := h.mustConverge("status", "--json").stdout
	for _, out := range []string{text, js} {
		if strings.Contains(out, grafanaPassword) || strings.Contains(out, strings.ReplaceAll(grafanaPassword, `"`, `\"`)) {
			t.Fatalf("status shows the Grafana password:\n%s", out)
		}
	}
	var rep struct {
		Schema int
		Result string
		Volume struct {
			Mounted     bool
			UUID        string
			MountedUUID string `json:"mounted_uuid"`
		}
		Containers []struct {
			Service, State string
			Restarts       int
		}
		Timeline struct {
			Entries      []struct{ Step string }
			CriticalPath []string `json:"critical_path"`
		}
	}
	if err := json.Unmarshal([]byte(js), &rep); err != nil {
		t.Fatalf("status --json: %v\n%s", err, js)
	}
	running := 0
	for _, c := range rep.Containers {
		if c.State == "running" && c.Restarts == 0 {
			running++
		}
	}
	if rep.Schema != 1 || rep.Result != "converged" || !rep.Volume.Mounted || rep.Volume.UUID == "" || rep.Volume.UUID != rep.Volume.MountedUUID ||
		running < len(seedServices) || len(rep.Timeline.Entries) == 0 || len(rep.Timeline.CriticalPath) == 0 {
		t.Errorf("status --json: %+v\n%s", rep, js)
	}
}

func sameContainers(a, b map[string]containerInfo, services []string) bool {
	for _, s := range services {
		if a[s].ID == "" || a[s].ID != b[s].ID || a[s].StartedAt != b[s].StartedAt {
			return false
		}
	}
	return true
}

func readEnv(t testing.TB, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env, err := dotenv.UnmarshalBytesWithLookup(b, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf("compose's parser refuses %s: %v", path, err)
	}
	return env
}

func checkFile(t testing.TB, path string, mode os.FileMode, uid, gid uint32) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm() != mode || st.Uid != uid || st.Gid != gid {
		t.Errorf("%s: mode %v owner %d:%d, want %v %d:%d", path, fi.Mode().Perm(), st.Uid, st.Gid, mode, uid, gid)
	}
}

// httpGet fetches a URL of the stack, with basic auth when user is set.
func httpGet(t testing.TB, url, user, password string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func httpPost(t testing.TB, url, user, password string, body []byte) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.SetBasicAuth(user, password)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Instance replacement: the old instance's containers and engine state
// are gone, a new instance with a fresh root gets the same volume: the
// data Prometheus and Grafana wrote before is served again.
func TestStackSurvivesReplacement(t *testing.T) {
	lockSeedStack(t)
	data := t.TempDir()
	old, _ := newStackHost(t, hostOptions{scenario: stackScenario(seedBundle(t)), data: data}, "")
	old.mustConverge("bootstrap")
	env := readEnv(t, filepath.Join(old.stackDir(), ".env"))
	user, password := env["GRAFANA_ADMIN_USER"], env["GRAFANA_ADMIN_PASSWORD"]

	// Prometheus scrapes itself; wait for a sample, and note when.
	var sampled time.Time
	waitForLong(t, time.Minute, func() bool {
		_, b := httpGet(t, "http://127.0.0.1:9090/api/v1/query?query=up", "", "")
		if strings.Contains(string(b), `"result":[{`) {
			sampled = time.Now()
			return true
		}
		return false
	})
	dashboard := []byte(`{"dashboard":{"title":"Written before the replacement","panels":[]},"overwrite":true}`)
	if code := httpPost(t, "http://127.0.0.1:3000/api/dashboards/db", user, password, dashboard); code != http.StatusOK {
		t.Fatalf("saving a dashboard: HTTP %d", code)
	}
	// Prometheus keeps recent samples in its WAL; make sure they are on disk.
	time.Sleep(time.Second)

	// The old instance goes: its containers and Docker's volume objects
	// with it, its mount, its attachment.
	old.composeDown(false)
	run(t, "umount", filepath.Join(old.root, "data"))
	if _, err := old.ec2().DetachVolume(context.Background(), &ec2.DetachVolumeInput{VolumeId: aws.String(volumeID)}); err != nil {
		t.Fatal(err)
	}
	waitForLong(t, 30*time.Second, func() bool { return volumeState(t, old) == "available" })
	old.stop()

	// The new instance: same account, same volume, a fresh root.
	h, _ := newStackHost(t, hostOptions{data: data, instance: "i-0aaaaaaaaaaaaaaaa"}, "")
	r := h.mustConverge("bootstrap")
	if strings.Contains(r.stdout, `"argv":["mkfs`) {
		t.Fatal("the volume was formatted again")
	}
	deadline := time.Now().Add(time.Minute)
	for {
		// The time to the millisecond: a whole second might fall before the first sample.
		_, b := httpGet(t, fmt.Sprintf("http://127.0.0.1:9090/api/v1/query?query=up&time=%.3f", float64(sampled.UnixMilli())/1000), "", "")
		if strings.Contains(string(b), `"result":[{`) {
			break
		}
		if time.Now().After(deadline) {
			ls, _ := exec.Command("find", filepath.Join(h.root, "data/monitoring/prometheus_data"), "-maxdepth", "2").CombinedOutput()
			logs, _ := exec.Command("docker", "logs", "--tail", "30", "prometheus").CombinedOutput()
			t.Fatalf("Prometheus lost the samples of %v: %s\ndata:\n%s\nlogs:\n%s", sampled, b, ls, logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	_, b := httpGet(t, "http://127.0.0.1:3000/api/search?query=Written", user, password)
	if !strings.Contains(string(b), "Written before the replacement") {
		t.Fatalf("Grafana lost its dashboard: %s", b)
	}
}

// Every character a secret may hold reaches the container's environment
// unchanged: quotes, $, ${OTHER}, backslashes, spaces, newlines.
func TestEnvValueReachesContainer(t *testing.T) {
	const weird = "it's \"q\" $HOME ${OTHER} ${OTHER:-x} $$ \\ \\n back\\slash  two  spaces \nnew line\ttab #hash"
	bundle := t.TempDir()
	writeFile(t, filepath.Join(bundle, "docker-compose.yml"), `services:
  tempo:
    image: grafana/tempo:2.6.1
    environment:
      - WEIRD=${WEIRD}
`)
	h, _ := newStackHost(t, hostOptions{scenario: stackScenario(bundle), project: "envcheck"},
		"env:\n  WEIRD: {parameter: /monitoring-production/weird}\n")
	// What a shell or a unit's Environment= would leak does not override .env.
	h.extraEnv = []string{"WEIRD=from the shell", "COMPOSE_PROFILES=debug", "COMPOSE_PROJECT_NAME=other"}
	putParameter(t, h, "/monitoring-production/weird", weird, false)
	h.mustConverge("bootstrap")
	c := containers(t, "envcheck")["tempo"]
	out, err := exec.Command("docker", "inspect", "--format", "{{json .Config.Env}}", c.ID).Output()
	if err != nil {
		t.Fatal(err)
	}
	var envs []string
	if err := json.Unmarshal(out, &envs); err != nil {
		t.Fatal(err)
	}
	for _, e := range envs {
		if v, ok := strings.CutPrefix(e, "WEIRD="); ok {
			if v != weird {
				t.Fatalf("the container got %q, want %q", v, weird)
			}
			return
		}
	}
	t.Fatalf("WEIRD not in the container's environment: %q", envs)
}

// A service that crashes on start fails the compose step, which names it
// and quotes its last log lines: the restart loop of seed section 7.
func TestCrashingServiceIsNamed(t *testing.T) {
	bundle := t.TempDir()
	writeFile(t, filepath.Join(bundle, "docker-compose.yml"), `services:
  exporter:
    image: ghcr.io/labbs/github-actions-exporter:latest
    restart: unless-stopped
    environment:
      - PORT=9101
`)
	h, _ := newStackHost(t, hostOptions{scenario: stackScenario(bundle), project: "crashcheck"}, "")
	r := h.monagent("bootstrap")
	if r.code == 0 || !strings.Contains(r.stderr, "service exporter") || !strings.Contains(r.stderr, "could not read private key") {
		t.Fatalf("exit %d, want a failure naming the service with its log lines:\n%s", r.code, r.stderr)
	}
}

// crasherImage builds the image of a service that fails CRASH_AFTER after
// it starts: a static program on scratch, as the rig's images are.
var crasherImage = sync.OnceValues(func() (string, error) {
	const tag = "monagent-e2e/crasher:1"
	dir, err := os.MkdirTemp("", "crasher-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "crasher"), "./testdata/crasher")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build crasher: %v\n%s", err, out)
	}
	df := "FROM scratch\nCOPY crasher /crasher\nENTRYPOINT [\"/crasher\"]\n"
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
		return "", err
	}
	img := exec.Command("docker", "build", "-q", "-t", tag, dir)
	img.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
	if out, err := img.CombinedOutput(); err != nil {
		return "", fmt.Errorf("docker build crasher: %v\n%s", err, out)
	}
	return tag, nil
})

// crasherHost is a stack of one service that fails after crashAfter,
// restarting, in project name.
func crasherHost(t testing.TB, name, crashAfter string) *host {
	t.Helper()
	if _, err := dockerRig(); err != nil {
		t.Fatal(err)
	}
	tag, err := crasherImage()
	if err != nil {
		t.Fatal(err)
	}
	bundle := t.TempDir()
	writeFile(t, filepath.Join(bundle, "docker-compose.yml"), fmt.Sprintf(`services:
  upstream-sync:
    image: %s
    restart: unless-stopped
    environment:
      - CRASH_AFTER=%s
`, tag, crashAfter))
	h, _ := newStackHost(t, hostOptions{scenario: stackScenario(bundle), project: name}, "")
	return h
}

// A service that dies a few seconds after it starts, well after it first
// shows as running, is a restart loop, not a running service: the step
// waits compose.settle (5s here) and names it.
func TestLateCrashIsARestartLoop(t *testing.T) {
	h := crasherHost(t, "latecrash", "3s")
	r := h.monagent("bootstrap")
	if r.code == 0 || !strings.Contains(r.stderr, "service upstream-sync") || !strings.Contains(r.stderr, "lost the upstream connection") {
		t.Fatalf("exit %d, want a failure naming the service with its last log lines:\n%s", r.code, r.stderr)
	}
}

// A service that crashed since the last run is not taken as converged:
// the next run says so, and watches it settle again.
func TestRestartSinceLastRunIsNoticed(t *testing.T) {
	h := crasherHost(t, "slowcrash", "9s")
	h.mustConverge("bootstrap")
	waitForLong(t, 30*time.Second, func() bool { return containers(t, "slowcrash")["upstream-sync"].Restarts > 0 })
	r := h.mustConverge("reconcile")
	if !strings.Contains(r.stdout, "restarted 1 times since the last run") {
		t.Errorf("the restart since the last run is not reported:\n%s", r.stdout)
	}
	if !strings.Contains(r.stdout, `"step":"compose"`) || !strings.Contains(r.stdout, "stack up") {
		t.Errorf("the stack was not watched again:\n%s", r.stdout)
	}
}

// The plugin's checksum does not match: nothing is installed, and the
// error names both sums and the URL.
func TestPluginChecksumMismatch(t *testing.T) {
	h, sum := newStackHost(t, hostOptions{scenario: stackScenario(t.TempDir())}, "")
	wrong := strings.Repeat("0", 64)
	writeFile(t, h.config, strings.Replace(readFile(t, h.config), sum, wrong, 1))
	r := h.monagent("reconcile", "--only", "docker")
	if r.code != 4 || !strings.Contains(r.stderr, sum) || !strings.Contains(r.stderr, wrong) || !strings.Contains(r.stderr, "/_files/docker-compose") {
		t.Fatalf("exit %d, want 4 naming both sums and the URL:\n%s", r.code, r.stderr)
	}
	dir := filepath.Join(h.root, "usr/local/lib/docker/cli-plugins")
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("something was installed: %v", ents)
	}
}

// The plugin is missing while the engine answers: the seed's section 6
// race. docker-ready times out saying exactly that.
func TestReadyWithoutPlugin(t *testing.T) {
	h, _ := newStackHost(t, hostOptions{scenario: stackScenario(t.TempDir())}, "")
	writeFile(t, h.config, strings.Replace(readFile(t, h.config), "ready_timeout: 60s", "ready_timeout: 1s", 1))
	r := h.monagent("reconcile", "--only", "docker-ready")
	for _, want := range []string{"the Docker engine answers", "Compose", "section 6", "unknown shorthand flag"} {
		if r.code != 1 || !strings.Contains(r.stderr, want) {
			t.Fatalf("exit %d, want 1 with %q:\n%s", r.code, want, r.stderr)
		}
	}
}

// An engine that starts late is noticed within half a second of its first
// answer. A private dockerd on its own socket stands in, so the host's
// engine and whatever runs on it are left alone.
func TestReadyNoticesLateEngine(t *testing.T) {
	h, _ := newStackHost(t, hostOptions{scenario: stackScenario(t.TempDir())}, "")
	path, _ := dockerRig()
	pluginDir := filepath.Join(h.root, "usr/local/lib/docker/cli-plugins")
	run(t, "install", "-D", "-m", "0755", path, filepath.Join(pluginDir, "docker-compose"))
	d := t.TempDir()
	sock := filepath.Join(d, "docker.sock")

	cmd := h.command(nil, "reconcile", "--only", "docker-ready")
	cmd.Env = append(cmd.Env, "DOCKER_HOST=unix://"+sock)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	// A bridge of its own: with --bridge none, dockerd deletes docker0,
	// the host engine's default bridge.
	bridge := fmt.Sprintf("mrd%d", os.Getpid()%100000)
	run(t, "ip", "link", "add", "name", bridge, "type", "bridge")
	t.Cleanup(func() { _ = exec.Command("ip", "link", "delete", bridge).Run() })
	engine := exec.Command("dockerd", "--host", "unix://"+sock, "--data-root", filepath.Join(d, "root"),
		"--exec-root", filepath.Join(d, "exec"), "--pidfile", filepath.Join(d, "docker.pid"),
		"--bridge", bridge, "--iptables=false", "--ip6tables=false")
	engine.Stdout, engine.Stderr = io.Discard, io.Discard
	if err := engine.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = engine.Process.Signal(syscall.SIGTERM); _ = engine.Wait() })
	// When does the engine first answer? Ask it every 10 ms.
	var answered time.Time
	waitForLong(t, 30*time.Second, func() bool {
		c := exec.Command("curl", "-fs", "--unix-socket", sock, "http://d/_ping")
		if c.Run() == nil {
			answered = time.Now()
			return true
		}
		return false
	})
	if err := cmd.Wait(); err != nil {
		t.Fatalf("docker-ready: %v\n%s", err, out.String())
	}
	ready := logTime(t, out.String(), "docker ready")
	if lag := ready.Sub(answered); lag > 500*time.Millisecond {
		t.Fatalf("readiness noticed %v after the engine answered, want within 0.5s", lag)
	}
	t.Logf("noticed %v after the engine's first answer", ready.Sub(answered))
}

func volumeState(t testing.TB, h *host) string {
	t.Helper()
	out, err := h.ec2().DescribeVolumes(context.Background(), &ec2.DescribeVolumesInput{VolumeIds: []string{volumeID}})
	if err != nil || len(out.Volumes) != 1 {
		t.Fatalf("describe: %v", err)
	}
	return string(out.Volumes[0].State)
}

// waitForLong polls cond every 10 ms for up to d.
func waitForLong(t testing.TB, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not reached in %v", d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
