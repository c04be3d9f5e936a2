package cfnsim_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/aws/smithy-go"

	"github.com/monagent/monagent/rig/awssim"
	"github.com/monagent/monagent/rig/awssim/cfnsim"
	"github.com/monagent/monagent/rig/awssim/simapi"
)

const instanceID = "i-0123456789abcdef0"

var identity = simapi.Identity{Region: "eu-west-1", AccountID: "111122223333", InstanceID: instanceID}

// env is a simulator mounted behind a loopback HTTP server with an SDK
// client pointed at it.
type env struct {
	svc *cfnsim.Service
	sim *awssim.Server
	url string
	cfn *cloudformation.Client
}

func newEnv(t *testing.T, dataDir string) *env {
	t.Helper()
	svc, err := cfnsim.New(identity, dataDir)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	sim := awssim.NewServer(svc)
	hs := httptest.NewServer(sim)
	t.Cleanup(func() {
		hs.Close()
		if err := sim.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return &env{svc: svc, sim: sim, url: hs.URL, cfn: newClient(hs.URL)}
}

// newClient makes an SDK client that retries no AWS error, so that every
// error the simulator gives (an injected Throttling included) reaches the
// test. It retries only a lost connection: on loopback the SDK can close a
// connection under its own response (aws-sdk-go-v2#2737), which its
// default retryer hides in real use.
func newClient(url string) *cloudformation.Client {
	creds := aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		return aws.Credentials{AccessKeyID: "x", SecretAccessKey: "x", Source: "test"}, nil
	})
	retryer := retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = 5
		o.MaxBackoff = 20 * time.Millisecond
		o.RateLimiter = ratelimit.None
		o.Retryables = []retry.IsErrorRetryable{retry.NoRetryCanceledError{}, retry.RetryableConnectionError{}}
	})
	return cloudformation.New(cloudformation.Options{
		Region:       "eu-west-1",
		Credentials:  creds,
		BaseEndpoint: aws.String(url),
		Retryer:      retryer,
	})
}

// asgTemplate is the compute stack's shape: an ASG that waits for count
// signals within timeout, next to resources that complete at once.
func asgTemplate(count int, timeout string) string {
	return fmt.Sprintf(`AWSTemplateFormatVersion: "2010-09-09"
Description: monitoring compute
Parameters:
  Env:
    Type: String
    Default: production
Resources:
  LaunchTemplate:
    Type: AWS::EC2::LaunchTemplate
    Properties:
      LaunchTemplateData:
        UserData: !Base64
          Fn::Sub: |
            #!/bin/bash
            monagent bootstrap --stack ${AWS::StackName}
  MonitoringAsg:
    Type: AWS::AutoScaling::AutoScalingGroup
    CreationPolicy:
      ResourceSignal:
        Count: %d
        Timeout: %s
    Properties:
      MinSize: "1"
      MaxSize: "1"
      LaunchTemplate:
        LaunchTemplateId: !Ref LaunchTemplate
        Version: !GetAtt LaunchTemplate.LatestVersionNumber
      Tags:
        - Key: Name
          Value: !Sub "monitoring-${Env}"
          PropagateAtLaunch: true
`, count, timeout)
}

func (e *env) create(t *testing.T, name, body string, mod ...func(*cloudformation.CreateStackInput)) string {
	t.Helper()
	in := &cloudformation.CreateStackInput{StackName: aws.String(name), TemplateBody: aws.String(body)}
	for _, m := range mod {
		m(in)
	}
	out, err := e.cfn.CreateStack(context.Background(), in)
	if err != nil {
		t.Fatalf("CreateStack %s: %v", name, err)
	}
	id := aws.ToString(out.StackId)
	want := "arn:aws:cloudformation:eu-west-1:111122223333:stack/" + name + "/"
	if !strings.HasPrefix(id, want) || len(id) != len(want)+36 {
		t.Fatalf("StackId = %q, want %s<uuid>", id, want)
	}
	return id
}

func (e *env) signal(ctx context.Context, stack, resource, uniqueID string, status types.ResourceSignalStatus) error {
	_, err := e.cfn.SignalResource(ctx, &cloudformation.SignalResourceInput{
		StackName: aws.String(stack), LogicalResourceId: aws.String(resource),
		UniqueId: aws.String(uniqueID), Status: status,
	})
	return err
}

func (e *env) stack(t *testing.T, ref string) types.Stack {
	t.Helper()
	out, err := e.cfn.DescribeStacks(context.Background(), &cloudformation.DescribeStacksInput{StackName: aws.String(ref)})
	if err != nil {
		t.Fatalf("DescribeStacks %s: %v", ref, err)
	}
	if len(out.Stacks) != 1 {
		t.Fatalf("DescribeStacks %s: %d stacks, want 1", ref, len(out.Stacks))
	}
	return out.Stacks[0]
}

func (e *env) resource(t *testing.T, stack, logicalID string) types.StackResourceDetail {
	t.Helper()
	out, err := e.cfn.DescribeStackResource(context.Background(), &cloudformation.DescribeStackResourceInput{
		StackName: aws.String(stack), LogicalResourceId: aws.String(logicalID),
	})
	if err != nil {
		t.Fatalf("DescribeStackResource %s/%s: %v", stack, logicalID, err)
	}
	return *out.StackResourceDetail
}

// events returns every event of the stack, newest first, through the
// SDK's paginator.
func (e *env) events(t *testing.T, ref string) []types.StackEvent {
	t.Helper()
	var all []types.StackEvent
	p := cloudformation.NewDescribeStackEventsPaginator(e.cfn, &cloudformation.DescribeStackEventsInput{StackName: aws.String(ref)})
	for p.HasMorePages() {
		out, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatalf("DescribeStackEvents %s: %v", ref, err)
		}
		all = append(all, out.StackEvents...)
	}
	return all
}

// waitStatus polls until the stack leaves CREATE_IN_PROGRESS.
func (e *env) waitStatus(t *testing.T, ref string, within time.Duration) types.Stack {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		st := e.stack(t, ref)
		if st.StackStatus != types.StackStatusCreateInProgress {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("stack %s still CREATE_IN_PROGRESS after %v", ref, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func findEvent(evs []types.StackEvent, logicalID string, status types.ResourceStatus, reason string) *types.StackEvent {
	for i, ev := range evs {
		if aws.ToString(ev.LogicalResourceId) == logicalID && ev.ResourceStatus == status && aws.ToString(ev.ResourceStatusReason) == reason {
			return &evs[i]
		}
	}
	return nil
}

// wantAPIError checks err is the AWS error code whose message contains msg.
func wantAPIError(t *testing.T, err error, code, msg string) {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("error = %v, want API error %s", err, code)
	}
	if ae.ErrorCode() != code || !strings.Contains(ae.ErrorMessage(), msg) {
		t.Fatalf("error = %s: %q, want %s containing %q", ae.ErrorCode(), ae.ErrorMessage(), code, msg)
	}
}

func TestSignalSuccessCompletesStack(t *testing.T) {
	e := newEnv(t, t.TempDir())
	ctx := context.Background()
	id := e.create(t, "Monitoring-Compute-production", asgTemplate(1, "PT1M"))

	st := e.stack(t, "Monitoring-Compute-production")
	if st.StackStatus != types.StackStatusCreateInProgress || aws.ToString(st.StackId) != id {
		t.Fatalf("before the signal: %s %s, want CREATE_IN_PROGRESS %s", st.StackStatus, aws.ToString(st.StackId), id)
	}
	if got := e.resource(t, id, "LaunchTemplate").ResourceStatus; got != types.ResourceStatusCreateComplete {
		t.Errorf("LaunchTemplate (no CreationPolicy) = %s, want CREATE_COMPLETE", got)
	}
	if got := e.resource(t, id, "MonitoringAsg").ResourceStatus; got != types.ResourceStatusCreateInProgress {
		t.Errorf("MonitoringAsg before the signal = %s, want CREATE_IN_PROGRESS", got)
	}

	if err := e.signal(ctx, "Monitoring-Compute-production", "MonitoringAsg", instanceID, types.ResourceSignalStatusSuccess); err != nil {
		t.Fatalf("SignalResource: %v", err)
	}
	st = e.stack(t, id)
	if st.StackStatus != types.StackStatusCreateComplete {
		t.Fatalf("after the signal: %s, want CREATE_COMPLETE", st.StackStatus)
	}
	asg := e.resource(t, id, "MonitoringAsg")
	if asg.ResourceStatus != types.ResourceStatusCreateComplete || asg.LastUpdatedTimestamp == nil || aws.ToString(asg.PhysicalResourceId) == "" {
		t.Errorf("MonitoringAsg = %+v, want CREATE_COMPLETE with a timestamp and a physical id", asg)
	}

	res, err := e.cfn.DescribeStackResources(ctx, &cloudformation.DescribeStackResourcesInput{StackName: aws.String(id)})
	if err != nil {
		t.Fatalf("DescribeStackResources: %v", err)
	}
	if len(res.StackResources) != 2 {
		t.Fatalf("DescribeStackResources: %d resources, want 2", len(res.StackResources))
	}
	for _, r := range res.StackResources {
		if r.ResourceStatus != types.ResourceStatusCreateComplete || aws.ToString(r.StackId) != id {
			t.Errorf("resource %s = %s in %s", aws.ToString(r.LogicalResourceId), r.ResourceStatus, aws.ToString(r.StackId))
		}
	}

	evs := e.events(t, id)
	sig := findEvent(evs, "MonitoringAsg", types.ResourceStatusCreateInProgress, "Received SUCCESS signal with UniqueId "+instanceID)
	if sig == nil {
		t.Fatalf("no signal event among %d events", len(evs))
	}
	if aws.ToString(sig.StackId) != id || aws.ToString(sig.StackName) != "Monitoring-Compute-production" ||
		aws.ToString(sig.ResourceType) != "AWS::AutoScaling::AutoScalingGroup" || aws.ToString(sig.EventId) == "" ||
		aws.ToString(sig.PhysicalResourceId) != aws.ToString(asg.PhysicalResourceId) || sig.Timestamp == nil {
		t.Errorf("signal event = %+v", *sig)
	}
	// Newest first: the stack's CREATE_COMPLETE leads, its "User
	// Initiated" start ends the list.
	first, last := evs[0], evs[len(evs)-1]
	if aws.ToString(first.LogicalResourceId) != "Monitoring-Compute-production" || first.ResourceStatus != types.ResourceStatusCreateComplete {
		t.Errorf("newest event = %s %s, want the stack's CREATE_COMPLETE", aws.ToString(first.LogicalResourceId), first.ResourceStatus)
	}
	if aws.ToString(last.ResourceStatusReason) != "User Initiated" || aws.ToString(last.PhysicalResourceId) != id {
		t.Errorf("oldest event = %+v, want the stack's User Initiated", last)
	}

	err = e.signal(ctx, id, "MonitoringAsg", instanceID, types.ResourceSignalStatusSuccess)
	wantAPIError(t, err, "ValidationError", "Stack "+id+" is in CREATE_COMPLETE state and cannot be signaled")
}

func TestSignalFailureFailsAtOnce(t *testing.T) {
	tests := []struct {
		name       string
		mod        func(*cloudformation.CreateStackInput)
		wantStatus types.StackStatus
		deleted    bool
	}{
		{"rollback by default", func(*cloudformation.CreateStackInput) {}, types.StackStatusRollbackComplete, false},
		{"do nothing", func(in *cloudformation.CreateStackInput) { in.OnFailure = types.OnFailureDoNothing }, types.StackStatusCreateFailed, false},
		{"disable rollback", func(in *cloudformation.CreateStackInput) { in.DisableRollback = aws.Bool(true) }, types.StackStatusCreateFailed, false},
		{"delete", func(in *cloudformation.CreateStackInput) { in.OnFailure = types.OnFailureDelete }, types.StackStatusDeleteComplete, true},
	}
	e := newEnv(t, "")
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := fmt.Sprintf("Failing-%d", i)
			id := e.create(t, name, asgTemplate(1, "PT1H"), tt.mod)
			if err := e.signal(context.Background(), name, "MonitoringAsg", instanceID, types.ResourceSignalStatusFailure); err != nil {
				t.Fatalf("SignalResource FAILURE: %v", err)
			}
			st := e.stack(t, id)
			if st.StackStatus != tt.wantStatus {
				t.Fatalf("stack = %s, want %s", st.StackStatus, tt.wantStatus)
			}
			reason := "Received FAILURE signal with UniqueId " + instanceID
			if findEvent(e.events(t, id), "MonitoringAsg", types.ResourceStatusCreateFailed, reason) == nil {
				t.Errorf("no CREATE_FAILED event with reason %q", reason)
			}
			_, err := e.cfn.DescribeStacks(context.Background(), &cloudformation.DescribeStacksInput{StackName: aws.String(name)})
			if tt.deleted {
				wantAPIError(t, err, "ValidationError", "Stack with id "+name+" does not exist")
			} else if err != nil {
				t.Errorf("DescribeStacks by name: %v", err)
			}
		})
	}
}

func TestTimeoutFailsStackWithoutRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t.TempDir())
	id := e.create(t, "Slow", asgTemplate(1, "PT2S"))
	start := time.Now()
	st := e.waitStatus(t, id, 10*time.Second)
	if st.StackStatus != types.StackStatusRollbackComplete {
		t.Fatalf("stack = %s, want ROLLBACK_COMPLETE", st.StackStatus)
	}
	if elapsed := time.Since(start); elapsed < 1500*time.Millisecond {
		t.Errorf("stack failed after %v, before its 2s timeout", elapsed)
	}
	if !strings.Contains(aws.ToString(st.StackStatusReason), "The following resource(s) failed to create: [MonitoringAsg]") {
		t.Errorf("StackStatusReason = %q", aws.ToString(st.StackStatusReason))
	}
	evs := e.events(t, id)
	if findEvent(evs, "MonitoringAsg", types.ResourceStatusCreateFailed, "Failed to receive 1 resource signal(s) within the specified duration") == nil {
		t.Errorf("no CREATE_FAILED event with AWS's timeout reason")
	}
	if findEvent(evs, "Slow", types.ResourceStatusRollbackInProgress, "The following resource(s) failed to create: [MonitoringAsg]. Rollback requested by user.") == nil {
		t.Errorf("no ROLLBACK_IN_PROGRESS stack event")
	}
	if got := e.resource(t, id, "MonitoringAsg").ResourceStatus; got != types.ResourceStatusDeleteComplete {
		t.Errorf("MonitoringAsg after rollback = %s, want DELETE_COMPLETE", got)
	}
	err := e.signal(context.Background(), id, "MonitoringAsg", instanceID, types.ResourceSignalStatusSuccess)
	wantAPIError(t, err, "ValidationError", "ROLLBACK_COMPLETE state and cannot be signaled")
}

func TestCountTwoNeedsTwoInstances(t *testing.T) {
	e := newEnv(t, "")
	ctx := context.Background()
	id := e.create(t, "Pair", asgTemplate(2, "PT1M"))
	for _, uid := range []string{"i-aaaaaaaaaaaaaaaaa", "i-aaaaaaaaaaaaaaaaa"} {
		if err := e.signal(ctx, id, "MonitoringAsg", uid, types.ResourceSignalStatusSuccess); err != nil {
			t.Fatalf("SignalResource %s: %v", uid, err)
		}
	}
	if got := e.stack(t, id).StackStatus; got != types.StackStatusCreateInProgress {
		t.Fatalf("after one instance signalled twice: %s, want CREATE_IN_PROGRESS", got)
	}
	if err := e.signal(ctx, id, "MonitoringAsg", "i-bbbbbbbbbbbbbbbbb", types.ResourceSignalStatusSuccess); err != nil {
		t.Fatalf("SignalResource: %v", err)
	}
	if got := e.stack(t, id).StackStatus; got != types.StackStatusCreateComplete {
		t.Fatalf("after two instances: %s, want CREATE_COMPLETE", got)
	}
}

func TestCountTwoTimeoutNamesMissingSignals(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	id := e.create(t, "Half", asgTemplate(2, "PT2S"), func(in *cloudformation.CreateStackInput) { in.OnFailure = types.OnFailureDoNothing })
	if err := e.signal(context.Background(), id, "MonitoringAsg", instanceID, types.ResourceSignalStatusSuccess); err != nil {
		t.Fatalf("SignalResource: %v", err)
	}
	if st := e.waitStatus(t, id, 10*time.Second); st.StackStatus != types.StackStatusCreateFailed {
		t.Fatalf("stack = %s, want CREATE_FAILED", st.StackStatus)
	}
	if findEvent(e.events(t, id), "MonitoringAsg", types.ResourceStatusCreateFailed, "Failed to receive 1 resource signal(s) within the specified duration") == nil {
		t.Errorf("no CREATE_FAILED event naming the one missing signal")
	}
}

func TestErrors(t *testing.T) {
	e := newEnv(t, "")
	ctx := context.Background()
	e.create(t, "Errs", asgTemplate(1, "PT1M"))
	tests := []struct {
		name string
		call func() error
		code string
		msg  string
	}{
		{"signal unknown stack", func() error {
			return e.signal(ctx, "Nope", "MonitoringAsg", instanceID, types.ResourceSignalStatusSuccess)
		}, "ValidationError", "Stack with id Nope does not exist"},
		{"signal unknown resource", func() error {
			return e.signal(ctx, "Errs", "NoSuchAsg", instanceID, types.ResourceSignalStatusSuccess)
		}, "ValidationError", "NoSuchAsg"},
		{"signal resource without CreationPolicy", func() error {
			return e.signal(ctx, "Errs", "LaunchTemplate", instanceID, types.ResourceSignalStatusSuccess)
		}, "ValidationError", "Resource LaunchTemplate is in CREATE_COMPLETE state and cannot be signaled"},
		{"signal bad status", func() error {
			return e.signal(ctx, "Errs", "MonitoringAsg", instanceID, "MAYBE")
		}, "ValidationError", "at 'status'"},
		{"signal without UniqueId", func() error {
			return e.signal(ctx, "Errs", "MonitoringAsg", "", types.ResourceSignalStatusSuccess)
		}, "ValidationError", "Value null at 'uniqueId'"},
		{"duplicate stack", func() error {
			_, err := e.cfn.CreateStack(ctx, &cloudformation.CreateStackInput{StackName: aws.String("Errs"), TemplateBody: aws.String(asgTemplate(1, "PT1M"))})
			var ae *types.AlreadyExistsException
			if err != nil && !errors.As(err, &ae) {
				return fmt.Errorf("not an AlreadyExistsException: %w", err)
			}
			return err
		}, "AlreadyExistsException", "Stack [Errs] already exists"},
		{"describe unknown stack", func() error {
			_, err := e.cfn.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String("Nope")})
			return err
		}, "ValidationError", "Stack with id Nope does not exist"},
		{"events of unknown stack", func() error {
			_, err := e.cfn.DescribeStackEvents(ctx, &cloudformation.DescribeStackEventsInput{StackName: aws.String("Nope")})
			return err
		}, "ValidationError", "Stack with id Nope does not exist"},
		{"unknown resource detail", func() error {
			_, err := e.cfn.DescribeStackResource(ctx, &cloudformation.DescribeStackResourceInput{StackName: aws.String("Errs"), LogicalResourceId: aws.String("Ghost")})
			return err
		}, "ValidationError", "Resource Ghost does not exist for stack Errs"},
		{"bad events token", func() error {
			_, err := e.cfn.DescribeStackEvents(ctx, &cloudformation.DescribeStackEventsInput{StackName: aws.String("Errs"), NextToken: aws.String("garbage!")})
			return err
		}, "ValidationError", "Invalid NextToken"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantAPIError(t, tt.call(), tt.code, tt.msg)
		})
	}
}

func TestCreateStackValidation(t *testing.T) {
	e := newEnv(t, "")
	tests := []struct {
		name string
		in   cloudformation.CreateStackInput
		msg  string
	}{
		{"no template", cloudformation.CreateStackInput{StackName: aws.String("A")}, "Either Template URL or Template Body must be specified."},
		{"bad stack name", cloudformation.CreateStackInput{StackName: aws.String("bad_name"), TemplateBody: aws.String(asgTemplate(1, "PT1M"))}, "at 'stackName'"},
		{"YAML not well-formed", cloudformation.CreateStackInput{StackName: aws.String("A"), TemplateBody: aws.String("Resources: [\n")}, "Template format error: YAML not well-formed."},
		{"JSON not well-formed", cloudformation.CreateStackInput{StackName: aws.String("A"), TemplateBody: aws.String(`{"Resources": `)}, "Template format error: JSON not well-formed."},
		{"no resources", cloudformation.CreateStackInput{StackName: aws.String("A"), TemplateBody: aws.String("Description: empty\n")}, "At least one Resources member must be defined."},
		{"resource without Type", cloudformation.CreateStackInput{StackName: aws.String("A"), TemplateBody: aws.String("Resources:\n  Asg:\n    Properties: {}\n")}, "[/Resources/Asg] Every Resources object must contain a Type member."},
		{"bad timeout", cloudformation.CreateStackInput{StackName: aws.String("A"), TemplateBody: aws.String(asgTemplate(1, "15m"))}, "is not an ISO 8601 duration"},
		{"bad count", cloudformation.CreateStackInput{StackName: aws.String("A"), TemplateBody: aws.String(asgTemplate(0, "PT1M"))}, "is not a positive integer"},
		{"unknown parameter", cloudformation.CreateStackInput{StackName: aws.String("A"), TemplateBody: aws.String(asgTemplate(1, "PT1M")),
			Parameters: []types.Parameter{{ParameterKey: aws.String("Nope"), ParameterValue: aws.String("x")}}}, "Parameters: [Nope] do not exist in the template"},
		{"rollback and on failure", cloudformation.CreateStackInput{StackName: aws.String("A"), TemplateBody: aws.String(asgTemplate(1, "PT1M")),
			DisableRollback: aws.Bool(true), OnFailure: types.OnFailureDelete}, "You cannot specify both DisableRollback and OnFailure."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.cfn.CreateStack(context.Background(), &tt.in)
			wantAPIError(t, err, "ValidationError", tt.msg)
		})
	}
	out, err := e.cfn.DescribeStacks(context.Background(), &cloudformation.DescribeStacksInput{})
	if err != nil || len(out.Stacks) != 0 {
		t.Fatalf("after rejected creates: %d stacks, %v; want none", len(out.Stacks), err)
	}
}

func TestTemplates(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		params    []types.Parameter
		resources map[string]string // logical id → type
		waiting   string            // the resource that waits, "" for none
	}{
		{
			name:      "YAML with short-form tags",
			body:      asgTemplate(1, "PT5M"),
			resources: map[string]string{"LaunchTemplate": "AWS::EC2::LaunchTemplate", "MonitoringAsg": "AWS::AutoScaling::AutoScalingGroup"},
			waiting:   "MonitoringAsg",
		},
		{
			name: "JSON",
			body: `{
	"AWSTemplateFormatVersion": "2010-09-09",
	"Resources": {
		"Host": {
			"Type": "AWS::EC2::Instance",
			"CreationPolicy": {"ResourceSignal": {"Count": 1, "Timeout": "PT15M"}},
			"Properties": {"ImageId": {"Ref": "AWS::NoValue"}, "UserData": {"Fn::Base64": {"Fn::Sub": "#!/bin/bash\n"}}}
		},
		"Bucket": {"Type": "AWS::S3::Bucket"}
	}
}`,
			resources: map[string]string{"Host": "AWS::EC2::Instance", "Bucket": "AWS::S3::Bucket"},
			waiting:   "Host",
		},
		{
			name: "count and timeout from parameters, default policy",
			body: `Parameters:
  Desired: {Type: Number}
  Wait: {Type: String, Default: PT10M}
Resources:
  Asg:
    Type: AWS::AutoScaling::AutoScalingGroup
    CreationPolicy:
      ResourceSignal:
        Count: !Ref Desired
        Timeout: !Ref Wait
  Other:
    Type: AWS::AutoScaling::AutoScalingGroup
    CreationPolicy:
      ResourceSignal: {}
  Cond:
    Type: AWS::SNS::Topic
    Condition: !Equals [!Ref Wait, PT10M]
    Properties:
      TopicName: !Join ["-", [!Select [0, !GetAZs ""], !ImportValue x]]
`,
			params:    []types.Parameter{{ParameterKey: aws.String("Desired"), ParameterValue: aws.String("1")}},
			resources: map[string]string{"Asg": "AWS::AutoScaling::AutoScalingGroup", "Other": "AWS::AutoScaling::AutoScalingGroup", "Cond": "AWS::SNS::Topic"},
			waiting:   "Asg",
		},
		{
			name:      "no creation policy completes at once",
			body:      "Resources:\n  Topic:\n    Type: AWS::SNS::Topic\n",
			resources: map[string]string{"Topic": "AWS::SNS::Topic"},
		},
	}
	e := newEnv(t, "")
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := fmt.Sprintf("T%d", i)
			id := e.create(t, name, tt.body, func(in *cloudformation.CreateStackInput) { in.Parameters = tt.params })
			for logical, typ := range tt.resources {
				r := e.resource(t, id, logical)
				if aws.ToString(r.ResourceType) != typ {
					t.Errorf("%s type = %s, want %s", logical, aws.ToString(r.ResourceType), typ)
				}
			}
			want := types.StackStatusCreateComplete
			if tt.waiting != "" {
				want = types.StackStatusCreateInProgress
			}
			if got := e.stack(t, id).StackStatus; got != want {
				t.Fatalf("stack = %s, want %s", got, want)
			}
			if tt.waiting == "" {
				return
			}
			if err := e.signal(context.Background(), id, tt.waiting, instanceID, types.ResourceSignalStatusSuccess); err != nil {
				t.Fatalf("SignalResource: %v", err)
			}
			// Other resources with a default policy may still wait; the
			// signalled one must be complete.
			if got := e.resource(t, id, tt.waiting).ResourceStatus; got != types.ResourceStatusCreateComplete {
				t.Errorf("%s after its signal = %s, want CREATE_COMPLETE", tt.waiting, got)
			}
		})
	}
}

func TestEventsPaginate(t *testing.T) {
	var b strings.Builder
	b.WriteString("Resources:\n")
	const n = 60 // 3 events each: more than one page of 100
	for i := range n {
		fmt.Fprintf(&b, "  Topic%d:\n    Type: AWS::SNS::Topic\n", i)
	}
	e := newEnv(t, "")
	id := e.create(t, "Many", b.String())
	first, err := e.cfn.DescribeStackEvents(context.Background(), &cloudformation.DescribeStackEventsInput{StackName: aws.String(id)})
	if err != nil {
		t.Fatalf("DescribeStackEvents: %v", err)
	}
	if first.NextToken == nil || len(first.StackEvents) != 100 {
		t.Fatalf("first page: %d events, token %v; want 100 and a token", len(first.StackEvents), first.NextToken)
	}
	evs := e.events(t, id)
	if want := 2 + 3*n; len(evs) != want {
		t.Fatalf("%d events, want %d", len(evs), want)
	}
	seen := map[string]bool{}
	for i, ev := range evs {
		if seen[aws.ToString(ev.EventId)] {
			t.Fatalf("event %s twice", aws.ToString(ev.EventId))
		}
		seen[aws.ToString(ev.EventId)] = true
		if i > 0 && ev.Timestamp.After(*evs[i-1].Timestamp) {
			t.Fatalf("event %d is newer than event %d: not newest first", i, i-1)
		}
	}
}

func TestDeleteStack(t *testing.T) {
	e := newEnv(t, "")
	ctx := context.Background()
	id := e.create(t, "Gone", asgTemplate(1, "PT1M"))
	for range 2 { // deleting twice, or a missing stack, succeeds
		if _, err := e.cfn.DeleteStack(ctx, &cloudformation.DeleteStackInput{StackName: aws.String("Gone")}); err != nil {
			t.Fatalf("DeleteStack: %v", err)
		}
	}
	if st := e.stack(t, id); st.StackStatus != types.StackStatusDeleteComplete || st.DeletionTime == nil {
		t.Fatalf("by id after delete: %s deleted %v, want DELETE_COMPLETE with a time", st.StackStatus, st.DeletionTime)
	}
	_, err := e.cfn.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String("Gone")})
	wantAPIError(t, err, "ValidationError", "Stack with id Gone does not exist")
	err = e.signal(ctx, "Gone", "MonitoringAsg", instanceID, types.ResourceSignalStatusSuccess)
	wantAPIError(t, err, "ValidationError", "Stack with id Gone does not exist")
	// The name is free again.
	if again := e.create(t, "Gone", asgTemplate(1, "PT1M")); again == id {
		t.Fatalf("re-created stack has the old id %s", id)
	}
}

func TestConcurrentClients(t *testing.T) {
	e := newEnv(t, t.TempDir())
	const n = 8
	id := e.create(t, "Busy", asgTemplate(n, "PT1M"))
	var wg sync.WaitGroup
	errs := make(chan error, 3*n)
	for i := range n {
		wg.Add(3)
		go func() {
			defer wg.Done()
			errs <- e.signal(context.Background(), id, "MonitoringAsg", fmt.Sprintf("i-%017d", i), types.ResourceSignalStatusSuccess)
		}()
		go func() {
			defer wg.Done()
			_, err := e.cfn.DescribeStackEvents(context.Background(), &cloudformation.DescribeStackEventsInput{StackName: aws.String(id)})
			errs <- err
		}()
		go func() {
			defer wg.Done()
			_, err := e.cfn.DescribeStacks(context.Background(), &cloudformation.DescribeStacksInput{})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent call: %v", err)
		}
	}
	if got := e.stack(t, id).StackStatus; got != types.StackStatusCreateComplete {
		t.Fatalf("after %d concurrent signals: %s, want CREATE_COMPLETE", n, got)
	}
}
