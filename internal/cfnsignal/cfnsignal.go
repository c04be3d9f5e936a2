// Package cfnsignal sends the CloudFormation resource signal that tells the
// stack this instance is up: SUCCESS once the data volume is mounted, or
// FAILURE at once when bootstrap fails before that, so the stack fails in
// seconds instead of waiting out its CreationPolicy timeout.
package cfnsignal

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/aws/smithy-go"
	"github.com/monagent/monagent/internal/engine"
	"github.com/monagent/monagent/internal/imds"
	"go.uber.org/zap"
)

// API is the part of the CloudFormation client the signal needs.
type API interface {
	SignalResource(ctx context.Context, in *cloudformation.SignalResourceInput,
		optFns ...func(*cloudformation.Options)) (*cloudformation.SignalResourceOutput, error)
}

// Signaler sends signals for one stack resource.
type Signaler struct {
	API      API
	Stack    string
	Resource string
	Log      *zap.Logger
}

// Send signals status with UniqueId = instanceID. A resource that no longer
// waits for signals (stack already complete, or already failed) answers
// "cannot be signaled": that is logged and treated as done, since there is
// nothing left to tell CloudFormation.
func (s *Signaler) Send(ctx context.Context, instanceID string, status types.ResourceSignalStatus) error {
	_, err := s.API.SignalResource(ctx, &cloudformation.SignalResourceInput{
		StackName:         aws.String(s.Stack),
		LogicalResourceId: aws.String(s.Resource),
		UniqueId:          aws.String(instanceID),
		Status:            status,
	})
	if err == nil {
		s.Log.Info("cloudformation signal sent", zap.String("stack", s.Stack),
			zap.String("resource", s.Resource), zap.String("unique_id", instanceID), zap.String("status", string(status)))
		return nil
	}
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return fmt.Errorf("signal %s to %s/%s: %w", status, s.Stack, s.Resource, err)
	}
	msg := ae.ErrorMessage()
	switch {
	case ae.ErrorCode() == "ValidationError" && strings.Contains(msg, "cannot be signaled"):
		s.Log.Info("cloudformation resource no longer waits for signals; nothing to send",
			zap.String("stack", s.Stack), zap.String("resource", s.Resource), zap.String("answer", msg))
		return nil
	case ae.ErrorCode() == "ValidationError" && strings.Contains(msg, "does not exist"):
		return engine.PermanentError(fmt.Errorf("signal %s: stack %q or resource %q does not exist (%s): "+
			"check stack.name and stack.resource in the configuration", status, s.Stack, s.Resource, msg))
	case ae.ErrorCode() == "AccessDenied" || ae.ErrorCode() == "AccessDeniedException":
		return engine.PermanentError(fmt.Errorf("signal %s: access denied (%s): the instance role needs "+
			"cloudformation:SignalResource on stack %s", status, msg, s.Stack))
	}
	return fmt.Errorf("signal %s to %s/%s: %w", status, s.Stack, s.Resource, err)
}

// Step is the signal step: one SUCCESS per instance, remembered in state.
type Step struct {
	Signaler *Signaler
	ID       *imds.Identity

	signaled string // instance id a SUCCESS was sent for
	at       string
}

func (s *Step) Name() string { return "signal" }

func (s *Step) Fingerprint(context.Context) (string, error) {
	return fmt.Sprintf("%s/%s/%s", s.Signaler.Stack, s.Signaler.Resource, s.ID.InstanceID), nil
}

// Check passes when this instance has already signalled: a second bootstrap
// must never signal again.
func (s *Step) Check(context.Context) (bool, error) {
	return s.ID.InstanceID != "" && s.signaled == s.ID.InstanceID, nil
}

func (s *Step) Apply(ctx context.Context) error {
	if s.ID.InstanceID == "" {
		return errors.New("instance id unknown: the metadata step must run first")
	}
	if err := s.Signaler.Send(ctx, s.ID.InstanceID, types.ResourceSignalStatusSuccess); err != nil {
		return err
	}
	s.signaled, s.at = s.ID.InstanceID, time.Now().UTC().Format(time.RFC3339)
	return nil
}

func (s *Step) Restore(memo map[string]string) {
	s.signaled, s.at = memo["signaled_instance"], memo["signaled_at"]
}

func (s *Step) Memo() map[string]string {
	return map[string]string{"signaled_instance": s.signaled, "signaled_at": s.at}
}
