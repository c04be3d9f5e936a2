package host_test

import (
	"context"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/monagent/monagent/internal/awsclient"
	"github.com/monagent/monagent/internal/command"
	"github.com/monagent/monagent/internal/config"
	"github.com/monagent/monagent/internal/host"
	"github.com/monagent/monagent/internal/logging"
	"github.com/monagent/monagent/rig/awssim/imdssim"
	"github.com/monagent/monagent/rig/awssim/simtest"
)

func discover(t *testing.T, doc string) (*host.Host, error) {
	t.Helper()
	svc, err := imdssim.New(simtest.Identity())
	if err != nil {
		t.Fatal(err)
	}
	sim := simtest.Serve(t, svc)
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", sim.URL)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "")
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	t.Setenv("AWS_REGION", "")
	cfg, err := config.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	awsCfg, err := awsclient.Load(context.Background(), awsclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return host.Discover(context.Background(), host.Options{Root: "/r", Config: cfg, AWS: awsCfg,
		Run: command.Exec{}, Log: zap.NewNop(), Secrets: logging.NewRedactor()})
}

func TestDiscover(t *testing.T) {
	h, err := discover(t, "prefix: mon\nendpoints:\n  /{prefix}/loki/endpoint: 'http://{private_ip}:3100'\n")
	if err != nil {
		t.Fatal(err)
	}
	id := simtest.Identity()
	if h.Identity.InstanceID != id.InstanceID || h.AWS.Region != id.Region || h.Path("/data") != "/r/data" {
		t.Fatalf("host %+v, region %q", h.Identity, h.AWS.Region)
	}
	if got := h.Config.Endpoints["/mon/loki/endpoint"]; got != "http://"+id.PrivateIP+":3100" {
		t.Fatalf("endpoint not expanded for the instance: %q", got)
	}
	if h.EC2 == nil || h.CFN == nil || h.Params == nil {
		t.Fatal("clients missing")
	}
}

// cloud: auto is decided once per host: a host that found instance
// metadata stays on AWS (a later failure of IMDS is an error, never a
// quiet switch to local secrets), one that did not stays off it.
func TestCloudAutoPinned(t *testing.T) {
	auto := "prefix: acgs\ncloud: auto\nvolume: {kind: directory, mount_point: /var/lib/acgs}\nendpoints: {}\n"
	for _, tc := range []struct {
		name, imds string // "" for a metadata endpoint nobody answers on
		wantCloud  string
	}{
		{"metadata answers", "sim", config.CloudAWS},
		{"no metadata", "", config.CloudNone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			t.Setenv("AWS_CONFIG_FILE", "/dev/null")
			t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
			t.Setenv("AWS_REGION", "")
			endpoint := "http://127.0.0.1:9"
			if tc.imds != "" {
				svc, err := imdssim.New(simtest.Identity())
				if err != nil {
					t.Fatal(err)
				}
				endpoint = simtest.Serve(t, svc).URL
			}
			t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", endpoint)
			run := func() (*host.Host, error) {
				cfg, err := config.Parse([]byte(auto))
				if err != nil {
					t.Fatal(err)
				}
				awsCfg, err := awsclient.Load(context.Background(), awsclient.Options{})
				if err != nil {
					t.Fatal(err)
				}
				return host.Discover(context.Background(), host.Options{Root: root, Config: cfg, AWS: awsCfg,
					Run: command.Exec{}, Log: zap.NewNop(), Secrets: logging.NewRedactor()})
			}
			h, err := run()
			if err != nil {
				t.Fatal(err)
			}
			if h.Config.Cloud != tc.wantCloud || host.Pinned(root) != tc.wantCloud {
				t.Fatalf("cloud %s, pinned %q; want %s", h.Config.Cloud, host.Pinned(root), tc.wantCloud)
			}
			if tc.wantCloud == config.CloudAWS {
				// Metadata gone on the next run: an error naming the pin.
				t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9")
				if _, err := run(); err == nil || !strings.Contains(err.Error(), host.PinPath) {
					t.Fatalf("IMDS down on a pinned AWS host: %v", err)
				}
			}
		})
	}
}
