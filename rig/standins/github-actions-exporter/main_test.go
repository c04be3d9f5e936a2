package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// The seed runbook, section 7: an empty token means GitHub App auth without a
// key file, these two lines and exit 1.
func TestEmptyTokenFailsLikeTheRealExporter(t *testing.T) {
	var out, errb bytes.Buffer
	code := run(context.Background(), nil, env(map[string]string{
		"GITHUB_TOKEN": "", "GITHUB_REPOS": "Nelson-Lamounier/cdk-monitoring", "GITHUB_REFRESH": "30", "PORT": "9101",
	}), &out, &errb)
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	want := "authenticating with Github App\n" +
		"Error: Client creation failed.authentication failed: could not read private key: open : no such file or directory\n"
	if got := out.String() + errb.String(); got != want {
		t.Errorf("output:\n%s\nwant:\n%s", got, want)
	}
}

func TestMissingKeyFileNamesIt(t *testing.T) {
	var errb bytes.Buffer
	code := run(context.Background(), nil, env(map[string]string{"GITHUB_APP_PRIVATE_KEY": "/nonexistent/key.pem"}), io.Discard, &errb)
	if code != 1 || !strings.Contains(errb.String(), "could not read private key: open /nonexistent/key.pem: no such file or directory") {
		t.Errorf("exit %d, stderr %q", code, errb.String())
	}
}

func TestTokenServesMetrics(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var errb syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, nil, env(map[string]string{"GITHUB_TOKEN": "ghp_x", "PORT": "0"}), io.Discard, &errb)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(errb.String(), "listening on") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.HasPrefix(errb.String(), "authenticating with Github Token\n") {
		t.Errorf("stderr %q", errb.String())
	}

	c, err := parse(nil, env(map[string]string{"GITHUB_TOKEN": "ghp_x", "PORT": "9101"}), io.Discard)
	if err != nil || c.port != 9101 {
		t.Fatalf("parse: %+v %v", c, err)
	}
	srv := httptest.NewServer(handler(c))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "# TYPE github_workflow_run_status gauge") {
		t.Errorf("/metrics %d:\n%s", resp.StatusCode, body)
	}
}

func TestFlagsOverrideEnv(t *testing.T) {
	c, err := parse([]string{"--github_token=abc", "--port=1234"}, env(map[string]string{"PORT": "9101"}), io.Discard)
	if err != nil || c.token != "abc" || c.port != 1234 {
		t.Errorf("%+v %v", c, err)
	}
	c, _ = parse(nil, env(nil), io.Discard)
	if c.port != 9999 {
		t.Errorf("default port %d, want 9999", c.port)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
