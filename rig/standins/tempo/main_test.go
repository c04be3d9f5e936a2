package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The seed stack's tempo/config.yml, with paths moved into a temp dir.
const seedConfig = `
server:
  http_listen_port: 3200

distributor:
  receivers:
    otlp:
      protocols:
        grpc:
          endpoint: "0.0.0.0:4317"
        http:
          endpoint: "0.0.0.0:4318"

storage:
  trace:
    backend: local
    local:
      path: DIR/traces
    wal:
      path: DIR/wal

compactor:
  compaction:
    block_retention: 168h

metrics_generator:
  registry:
    external_labels:
      source: tempo
  storage:
    path: DIR/generator/wal
    remote_write:
      - url: http://prometheus:9090/api/v1/write
        send_exemplars: true

overrides:
  defaults:
    metrics_generator:
      processors:
        - service-graphs
        - span-metrics
`

func setup(t *testing.T) (*server, string, *time.Time) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yml")
	os.WriteFile(path, []byte(strings.ReplaceAll(seedConfig, "DIR", dir)), 0o644)
	cfg, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1700000000, 0)
	s := newServer(cfg, func() time.Time { return now })
	if err := s.prepareStorage(); err != nil {
		t.Fatal(err)
	}
	return s, dir, &now
}

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}

func TestConfigFromSeed(t *testing.T) {
	s, dir, _ := setup(t)
	g, h := s.cfg.receivers()
	if g != "0.0.0.0:4317" || h != "0.0.0.0:4318" || s.cfg.Server.HTTPListenPort != 3200 {
		t.Errorf("receivers %q %q, port %d", g, h, s.cfg.Server.HTTPListenPort)
	}
	for _, d := range []string{"traces", "wal", "generator/wal"} {
		if fi, err := os.Stat(filepath.Join(dir, d)); err != nil || !fi.IsDir() {
			t.Errorf("%s not created: %v", d, err)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "traces", "tempo_cluster_seed.json"))
	var seed map[string]any
	if err != nil || json.Unmarshal(b, &seed) != nil || seed["UID"] == "" {
		t.Errorf("cluster seed: %s %v", b, err)
	}
}

func TestReadyAfterMinReadyDuration(t *testing.T) {
	s, _, now := setup(t)
	h := s.apiHandler()
	if code, body := get(t, h, "/ready"); code != 503 || !strings.Contains(body, "Ingester not ready: waiting for 15s after being ready") {
		t.Errorf("/ready at start: %d %q", code, body)
	}
	*now = now.Add(15 * time.Second)
	if code, body := get(t, h, "/ready"); code != 200 || body != "ready\n" {
		t.Errorf("/ready after 15 s: %d %q", code, body)
	}
}

func TestAPI(t *testing.T) {
	s, _, _ := setup(t)
	h := s.apiHandler()
	for path, want := range map[string]string{
		"/status":           "GET /status/version",
		"/status/version":   `"version":"2.6.1"`,
		"/api/echo":         "echo",
		"/api/search":       `"traces":[]`,
		"/metrics":          "tempo_build_info",
		"/status/config":    "http_listen_port: 3200",
		"/status/services":  "distributor: Running",
		"/status/endpoints": "/ready",
	} {
		if code, body := get(t, h, path); code != 200 || !strings.Contains(body, want) {
			t.Errorf("%s: %d %q, want %q", path, code, body, want)
		}
	}
	if code, _ := get(t, h, "/api/traces/0123"); code != 404 {
		t.Errorf("/api/traces: %d", code)
	}
}

func TestOTLPHTTP(t *testing.T) {
	s, dir, _ := setup(t)
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/v1/traces", strings.NewReader(`{"resourceSpans":[]}`))
	req.Header.Set("Content-Type", "application/json")
	s.otlpHTTPHandler().ServeHTTP(rec, req)
	if rec.Code != 200 || rec.Body.String() != "{}" {
		t.Fatalf("%d %q", rec.Code, rec.Body.String())
	}
	b, err := os.ReadFile(filepath.Join(dir, "wal", "otlp-http.log"))
	if err != nil || !bytes.HasSuffix(b, []byte(`{"resourceSpans":[]}`)) {
		t.Errorf("wal: %q %v", b, err)
	}
	if _, body := get(t, s.apiHandler(), "/metrics"); !strings.Contains(body, "tempo_distributor_push_requests_total 1") {
		t.Errorf("metrics: %s", body)
	}
}

// An OTLP/gRPC export over cleartext HTTP/2, as an OpenTelemetry SDK sends it.
func TestOTLPGRPC(t *testing.T) {
	s, dir, _ := setup(t)
	srv := httptest.NewUnstartedServer(s.otlpGRPCHandler())
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	defer srv.Close()
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}

	msg := []byte{0, 0, 0, 0, 3, 0x0a, 0x01, 0x02}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+grpcExport, bytes.NewReader(msg))
	req.Header.Set("Content-Type", "application/grpc")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.Trailer.Get("Grpc-Status") != "0" || !bytes.Equal(body, []byte{0, 0, 0, 0, 0}) {
		t.Errorf("proto %s, grpc-status %q, body %v", resp.Proto, resp.Trailer.Get("Grpc-Status"), body)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "wal", "otlp-grpc.log"))
	if !bytes.HasSuffix(b, []byte{0x0a, 0x01, 0x02}) {
		t.Errorf("wal: %v", b)
	}

	req, _ = http.NewRequest(http.MethodPost, srv.URL+"/some.Service/Method", bytes.NewReader(msg))
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Trailer.Get("Grpc-Status") != "12" {
		t.Errorf("unknown method: grpc-status %q", resp.Trailer.Get("Grpc-Status"))
	}
}

func TestBadConfig(t *testing.T) {
	if _, err := loadConfig(filepath.Join(t.TempDir(), "missing.yml")); err == nil {
		t.Error("missing config accepted")
	}
	p := filepath.Join(t.TempDir(), "bad.yml")
	os.WriteFile(p, []byte("server: [\n"), 0o644)
	if _, err := loadConfig(p); err == nil {
		t.Error("bad YAML accepted")
	}
}
