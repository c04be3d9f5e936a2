package cfnsim_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation/types"

	"github.com/monagent/monagent/rig/awssim/cfnsim"
)

// TestRestartResumesTimeouts restarts the simulator on its data directory:
// finished stacks come back as they were, a resource whose deadline passed
// while the simulator was down fails at once, and one still within its
// deadline fails on a timer at the recorded time.
func TestRestartResumesTimeouts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first := newEnv(t, dir)
	done := first.create(t, "Done", asgTemplate(1, "PT1M"))
	if err := first.signal(context.Background(), done, "MonitoringAsg", instanceID, types.ResourceSignalStatusSuccess); err != nil {
		t.Fatalf("SignalResource: %v", err)
	}
	created := time.Now()
	expired := first.create(t, "Expired", asgTemplate(1, "PT2S"))
	later := first.create(t, "Later", asgTemplate(1, "PT4S"))
	doneEvents := len(first.events(t, done))
	if err := first.svc.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	// Past Expired's deadline, with no simulator running.
	time.Sleep(time.Until(created.Add(2500 * time.Millisecond)))
	second := newEnv(t, dir)
	if st := second.stack(t, done); st.StackStatus != types.StackStatusCreateComplete {
		t.Errorf("Done after restart = %s, want CREATE_COMPLETE", st.StackStatus)
	}
	if got := len(second.events(t, done)); got != doneEvents {
		t.Errorf("Done has %d events after restart, want %d", got, doneEvents)
	}
	if st := second.stack(t, expired); st.StackStatus != types.StackStatusRollbackComplete {
		t.Errorf("Expired right after restart = %s, want ROLLBACK_COMPLETE", st.StackStatus)
	}
	if st := second.stack(t, later); st.StackStatus != types.StackStatusCreateInProgress {
		t.Fatalf("Later right after restart = %s, want CREATE_IN_PROGRESS", st.StackStatus)
	}
	st := second.waitStatus(t, later, 5*time.Second)
	if st.StackStatus != types.StackStatusRollbackComplete {
		t.Fatalf("Later = %s, want ROLLBACK_COMPLETE", st.StackStatus)
	}
	if elapsed := time.Since(created); elapsed < 3500*time.Millisecond {
		t.Errorf("Later failed %v after creation, before its 4s deadline", elapsed)
	}
	// The name lookup and the stack id survive too.
	if _, err := second.cfn.DescribeStacks(context.Background(), &cloudformation.DescribeStacksInput{StackName: aws.String("Done")}); err != nil {
		t.Errorf("DescribeStacks Done by name: %v", err)
	}
}

func TestCloseStopsTimers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	e := newEnv(t, dir)
	id := e.create(t, "Stopped", asgTemplate(1, "PT1S"))
	if err := e.svc.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	path := filepath.Join(dir, "cloudformation.json")
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("state file: %v", err)
	}
	time.Sleep(1500 * time.Millisecond)
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("state file: %v", err)
	}
	if string(before) != string(after) {
		t.Fatalf("state changed after Close: a timer still ran")
	}
	if !strings.Contains(string(after), id) {
		t.Fatalf("state file does not hold stack %s", id)
	}
}

func TestNewRejectsBadState(t *testing.T) {
	tests := []struct {
		name, content, want string
	}{
		{"not JSON", "{", "state file"},
		{"other version", `{"version": 99, "stacks": []}`, "version 99"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "cloudformation.json"), []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			svc, err := cfnsim.New(identity, dir)
			if err == nil {
				svc.Close()
				t.Fatalf("New accepted %q", tt.content)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New: %v, want it to mention %q", err, tt.want)
			}
		})
	}
}
