// Package e2e runs the real monagent binary against the real awssim binary:
// loop-device volumes, mkfs.xfs, mount, and the AWS SDK reading back what
// happened.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/monagent/monagent/internal/ebs"
)

const (
	instanceID = "i-0123456789abcdef0"
	stackName  = "Monitoring-Compute-production"
	volumeID   = "vol-0a1b2c3d4e5f60718"
)

var bins struct{ monagent, awssim string }

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "monagent-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bins.monagent = filepath.Join(dir, "monagent")
	bins.awssim = filepath.Join(dir, "awssim")
	for out, pkg := range map[string]string{bins.monagent: "../../cmd/monagent", bins.awssim: "../../cmd/awssim"} {
		// Static, as shipped: the same binary runs inside the instances.
		cmd := exec.Command("go", "build", "-trimpath", "-o", out, pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build", pkg, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// host is one simulated instance: an awssim process and a host root.
type host struct {
	t      testing.TB
	root   string
	url    string
	config string
	sim    *exec.Cmd
	// until limits bootstrap and reconcile to the infrastructure half
	// (--until signal) unless a test clears it to run the whole stack.
	until string
	// project is the Compose project of the stack tests.
	project string
	// extraEnv is added to monagent's environment: what a shell would leak.
	extraEnv []string
}

// template for the stack whose ASG waits for the bootstrap signal.
const stackTemplate = `Resources:
  MonitoringAsg:
    Type: AWS::AutoScaling::AutoScalingGroup
    CreationPolicy:
      ResourceSignal:
        Count: 1
        Timeout: PT15M
`

// scenario is the default account: one blank volume, its id in SSM, a stack
// waiting for a signal. extra is appended (more volumes, faults).
func scenario(volumeExtra, extra string) string {
	return fmt.Sprintf(`ec2:
  attach_delay: 200ms
  volumes:
    - id: %s
      size_gib: 1
      az: eu-west-1a
%s
ssm:
  parameters:
    - {name: /monitoring-production/ebs/volume-id, value: %s, type: String}
cloudformation:
  stacks:
    - name: %s
      template: |
%s
%s`, volumeID, volumeExtra, volumeID, stackName, indent(stackTemplate, "        "), extra)
}

func indent(s, pre string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return pre + strings.Join(lines, "\n"+pre)
}

const baseConfig = `prefix: monitoring-production
stack:
  name: Monitoring-Compute-production
  resource: MonitoringAsg
volume:
  id_parameter: /{prefix}/ebs/volume-id
  mount_point: /data
  fs_type: xfs
  owner: "0:0"
  wait_available: %s
  attach_timeout: 20s
  device_timeout: 10s
`

func newHost(t testing.TB, scen string, waitAvailable string) *host {
	t.Helper()
	return startHost(t, hostOptions{scenario: scen, config: fmt.Sprintf(baseConfig, waitAvailable)})
}

// hostOptions describe one simulated instance.
type hostOptions struct {
	scenario string // applied at start; "" for none
	config   string
	data     string // awssim's state; "" for a fresh one. The same data is the same account.
	instance string // the instance id IMDS reports; "" for the default
	files    string // directory awssim serves under /_files/
	project  string // Compose project of a stack test; "" for monitoring
}

// startHost starts awssim on a fresh host root.
func startHost(t testing.TB, o hostOptions) *host {
	t.Helper()
	h := &host{t: t, root: t.TempDir(), until: "signal", project: o.project}
	if h.project == "" {
		h.project = project
	}
	if err := os.MkdirAll(filepath.Join(h.root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	h.config = filepath.Join(t.TempDir(), "config.yaml")
	if o.config == "" {
		o.config = fmt.Sprintf(baseConfig, "30s")
	}
	writeFile(t, h.config, o.config)
	if o.data == "" {
		o.data = t.TempDir()
	}
	args := []string{"--addr", "127.0.0.1:0", "--data", o.data, "--root", h.root}
	if o.scenario != "" {
		scenFile := filepath.Join(t.TempDir(), "scenario.yaml")
		writeFile(t, scenFile, o.scenario)
		args = append(args, "--scenario", scenFile)
	}
	if o.instance != "" {
		args = append(args, "--instance-id", o.instance)
	}
	if o.files != "" {
		args = append(args, "--files", o.files)
	}
	h.sim = exec.Command(bins.awssim, args...)
	var stderr bytes.Buffer
	h.sim.Stderr = &stderr
	stdout, err := h.sim.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := h.sim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.stop)
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("awssim did not start: %v\n%s", err, stderr.String())
	}
	fields := strings.Fields(line)
	if len(fields) < 4 || !strings.HasPrefix(fields[3], "http://") {
		t.Fatalf("unexpected ready line %q", line)
	}
	h.url = fields[3]
	return h
}

// stop unmounts what monagent mounted and stops awssim, which releases its
// loop devices.
func (h *host) stop() {
	for i := 0; i < 3; i++ {
		if m, _ := ebs.MountAt(filepath.Join(h.root, "data")); m == nil {
			break
		}
		_ = exec.Command("umount", filepath.Join(h.root, "data")).Run()
	}
	_ = h.sim.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = h.sim.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = h.sim.Process.Kill()
		h.t.Error("awssim did not stop on SIGTERM")
	}
}

func (h *host) env() []string {
	env := append(os.Environ(),
		"AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test", "AWS_REGION=eu-west-1",
		"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null",
		"AWS_ENDPOINT_URL="+h.url, "AWS_EC2_METADATA_SERVICE_ENDPOINT="+h.url)
	return append(env, h.extraEnv...)
}

type result struct {
	code           int
	stdout, stderr string
	elapsed        time.Duration
}

// runArgs adds --until to a converging verb, unless the test chose steps.
func (h *host) runArgs(args []string) []string {
	if h.until == "" || slices.Contains(args, "--only") || slices.Contains(args, "--until") ||
		(!slices.Contains(args, "bootstrap") && !slices.Contains(args, "reconcile")) {
		return args
	}
	return append(slices.Clone(args), "--until", h.until)
}

func (h *host) monagent(args ...string) result {
	h.t.Helper()
	full := append([]string{"--root", h.root, "--config", h.config}, h.runArgs(args)...)
	cmd := exec.Command(bins.monagent, full...)
	cmd.Env = h.env()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String(), elapsed: time.Since(start)}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			h.t.Fatalf("monagent did not run: %v", err)
		}
		r.code = ee.ExitCode()
	}
	return r
}

func (h *host) mustConverge(args ...string) result {
	h.t.Helper()
	r := h.monagent(args...)
	if r.code != 0 {
		h.t.Fatalf("monagent %v: exit %d\nstderr: %s\nstdout: %s", args, r.code, r.stderr, r.stdout)
	}
	return r
}

func (h *host) awsConfig() aws.Config {
	return aws.Config{
		Region:       "eu-west-1",
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
		BaseEndpoint: aws.String(h.url),
	}
}

func (h *host) cfn() *cloudformation.Client { return cloudformation.NewFromConfig(h.awsConfig()) }
func (h *host) ec2() *ec2.Client            { return ec2.NewFromConfig(h.awsConfig()) }

// signals returns the signal events of the stack, oldest first.
func (h *host) signals() []string {
	h.t.Helper()
	out, err := h.cfn().DescribeStackEvents(context.Background(), &cloudformation.DescribeStackEventsInput{StackName: aws.String(stackName)})
	if err != nil {
		h.t.Fatal(err)
	}
	var sig []string
	for i := len(out.StackEvents) - 1; i >= 0; i-- {
		if r := aws.ToString(out.StackEvents[i].ResourceStatusReason); strings.Contains(r, "signal with UniqueId") {
			sig = append(sig, r)
		}
	}
	return sig
}

// signalTime is when the stack's event for the first signal of status
// was recorded.
func (h *host) signalTime(status string) time.Time {
	h.t.Helper()
	out, err := h.cfn().DescribeStackEvents(context.Background(), &cloudformation.DescribeStackEventsInput{StackName: aws.String(stackName)})
	if err != nil {
		h.t.Fatal(err)
	}
	for i := len(out.StackEvents) - 1; i >= 0; i-- {
		ev := out.StackEvents[i]
		if strings.Contains(aws.ToString(ev.ResourceStatusReason), "Received "+status+" signal") {
			return aws.ToTime(ev.Timestamp)
		}
	}
	h.t.Fatalf("no %s signal event", status)
	return time.Time{}
}

// logTime is the time of the first JSON log line with message msg.
func logTime(t testing.TB, logs, msg string) time.Time {
	t.Helper()
	for _, line := range strings.Split(logs, "\n") {
		var e struct {
			Msg  string `json:"msg"`
			Time string `json:"time"`
		}
		if json.Unmarshal([]byte(line), &e) != nil || e.Msg != msg {
			continue
		}
		ts, err := time.Parse("2006-01-02T15:04:05.000Z0700", e.Time)
		if err != nil {
			t.Fatalf("log time %q: %v", e.Time, err)
		}
		return ts
	}
	t.Fatalf("no log line %q in:\n%s", msg, logs)
	return time.Time{}
}

func (h *host) stackStatus() string {
	h.t.Helper()
	out, err := h.cfn().DescribeStacks(context.Background(), &cloudformation.DescribeStacksInput{StackName: aws.String(stackName)})
	if err != nil {
		h.t.Fatal(err)
	}
	return string(out.Stacks[0].StackStatus)
}

func (h *host) readFstab() string {
	b, err := os.ReadFile(filepath.Join(h.root, "etc/fstab"))
	if err != nil {
		h.t.Fatal(err)
	}
	return string(b)
}

// blkid probes dev and returns its key=value export.
func blkid(t testing.TB, dev string) map[string]string {
	t.Helper()
	out, _ := exec.Command("blkid", "-p", "-o", "export", dev).Output()
	kv := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			kv[k] = v
		}
	}
	return kv
}

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// call is one entry of awssim's call log.
type call struct {
	Service   string `json:"service"`
	Operation string `json:"operation"`
	Code      string `json:"code"`
}

func (h *host) calls() []call {
	h.t.Helper()
	resp, err := http.Get(h.url + "/_sim/calls")
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	var calls []call
	if err := json.NewDecoder(resp.Body).Decode(&calls); err != nil {
		h.t.Fatal(err)
	}
	return calls
}

// countCalls counts logged calls by service.
func (h *host) countCalls() map[string]int {
	n := map[string]int{}
	for _, c := range h.calls() {
		n[c.Service]++
	}
	return n
}

func (h *host) control(method, path, body string) {
	h.t.Helper()
	req, err := http.NewRequest(method, h.url+path, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		h.t.Fatalf("%s %s: %s", method, path, resp.Status)
	}
}

func (h *host) clearCalls()               { h.control(http.MethodDelete, "/_sim/calls", "") }
func (h *host) setFault(key, body string) { h.control(http.MethodPut, "/_sim/faults/"+key, body) }
func (h *host) clearFault(key string)     { h.control(http.MethodDelete, "/_sim/faults/"+key, "") }
func (h *host) writeConfig(extra string) {
	h.t.Helper()
	writeFile(h.t, h.config, fmt.Sprintf(baseConfig, "30s")+extra)
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// command is monagent with the host's flags and environment, for tests
// that start it themselves.
func (h *host) command(prefix []string, args ...string) *exec.Cmd {
	argv := append(append(append([]string(nil), prefix...), bins.monagent, "--root", h.root, "--config", h.config), h.runArgs(args)...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = h.env()
	return cmd
}
