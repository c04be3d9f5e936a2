package cfnsim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/monagent/monagent/rig/awssim/simtest"
)

// post sends a raw Query request signed (in form only) for CloudFormation,
// as a misbehaving client might.
func post(t *testing.T, endpoint, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=x/20260101/eu-west-1/cloudformation/aws4_request, SignedHeaders=host, Signature=00")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	return resp.StatusCode, b
}

type errorResponse struct {
	XMLName xml.Name `xml:"http://cloudformation.amazonaws.com/doc/2010-05-15/ ErrorResponse"`
	Error   struct {
		Type, Code, Message string
	}
	RequestID string `xml:"RequestId"`
}

func TestBadRequestsGetAWSErrors(t *testing.T) {
	e := newEnv(t, "")
	e.create(t, "Raw", asgTemplate(1, "PT1M"))
	bomb := "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
	for _, n := range []string{"b", "c", "d", "e", "f", "g"} {
		prev := string(rune(n[0] - 1))
		bomb += n + ": &" + n + " [*" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + "]\n"
	}
	bomb += "Resources: {R: {Type: *g}}\n"
	tests := []struct {
		name string
		body string
		code string
		msg  string
	}{
		{"unknown action", "Action=Explode&Version=2010-05-15", "InvalidAction", "Explode"},
		{"no action", "Version=2010-05-15", "MissingAction", "Action"},
		{"create without StackName", "Action=CreateStack&Version=2010-05-15", "ValidationError", "Value null at 'stackName'"},
		{"create with binary template", "Action=CreateStack&StackName=B&TemplateBody=%00%01%02%ff", "ValidationError", "Template format error"},
		{"create with a list template", "Action=CreateStack&StackName=B&TemplateBody=" + url.QueryEscape("- a\n- b\n"), "ValidationError", "Template format error"},
		{"create with alias bomb", "Action=CreateStack&StackName=B&TemplateBody=" + url.QueryEscape(bomb), "ValidationError", "Template format error"},
		{"create with bad DisableRollback", "Action=CreateStack&StackName=B&DisableRollback=perhaps&TemplateBody=" + url.QueryEscape(asgTemplate(1, "PT1M")), "ValidationError", "disableRollback"},
		{"create with bad OnFailure", "Action=CreateStack&StackName=B&OnFailure=PANIC&TemplateBody=" + url.QueryEscape(asgTemplate(1, "PT1M")), "ValidationError", "onFailure"},
		{"create with TemplateURL", "Action=CreateStack&StackName=B&TemplateURL=https://example.com/t.yaml", "ValidationError", "TemplateURL"},
		{"signal without LogicalResourceId", "Action=SignalResource&StackName=Raw&UniqueId=i-1&Status=SUCCESS", "ValidationError", "logicalResourceId"},
		{"events without StackName", "Action=DescribeStackEvents", "ValidationError", "stackName"},
		{"events with a garbage token", "Action=DescribeStackEvents&StackName=Raw&NextToken=" + url.QueryEscape("not/a token"), "ValidationError", "Invalid NextToken"},
		{"malformed form", "Action=CreateStack&StackName=%zz", "MalformedQueryString", "parse"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := post(t, e.url, tt.body)
			if status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400; body %s", status, body)
			}
			var er errorResponse
			if err := xml.Unmarshal(body, &er); err != nil {
				t.Fatalf("not an awsquery ErrorResponse: %v\n%s", err, body)
			}
			if er.Error.Type != "Sender" || er.Error.Code != tt.code || !strings.Contains(er.Error.Message, tt.msg) || er.RequestID == "" {
				t.Fatalf("error = %+v, want Sender %s containing %q", er, tt.code, tt.msg)
			}
		})
	}
	// Nothing above created a stack.
	out, err := e.cfn.DescribeStacks(context.Background(), &cloudformation.DescribeStacksInput{})
	if err != nil || len(out.Stacks) != 1 {
		t.Fatalf("DescribeStacks: %d stacks, %v; want only Raw", len(out.Stacks), err)
	}
}

func TestResponseShape(t *testing.T) {
	e := newEnv(t, "")
	e.create(t, "Shape", asgTemplate(1, "PT1M"))
	status, body := post(t, e.url, "Action=DescribeStacks&Version=2010-05-15&StackName=Shape")
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	var resp struct {
		XMLName xml.Name `xml:"http://cloudformation.amazonaws.com/doc/2010-05-15/ DescribeStacksResponse"`
		Stacks  []struct {
			StackName, StackStatus, CreationTime string
		} `xml:"DescribeStacksResult>Stacks>member"`
		RequestID string `xml:"ResponseMetadata>RequestId"`
	}
	if err := xml.Unmarshal(body, &resp); err != nil {
		t.Fatalf("%v\n%s", err, body)
	}
	if len(resp.Stacks) != 1 || resp.Stacks[0].StackName != "Shape" || resp.RequestID == "" ||
		!strings.HasSuffix(resp.Stacks[0].CreationTime, "Z") {
		t.Fatalf("response = %+v\n%s", resp, body)
	}
	status, body = post(t, e.url, "Action=SignalResource&StackName=Shape&LogicalResourceId=MonitoringAsg&UniqueId=i-1&Status=SUCCESS")
	if status != http.StatusOK || !bytes.Contains(body, []byte("<SignalResourceResponse xmlns=")) || bytes.Contains(body, []byte("SignalResourceResult")) {
		t.Fatalf("SignalResource: %d %s", status, body)
	}
}

func TestScenarioSeedAndFault(t *testing.T) {
	e := newEnv(t, "")
	scenario := `
cloudformation:
  stacks:
    - name: Monitoring-Compute-production
      on_failure: DO_NOTHING
      template: |
        Resources:
          MonitoringAsg:
            Type: AWS::AutoScaling::AutoScalingGroup
            CreationPolicy:
              ResourceSignal:
                Count: 1
                Timeout: PT15M
faults:
  cloudformation.SignalResource: {count: 2, code: Throttling, status: 400}
`
	if err := e.sim.ApplyScenario([]byte(scenario)); err != nil {
		t.Fatalf("ApplyScenario: %v", err)
	}
	st := e.stack(t, "Monitoring-Compute-production")
	if st.StackStatus != types.StackStatusCreateInProgress || !aws.ToBool(st.DisableRollback) {
		t.Fatalf("seeded stack = %s DisableRollback %v, want CREATE_IN_PROGRESS and true", st.StackStatus, aws.ToBool(st.DisableRollback))
	}
	ctx := context.Background()
	for range 2 {
		err := e.signal(ctx, "Monitoring-Compute-production", "MonitoringAsg", instanceID, types.ResourceSignalStatusSuccess)
		wantAPIError(t, err, "Throttling", "Rate exceeded")
	}
	if err := e.signal(ctx, "Monitoring-Compute-production", "MonitoringAsg", instanceID, types.ResourceSignalStatusSuccess); err != nil {
		t.Fatalf("third SignalResource: %v", err)
	}
	if got := e.stack(t, "Monitoring-Compute-production").StackStatus; got != types.StackStatusCreateComplete {
		t.Fatalf("after the signal: %s, want CREATE_COMPLETE", got)
	}
	var throttled int
	for _, c := range e.sim.Calls() {
		if c.Operation == "SignalResource" && c.Code == "Throttling" && c.Status == http.StatusBadRequest {
			throttled++
		}
	}
	if throttled != 2 {
		t.Errorf("call log has %d throttled SignalResource calls, want 2", throttled)
	}
	// Applying the scenario again leaves the existing stack alone.
	if err := e.sim.ApplyScenario([]byte(scenario)); err != nil {
		t.Fatalf("ApplyScenario again: %v", err)
	}
	if got := e.stack(t, "Monitoring-Compute-production").StackStatus; got != types.StackStatusCreateComplete {
		t.Fatalf("after re-applying: %s, want CREATE_COMPLETE", got)
	}
}

func TestSeedErrors(t *testing.T) {
	tests := []struct {
		name, scenario, want string
	}{
		{"unknown key", "cloudformation:\n  stackz: []\n", "stackz"},
		{"unknown stack key", "cloudformation:\n  stacks:\n    - name: A\n      tmpl: x\n", "tmpl"},
		{"bad template", "cloudformation:\n  stacks:\n    - name: A\n      template: \"Resources: 3\"\n", "At least one Resources member"},
		{"bad on_failure", "cloudformation:\n  stacks:\n    - name: A\n      on_failure: MAYBE\n      template: \"Resources: {T: {Type: AWS::SNS::Topic}}\"\n", "onFailure"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, "")
			err := e.sim.ApplyScenario([]byte(tt.scenario))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ApplyScenario = %v, want an error mentioning %q", err, tt.want)
			}
		})
	}
}

// cli runs "aws cloudformation" against the simulator and decodes its
// JSON output into out (when out is not nil).
func cli(t *testing.T, endpoint string, out any, args ...string) error {
	t.Helper()
	b, err := simtest.AWSCLI(t, endpoint, append([]string{"--output", "json", "cloudformation"}, args...)...)
	if err != nil {
		return err
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("aws %s: output is not JSON: %v\n%s", strings.Join(args, " "), err, b)
		}
	}
	return nil
}

func TestAWSCLI(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t.TempDir())
	tmpl := filepath.Join(t.TempDir(), "compute.yaml")
	if err := os.WriteFile(tmpl, []byte(asgTemplate(1, "PT15M")), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(out any, args ...string) {
		t.Helper()
		if err := cli(t, e.url, out, args...); err != nil {
			t.Fatal(err)
		}
	}

	var created struct{ StackId string }
	run(&created, "create-stack", "--stack-name", "Cli", "--template-body", "file://"+tmpl, "--on-failure", "ROLLBACK")
	if !strings.HasPrefix(created.StackId, "arn:aws:cloudformation:eu-west-1:111122223333:stack/Cli/") {
		t.Fatalf("StackId = %q", created.StackId)
	}

	type stacks struct {
		Stacks []struct {
			StackId, StackName, StackStatus, CreationTime string
			DisableRollback                               bool
		}
	}
	var before stacks
	run(&before, "describe-stacks", "--stack-name", "Cli")
	if len(before.Stacks) != 1 || before.Stacks[0].StackStatus != "CREATE_IN_PROGRESS" || before.Stacks[0].StackId != created.StackId || before.Stacks[0].CreationTime == "" {
		t.Fatalf("describe-stacks before the signal = %+v", before)
	}

	run(nil, "signal-resource", "--stack-name", "Cli", "--logical-resource-id", "MonitoringAsg",
		"--unique-id", instanceID, "--status", "SUCCESS")

	var events struct {
		StackEvents []struct {
			StackId, EventId, StackName, LogicalResourceId, PhysicalResourceId string
			ResourceType, Timestamp, ResourceStatus, ResourceStatusReason      string
		}
	}
	run(&events, "describe-stack-events", "--stack-name", "Cli")
	var found bool
	for _, ev := range events.StackEvents {
		if ev.LogicalResourceId == "MonitoringAsg" && ev.ResourceStatus == "CREATE_IN_PROGRESS" &&
			ev.ResourceStatusReason == "Received SUCCESS signal with UniqueId "+instanceID {
			found = ev.StackId == created.StackId && ev.EventId != "" && ev.Timestamp != "" &&
				ev.ResourceType == "AWS::AutoScaling::AutoScalingGroup" && ev.PhysicalResourceId != ""
		}
	}
	if !found {
		t.Fatalf("describe-stack-events has no complete signal event: %+v", events)
	}

	var detail struct {
		StackResourceDetail struct {
			LogicalResourceId, ResourceStatus, LastUpdatedTimestamp string
		}
	}
	run(&detail, "describe-stack-resource", "--stack-name", "Cli", "--logical-resource-id", "MonitoringAsg")
	if d := detail.StackResourceDetail; d.ResourceStatus != "CREATE_COMPLETE" || d.LastUpdatedTimestamp == "" {
		t.Fatalf("describe-stack-resource = %+v", d)
	}

	var after stacks
	run(&after, "describe-stacks")
	if len(after.Stacks) != 1 || after.Stacks[0].StackStatus != "CREATE_COMPLETE" {
		t.Fatalf("describe-stacks after the signal = %+v", after)
	}

	err := cli(t, e.url, nil, "signal-resource", "--stack-name", "Cli", "--logical-resource-id", "MonitoringAsg",
		"--unique-id", instanceID, "--status", "SUCCESS")
	if err == nil || !strings.Contains(err.Error(), "ValidationError") || !strings.Contains(err.Error(), "cannot be signaled") {
		t.Fatalf("second signal-resource: %v; want a ValidationError", err)
	}

	run(nil, "delete-stack", "--stack-name", "Cli")
	err = cli(t, e.url, nil, "describe-stacks", "--stack-name", "Cli")
	if err == nil || !strings.Contains(err.Error(), "Stack with id Cli does not exist") {
		t.Fatalf("describe-stacks after delete: %v", err)
	}
}
