package imds_test

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/monagent/monagent/internal/awsclient"
)

// loadConfig builds the configuration exactly as monagent does, so the
// endpoint comes from AWS_EC2_METADATA_SERVICE_ENDPOINT.
func loadConfig(t *testing.T) (aws.Config, error) {
	t.Helper()
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	return awsclient.Load(context.Background(), awsclient.Options{Region: "eu-west-1"})
}
