package doctor

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"github.com/aws/smithy-go"

	"github.com/monagent/monagent/internal/config"
	"github.com/monagent/monagent/internal/ssmparam"
)

// secretList records what was registered.
type secretList []string

func (s *secretList) Add(v string) { *s = append(*s, v) }

func (s secretList) has(v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

type fakeReader struct {
	params map[string]ssmparam.Parameter
	err    error
}

func (f fakeReader) GetMany(_ context.Context, names []string) (map[string]ssmparam.Parameter, []string, error) {
	if f.err != nil {
		return nil, nil, f.err
	}
	found := map[string]ssmparam.Parameter{}
	var missing []string
	for _, n := range names {
		if p, ok := f.params[n]; ok {
			found[n] = p
		} else {
			missing = append(missing, n)
		}
	}
	return found, missing, nil
}

func TestNeeds(t *testing.T) {
	want := map[string]Kind{
		"/monitoring-production/ebs/volume-id":                   Required,
		"/monitoring-production/ssm/scripts-bucket-name":         Required,
		"/monitoring-production/grafana/admin-password":          Required,
		"/monitoring-production/github/api-token":                Optional,
		"/monitoring-production/prometheus/metrics-bearer-token": Generated,
		"/monitoring-production/loki/endpoint":                   Written,
		"/monitoring-production/tempo/endpoint":                  Written,
	}
	needs := Needs(config.Defaults())
	if len(needs) != len(want) {
		t.Fatalf("%d needs, want %d: %+v", len(needs), len(want), needs)
	}
	for i, n := range needs {
		if k, ok := want[n.Name]; !ok || k != n.Kind {
			t.Errorf("%s: kind %d, want %d (known %t)", n.Name, n.Kind, k, ok)
		}
		if i > 0 && needs[i-1].Name >= n.Name {
			t.Errorf("not sorted: %s before %s", needs[i-1].Name, n.Name)
		}
	}
}

// A parameter named both by env and by endpoints is as strong as its
// strongest use.
func TestNeedsStrongestKind(t *testing.T) {
	c := config.Defaults()
	c.Endpoints = map[string]string{"/monitoring-production/grafana/admin-password": "x"}
	for _, n := range Needs(c) {
		if n.Name == "/monitoring-production/grafana/admin-password" && n.Kind != Required {
			t.Fatalf("kind %d, want Required", n.Kind)
		}
	}
}

func TestParameters(t *testing.T) {
	needs := []Need{
		{Name: "/p/volume-id", Kind: Required, Use: "volume.id_parameter", Type: "String", Value: "<vol>"},
		{Name: "/p/password", Kind: Required, Use: "env.PASSWORD", Type: "SecureString", Value: "<value>", Secret: true},
		{Name: "/p/user", Kind: Required, Use: "env.USER", Type: "SecureString", Value: "<value>", Secret: true},
		{Name: "/p/token", Kind: Optional, Use: "env.GITHUB_TOKEN", Type: "SecureString", Value: "<value>",
			Services: []string{"github-actions-exporter"}, Secret: true},
		{Name: "/p/generated", Kind: Generated, Use: "env.METRICS_TOKEN", Secret: true},
		{Name: "/p/endpoint", Kind: Written, Use: "endpoints"},
	}
	r := fakeReader{params: map[string]ssmparam.Parameter{
		"/p/volume-id": {Name: "/p/volume-id", Value: "vol-0123456789abcdef0", Type: types.ParameterTypeString, Version: 3},
		"/p/user":      {Name: "/p/user", Value: "plain-but-bound-for-env", Type: types.ParameterTypeString, Version: 1},
	}}
	var secrets secretList
	checks, values := Parameters(context.Background(), r, needs, &secrets)
	want := []struct {
		status Status
		subs   []string
	}{
		{OK, []string{"String, version 3 (volume.id_parameter)"}},
		{Fail, []string{"does not exist, and env.PASSWORD needs it", "aws ssm put-parameter --name /p/password --type SecureString --value '<value>'"}},
		{OK, []string{"String, version 1 (env.USER)"}},
		{Warn, []string{"github-actions-exporter is left out", "seed section 7", "aws ssm put-parameter --name /p/token --type SecureString"}},
		{OK, []string{"the env step generates it"}},
		{OK, []string{"the endpoints step writes it"}},
	}
	if len(checks) != len(want) {
		t.Fatalf("%d checks, want %d: %+v", len(checks), len(want), checks)
	}
	for i, w := range want {
		c := checks[i]
		if c.Name != "ssm "+needs[i].Name || c.Status != w.status {
			t.Errorf("%d: %+v, want status %d", i, c, w.status)
		}
		for _, s := range w.subs {
			if !strings.Contains(c.Detail, s) {
				t.Errorf("%s: %q lacks %q", c.Name, c.Detail, s)
			}
		}
	}
	if !secrets.has("plain-but-bound-for-env") || secrets.has("vol-0123456789abcdef0") {
		t.Errorf("registered %q: want the .env value, not the volume id", secrets)
	}
	if values["/p/volume-id"] != "vol-0123456789abcdef0" {
		t.Errorf("values %q", values)
	}
}

func TestParametersReadFailure(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"access denied", &smithy.GenericAPIError{Code: "AccessDeniedException", Message: "not authorized"},
			"the instance role needs ssm:GetParameters on /p/a"},
		{"unreachable", errors.New("dial tcp: connection refused"), "SSM cannot be reached from this host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checks, _ := Parameters(context.Background(), fakeReader{err: tt.err}, []Need{{Name: "/p/a"}}, &secretList{})
			if len(checks) != 1 || checks[0].Status != Fail || checks[0].Name != "ssm parameters" || !strings.Contains(checks[0].Detail, tt.want) {
				t.Fatalf("%+v, want one failure with %q", checks, tt.want)
			}
		})
	}
}
