package awsclient_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"github.com/monagent/monagent/internal/awsclient"
	"github.com/monagent/monagent/rig/awssim/simapi"
	"github.com/monagent/monagent/rig/awssim/simtest"
	"github.com/monagent/monagent/rig/awssim/ssmsim"
)

func ssmSim(t *testing.T) *simtest.Sim {
	t.Helper()
	svc, err := ssmsim.New(simtest.Identity(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := simtest.Serve(t, svc)
	if err := s.ApplyScenario([]byte("ssm:\n  parameters:\n    - {name: /p/x, value: v, type: String}\n")); err != nil {
		t.Fatal(err)
	}
	return s
}

func deadEndpoint(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return "http://" + ln.Addr().String()
}

func env(t *testing.T, kv map[string]string) {
	t.Helper()
	base := map[string]string{
		"AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
		"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "eu-west-1",
		"AWS_ENDPOINT_URL": "", "AWS_ENDPOINT_URL_SSM": "",
	}
	for k, v := range kv {
		base[k] = v
	}
	for k, v := range base {
		t.Setenv(k, v)
	}
}

func get(t *testing.T, o awsclient.Options) (*ssm.GetParameterOutput, error) {
	t.Helper()
	cfg, err := awsclient.Load(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return ssm.NewFromConfig(cfg).GetParameter(context.Background(), &ssm.GetParameterInput{Name: aws.String("/p/x")})
}

// The SDK's standard endpoint variables reach every client unchanged; the
// per-service one wins over the global one.
func TestEndpointVariables(t *testing.T) {
	s := ssmSim(t)
	tests := []struct {
		name string
		env  map[string]string
	}{
		{"AWS_ENDPOINT_URL", map[string]string{"AWS_ENDPOINT_URL": s.URL}},
		{"AWS_ENDPOINT_URL_SSM wins", map[string]string{"AWS_ENDPOINT_URL": deadEndpoint(t), "AWS_ENDPOINT_URL_SSM": s.URL}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env(t, tt.env)
			out, err := get(t, awsclient.Options{CallTimeout: 5 * time.Second})
			if err != nil || aws.ToString(out.Parameter.Value) != "v" {
				t.Fatalf("got %v %v", out, err)
			}
		})
	}
}

func TestRetriesThrottling(t *testing.T) {
	s := ssmSim(t)
	env(t, map[string]string{"AWS_ENDPOINT_URL": s.URL})
	s.SetFault("ssm.GetParameter", &simapi.Fault{Count: 4, Status: 400, Code: "ThrottlingException"})
	start := time.Now()
	if _, err := get(t, awsclient.Options{MaxAttempts: 6, MaxBackoff: 50 * time.Millisecond}); err != nil {
		t.Fatalf("4 throttles with 6 attempts: %v", err)
	}
	t.Logf("converged after 4 throttles in %v", time.Since(start))

	s.SetFault("ssm.GetParameter", &simapi.Fault{Count: 3, Status: 400, Code: "ThrottlingException"})
	_, err := get(t, awsclient.Options{MaxAttempts: 2, MaxBackoff: 50 * time.Millisecond})
	var te *ssmtypes.ParameterNotFound
	if err == nil || errors.As(err, &te) {
		t.Fatalf("2 attempts against 3 throttles succeeded: %v", err)
	}
}

func TestCallTimeout(t *testing.T) {
	s := ssmSim(t)
	env(t, map[string]string{"AWS_ENDPOINT_URL": s.URL})
	s.SetFault("ssm.GetParameter", &simapi.Fault{Delay: simapi.Duration{Duration: 5 * time.Second}})
	start := time.Now()
	_, err := get(t, awsclient.Options{CallTimeout: 300 * time.Millisecond, MaxAttempts: 3})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want deadline exceeded, got %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("call took %v despite a 300ms timeout", d)
	}
}
