package imds

import (
	"context"
	"fmt"

	awsimds "github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
)

// Step is the metadata step: it fills the Identity every later step reads.
type Step struct {
	Client *awsimds.Client
	ID     *Identity
	// Learned runs once the identity is known (region for the AWS clients,
	// template variables for the configuration).
	Learned func(ctx context.Context, id Identity) error
}

func (s *Step) Name() string { return "metadata" }

// Fingerprint is constant: the identity is re-read on every run anyway.
func (s *Step) Fingerprint(context.Context) (string, error) { return "imdsv2", nil }

// Check passes once this process knows the identity.
func (s *Step) Check(context.Context) (bool, error) { return s.ID.InstanceID != "", nil }

func (s *Step) Apply(ctx context.Context) error {
	id, err := Fetch(ctx, s.Client)
	if err != nil {
		return err
	}
	*s.ID = id
	if s.Learned != nil {
		if err := s.Learned(ctx, id); err != nil {
			return fmt.Errorf("after reading the instance identity: %w", err)
		}
	}
	return nil
}
