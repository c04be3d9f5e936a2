package imds_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/monagent/monagent/internal/imds"
	"github.com/monagent/monagent/rig/awssim/imdssim"
	"github.com/monagent/monagent/rig/awssim/simtest"
)

func sim(t *testing.T, scenario string) *simtest.Sim {
	t.Helper()
	svc, err := imdssim.New(simtest.Identity())
	if err != nil {
		t.Fatal(err)
	}
	s := simtest.Serve(t, svc)
	if scenario != "" {
		if err := s.ApplyScenario([]byte(scenario)); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func fetch(t *testing.T, endpoint string) (imds.Identity, error) {
	t.Helper()
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", endpoint)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "")
	cfg, err := loadConfig(t)
	if err != nil {
		t.Fatal(err)
	}
	return imds.Fetch(context.Background(), imds.NewClient(cfg))
}

func TestFetchIdentity(t *testing.T) {
	s := sim(t, "")
	id, err := fetch(t, s.URL)
	if err != nil {
		t.Fatal(err)
	}
	want := imds.Identity{InstanceID: "i-0123456789abcdef0", Region: "eu-west-1", AZ: "eu-west-1a", PrivateIP: "10.0.1.10"}
	if id != want {
		t.Fatalf("got %+v, want %+v", id, want)
	}
	// Every read carried a token: the simulator logs the token PUT.
	var puts int
	for _, c := range s.Calls() {
		if c.Operation == "GetToken" {
			puts++
		}
	}
	if puts == 0 {
		t.Fatal("no IMDSv2 token was requested")
	}
}

func TestIMDSv1OnlyIsAClearError(t *testing.T) {
	s := sim(t, "imds:\n  v1_only: true\n")
	_, err := fetch(t, s.URL)
	if err == nil || !strings.Contains(err.Error(), "IMDSv2") || !strings.Contains(err.Error(), "HttpTokens") {
		t.Fatalf("want IMDSv2 refusal naming the fix, got %v", err)
	}
}

func TestUnreachableFailsFast(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	start := time.Now()
	_, err = fetch(t, "http://"+addr)
	if err == nil || !strings.Contains(err.Error(), "not reachable") {
		t.Fatalf("want not-reachable error, got %v", err)
	}
	if d := time.Since(start); d > imds.Timeout+time.Second {
		t.Fatalf("took %v, more than the %v bound", d, imds.Timeout)
	}
}
