package imds

import (
	"context"
	"errors"
	"fmt"
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

// documentPath is the instance identity document: every field Fetch needs
// in one answer, after the token.
const documentPath = "dynamic/instance-identity/document"

// Fetch reads the instance's identity.
func Fetch(ctx context.Context, c *awsimds.Client) (Identity, error) {
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	doc, err := c.GetInstanceIdentityDocument(ctx, &awsimds.GetInstanceIdentityDocumentInput{})
	if err != nil {
		return Identity{}, explain(documentPath, err)
	}
	id := Identity{InstanceID: doc.InstanceID, Region: doc.Region, AZ: doc.AvailabilityZone, PrivateIP: doc.PrivateIP}
	for name, v := range map[string]string{"instanceId": id.InstanceID, "region": id.Region,
		"availabilityZone": id.AZ, "privateIp": id.PrivateIP} {
		if strings.TrimSpace(v) == "" {
			return Identity{}, fmt.Errorf("instance metadata: %s has no %s", documentPath, name)
		}
	}
	return id, nil
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
