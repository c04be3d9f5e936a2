package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"

	"github.com/monagent/monagent/internal/metrics"
	"github.com/monagent/monagent/internal/smoke"
	"github.com/monagent/monagent/internal/state"
)

// These tests check the textfiles with the real programs that read them:
// the rig's node-exporter image (Debian's node_exporter) serves what the
// real monagent binary wrote, and the rig's Prometheus image's promtool
// checks the alert rules and the files. Each uses containers of its own
// (own name, a port Docker picks), so no seed-stack lock is needed.

const (
	nodeExporterImage = "prom/node-exporter:v1.8.2"
	prometheusImage   = "prom/prometheus:v3.9.1"
	alertRules        = "../../packaging/prometheus/monagent-alerts.yml"
	// The seed stack's node-exporter mounts the textfile link here and
	// reads it with this flag.
	textfileMount = "/etc/node-exporter/textfile"
	textfileLink  = "opt/monitoring/node-exporter/textfile"
	textfileDir   = "var/lib/node_exporter/textfile_collector"
)

// quickSmokeConfig makes smoke quick and independent of any stack running on
// this machine: one attempt, every URL a closed port.
const quickSmokeConfig = `smoke:
  timeout: 30s
  attempts: 1
  grafana_url: http://127.0.0.1:1
  prometheus_url: http://127.0.0.1:1
  loki_url: http://127.0.0.1:1
  tempo_url: http://127.0.0.1:1
  node_exporter_url: http://127.0.0.1:1
  promtail_url: http://127.0.0.1:1
compose:
  project: monagent-e2e-metrics
`

// The run's and smoke's families appear on node-exporter's /metrics with
// the values of the state file and the smoke report, through the textfile
// link the seed stack mounts; a failed run turns them to failure; the
// textfile collector reads both files without error.
func TestMetricsOnNodeExporter(t *testing.T) {
	if _, err := dockerRig(); err != nil {
		t.Fatal(err)
	}
	h := startHost(t, hostOptions{scenario: scenario("", ""), config: fmt.Sprintf(baseConfig, "30s") + quickSmokeConfig})
	h.mustConverge("bootstrap")
	h.mustConverge("reconcile") // every step skipped now

	ne := startNodeExporter(t, filepath.Join(h.root, textfileLink))
	got := ne.scrape(t)
	st := metricsState(t, h)
	checkRunMetrics(t, got, st, "reconcile")
	for _, k := range []string{`monagent_last_run_success`, `monagent_signal_sent`} {
		wantValue(t, got, k, 1)
	}
	for step := range st.Steps {
		wantValue(t, got, fmt.Sprintf(`monagent_step_skipped{step=%q}`, step), 1)
	}
	wantValue(t, got, `monagent_last_success_timestamp_seconds`, float64(st.LastRun.Unix()))
	wantValue(t, got, `node_textfile_scrape_error`, 0)

	t.Run("smoke", func(t *testing.T) {
		r := h.monagent("smoke", "--json")
		var rep smoke.Report
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
			t.Fatalf("smoke --json (exit %d): %v\n%s\n%s", r.code, err, r.stdout, r.stderr)
		}
		if wantCode := map[bool]int{true: 1, false: 0}[rep.Failed > 0]; r.code != wantCode {
			t.Errorf("smoke exit %d with %d failures, want %d", r.code, rep.Failed, wantCode)
		}
		if strings.Contains(r.stderr, "smoke metrics not written") {
			t.Errorf("smoke did not write its textfile:\n%s", r.stderr)
		}
		got := ne.scrape(t)
		checkSmokeMetrics(t, got, rep)
		wantValue(t, got, `node_textfile_scrape_error`, 0)
		if ts := got[`monagent_smoke_last_run_timestamp_seconds`]; time.Since(time.Unix(int64(ts), 0)) > time.Minute {
			t.Errorf("smoke's timestamp %v is not this run's", ts)
		}
		// The run's file is still there beside it.
		wantValue(t, got, `monagent_last_run_success`, 1)
	})

	t.Run("smoke without its textfile", func(t *testing.T) {
		// A file where the textfile directory should be: the textfile
		// cannot be written, which smoke says on stderr, and nothing else
		// changes, its exit code least of all.
		before := h.monagent("smoke")
		cfg := readFile(t, h.config)
		defer writeFile(t, h.config, cfg)
		writeFile(t, filepath.Join(h.root, "blocked"), "a file, not a directory")
		writeFile(t, h.config, cfg+"metrics: {textfile_dir: /blocked/textfile}\n")
		r := h.monagent("smoke")
		if r.code != before.code {
			t.Errorf("exit %d without the textfile, %d with it", r.code, before.code)
		}
		if !strings.Contains(r.stderr, "monagent: warning: smoke metrics not written for node-exporter") ||
			!strings.Contains(r.stderr, "/blocked/textfile") {
			t.Errorf("no warning naming the directory on stderr:\n%s", r.stderr)
		}
		if !strings.Contains(r.stdout, "Results: ") {
			t.Errorf("the report is missing:\n%s", r.stdout)
		}
	})

	t.Run("failed run", func(t *testing.T) {
		// The volume holds xfs, the configuration now says ext4: the volume
		// step refuses (monagent never formats a volume that holds data).
		writeFile(t, h.config, strings.Replace(readFile(t, h.config), "fs_type: xfs", "fs_type: ext4", 1))
		if r := h.monagent("reconcile"); r.code == 0 || !strings.Contains(r.stderr, "holds a filesystem of type xfs") {
			t.Fatalf("reconcile exit %d, want the volume step's refusal:\n%s", r.code, r.stderr)
		}
		got := ne.scrape(t)
		st := metricsState(t, h)
		checkRunMetrics(t, got, st, "reconcile")
		wantValue(t, got, `monagent_last_run_success`, 0)
		wantValue(t, got, `monagent_step_success{step="volume"}`, 0)
		// SUCCESS went out in the bootstrap: still settled for this instance.
		wantValue(t, got, `monagent_signal_sent`, 1)
		// The last success stops at the oldest step success: the volume's,
		// in the run before this one.
		if vol := st.Steps["volume"].LastSuccess; !vol.Before(st.LastRun) {
			t.Errorf("the volume's last success %v is not before the failed run %v", vol, st.LastRun)
		}
		wantValue(t, got, `monagent_last_success_timestamp_seconds`, float64(oldestSuccess(st).Unix()))
		wantValue(t, got, `node_textfile_scrape_error`, 0)
		// Smoke's file is untouched by the run.
		if _, ok := got[`monagent_smoke_last_run_timestamp_seconds`]; !ok {
			t.Errorf("the run removed smoke's metrics")
		}
	})

	t.Run("promtool check metrics", func(t *testing.T) {
		var files []byte
		for _, name := range []string{metrics.FileName, metrics.SmokeFileName} {
			files = append(files, readFile(t, filepath.Join(h.root, textfileDir, name))...)
		}
		promtool(t, bytes.NewReader(files), nil, "check", "metrics")
	})
}

// checkRunMetrics compares the run's families with the state file.
func checkRunMetrics(t testing.TB, got map[string]float64, st *state.State, mode string) {
	t.Helper()
	if len(st.Steps) == 0 {
		t.Fatal("the state has no steps")
	}
	for step, rec := range st.Steps {
		wantValue(t, got, fmt.Sprintf(`monagent_step_success{step=%q}`, step), gaugeBool(rec.Status == state.Succeeded))
		wantValue(t, got, fmt.Sprintf(`monagent_step_skipped{step=%q}`, step), gaugeBool(rec.Skipped))
		wantValue(t, got, fmt.Sprintf(`monagent_step_duration_seconds{step=%q}`, step), rec.Duration.Seconds())
	}
	wantValue(t, got, `monagent_last_run_timestamp_seconds`, float64(st.LastRun.Unix()))
	wantValue(t, got, fmt.Sprintf(`monagent_info{mode=%q,version="dev"}`, mode), 1)
}

// checkSmokeMetrics compares smoke's families with its report.
func checkSmokeMetrics(t testing.TB, got map[string]float64, rep smoke.Report) {
	t.Helper()
	if len(rep.Checks) == 0 {
		t.Fatal("smoke made no checks")
	}
	counts := map[string]map[smoke.Status]int{}
	for _, cat := range smoke.Categories {
		counts[cat] = map[smoke.Status]int{}
	}
	for _, c := range rep.Checks {
		if counts[c.Category] == nil {
			counts[c.Category] = map[smoke.Status]int{}
		}
		counts[c.Category][c.Status]++
	}
	for cat, n := range counts {
		for _, r := range []smoke.Status{smoke.Pass, smoke.Fail, smoke.Warn} {
			wantValue(t, got, fmt.Sprintf(`monagent_smoke_checks{category=%q,result=%q}`, cat, r), float64(n[r]))
		}
		wantValue(t, got, fmt.Sprintf(`monagent_smoke_success{category=%q}`, cat), gaugeBool(n[smoke.Fail] == 0))
	}
}

func oldestSuccess(st *state.State) time.Time {
	var oldest time.Time
	for _, rec := range st.Steps {
		if oldest.IsZero() || rec.LastSuccess.Before(oldest) {
			oldest = rec.LastSuccess
		}
	}
	return oldest
}

func wantValue(t testing.TB, got map[string]float64, key string, want float64) {
	t.Helper()
	v, ok := got[key]
	switch {
	case !ok:
		t.Errorf("%s not on node-exporter's /metrics (monagent series there: %v)", key, monagentSeries(got))
	case v != want:
		t.Errorf("%s = %v, want %v", key, v, want)
	}
}

func monagentSeries(got map[string]float64) []string {
	var out []string
	for k := range got {
		if strings.HasPrefix(k, "monagent_") {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func gaugeBool(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func metricsState(t testing.TB, h *host) *state.State {
	t.Helper()
	st, err := (&state.Store{Path: filepath.Join(h.root, "var/lib/monagent/state.json")}).Load()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// nodeExporter is a node-exporter container of this test.
type nodeExporter struct{ url string }

// startNodeExporter runs the rig's node-exporter as the seed stack does,
// with src (the textfile link: Docker follows it) mounted read-only at the
// seed's path; only the textfile collector, on a port Docker picks.
func startNodeExporter(t testing.TB, src string) *nodeExporter {
	t.Helper()
	name := fmt.Sprintf("monagent-e2e-node-exporter-%d", time.Now().UnixNano())
	out, err := exec.Command("docker", "run", "-d", "--name", name,
		"-p", "127.0.0.1::9100",
		"-v", src+":"+textfileMount+":ro",
		nodeExporterImage,
		"--collector.disable-defaults", "--collector.textfile",
		"--collector.textfile.directory="+textfileMount).CombinedOutput()
	if err != nil {
		t.Fatalf("docker run %s: %v\n%s", nodeExporterImage, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("docker", "rm", "-f", name).CombinedOutput(); err != nil {
			t.Errorf("docker rm %s: %v\n%s", name, err, out)
		}
	})
	port, err := exec.Command("docker", "port", name, "9100/tcp").Output()
	if err != nil {
		t.Fatalf("docker port %s: %v", name, err)
	}
	addr := strings.TrimSpace(strings.Split(string(port), "\n")[0])
	ne := &nodeExporter{url: "http://" + addr + "/metrics"}
	waitForLong(t, 30*time.Second, func() bool {
		resp, err := http.Get(ne.url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return ne
}

// scrape reads /metrics as Prometheus would, flattened to
// `name{label="value",...}` (labels sorted) -> value.
func (ne *nodeExporter) scrape(t *testing.T) map[string]float64 {
	t.Helper()
	resp, err := http.Get(ne.url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("node-exporter's /metrics does not parse: %v", err)
	}
	out := map[string]float64{}
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			out[flatKey(name, m.GetLabel())] = sampleValue(mf.GetType(), m)
		}
	}
	return out
}

func flatKey(name string, labels []*dto.LabelPair) string {
	if len(labels) == 0 {
		return name
	}
	parts := make([]string, 0, len(labels))
	for _, l := range labels {
		parts = append(parts, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
	}
	sort.Strings(parts)
	return name + "{" + strings.Join(parts, ",") + "}"
}

func sampleValue(typ dto.MetricType, m *dto.Metric) float64 {
	switch typ {
	case dto.MetricType_GAUGE:
		return m.GetGauge().GetValue()
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue()
	default:
		return m.GetUntyped().GetValue()
	}
}

// promtool runs the rig's Prometheus image's promtool with stdin and the
// given host directories mounted read-only (host path -> container path).
func promtool(t testing.TB, stdin io.Reader, mounts map[string]string, args ...string) string {
	t.Helper()
	if _, err := dockerRig(); err != nil {
		t.Fatal(err)
	}
	argv := []string{"run", "--rm", "-i", "--entrypoint", "/bin/promtool"}
	for src, dst := range mounts {
		abs, err := filepath.Abs(src)
		if err != nil {
			t.Fatal(err)
		}
		argv = append(argv, "-v", abs+":"+dst+":ro")
	}
	cmd := exec.Command("docker", append(append(argv, prometheusImage), args...)...)
	cmd.Stdin = stdin
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// The alert rules load in the real Prometheus (promtool check rules), and
// each alert fires, or stays quiet, as docs/metrics.md says (promtool test
// rules, on series shaped like monagent's textfiles).
func TestAlertRulesPromtool(t *testing.T) {
	mounts := map[string]string{filepath.Dir(alertRules): "/rules"}
	out := promtool(t, nil, mounts, "check", "rules", "/rules/"+filepath.Base(alertRules))
	if !strings.Contains(out, "SUCCESS: 4 rules found") {
		t.Errorf("promtool check rules:\n%s", out)
	}

	dir := t.TempDir()
	b, err := yaml.Marshal(alertTests(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tests.yml"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil { // promtool runs as nobody
		t.Fatal(err)
	}
	mounts[dir] = "/tests"
	out = promtool(t, nil, mounts, "test", "rules", "/tests/tests.yml")
	if !strings.Contains(out, "SUCCESS") {
		t.Errorf("promtool test rules:\n%s", out)
	}
}

// promtool's rule unit test file.
type ruleTests struct {
	RuleFiles          []string    `yaml:"rule_files"`
	EvaluationInterval string      `yaml:"evaluation_interval"`
	Tests              []ruleGroup `yaml:"tests"`
}

type ruleGroup struct {
	Interval      string        `yaml:"interval"`
	InputSeries   []inputSeries `yaml:"input_series"`
	AlertRuleTest []alertTest   `yaml:"alert_rule_test"`
}

type inputSeries struct {
	Series string `yaml:"series"`
	Values string `yaml:"values"`
}

type alertTest struct {
	EvalTime  string     `yaml:"eval_time"`
	Alertname string     `yaml:"alertname"`
	ExpAlerts []expAlert `yaml:"exp_alerts"`
}

type expAlert struct {
	ExpLabels      map[string]string `yaml:"exp_labels"`
	ExpAnnotations map[string]string `yaml:"exp_annotations"`
}

// alertTests: one host ("bad") whose run fails from minute 2, whose
// grafana smoke checks fail from minute 1 and that never succeeded, and
// one ("good") that is fine; monagent_last_run_timestamp_seconds absent
// throughout, then present in a second group.
func alertTests(t testing.TB) ruleTests {
	const bad, good = `instance="bad:9100",job="node-exporter"`, `instance="good:9100",job="node-exporter"`
	fire := func(alert string, labels map[string]string, value string) []expAlert {
		return []expAlert{{ExpLabels: labels, ExpAnnotations: annotations(t, alert, labels, value)}}
	}
	badLabels := func(severity string, extra ...string) map[string]string {
		l := map[string]string{"instance": "bad:9100", "job": "node-exporter", "severity": severity}
		for i := 0; i+1 < len(extra); i += 2 {
			l[extra[i]] = extra[i+1]
		}
		return l
	}
	return ruleTests{
		RuleFiles:          []string{"/rules/" + filepath.Base(alertRules)},
		EvaluationInterval: "1m",
		Tests: []ruleGroup{
			{
				Interval: "1m",
				InputSeries: []inputSeries{
					{"monagent_last_run_success{" + bad + "}", "1 1 0x70"},
					{"monagent_last_run_success{" + good + "}", "1x72"},
					{`monagent_smoke_success{category="grafana",` + bad + "}", "1 0x70"},
					{`monagent_smoke_success{category="containers",` + bad + "}", "1x72"},
					// Never succeeded; the good host succeeds every minute.
					{"monagent_last_success_timestamp_seconds{" + bad + "}", "0x72"},
					{"monagent_last_success_timestamp_seconds{" + good + "}", "0+60x72"},
				},
				AlertRuleTest: []alertTest{
					{EvalTime: "11m", Alertname: "MonagentRunFailed"}, // pending: 9 of 10 minutes
					{EvalTime: "13m", Alertname: "MonagentRunFailed", ExpAlerts: fire("MonagentRunFailed", badLabels("warning"), "")},
					{EvalTime: "15m", Alertname: "MonagentSmokeFailing"}, // 14 of 15 minutes
					{EvalTime: "17m", Alertname: "MonagentSmokeFailing",
						ExpAlerts: fire("MonagentSmokeFailing", badLabels("critical", "category", "grafana"), "")},
					{EvalTime: "59m", Alertname: "MonagentNoSuccessfulRun"}, // 59 minutes since 0
					{EvalTime: "61m", Alertname: "MonagentNoSuccessfulRun",
						ExpAlerts: fire("MonagentNoSuccessfulRun", badLabels("critical"), "1h 1m 0s")},
					{EvalTime: "29m", Alertname: "MonagentMetricsMissing"},
					{EvalTime: "31m", Alertname: "MonagentMetricsMissing",
						ExpAlerts: fire("MonagentMetricsMissing", map[string]string{"severity": "warning"}, "")},
				},
			},
			{
				Interval:    "1m",
				InputSeries: []inputSeries{{"monagent_last_run_timestamp_seconds{" + good + "}", "0+60x40"}},
				AlertRuleTest: []alertTest{
					{EvalTime: "35m", Alertname: "MonagentMetricsMissing"},
				},
			},
		},
	}
}

// annotations are the alert's annotations as Prometheus renders them for
// labels and value: the templates the rule file uses are filled in here,
// and any other is an error, so a new one is added here on purpose.
func annotations(t testing.TB, alert string, labels map[string]string, value string) map[string]string {
	t.Helper()
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal([]byte(readFile(t, alertRules)), &f); err != nil {
		t.Fatal(err)
	}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Alert != alert {
				continue
			}
			out := map[string]string{}
			for k, tmpl := range r.Annotations {
				s := strings.ReplaceAll(tmpl, "{{ $value | humanizeDuration }}", value)
				for _, l := range []string{"instance", "category"} {
					s = strings.ReplaceAll(s, "{{ $labels."+l+" }}", labels[l])
				}
				if strings.Contains(s, "{{") {
					t.Fatalf("%s: annotation %s has a template this test does not fill in: %s", alert, k, s)
				}
				out[k] = s
			}
			return out
		}
	}
	t.Fatalf("no alert %s in %s", alert, alertRules)
	return nil
}
