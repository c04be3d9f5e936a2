package awssim_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/monagent/monagent/rig/awssim"
	"github.com/monagent/monagent/rig/awssim/simtest"
	"github.com/monagent/monagent/rig/awssim/ssmsim"
)

func TestScenarioErrors(t *testing.T) {
	svc, err := ssmsim.New(simtest.Identity(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := simtest.Serve(t, svc)
	tests := []struct{ doc, want string }{
		{"faults:\n  ssm.GetParameter: {cuont: 2}\n", "cuont"},
		{"faults:\n  GetParameter: {count: 2, code: X}\n", "service.Operation"},
		{"nosuchservice: {}\n", `unknown section "nosuchservice"`},
		{"faults: [1, 2]\n", "faults"},
		{": : :\n", "scenario"},
	}
	for _, tt := range tests {
		if err := s.ApplyScenario([]byte(tt.doc)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: got %v, want error containing %q", tt.doc, err, tt.want)
		}
	}
}

func TestControlAPI(t *testing.T) {
	svc, err := ssmsim.New(simtest.Identity(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := simtest.Serve(t, svc)
	do := func(method, path, body string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, s.URL+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	if r := do("GET", "/_sim/health", ""); r.StatusCode != 200 {
		t.Fatalf("health %d", r.StatusCode)
	}
	var calls []map[string]any
	if err := json.NewDecoder(do("GET", "/_sim/calls", "").Body).Decode(&calls); err != nil || calls == nil {
		t.Fatalf("empty call log must be [], got %v %v", calls, err)
	}
	if r := do("PUT", "/_sim/faults/ssm.GetParameter", `{"count":1,"code":"ThrottlingException","bogus":1}`); r.StatusCode != 400 {
		t.Fatalf("unknown fault field accepted: %d", r.StatusCode)
	}
	if r := do("PUT", "/_sim/faults/ssm.GetParameter", `{"count":1,"code":"ThrottlingException"}`); r.StatusCode != 204 {
		t.Fatalf("fault not installed: %d", r.StatusCode)
	}
	// An unsigned request names no service: an AWS-shaped 400, never a panic.
	if r := do("POST", "/", "Action=DescribeVolumes"); r.StatusCode != 400 {
		t.Fatalf("unroutable request: %d", r.StatusCode)
	}
	if r := do("POST", "/_sim/scenario", "faults:\n  ssm.PutParameter: {count: 1, code: X}\n"); r.StatusCode != 204 {
		t.Fatalf("scenario: %d", r.StatusCode)
	}
	if r := do("DELETE", "/_sim/calls", ""); r.StatusCode != 204 {
		t.Fatalf("clear calls: %d", r.StatusCode)
	}
}

func TestFilesFaults(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "plugin"), []byte("binary"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := awssim.NewServer()
	ts := httptest.NewServer(s.Files(dir))
	defer ts.Close()
	get := func() (int, string, time.Duration) {
		t.Helper()
		start := time.Now()
		resp, err := http.Get(ts.URL + "/_files/plugin")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), time.Since(start)
	}
	if code, body, _ := get(); code != 200 || body != "binary" {
		t.Fatalf("no fault: %d %q", code, body)
	}
	if err := s.ApplyScenario([]byte("faults:\n  files.Download: {delay: 300ms}\n")); err != nil {
		t.Fatal(err)
	}
	if code, _, d := get(); code != 200 || d < 300*time.Millisecond {
		t.Errorf("delay: %d after %v, want 200 after 300ms or more", code, d)
	}
	if err := s.ApplyScenario([]byte("faults:\n  files.Download: {count: 1, status: 503}\n")); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := get(); code != 503 {
		t.Errorf("error fault: %d, want 503", code)
	}
	if code, body, _ := get(); code != 200 || body != "binary" {
		t.Errorf("after the fault's one answer: %d %q", code, body)
	}
	var downloads int
	for _, c := range s.Calls() {
		if c.Service == "files" && c.Operation == "Download" {
			downloads++
		}
	}
	if downloads != 4 {
		t.Errorf("%d downloads in the call log, want 4", downloads)
	}
}
