// Package awsclient builds the AWS SDK configuration every client shares:
// the SDK's default chain (so AWS_REGION, AWS_ENDPOINT_URL,
// AWS_ENDPOINT_URL_<SERVICE> and AWS_EC2_METADATA_SERVICE_ENDPOINT work
// unchanged), a standard retryer with backoff, and a timeout on every call.
package awsclient

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/smithy-go/logging"
	"github.com/aws/smithy-go/middleware"
	"go.uber.org/zap"
)

// Options tune the shared configuration.
type Options struct {
	Region      string        // empty: from the environment, else set later from IMDS
	CallTimeout time.Duration // bounds one API call, retries included
	MaxAttempts int
	MaxBackoff  time.Duration
	// Log receives the SDK's own messages, at debug: they must pass the
	// agent's redaction like every other line, not go to stderr.
	Log *zap.Logger
}

// Load returns the shared configuration.
func Load(ctx context.Context, o Options) (aws.Config, error) {
	if o.CallTimeout <= 0 {
		o.CallTimeout = 30 * time.Second
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 8
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 5 * time.Second
	}
	// Every attempt's wait fits in half the call's timeout: a call cut by
	// its timeout in the middle of a backoff would report the timeout, not
	// the throttling or the outage AWS answered.
	if o.MaxAttempts > 1 {
		o.MaxBackoff = min(o.MaxBackoff, o.CallTimeout/time.Duration(2*(o.MaxAttempts-1)))
	}
	opts := []func(*config.LoadOptions) error{
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(so *retry.StandardOptions) {
				so.MaxAttempts = o.MaxAttempts
				so.MaxBackoff = o.MaxBackoff
			})
		}),
		config.WithAPIOptions([]func(*middleware.Stack) error{callTimeout(o.CallTimeout)}),
		config.WithLogger(sdkLogger(o.Log)),
	}
	if o.Region != "" {
		opts = append(opts, config.WithRegion(o.Region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("load AWS configuration: %w", err)
	}
	return cfg, nil
}

// sdkLogger sends the SDK's messages to log at debug.
func sdkLogger(log *zap.Logger) logging.Logger {
	if log == nil {
		return logging.Nop{}
	}
	return logging.LoggerFunc(func(c logging.Classification, format string, v ...any) {
		log.Debug(fmt.Sprintf(format, v...), zap.String("from", "aws-sdk"), zap.String("class", string(c)))
	})
}

// callTimeout bounds a whole API call, every retry included, so a hung
// endpoint cannot stall a step past its own deadline. A call that succeeds
// may return a body still streaming (S3 GetObject): its context is left to
// expire at the deadline, which also bounds the read, instead of being
// cancelled under the reader.
func callTimeout(d time.Duration) func(*middleware.Stack) error {
	return func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("monagentCallTimeout",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (
				middleware.InitializeOutput, middleware.Metadata, error) {
				ctx, cancel := context.WithTimeout(ctx, d)
				out, md, err := next.HandleInitialize(ctx, in)
				if err != nil {
					cancel()
				} else {
					time.AfterFunc(d, cancel) // after the body has had its time
				}
				return out, md, err
			}), middleware.Before)
	}
}

// CallTimeout replaces the bound of every call of a client made from the
// loaded configuration: an archive upload takes longer than an API call.
func CallTimeout(d time.Duration) func(*middleware.Stack) error {
	return func(stack *middleware.Stack) error {
		_, _ = stack.Initialize.Remove("monagentCallTimeout")
		return callTimeout(d)(stack)
	}
}
