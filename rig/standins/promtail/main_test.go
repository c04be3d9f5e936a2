package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The seed stack's promtail/config.yml with its paths under DIR and its
// client at LOKI.
const seedConfig = `
server:
  http_listen_port: 9080
  grpc_listen_port: 0

positions:
  filename: DIR/positions.yaml

clients:
  - url: LOKI/loki/api/v1/push

scrape_configs:
  - job_name: containers
    static_configs:
      - targets:
          - localhost
        labels:
          job: "containerlogs"
          __path__: DIR/containers/*/*log
    pipeline_stages:
      - json:
          expressions:
            output: log
            stream: stream
            attrs:
      - json:
          expressions:
            tag:
          source: attrs
      - regex:
          expression: (?P<container_name>(?:[a-zA-Z0-9][a-zA-Z0-9_.-]+))
          source: tag
      - timestamp:
          source: time
          format: RFC3339Nano
      - labels:
          stream:
          container_name:
      - output:
          source: output

  - job_name: syslog
    static_configs:
      - targets:
          - localhost
        labels:
          job: "syslog"
          __path__: DIR/syslog

  - job_name: user-data
    static_configs:
      - targets:
          - localhost
        labels:
          job: "user-data"
          __path__: DIR/user-data.log
`

type fakeLoki struct {
	mu      sync.Mutex
	status  int
	streams []map[string]any
}

func (f *fakeLoki) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.URL.Path != "/loki/api/v1/push" || r.Header.Get("Content-Type") != "application/json" {
		http.Error(w, "bad request", 400)
		return
	}
	if f.status != 0 {
		http.Error(w, "Ingester not ready", f.status)
		return
	}
	var body struct {
		Streams []map[string]any `json:"streams"`
	}
	json.NewDecoder(r.Body).Decode(&body)
	f.streams = append(f.streams, body.Streams...)
	w.WriteHeader(http.StatusNoContent)
}

func setup(t *testing.T, lokiURL string) (*promtail, string) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yml")
	cfg := strings.NewReplacer("DIR", dir, "LOKI", lokiURL).Replace(seedConfig)
	os.WriteFile(path, []byte(cfg), 0o644)
	c, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	return newPromtail(c), dir
}

func get(h http.Handler, path, accept string) (int, string) {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

func TestReadyOnlyWithFilesToTail(t *testing.T) {
	p, dir := setup(t, "http://127.0.0.1:1")
	h := p.handler()
	p.sync()
	if code, body := get(h, "/ready", ""); code != 500 || !strings.Contains(body, "Unable to find any logs to tail") {
		t.Errorf("/ready without files: %d %q", code, body)
	}
	os.WriteFile(filepath.Join(dir, "syslog"), []byte("hello\n"), 0o644)
	p.sync()
	if code, body := get(h, "/ready", ""); code != 200 || body != "Ready" {
		t.Errorf("/ready with a file: %d %q", code, body)
	}
}

func TestTargetsListsEveryScrapeConfig(t *testing.T) {
	p, dir := setup(t, "http://127.0.0.1:1")
	os.MkdirAll(filepath.Join(dir, "containers", "abc"), 0o755)
	os.WriteFile(filepath.Join(dir, "containers", "abc", "abc-json.log"), nil, 0o644)
	p.sync()
	code, body := get(p.handler(), "/targets?format=json", "")
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	var got struct {
		ScrapeConfigs []struct {
			Job     string   `json:"job"`
			Paths   []string `json:"paths"`
			Targets []struct {
				Path   string            `json:"path"`
				Labels map[string]string `json:"labels"`
			} `json:"targets"`
		} `json:"scrapeConfigs"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.ScrapeConfigs) != 3 || got.ScrapeConfigs[0].Job != "containers" || got.ScrapeConfigs[2].Job != "user-data" {
		t.Fatalf("jobs: %+v", got.ScrapeConfigs)
	}
	tg := got.ScrapeConfigs[0].Targets
	if len(tg) != 1 || tg[0].Labels["job"] != "containerlogs" || tg[0].Labels["__path__"] != "" || !strings.HasSuffix(tg[0].Labels["filename"], "abc-json.log") {
		t.Errorf("containers targets: %+v", tg)
	}
	code, html := get(p.handler(), "/targets", "text/html")
	if code != 200 || !strings.Contains(html, "syslog") || !strings.Contains(html, "abc-json.log") {
		t.Errorf("HTML targets: %d %s", code, html)
	}
}

func TestTailAndPush(t *testing.T) {
	loki := &fakeLoki{status: 503}
	srv := httptest.NewServer(loki)
	defer srv.Close()
	p, dir := setup(t, srv.URL)
	os.MkdirAll(filepath.Join(dir, "containers", "c1"), 0o755)
	clog := filepath.Join(dir, "containers", "c1", "c1-json.log")
	os.WriteFile(clog, []byte(`{"log":"level=info msg=started\n","stream":"stderr","time":"2026-01-02T03:04:05.123456789Z"}`+"\n"+`{"log":"part`), 0o644)
	os.WriteFile(filepath.Join(dir, "syslog"), []byte("line one\nline two\n"), 0o644)
	p.sync()
	p.readAll()
	p.push(context.Background()) // Loki not ready: kept for a retry
	if len(p.pending) != 3 || !strings.Contains(p.lastErr, "will retry") {
		t.Fatalf("pending %d, lastErr %q", len(p.pending), p.lastErr)
	}
	loki.mu.Lock()
	loki.status = 0
	loki.mu.Unlock()
	p.push(context.Background())
	if len(p.pending) != 0 || p.sent != 3 {
		t.Fatalf("pending %d, sent %d, lastErr %q", len(p.pending), p.sent, p.lastErr)
	}
	var sawDocker, sawSyslog bool
	for _, s := range loki.streams {
		lbls := s["stream"].(map[string]any)
		vals := s["values"].([]any)
		switch lbls["job"] {
		case "containerlogs":
			v := vals[0].([]any)
			sawDocker = lbls["stream"] == "stderr" && v[1] == "level=info msg=started" && v[0] == "1767323045123456789"
		case "syslog":
			sawSyslog = len(vals) == 2 && strings.HasSuffix(lbls["filename"].(string), "syslog")
		}
	}
	if !sawDocker || !sawSyslog {
		t.Errorf("streams pushed: %+v", loki.streams)
	}
	// The partial line completes later.
	f, _ := os.OpenFile(clog, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`ial","stream":"stdout","time":"2026-01-02T03:04:06Z"}` + "\n")
	f.Close()
	p.readAll()
	if len(p.pending) != 1 || p.pending[0].line != "partial" {
		t.Errorf("pending after append: %+v", p.pending)
	}
	if err := p.writePositions(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "positions.yaml"))
	if !strings.HasPrefix(string(b), "positions:\n") || !strings.Contains(string(b), "syslog: \"18\"") {
		t.Errorf("positions:\n%s", b)
	}
}

func TestRunServesAndStops(t *testing.T) {
	_, dir := setup(t, "http://127.0.0.1:1")
	cfg := filepath.Join(dir, "config.yml")
	b, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, []byte(strings.Replace(string(b), "http_listen_port: 9080", "http_listen_port: 0", 1)), 0o644)
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if err := run(ctx, []string{"-config.file=" + cfg}, io.Discard); err != nil {
		t.Fatal(err)
	}
	if err := run(context.Background(), []string{"-config.file=" + filepath.Join(dir, "missing.yml")}, io.Discard); err == nil {
		t.Error("missing config accepted")
	}
}
