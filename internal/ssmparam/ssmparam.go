// Package ssmparam reads and writes SSM parameters for one run: each
// parameter is asked of AWS at most once (in batches of ten), a read that
// failed because AWS could not be reached is not retried within the run,
// and every SecureString value is registered with the redactor before
// anything else sees it.
package ssmparam

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/monagent/monagent/internal/retry"
)

// batch is the most names GetParameters takes in one call.
const batch = 10

// API is the part of *ssm.Client the store uses.
type API interface {
	GetParameter(ctx context.Context, in *ssm.GetParameterInput, optFns ...func(*ssm.Options)) (*ssm.GetParameterOutput, error)
	GetParameters(ctx context.Context, in *ssm.GetParametersInput, optFns ...func(*ssm.Options)) (*ssm.GetParametersOutput, error)
	PutParameter(ctx context.Context, in *ssm.PutParameterInput, optFns ...func(*ssm.Options)) (*ssm.PutParameterOutput, error)
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

// ErrNotFound is wrapped by the error for a parameter that does not exist.
var ErrNotFound = errors.New("parameter not found")

// Store reads parameters through a per-run cache.
type Store struct {
	api     API
	secrets Secrets

	mu      sync.Mutex
	cache   map[string]Parameter
	missing map[string]bool
	down    error // AWS could not be reached: the rest of the run does not ask again
	calls   int
}

// New returns a Store reading through api and registering SecureString
// values with secrets.
func New(api API, secrets Secrets) *Store {
	return &Store{api: api, secrets: secrets, cache: map[string]Parameter{}, missing: map[string]bool{}}
}

// Get returns the parameter, decrypted. optFns tune the call, e.g. fewer
// attempts when the caller has a fallback.
func (s *Store) Get(ctx context.Context, name string, optFns ...func(*ssm.Options)) (Parameter, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fetch(ctx, []string{name}, optFns); err != nil {
		return Parameter{}, err
	}
	return s.lookup(name)
}

// Prefetch reads every name not read yet, ten to a call: a run that
// names its parameters up front makes one call for all of them. Missing
// parameters are not an error here; Get reports them.
func (s *Store) Prefetch(ctx context.Context, names []string, optFns ...func(*ssm.Options)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fetch(ctx, names, optFns)
}

// GetMany returns the parameters that exist among names, and the names
// that do not.
func (s *Store) GetMany(ctx context.Context, names []string) (map[string]Parameter, []string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fetch(ctx, names, nil); err != nil {
		return nil, nil, err
	}
	found := map[string]Parameter{}
	var missing []string
	for _, n := range names {
		if p, ok := s.cache[n]; ok {
			found[n] = p
		} else {
			missing = append(missing, n)
		}
	}
	return found, missing, nil
}

func (s *Store) lookup(name string) (Parameter, error) {
	if p, ok := s.cache[name]; ok {
		return p, nil
	}
	return Parameter{}, fmt.Errorf("SSM parameter %s: %w", name, ErrNotFound)
}

// fetch reads the names not known yet. Called with mu held.
func (s *Store) fetch(ctx context.Context, names []string, optFns []func(*ssm.Options)) error {
	var todo []string
	for _, n := range names {
		if _, ok := s.cache[n]; !ok && !s.missing[n] && !slices.Contains(todo, n) {
			todo = append(todo, n)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	if s.down != nil {
		return s.down
	}
	for chunk := range slices.Chunk(todo, batch) {
		if err := s.getBatch(ctx, chunk, optFns); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) getBatch(ctx context.Context, names []string, optFns []func(*ssm.Options)) error {
	s.calls++
	out, err := s.api.GetParameters(ctx, &ssm.GetParametersInput{Names: names, WithDecryption: aws.Bool(true)}, optFns...)
	if err != nil {
		err = fmt.Errorf("read SSM parameters %v: %w", names, err)
		if retry.Unreachable(err) {
			s.down = err
		}
		return err
	}
	for _, p := range out.Parameters {
		s.keep(p)
	}
	for _, n := range out.InvalidParameters {
		s.missing[n] = true
	}
	return nil
}

func (s *Store) keep(p types.Parameter) {
	v := Parameter{Name: aws.ToString(p.Name), Value: aws.ToString(p.Value), Type: p.Type, Version: p.Version}
	if v.Type == types.ParameterTypeSecureString && s.secrets != nil {
		s.secrets.Add(v.Value)
	}
	s.cache[v.Name] = v
	delete(s.missing, v.Name)
}

// Create stores value as a new SecureString parameter, and returns the
// value that holds afterwards: value, or the one already stored when the
// parameter exists (get-or-create: a generated secret is never replaced).
// value is registered as a secret before it is sent anywhere.
func (s *Store) Create(ctx context.Context, name, value string) (Parameter, error) {
	if s.secrets != nil {
		s.secrets.Add(value)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	out, err := s.api.PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String(name), Value: aws.String(value),
		Type: types.ParameterTypeSecureString, Overwrite: aws.Bool(false)})
	switch {
	case err == nil:
		p := Parameter{Name: name, Value: value, Type: types.ParameterTypeSecureString, Version: out.Version}
		s.cache[name] = p
		delete(s.missing, name)
		return p, nil
	case retry.Code(err) != "ParameterAlreadyExists":
		return Parameter{}, fmt.Errorf("create SSM parameter %s: %w", name, err)
	}
	// Someone (another instance, an earlier run that crashed before its
	// state was saved) created it first: theirs is the value.
	delete(s.missing, name)
	delete(s.cache, name)
	s.calls++
	got, err := s.api.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(name), WithDecryption: aws.Bool(true)})
	if err != nil {
		return Parameter{}, fmt.Errorf("read SSM parameter %s after it turned out to exist: %w", name, err)
	}
	s.keep(*got.Parameter)
	return s.cache[name], nil
}

// Put writes value to a String parameter, overwriting it. Callers compare
// first: Put always writes.
func (s *Store) Put(ctx context.Context, name, value string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	out, err := s.api.PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String(name), Value: aws.String(value),
		Type: types.ParameterTypeString, Overwrite: aws.Bool(true)})
	if err != nil {
		return fmt.Errorf("write SSM parameter %s: %w", name, err)
	}
	s.cache[name] = Parameter{Name: name, Value: value, Type: types.ParameterTypeString, Version: out.Version}
	delete(s.missing, name)
	return nil
}

// Calls is how many requests were sent to AWS.
func (s *Store) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}
