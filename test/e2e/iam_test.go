package e2e

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
)

const (
	iamAccount = "123456789012" // awssim's default account
	iamKeyARN  = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	iamProfile = "arn:aws:iam::123456789012:instance-profile/monitoring-role"
	iamBucket  = "monitoring-production-scripts"
)

// iamScenario: the data volume encrypted with a customer-managed key, its
// id and the bucket's name in SSM, the stack, and an instance profile.
var iamScenario = fmt.Sprintf(`imds:
  role: monitoring-role
ec2:
  volumes:
    - id: %s
      az: eu-west-1a
      encrypted: true
      kms_key_id: %s
ssm:
  parameters:
    - {name: /monitoring-production/ebs/volume-id, value: %s, type: String}
    - {name: /monitoring-production/ssm/scripts-bucket-name, value: %s, type: String}
cloudformation:
  stacks:
    - name: %s
      template: |
%s
`, volumeID, iamKeyARN, volumeID, iamBucket, stackName, indent(stackTemplate, "        "))

// iamConfig is the default configuration with the stack named.
const iamConfig = `prefix: monitoring-production
stack:
  name: Monitoring-Compute-production
  resource: MonitoringAsg
`

type policyStatement struct {
	Sid       string
	Effect    string
	Action    []string
	Resource  []string
	Condition map[string]map[string]string
}

// parsePolicy checks that out is a policy document, every statement
// allowing named actions on named resources, and no wildcard but where the
// API has no resource-level permissions.
func parsePolicy(t testing.TB, out string) []policyStatement {
	t.Helper()
	var doc struct {
		Version   string
		Statement []policyStatement
	}
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("stdout is not a policy document: %v\n%s", err, out)
	}
	if dec.More() {
		t.Fatalf("stdout holds more than the document:\n%s", out)
	}
	if doc.Version != "2012-10-17" || len(doc.Statement) == 0 {
		t.Fatalf("Version %q, %d statements", doc.Version, len(doc.Statement))
	}
	for _, s := range doc.Statement {
		if s.Sid == "" || s.Effect != "Allow" || len(s.Action) == 0 || len(s.Resource) == 0 {
			t.Errorf("statement %+v: want a Sid, Effect Allow, actions and resources", s)
		}
		for _, a := range s.Action {
			if a == "*" || strings.HasSuffix(a, ":*") || !strings.Contains(a, ":") {
				t.Errorf("statement %s: action %q", s.Sid, a)
			}
		}
		if slices.Contains(s.Resource, "*") && !slices.Equal(s.Action, []string{"ec2:DescribeVolumes"}) {
			t.Errorf("statement %s: Resource * for %v, which supports resource-level permissions", s.Sid, s.Action)
		}
	}
	return doc.Statement
}

// granted reports whether some statement allows action on resource
// exactly as named.
func granted(stmts []policyStatement, action, resource string) *policyStatement {
	for i, s := range stmts {
		if slices.Contains(s.Action, action) && slices.Contains(s.Resource, resource) {
			return &stmts[i]
		}
	}
	return nil
}

func TestIAMPolicy(t *testing.T) {
	h := startHost(t, hostOptions{scenario: iamScenario, config: iamConfig})
	h.clearCalls()
	r := h.monagent("iam-policy")
	if r.code != 0 {
		t.Fatalf("exit %d\nstderr: %s", r.code, r.stderr)
	}
	stmts := parsePolicy(t, r.stdout)

	param := func(name string) string {
		return "arn:aws:ssm:eu-west-1:" + iamAccount + ":parameter/monitoring-production/" + name
	}
	reads := []string{"ebs/volume-id", "ssm/scripts-bucket-name", "grafana/admin-password", "github/api-token",
		"prometheus/metrics-bearer-token", "loki/endpoint", "tempo/endpoint"}
	type grant struct{ action, resource string }
	var want []grant
	for _, p := range reads {
		want = append(want, grant{"ssm:GetParameters", param(p)}, grant{"ssm:GetParameter", param(p)})
	}
	for _, p := range []string{"prometheus/metrics-bearer-token", "loki/endpoint", "tempo/endpoint"} {
		want = append(want, grant{"ssm:PutParameter", param(p)})
	}
	want = append(want,
		grant{"ec2:DescribeVolumes", "*"},
		grant{"ec2:AttachVolume", "arn:aws:ec2:eu-west-1:" + iamAccount + ":volume/" + volumeID},
		grant{"ec2:AttachVolume", "arn:aws:ec2:eu-west-1:" + iamAccount + ":instance/*"},
		grant{"cloudformation:SignalResource", "arn:aws:cloudformation:eu-west-1:" + iamAccount + ":stack/" + stackName + "/*"},
		grant{"s3:ListBucket", "arn:aws:s3:::" + iamBucket},
		grant{"s3:GetObject", "arn:aws:s3:::" + iamBucket + "/scripts/*"},
	)
	for _, a := range []string{"kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKeyWithoutPlaintext",
		"kms:ReEncryptFrom", "kms:ReEncryptTo"} {
		want = append(want, grant{a, iamKeyARN})
	}
	for _, g := range want {
		if granted(stmts, g.action, g.resource) == nil {
			t.Errorf("no statement allows %s on %s", g.action, g.resource)
		}
	}
	// Nothing more than that.
	n := 0
	for _, s := range stmts {
		n += len(s.Action) * len(s.Resource)
	}
	if n != len(want) {
		t.Errorf("%d action-resource pairs, want %d:\n%s", n, len(want), r.stdout)
	}

	// The conditions that make the wider resources exact enough.
	if s := granted(stmts, "ec2:AttachVolume", "arn:aws:ec2:eu-west-1:"+iamAccount+":instance/*"); s != nil &&
		s.Condition["ArnEquals"]["ec2:InstanceProfile"] != iamProfile {
		t.Errorf("AttachVolume on instance/* is not limited to instance profile %s: %v", iamProfile, s.Condition)
	}
	if s := granted(stmts, "kms:CreateGrant", iamKeyARN); s != nil &&
		(s.Condition["Bool"]["kms:GrantIsForAWSResource"] != "true" || len(s.Action) != 1) {
		t.Errorf("kms:CreateGrant: %+v, want it alone and conditioned on kms:GrantIsForAWSResource", s)
	}
	if s := granted(stmts, "s3:ListBucket", "arn:aws:s3:::"+iamBucket); s != nil && s.Condition["StringLike"]["s3:prefix"] != "scripts/*" {
		t.Errorf("s3:ListBucket is not limited to the prefix: %v", s.Condition)
	}
	if !strings.Contains(r.stderr, iamKeyARN) {
		t.Errorf("stderr does not name the KMS key:\n%s", r.stderr)
	}

	// It only reads: instance metadata, one SSM read, one DescribeVolumes.
	for _, c := range h.calls() {
		switch c.Service + "." + c.Operation {
		case "imds.GetToken", "imds.GetMetadata", "imds.GetDynamicData", "ssm.GetParameters", "ec2.DescribeVolumes":
		default:
			t.Errorf("iam-policy called %s.%s", c.Service, c.Operation)
		}
	}
	if n := h.countCalls(); n["ssm"] != 1 || n["ec2"] != 1 {
		t.Errorf("calls by service %v, want one SSM read and one DescribeVolumes", n)
	}
}

func TestIAMPolicyOffline(t *testing.T) {
	h := startHost(t, hostOptions{scenario: iamScenario, config: iamConfig})
	h.clearCalls()
	t.Run("named facts: exact resources and no AWS call", func(t *testing.T) {
		r := h.monagent("iam-policy", "--offline", "--region", "eu-west-1", "--account", "111122223333",
			"--volume-id", volumeID, "--bucket", iamBucket, "--kms-key-id", "1234abcd-12ab-34cd-56ef-1234567890ab",
			"--instance-profile", "arn:aws:iam::111122223333:instance-profile/monitoring-role")
		if r.code != 0 {
			t.Fatalf("exit %d\nstderr: %s", r.code, r.stderr)
		}
		stmts := parsePolicy(t, r.stdout)
		for _, g := range [][2]string{
			{"ec2:AttachVolume", "arn:aws:ec2:eu-west-1:111122223333:volume/" + volumeID},
			{"kms:CreateGrant", "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"},
			{"ssm:GetParameters", "arn:aws:ssm:eu-west-1:111122223333:parameter/monitoring-production/ebs/volume-id"},
			{"s3:GetObject", "arn:aws:s3:::" + iamBucket + "/scripts/*"},
		} {
			if granted(stmts, g[0], g[1]) == nil {
				t.Errorf("no statement allows %s on %s", g[0], g[1])
			}
		}
		if r.stderr != "" {
			t.Errorf("notes with every fact named:\n%s", r.stderr)
		}
	})
	t.Run("unknown facts: wildcards in the account, each named on stderr", func(t *testing.T) {
		r := h.monagent("iam-policy", "--offline", "--region", "eu-west-1", "--account", "111122223333")
		if r.code != 0 {
			t.Fatalf("exit %d\nstderr: %s", r.code, r.stderr)
		}
		stmts := parsePolicy(t, r.stdout)
		for _, g := range [][2]string{
			{"ec2:AttachVolume", "arn:aws:ec2:eu-west-1:111122223333:volume/*"},
			{"kms:CreateGrant", "arn:aws:kms:eu-west-1:111122223333:key/*"},
			{"s3:GetObject", "arn:aws:s3:::*/scripts/*"},
		} {
			if granted(stmts, g[0], g[1]) == nil {
				t.Errorf("no statement allows %s on %s", g[0], g[1])
			}
		}
		for _, flag := range []string{"--volume-id", "--bucket", "--kms-key-id", "--instance-profile"} {
			if !strings.Contains(r.stderr, flag) {
				t.Errorf("stderr does not name %s:\n%s", flag, r.stderr)
			}
		}
	})
	if calls := h.calls(); len(calls) != 0 {
		t.Errorf("--offline made %d AWS calls: %v", len(calls), calls)
	}
}

func TestIAMPolicyUsage(t *testing.T) {
	h := startHost(t, hostOptions{scenario: iamScenario, config: iamConfig})
	for _, tt := range []struct {
		args []string
		says []string
	}{
		{[]string{"--offline", "--region", "eu-west-1"}, []string{"--account", "12 digits"}},
		{[]string{"--account", "12345"}, []string{"--account", `"12345"`, "12 digits"}},
		{[]string{"--region", "eu-west-2"}, []string{"--region", "eu-west-1", "--offline"}},
		{[]string{"--kms-key-id", "alias/aws/ebs"}, []string{"--kms-key-id", "alias/aws/ebs", "describe-key"}},
		{[]string{"--volume-id", "vol-12"}, []string{"--volume-id", `"vol-12"`}},
		{[]string{"extra"}, []string{"extra"}},
	} {
		r := h.monagent(append([]string{"iam-policy"}, tt.args...)...)
		if r.code != 2 {
			t.Errorf("%v: exit %d, want 2\n%s", tt.args, r.code, r.stderr)
		}
		for _, s := range tt.says {
			if !strings.Contains(r.stderr, s) {
				t.Errorf("%v: stderr does not say %q:\n%s", tt.args, s, r.stderr)
			}
		}
		if r.stdout != "" {
			t.Errorf("%v: stdout %q", tt.args, r.stdout)
		}
	}
}
