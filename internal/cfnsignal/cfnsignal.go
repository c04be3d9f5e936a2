// Package cfnsignal sends the CloudFormation resource signal that tells the
// stack this instance is up: SUCCESS once the data volume is mounted, or
// FAILURE at once when bootstrap fails before that, so the stack fails in
// seconds instead of waiting out its CreationPolicy timeout.
package cfnsignal

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"go.uber.org/zap"

	"github.com/monagent/monagent/internal/retry"
)

// API is the part of the CloudFormation client the signal needs.
type API interface {
	SignalResource(ctx context.Context, in *cloudformation.SignalResourceInput,
		optFns ...func(*cloudformation.Options)) (*cloudformation.SignalResourceOutput, error)
}

// Outcome is what became of a signal.
type Outcome string

const (
	// Sent: CloudFormation took the signal.
	Sent Outcome = "sent"
	// Complete: the resource no longer waits because it completed; the
	// signal is not needed.
	Complete Outcome = "complete"
	// NotAwaited: the stack rolled back, failed or is being deleted; the
	// signal was not counted and this instance is not part of a healthy
	// stack.
	NotAwaited Outcome = "not-awaited"
)

// Signaler sends signals for one stack resource.
type Signaler struct {
	API      API
	Stack    string
	Resource string
	Log      *zap.Logger
}

// stateInAnswer finds the stack or resource status CloudFormation names in
// "... is in ROLLBACK_COMPLETE state and cannot be signaled".
var stateInAnswer = regexp.MustCompile(`is in ([A-Z_]+) state`)

// Send signals status with UniqueId = instanceID. A resource that no longer
// waits for signals answers "cannot be signaled": for one that completed
// that is Complete, for a stack that rolled back or failed it is
// NotAwaited — nothing to send either way, and not an error.
func (s *Signaler) Send(ctx context.Context, instanceID string, status types.ResourceSignalStatus) (Outcome, error) {
	_, err := s.API.SignalResource(ctx, &cloudformation.SignalResourceInput{
		StackName:         aws.String(s.Stack),
		LogicalResourceId: aws.String(s.Resource),
		UniqueId:          aws.String(instanceID),
		Status:            status,
	})
	log := s.Log.With(zap.String("stack", s.Stack), zap.String("resource", s.Resource),
		zap.String("unique_id", instanceID), zap.String("status", string(status)))
	if err == nil {
		log.Info("cloudformation signal sent")
		return Sent, nil
	}
	code, msg := retry.Code(err), retry.Message(err)
	switch {
	case code == "ValidationError" && strings.Contains(msg, "cannot be signaled"):
		if o := answerOutcome(msg); o == NotAwaited {
			log.Warn("the stack no longer waits for this instance: it rolled back or failed, so this signal was not counted",
				zap.String("answer", msg))
			return o, nil
		}
		log.Info("cloudformation resource no longer waits for signals; nothing to send", zap.String("answer", msg))
		return Complete, nil
	case code == "ValidationError" && strings.Contains(msg, "does not exist"):
		return "", retry.PermanentError(fmt.Errorf("signal %s: stack %q or resource %q does not exist (%s): "+
			"check stack.name and stack.resource in the configuration", status, s.Stack, s.Resource, msg))
	case code == "AccessDenied" || code == "AccessDeniedException":
		return "", retry.PermanentError(fmt.Errorf("signal %s: access denied (%s): the instance role needs "+
			"cloudformation:SignalResource on stack %s", status, msg, s.Stack))
	}
	return "", fmt.Errorf("signal %s to %s/%s: %w", status, s.Stack, s.Resource, err)
}

// answerOutcome reads the state CloudFormation names: a *_COMPLETE state
// without ROLLBACK completed; anything else (ROLLBACK_*, *_FAILED,
// DELETE_*) did not.
func answerOutcome(msg string) Outcome {
	m := stateInAnswer.FindStringSubmatch(msg)
	if m == nil {
		return Complete
	}
	st := m[1]
	if strings.HasSuffix(st, "_COMPLETE") && !strings.Contains(st, "ROLLBACK") && !strings.HasPrefix(st, "DELETE") {
		return Complete
	}
	return NotAwaited
}

// Step is the signal step: one SUCCESS per instance, remembered in state.
type Step struct {
	Signaler   *Signaler
	InstanceID string

	signaled string // instance id a SUCCESS was settled for
	at       string
	outcome  Outcome
	answer   string
}

// Fingerprint names the resource and the instance.
func (s *Step) Fingerprint(context.Context) (string, error) {
	return fmt.Sprintf("%s/%s/%s", s.Signaler.Stack, s.Signaler.Resource, s.InstanceID), nil
}

// Check passes when this instance's signal is settled: a second run must
// never signal again.
func (s *Step) Check(context.Context) (bool, error) {
	return s.InstanceID != "" && s.signaled == s.InstanceID, nil
}

// Apply sends SUCCESS, unless the memo says this instance's signal is
// already settled (a run stopped right after sending it).
func (s *Step) Apply(ctx context.Context) error {
	if s.signaled == s.InstanceID {
		return nil
	}
	o, err := s.Signaler.Send(ctx, s.InstanceID, types.ResourceSignalStatusSuccess)
	if err != nil {
		return err
	}
	s.signaled, s.at, s.outcome = s.InstanceID, time.Now().UTC().Format(time.RFC3339), o
	if o == NotAwaited {
		s.answer = fmt.Sprintf("stack %s no longer waits for this instance (it rolled back or failed): SUCCESS was not counted", s.Signaler.Stack)
	}
	return nil
}

// Warning implements engine.Warner: a stack that rolled back is said so in
// status.
func (s *Step) Warning() string { return s.answer }

// Restore implements engine.Memoizer.
func (s *Step) Restore(memo map[string]string) {
	s.signaled, s.at = memo["signaled_instance"], memo["signaled_at"]
	s.outcome, s.answer = Outcome(memo["outcome"]), memo["note"]
}

// Memo implements engine.Memoizer.
func (s *Step) Memo() map[string]string {
	m := map[string]string{"signaled_instance": s.signaled, "signaled_at": s.at, "outcome": string(s.outcome)}
	if s.answer != "" {
		m["note"] = s.answer
	}
	return m
}

// Settled reports whether a state memo records this instance's SUCCESS as
// settled (sent, or not needed): the FAILURE signal must not follow it.
func Settled(memo map[string]string, instanceID string) bool {
	return instanceID != "" && memo["signaled_instance"] == instanceID
}
