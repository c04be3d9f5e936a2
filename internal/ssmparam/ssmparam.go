// Package ssmparam reads SSM parameters for one run: each parameter is
// asked of AWS at most once, and every SecureString value is registered
// with the redactor before anything else sees it.
package ssmparam

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/monagent/monagent/internal/retry"
)

// API is the part of *ssm.Client the store uses.
type API interface {
	GetParameter(ctx context.Context, in *ssm.GetParameterInput, optFns ...func(*ssm.Options)) (*ssm.GetParameterOutput, error)
}

// Secrets learns secret values so that they are masked wherever they would
// be written; *logging.Redactor is one.
type Secrets interface {
	Add(secret string)
}

// Parameter is one parameter's current value.
type Parameter struct {
	Name    string
	Value   string
	Type    types.ParameterType
	Version int64
}

// ErrNotFound is wrapped by Get's error for a parameter that does not
// exist.
var ErrNotFound = errors.New("parameter not found")

// Store reads parameters through a per-run cache.
type Store struct {
	api     API
	secrets Secrets

	mu    sync.Mutex
	cache map[string]Parameter
	calls int
}

// New returns a Store reading through api and registering SecureString
// values with secrets.
func New(api API, secrets Secrets) *Store {
	return &Store{api: api, secrets: secrets, cache: map[string]Parameter{}}
}

// Get returns the parameter, decrypted. A value read once in this run is
// not asked for again; a failed read is, since it may have been a passing
// outage. optFns tune the call, e.g. fewer attempts when the caller has a
// fallback.
func (s *Store) Get(ctx context.Context, name string, optFns ...func(*ssm.Options)) (Parameter, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.cache[name]; ok {
		return p, nil
	}
	s.calls++
	out, err := s.api.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(name), WithDecryption: aws.Bool(true)}, optFns...)
	if err != nil {
		if retry.Code(err) == "ParameterNotFound" {
			return Parameter{}, fmt.Errorf("SSM parameter %s: %w (%w)", name, ErrNotFound, err)
		}
		return Parameter{}, fmt.Errorf("read SSM parameter %s: %w", name, err)
	}
	if out.Parameter == nil || out.Parameter.Value == nil {
		return Parameter{}, fmt.Errorf("SSM parameter %s has no value", name)
	}
	p := Parameter{Name: name, Value: *out.Parameter.Value, Type: out.Parameter.Type, Version: out.Parameter.Version}
	if p.Type == types.ParameterTypeSecureString && s.secrets != nil {
		s.secrets.Add(p.Value)
	}
	s.cache[name] = p
	return p, nil
}

// Calls is how many reads were sent to AWS.
func (s *Store) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}
