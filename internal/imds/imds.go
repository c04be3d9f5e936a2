package imds

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsimds "github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// Timeout bounds the whole identity lookup: IMDS answers in milliseconds on
// an instance, and waiting longer only delays the FAILURE signal.
const Timeout = 15 * time.Second

// NewClient returns an IMDSv2-only client: no fallback to IMDSv1.
func NewClient(cfg aws.Config) *awsimds.Client {
	return awsimds.NewFromConfig(cfg, func(o *awsimds.Options) {
		o.EnableFallback = aws.FalseTernary
	})
}

// Fetch reads the instance's identity.
func Fetch(ctx context.Context, c *awsimds.Client) (Identity, error) {
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	var id Identity
	fields := []struct {
		path string
		dst  *string
	}{
		{"instance-id", &id.InstanceID},
		{"placement/region", &id.Region},
		{"placement/availability-zone", &id.AZ},
		{"local-ipv4", &id.PrivateIP},
	}
	for _, f := range fields {
		v, err := get(ctx, c, f.path)
		if err != nil {
			return Identity{}, explain(f.path, err)
		}
		*f.dst = v
	}
	return id, nil
}

func get(ctx context.Context, c *awsimds.Client, path string) (string, error) {
	out, err := c.GetMetadata(ctx, &awsimds.GetMetadataInput{Path: path})
	if err != nil {
		return "", err
	}
	defer out.Content.Close()
	b, err := io.ReadAll(io.LimitReader(out.Content, 4096))
	if err != nil {
		return "", err
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", errors.New("empty answer")
	}
	return v, nil
}

// explain turns an IMDS failure into the operator's next move.
func explain(path string, err error) error {
	status := 0
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	msg := err.Error()
	// The SDK reports a refused token PUT without wrapping the response
	// error, so the token failure is recognised by its text too.
	if strings.Contains(msg, "failed to get API token") {
		for _, code := range []int{http.StatusForbidden, http.StatusNotFound, http.StatusMethodNotAllowed} {
			if status == code || strings.Contains(msg, fmt.Sprintf("StatusCode: %d", code)) {
				return fmt.Errorf("instance metadata: the IMDSv2 token request was refused (HTTP %d); monagent uses IMDSv2 only: "+
					"allow PUT /latest/api/token (instance metadata options HttpTokens=required, HttpPutResponseHopLimit>=1) "+
					"or remove the proxy or firewall rule that blocks it: %w", code, err)
			}
		}
	}
	if status == http.StatusUnauthorized {
		return fmt.Errorf("instance metadata: %s was refused with a token (HTTP 401): %w", path, err)
	}
	if status != 0 {
		return fmt.Errorf("instance metadata: reading %s: %w", path, err)
	}
	return fmt.Errorf("instance metadata service not reachable (reading %s): %w; monagent must run on an EC2 instance "+
		"with the metadata endpoint enabled (or AWS_EC2_METADATA_SERVICE_ENDPOINT set); check that no security "+
		"group, firewall or proxy blocks 169.254.169.254", path, err)
}
