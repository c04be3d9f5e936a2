package metrics

import (
	"bytes"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/monagent/monagent/internal/smoke"
	"github.com/monagent/monagent/internal/state"
)

// alertsFile is the rule file shipped for Prometheus. promtool checks its
// syntax and runs its alerts in test/e2e; this test ties it to what Render
// writes, without Prometheus's own module (its dependency tree is far
// larger than this check is worth).
const alertsFile = "../../packaging/prometheus/monagent-alerts.yml"

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []rule `yaml:"rules"`
	} `yaml:"groups"`
}

type rule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func loadRules(t *testing.T) map[string]rule {
	t.Helper()
	b, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var f ruleFile
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true) // a misspelt key is an error here, as in Prometheus
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	rules := map[string]rule{}
	for _, g := range f.Groups {
		if g.Name == "" {
			t.Errorf("a group without a name")
		}
		for _, r := range g.Rules {
			if _, dup := rules[r.Alert]; dup {
				t.Errorf("alert %s twice", r.Alert)
			}
			rules[r.Alert] = r
		}
	}
	return rules
}

func TestAlertRules(t *testing.T) {
	rules := loadRules(t)
	tests := []struct {
		alert, expr, forDur, severity string
		// commands the description must name, so that whoever is paged
		// knows what to run.
		commands []string
	}{
		{"MonagentRunFailed", "monagent_last_run_success == 0", "10m", "warning",
			[]string{"monagent status", "journalctl -u monagent", "monagent doctor"}},
		{"MonagentSmokeFailing", "monagent_smoke_success == 0", "15m", "critical",
			[]string{"monagent smoke", "monagent status", "journalctl -u monagent"}},
		{"MonagentNoSuccessfulRun", "time() - monagent_last_success_timestamp_seconds > 3600", "", "critical",
			[]string{"monagent status", "journalctl -u monagent", "monagent doctor"}},
		{"MonagentMetricsMissing", "absent(monagent_last_run_timestamp_seconds)", "30m", "warning",
			[]string{"monagent status", "journalctl -u monagent", "monagent doctor"}},
	}
	for _, tt := range tests {
		t.Run(tt.alert, func(t *testing.T) {
			r, ok := rules[tt.alert]
			if !ok {
				t.Fatalf("no alert %s in %s", tt.alert, alertsFile)
			}
			if r.Expr != tt.expr {
				t.Errorf("expr %q, want %q", r.Expr, tt.expr)
			}
			if r.For != tt.forDur {
				t.Errorf("for %q, want %q", r.For, tt.forDur)
			}
			if r.For != "" {
				if _, err := time.ParseDuration(r.For); err != nil {
					t.Errorf("for %q: %v", r.For, err)
				}
			}
			if r.Labels["severity"] != tt.severity {
				t.Errorf("severity %q, want %q", r.Labels["severity"], tt.severity)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("summary and description wanted, got %v", r.Annotations)
			}
			for _, c := range tt.commands {
				if !strings.Contains(r.Annotations["description"], "`"+c+"`") {
					t.Errorf("description does not name `%s`", c)
				}
			}
		})
	}
	if len(rules) != len(tests) {
		t.Errorf("%d alerts in %s, the test knows %d: add the new ones here", len(rules), alertsFile, len(tests))
	}
}

// metricName finds the monagent metrics an expression reads.
var metricName = regexp.MustCompile(`\bmonagent_[a-z_]+\b`)

// TestAlertRulesReadRenderedMetrics: every metric an alert reads is one
// that Render or RenderSmoke writes, so a renamed metric cannot leave an
// alert that never fires.
func TestAlertRulesReadRenderedMetrics(t *testing.T) {
	st := &state.State{LastRun: runAt, Mode: "reconcile", Steps: map[string]*state.Record{
		"volume": {Status: state.Succeeded},
		"signal": signalRecord(thisInstance, runAt),
	}}
	run, err := Render(st, Info{InstanceID: thisInstance, Version: "1"})
	if err != nil {
		t.Fatal(err)
	}
	sm, err := RenderSmoke(smokeReport(smoke.Check{Category: smoke.Grafana, Status: smoke.Pass}), runAt)
	if err != nil {
		t.Fatal(err)
	}
	written := parse(t, append(run, sm...))
	for name, r := range loadRules(t) {
		names := metricName.FindAllString(r.Expr, -1)
		if len(names) == 0 {
			t.Errorf("%s: expr %q reads no monagent metric", name, r.Expr)
		}
		for _, m := range names {
			if written[m] == nil {
				t.Errorf("%s: expr reads %s, which monagent does not write (it writes %v)", name, m, familyNames(written))
			}
		}
	}
}

func familyNames[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
