package smoke

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	containertypes "github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/monagent/monagent/internal/config"
)

// fakeDocker runs every service it is given, none restarting.
type fakeDocker struct{ services []string }

func (fakeDocker) Ping(context.Context, client.PingOptions) (client.PingResult, error) {
	return client.PingResult{APIVersion: "1.47"}, nil
}

func (d fakeDocker) ContainerList(_ context.Context, o client.ContainerListOptions) (client.ContainerListResult, error) {
	if o.Filters["status"]["restarting"] {
		return client.ContainerListResult{}, nil
	}
	var out client.ContainerListResult
	for _, s := range d.services {
		out.Items = append(out.Items, containertypes.Summary{ID: "id-" + s, Labels: map[string]string{"com.docker.compose.service": s}})
	}
	return out, nil
}

func (fakeDocker) ContainerInspect(_ context.Context, id string, _ client.ContainerInspectOptions) (client.ContainerInspectResult, error) {
	return client.ContainerInspectResult{Container: containertypes.InspectResponse{ID: id, Name: "/" + strings.TrimPrefix(id, "id-"),
		State: &containertypes.State{Running: true, Status: "running", StartedAt: "2026-11-23T06:00:00Z"}}}, nil
}

const (
	promUser = "acgs_monitor"
	promPass = "cHJvbWV0aGV1cy1wYXNzd29yZA=="
)

// stack is the three services behind TLS, each a knob a test can turn.
type stack struct {
	anonymous  bool   // Prometheus answers without credentials
	scrape     string // max(scrape_duration_seconds)
	upSeries   string // the result of the up query
	alertsPath string // where Alertmanager serves the alerts
	alertsBody string
	slowQuery  time.Duration
}

func defaultStack() *stack {
	return &stack{
		scrape:     "0.0123",
		upSeries:   `[{"metric":{"job":"prometheus"},"value":[1700000000.5,"1"]},{"metric":{"job":"alertmanager"},"value":[1700000000.5,"1"]},{"metric":{"job":"node"},"value":[1700000000.5,"0"]}]`,
		alertsPath: "/api/v2/alerts",
		alertsBody: `[{"labels":{"alertname":"Watchdog","severity":"none"}},{"labels":{"alertname":"TargetDown"}},{"labels":{"alertname":"TargetDown"}}]`,
	}
}

func (st *stack) prometheus(w http.ResponseWriter, r *http.Request) {
	if !st.anonymous {
		if u, p, ok := r.BasicAuth(); !ok || u != promUser || p != promPass {
			w.Header().Set("WWW-Authenticate", `Basic realm="prometheus"`)
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
	}
	switch r.URL.Path {
	case "/-/healthy":
		fmt.Fprintln(w, "Prometheus Server is Healthy.")
	case "/api/v1/query":
		var result string
		switch q := r.URL.Query().Get("query"); q {
		case "up":
			time.Sleep(st.slowQuery)
			result = st.upSeries
		case "max(scrape_duration_seconds)":
			result = `[{"metric":{},"value":[1700000000.5,"` + st.scrape + `"]}]`
		default:
			http.Error(w, `{"status":"error","error":"unknown query"}`, http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, `{"status":"success","data":{"resultType":"vector","result":%s}}`, result)
	default:
		http.NotFound(w, r)
	}
}

func (st *stack) alertmanager(w http.ResponseWriter, r *http.Request) {
	if u, p, ok := r.BasicAuth(); !ok || u != promUser || p != promPass {
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return
	}
	switch r.URL.Path {
	case "/-/healthy":
		fmt.Fprintln(w, "OK")
	case st.alertsPath:
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, st.alertsBody)
	default:
		http.NotFound(w, r)
	}
}

func grafana(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/api/health" {
		http.NotFound(w, r)
		return
	}
	fmt.Fprint(w, `{"database":"ok","version":"11.3.0"}`)
}

// writePEM writes a certificate as a PEM file, for smoke.ca_file.
func writePEM(t *testing.T, der []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// otherCA is a self-signed certificate that signed none of the servers.
func otherCA(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "not the stack's CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

var acgsServices = []string{"prometheus", "alertmanager", "grafana"}

// runACGS serves st over TLS and runs the acgs profile against it, with
// the client trusting the certificate ca (nil: the servers' own).
func runACGS(t *testing.T, st *stack, ca []byte) Report {
	t.Helper()
	prom := httptest.NewTLSServer(http.HandlerFunc(st.prometheus))
	t.Cleanup(prom.Close)
	am := httptest.NewTLSServer(http.HandlerFunc(st.alertmanager))
	t.Cleanup(am.Close)
	graf := httptest.NewTLSServer(http.HandlerFunc(grafana))
	t.Cleanup(graf.Close)
	der := prom.Certificate().Raw
	if ca != nil {
		der = ca
	}
	hc, err := HTTPClient(writePEM(t, der))
	if err != nil {
		t.Fatalf("HTTPClient: %v", err)
	}
	cfg := config.Defaults().Smoke
	cfg.Profile = config.ProfileACGS
	cfg.PrometheusURL, cfg.AlertmanagerURL, cfg.GrafanaURL = prom.URL, am.URL, graf.URL
	cfg.Attempts, cfg.Queries = 2, 5
	cfg.Timeout = config.Duration{Duration: 30 * time.Second}
	return Run(context.Background(), Options{
		Config: cfg, Project: "acgs", Services: acgsServices,
		User: promUser, Password: promPass,
		Docker: fakeDocker{services: acgsServices}, HTTP: hc,
		Infrastructure: []Check{{Infrastructure, "data directory", Pass, "/var/lib/acgs"}},
		Backoff:        time.Millisecond,
	})
}

func find(t *testing.T, rep Report, category, name string) Check {
	t.Helper()
	for _, c := range rep.Checks {
		if c.Category == category && c.Name == name {
			return c
		}
	}
	t.Fatalf("no check %s/%s in %+v", category, name, rep.Checks)
	return Check{}
}

func TestACGSAllPass(t *testing.T) {
	rep := runACGS(t, defaultStack(), nil)
	for _, c := range rep.Checks {
		if c.Status != Pass {
			t.Errorf("%s/%s: %s: %s", c.Category, c.Name, c.Status, c.Detail)
		}
	}
	// Containers, three endpoints, the alerts, three Prometheus checks,
	// and infrastructure: the caller's, the engine, restart loops.
	wantOrder := []string{
		Containers + "/prometheus", Containers + "/alertmanager", Containers + "/grafana",
		Endpoints + "/prometheus /-/healthy", Endpoints + "/grafana /api/health", Endpoints + "/alertmanager /-/healthy",
		Alerting + "/alertmanager /api/v2/alerts",
		Prometheus + "/up", Prometheus + "/query p95", Prometheus + "/scrape duration",
		Infrastructure + "/data directory", Infrastructure + "/docker engine", Infrastructure + "/restart loops",
	}
	var got []string
	for _, c := range rep.Checks {
		got = append(got, c.Category+"/"+c.Name)
	}
	if strings.Join(got, "\n") != strings.Join(wantOrder, "\n") {
		t.Errorf("checks:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantOrder, "\n"))
	}
	if rep.Passed != len(wantOrder) || rep.Failed != 0 || rep.Warnings != 0 {
		t.Errorf("counts %d passed, %d failed, %d warnings", rep.Passed, rep.Failed, rep.Warnings)
	}
	for _, tt := range []struct{ category, name, want string }{
		{Endpoints, "prometheus /-/healthy", "200 over TLS with basic auth; 401 without"},
		{Endpoints, "alertmanager /-/healthy", "200 over TLS"},
		{Endpoints, "grafana /api/health", "within the target of 2s"},
		{Alerting, "alertmanager /api/v2/alerts", "3 alerts (2 names)"},
		{Prometheus, "up", "3 targets, 2 up"},
		{Prometheus, "query p95", "p95 "},
		{Prometheus, "query p95", "within the target of 500ms"},
		{Prometheus, "scrape duration", "slowest scrape 12ms (within the target of 100ms)"},
	} {
		if d := find(t, rep, tt.category, tt.name).Detail; !strings.Contains(d, tt.want) {
			t.Errorf("%s/%s detail %q, want it to contain %q", tt.category, tt.name, d, tt.want)
		}
	}
	for _, c := range rep.Checks {
		if strings.Contains(c.Detail, promPass) {
			t.Errorf("%s/%s detail quotes the password", c.Category, c.Name)
		}
	}
}

func TestACGSFailures(t *testing.T) {
	tests := []struct {
		name    string
		change  func(st *stack)
		wrongCA bool
		failed  map[string][]string // category/name -> what the detail says
	}{
		{
			name:   "basic auth off",
			change: func(st *stack) { st.anonymous = true },
			failed: map[string][]string{Endpoints + "/prometheus /-/healthy": {"without credentials", "200 OK", "basic auth is off", "web.yml"}},
		},
		{
			name:    "wrong CA",
			wrongCA: true,
			failed: map[string][]string{
				Endpoints + "/prometheus /-/healthy":      {"certificate"},
				Endpoints + "/grafana /api/health":        {"certificate"},
				Endpoints + "/alertmanager /-/healthy":    {"certificate"},
				Alerting + "/alertmanager /api/v2/alerts": {"certificate"},
				Prometheus + "/up":                        {"certificate"},
				Prometheus + "/query p95":                 {"certificate"},
				Prometheus + "/scrape duration":           {"certificate"},
			},
		},
		{
			name:   "Alertmanager without API v2",
			change: func(st *stack) { st.alertsPath, st.alertsBody = "/api/v1/alerts", `{"status":"success","data":[]}` },
			failed: map[string][]string{Alerting + "/alertmanager /api/v2/alerts": {"/api/v2/alerts", "404"}},
		},
		{
			name:   "Alertmanager answering the v1 shape",
			change: func(st *stack) { st.alertsBody = `{"status":"success","data":[{"labels":{"alertname":"Watchdog"}}]}` },
			failed: map[string][]string{Alerting + "/alertmanager /api/v2/alerts": {"/api/v2/alerts", "not the JSON expected"}},
		},
		{
			name:   "Prometheus scrapes nothing",
			change: func(st *stack) { st.upSeries = `[]` },
			failed: map[string][]string{Prometheus + "/up": {"no series"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := defaultStack()
			if tt.change != nil {
				tt.change(st)
			}
			var ca []byte
			if tt.wrongCA {
				ca = otherCA(t)
			}
			rep := runACGS(t, st, ca)
			for _, c := range rep.Checks {
				key := c.Category + "/" + c.Name
				words, want := tt.failed[key]
				if !want {
					if c.Status != Pass {
						t.Errorf("%s: %s: %s, want it to pass", key, c.Status, c.Detail)
					}
					continue
				}
				if c.Status != Fail {
					t.Errorf("%s: %s (%s), want it to fail", key, c.Status, c.Detail)
					continue
				}
				for _, w := range words {
					if !strings.Contains(c.Detail, w) {
						t.Errorf("%s detail %q does not mention %q", key, c.Detail, w)
					}
				}
			}
			if rep.Failed != len(tt.failed) {
				t.Errorf("%d checks failed, want %d", rep.Failed, len(tt.failed))
			}
		})
	}
}

// Slower than the guide's targets still passes, saying OVER.
func TestACGSOverTarget(t *testing.T) {
	st := defaultStack()
	st.scrape = "0.25"
	st.slowQuery = 600 * time.Millisecond
	rep := runACGS(t, st, nil)
	for _, tt := range []struct{ name, want string }{
		{"query p95", "OVER the target of 500ms"},
		{"scrape duration", "slowest scrape 250ms (OVER the target of 100ms)"},
	} {
		c := find(t, rep, Prometheus, tt.name)
		if c.Status != Pass || !strings.Contains(c.Detail, tt.want) {
			t.Errorf("%s: %s %q, want a pass saying %q", tt.name, c.Status, c.Detail, tt.want)
		}
		if strings.Contains(c.Detail, "within") {
			t.Errorf("%s detail %q says within", tt.name, c.Detail)
		}
	}
}

func TestFigure(t *testing.T) {
	tests := []struct {
		what   string
		d, max time.Duration
		want   string
	}{
		{"p95", 12 * time.Millisecond, 500 * time.Millisecond, "p95 12ms (within the target of 500ms)"},
		{"p95", 500 * time.Millisecond, 500 * time.Millisecond, "p95 500ms (within the target of 500ms)"},
		{"p95", 501 * time.Millisecond, 500 * time.Millisecond, "p95 501ms (OVER the target of 500ms)"},
		{"took", 2500 * time.Millisecond, 2 * time.Second, "took 2.5s (OVER the target of 2s)"},
		{"slowest scrape", 1234567 * time.Nanosecond, 100 * time.Millisecond, "slowest scrape 1ms (within the target of 100ms)"},
	}
	for _, tt := range tests {
		if got := figure(tt.what, tt.d, tt.max); got != tt.want {
			t.Errorf("figure(%s, %v, %v) = %q, want %q", tt.what, tt.d, tt.max, got, tt.want)
		}
	}
}

func TestHTTPClient(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(grafana))
	defer srv.Close()
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		caFile  string
		errWant string // HTTPClient's error
		reach   bool   // the client trusts the test server
	}{
		{name: "the server's CA", caFile: writePEM(t, srv.Certificate().Raw), reach: true},
		{name: "another CA", caFile: writePEM(t, otherCA(t))},
		{name: "no CA file", caFile: ""},
		{name: "missing file", caFile: filepath.Join(dir, "missing.crt"), errWant: "smoke.ca_file"},
		{name: "not PEM", caFile: notPEM, errWant: "no PEM certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hc, err := HTTPClient(tt.caFile)
			if tt.errWant != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errWant) {
					t.Fatalf("HTTPClient = %v, want an error mentioning %q", err, tt.errWant)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			resp, err := hc.Get(srv.URL + "/api/health")
			if tt.reach {
				if err != nil {
					t.Fatalf("GET: %v", err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("status %s", resp.Status)
				}
				return
			}
			if err == nil {
				resp.Body.Close()
				t.Fatal("the client trusted a server its CA did not sign")
			}
			if !strings.Contains(err.Error(), "certificate") {
				t.Errorf("error %v is not about the certificate", err)
			}
		})
	}
}
