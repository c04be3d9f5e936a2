// Package simtest serves awssim services in-process for the tests of the
// packages that call AWS.
package simtest

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/monagent/monagent/rig/awssim"
	"github.com/monagent/monagent/rig/awssim/simapi"
)

// Identity is the simulated instance the tests use.
func Identity() simapi.Identity {
	return simapi.Identity{
		Region:     "eu-west-1",
		AZ:         "eu-west-1a",
		InstanceID: "i-0123456789abcdef0",
		PrivateIP:  "10.0.1.10",
		AccountID:  "123456789012",
	}
}

// Sim is a running simulator.
type Sim struct {
	*awssim.Server
	URL string
}

// Serve mounts services on a loopback test server, stopped with the test.
func Serve(t testing.TB, services ...simapi.Service) *Sim {
	t.Helper()
	srv := awssim.NewServer(services...)
	ts := httptest.NewServer(srv)
	t.Cleanup(func() {
		ts.Close()
		if err := srv.Close(); err != nil {
			t.Errorf("close awssim: %v", err)
		}
	})
	return &Sim{Server: srv, URL: ts.URL}
}

// Config is an SDK configuration aimed at the simulator with static
// credentials.
func (s *Sim) Config() aws.Config {
	return aws.Config{
		Region:       Identity().Region,
		BaseEndpoint: aws.String(s.URL),
		Credentials: aws.CredentialsProviderFunc(func(ctx context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "test", SecretAccessKey: "test", Source: "simtest"}, nil
		}),
	}
}

// AWSCLIPath is the AWS CLI v2; an older v1 may come first on PATH.
const AWSCLIPath = "/usr/bin/aws"

// AWSCLI runs the AWS CLI against the simulator at endpoint and returns its
// standard output; a failure's error holds the CLI's standard error. The
// CLI gets dummy credentials and Identity's region and no configuration or
// credentials of the user running the tests, no instance metadata and no
// pager, so that what it sends depends only on args.
func AWSCLI(t testing.TB, endpoint string, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.Command(AWSCLIPath, append([]string{"--endpoint-url", endpoint}, args...)...)
	cmd.Env = []string{
		"PATH=/usr/bin:/bin",
		"HOME=" + t.TempDir(),
		"AWS_ACCESS_KEY_ID=x",
		"AWS_SECRET_ACCESS_KEY=x",
		"AWS_DEFAULT_REGION=" + Identity().Region,
		"AWS_CONFIG_FILE=/dev/null",
		"AWS_SHARED_CREDENTIALS_FILE=/dev/null",
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_PAGER=",
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("aws %s: %w\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return stdout.Bytes(), nil
}

// SeedStack is the stack bundle fixture: shared/fixtures/seed-stack beside
// the repository, wherever the checkout lives.
func SeedStack(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
	p := filepath.Join(dir, "..", "shared", "fixtures", "seed-stack")
	if _, err := os.Stat(filepath.Join(p, "docker-compose.yml")); err != nil {
		t.Fatalf("seed-stack fixture not found beside the repository: %v", err)
	}
	return p
}
