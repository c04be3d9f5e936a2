package cfnsignal_test

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/monagent/monagent/internal/cfnsignal"
	"github.com/monagent/monagent/internal/retry"
	"github.com/monagent/monagent/rig/awssim/cfnsim"
	"github.com/monagent/monagent/rig/awssim/simapi"
	"github.com/monagent/monagent/rig/awssim/simtest"
	"go.uber.org/zap"
)

const template = `Resources:
  MonitoringAsg:
    Type: AWS::AutoScaling::AutoScalingGroup
    CreationPolicy:
      ResourceSignal: {Count: 1, Timeout: PT15M}
`

func setup(t *testing.T) (*simtest.Sim, *cloudformation.Client) {
	t.Helper()
	id := simtest.Identity()
	svc, err := cfnsim.New(id, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sim := simtest.Serve(t, svc)
	c := cloudformation.NewFromConfig(sim.Config())
	_, err = c.CreateStack(context.Background(), &cloudformation.CreateStackInput{
		StackName: aws.String("Monitoring-Compute-production"), TemplateBody: aws.String(template)})
	if err != nil {
		t.Fatal(err)
	}
	return sim, c
}

func signaler(c *cloudformation.Client, stack, resource string) *cfnsignal.Signaler {
	return &cfnsignal.Signaler{API: c, Stack: stack, Resource: resource, Log: zap.NewNop()}
}

func stackStatus(t *testing.T, c *cloudformation.Client) types.StackStatus {
	t.Helper()
	out, err := c.DescribeStacks(context.Background(), &cloudformation.DescribeStacksInput{StackName: aws.String("Monitoring-Compute-production")})
	if err != nil {
		t.Fatal(err)
	}
	return out.Stacks[0].StackStatus
}

func TestSendOutcomes(t *testing.T) {
	tests := []struct {
		name       string
		stack, res string
		status     types.ResourceSignalStatus
		twice      bool
		wantStack  types.StackStatus
		want       cfnsignal.Outcome
		wantErr    string
		permanent  bool
	}{
		{name: "success completes the stack", stack: "Monitoring-Compute-production", res: "MonitoringAsg",
			status: types.ResourceSignalStatusSuccess, wantStack: types.StackStatusCreateComplete, want: cfnsignal.Sent},
		{name: "second signal: cannot be signaled, complete", stack: "Monitoring-Compute-production", res: "MonitoringAsg",
			status: types.ResourceSignalStatusSuccess, twice: true, wantStack: types.StackStatusCreateComplete, want: cfnsignal.Complete},
		{name: "failure fails the stack at once", stack: "Monitoring-Compute-production", res: "MonitoringAsg",
			status: types.ResourceSignalStatusFailure, wantStack: types.StackStatusRollbackComplete, want: cfnsignal.Sent},
		{name: "after a rollback: not awaited, not a success", stack: "Monitoring-Compute-production", res: "MonitoringAsg",
			status: types.ResourceSignalStatusFailure, twice: true, wantStack: types.StackStatusRollbackComplete, want: cfnsignal.NotAwaited},
		{name: "unknown stack is permanent", stack: "NoSuchStack", res: "MonitoringAsg",
			status: types.ResourceSignalStatusSuccess, wantErr: "does not exist", permanent: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, c := setup(t)
			s := signaler(c, tt.stack, tt.res)
			got, err := s.Send(context.Background(), "i-0123456789abcdef0", tt.status)
			if err == nil && tt.twice {
				got, err = s.Send(context.Background(), "i-0123456789abcdef0", types.ResourceSignalStatusSuccess)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || retry.IsPermanent(err) != tt.permanent {
					t.Fatalf("err %v, want %q (permanent=%v)", err, tt.wantErr, tt.permanent)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("outcome %s, want %s", got, tt.want)
			}
			if got := stackStatus(t, c); got != tt.wantStack {
				t.Fatalf("stack %s, want %s", got, tt.wantStack)
			}
		})
	}
}

func TestAccessDeniedIsPermanent(t *testing.T) {
	sim, c := setup(t)
	sim.SetFault("cloudformation.SignalResource", &simapi.Fault{Count: 1, Status: 403, Code: "AccessDenied",
		Message: "User is not authorized to perform: cloudformation:SignalResource"})
	_, err := signaler(c, "Monitoring-Compute-production", "MonitoringAsg").Send(context.Background(), "i-0123456789abcdef0", types.ResourceSignalStatusSuccess)
	if !retry.IsPermanent(err) || !strings.Contains(err.Error(), "cloudformation:SignalResource") {
		t.Fatalf("got %v", err)
	}
}

func TestThrottlingIsRetried(t *testing.T) {
	sim, c := setup(t)
	sim.SetFault("cloudformation.SignalResource", &simapi.Fault{Count: 2, Status: 400, Code: "Throttling"})
	if _, err := signaler(c, "Monitoring-Compute-production", "MonitoringAsg").Send(context.Background(), "i-0123456789abcdef0", types.ResourceSignalStatusSuccess); err != nil {
		t.Fatal(err)
	}
	if got := stackStatus(t, c); got != types.StackStatusCreateComplete {
		t.Fatalf("stack %s", got)
	}
}

// The step signals once per instance: its memo, restored from state,
// makes Check pass for the same instance and fail for a new one.
func TestStepOncePerInstance(t *testing.T) {
	_, c := setup(t)
	const id = "i-0123456789abcdef0"
	step := &cfnsignal.Step{Signaler: signaler(c, "Monitoring-Compute-production", "MonitoringAsg"), InstanceID: id}
	ctx := context.Background()
	if ok, _ := step.Check(ctx); ok {
		t.Fatal("converged before signalling")
	}
	if err := step.Apply(ctx); err != nil {
		t.Fatal(err)
	}
	memo := step.Memo()
	next := &cfnsignal.Step{Signaler: step.Signaler, InstanceID: id}
	next.Restore(memo)
	if ok, _ := next.Check(ctx); !ok {
		t.Fatalf("memo %v not honoured", memo)
	}
	if !cfnsignal.Settled(memo, id) || cfnsignal.Settled(memo, "i-0fedcba9876543210") {
		t.Fatalf("Settled disagrees with the memo %v", memo)
	}
	replaced := &cfnsignal.Step{Signaler: step.Signaler, InstanceID: "i-0fedcba9876543210"}
	replaced.Restore(memo)
	if ok, _ := replaced.Check(ctx); ok {
		t.Fatal("a new instance inherited the old one's signal")
	}
}

// A stack that rolled back is settled for the step (nothing can be sent),
// but the memo and the warning say SUCCESS was not counted.
func TestStepAfterRollbackIsNotAwaited(t *testing.T) {
	_, c := setup(t)
	const id = "i-0123456789abcdef0"
	sig := signaler(c, "Monitoring-Compute-production", "MonitoringAsg")
	if _, err := sig.Send(context.Background(), id, types.ResourceSignalStatusFailure); err != nil {
		t.Fatal(err)
	}
	step := &cfnsignal.Step{Signaler: sig, InstanceID: id}
	if err := step.Apply(context.Background()); err != nil {
		t.Fatal(err)
	}
	memo := step.Memo()
	if memo["outcome"] != string(cfnsignal.NotAwaited) || !strings.Contains(step.Warning(), "rolled back") {
		t.Fatalf("memo %v, warning %q", memo, step.Warning())
	}
	if ok, _ := step.Check(context.Background()); !ok {
		t.Fatal("a not-awaited signal is sent again on the next run")
	}
}
