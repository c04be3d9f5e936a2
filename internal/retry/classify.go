package retry

import (
	"errors"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsretry "github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/smithy-go"
)

// Permanent marks an error that retrying cannot fix: a volume in another
// availability zone, a revoked KMS key, a foreign filesystem, a missing
// stack. The CLI gives it its own exit code, on which systemd does not
// restart the unit.
type Permanent struct{ Err error }

func (p *Permanent) Error() string { return p.Err.Error() }
func (p *Permanent) Unwrap() error { return p.Err }

// PermanentError marks err as permanent; nil stays nil.
func PermanentError(err error) error {
	if err == nil {
		return nil
	}
	return &Permanent{Err: err}
}

// TransientError marks err as worth retrying, for failures that are not
// AWS calls (a download cut short, a 503 from a web server).
func TransientError(err error) error {
	if err == nil {
		return nil
	}
	return &transient{err: err}
}

type transient struct{ err error }

func (t *transient) Error() string { return t.err.Error() }
func (t *transient) Unwrap() error { return t.err }

// RetryableError is the mark the AWS SDK's classifier reads.
func (t *transient) RetryableError() bool { return true }

// Permanently marks err permanent when AWS's answer is one no retry
// changes (access denied, not found, invalid input), so that systemd does
// not restart into it every 30 seconds.
func Permanently(err error) error {
	if err != nil && !IsPermanent(err) && Classify(err) == Fatal {
		return PermanentError(err)
	}
	return err
}

// IsPermanent reports whether err, or an error it wraps, is Permanent.
func IsPermanent(err error) bool {
	var p *Permanent
	return errors.As(err, &p)
}

// Class is what asking again can do about an error.
type Class int

const (
	// Other errors are neither clearly transient nor marked permanent.
	Other Class = iota
	// Throttled: the API asked us to slow down.
	Throttled
	// Transient: a 5xx, a timeout or a dropped connection; asking again helps.
	Transient
	// Fatal: marked Permanent, or an AWS answer that no retry changes
	// (access denied, not found, invalid input).
	Fatal
)

func (c Class) String() string {
	switch c {
	case Throttled:
		return "throttled"
	case Transient:
		return "transient"
	case Fatal:
		return "permanent"
	}
	return "other"
}

// Classify sorts err. It looks through wrapping, so a step's own message
// around an SDK error classifies like the SDK error.
func Classify(err error) Class {
	switch {
	case err == nil:
		return Other
	case IsPermanent(err):
		return Fatal
	case isThrottle(err):
		return Throttled
	case awsretry.IsErrorRetryables(awsretry.DefaultRetryables).IsErrorRetryable(err) == aws.TrueTernary:
		return Transient
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		if ae.ErrorFault() == smithy.FaultServer {
			return Transient
		}
		if fatalCode(ae.ErrorCode()) {
			return Fatal
		}
	}
	return Other
}

// Retryable reports whether waiting and asking again can help:
// throttling, 5xx, timeouts and connection errors.
func Retryable(err error) bool {
	c := Classify(err)
	return c == Throttled || c == Transient
}

// Unreachable reports whether err means AWS could not be asked at all or
// kept failing: what a converged host may shrug off as a warning.
func Unreachable(err error) bool {
	if Retryable(err) {
		return true
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return false
	}
	// No API answer at all: a deadline, a refused connection, exhausted
	// retries whose last error was one of those.
	return !IsPermanent(err)
}

func isThrottle(err error) bool {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return false
	}
	_, ok := awsretry.DefaultThrottleErrorCodes[ae.ErrorCode()]
	return ok
}

// fatalCode lists answers that mean the request itself cannot succeed.
func fatalCode(code string) bool {
	switch {
	case code == "AccessDenied", code == "AccessDeniedException", code == "UnauthorizedOperation",
		code == "ValidationError", code == "ValidationException", code == "InvalidParameterValue",
		code == "ParameterNotFound", code == "NoSuchBucket":
		return true
	case strings.HasSuffix(code, ".NotFound"), strings.HasSuffix(code, ".Malformed"):
		return true
	}
	return false
}

// Code is the AWS error code inside err, or "".
func Code(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// Message is the AWS error message inside err, or "".
func Message(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorMessage()
	}
	return ""
}
