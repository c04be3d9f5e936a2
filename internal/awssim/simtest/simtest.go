// Package simtest serves awssim services in-process for the tests of the
// packages that call AWS.
package simtest

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/monagent/monagent/internal/awssim"
	"github.com/monagent/monagent/internal/awssim/simapi"
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
