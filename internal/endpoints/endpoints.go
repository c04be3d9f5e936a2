// Package endpoints is the endpoints step: the SSM parameters through
// which other stacks find this host (the Loki push URL, the Tempo OTLP
// endpoint) hold this host's values. A parameter is written only when its
// stored value differs.
package endpoints

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"

	"go.uber.org/zap"

	"github.com/monagent/monagent/internal/retry"
	"github.com/monagent/monagent/internal/ssmparam"
)

// Params reads and writes SSM parameters; *ssmparam.Store is one.
type Params interface {
	GetMany(ctx context.Context, names []string) (map[string]ssmparam.Parameter, []string, error)
	Put(ctx context.Context, name, value string) error
}

// Step publishes the endpoints.
type Step struct {
	Values map[string]string // parameter name -> value, expanded
	Params Params
	Log    *zap.Logger

	stale   []string
	warning string
	lastSum string // memo: the values last written, digested
	checked bool
}

// Restore implements engine.Memoizer.
func (s *Step) Restore(memo map[string]string) { s.lastSum = memo["values_sha256"] }

// Memo implements engine.Memoizer.
func (s *Step) Memo() map[string]string { return map[string]string{"values_sha256": s.sum()} }

// Warning implements engine.Warner.
func (s *Step) Warning() string { return s.warning }

func (s *Step) sum() string {
	h := sha256.New()
	for _, k := range slices.Sorted(maps.Keys(s.Values)) {
		fmt.Fprintf(h, "%s=%s;", k, s.Values[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Fingerprint digests the values.
func (s *Step) Fingerprint(context.Context) (string, error) { return s.sum(), nil }

// Check reads the stored values (one batched read) and passes when each
// holds this host's value. When SSM cannot be reached and the last run
// wrote these very values, that is a warning, not a failure.
func (s *Step) Check(ctx context.Context) (bool, error) {
	names := slices.Sorted(maps.Keys(s.Values))
	found, _, err := s.Params.GetMany(ctx, names)
	if err != nil {
		if retry.Unreachable(err) && s.lastSum == s.sum() {
			s.warning = fmt.Sprintf("could not read the endpoint parameters (%v); the last run wrote these values", err)
			s.Log.Warn("endpoint parameters unreadable; the last run wrote them", zap.Error(err))
			return true, nil
		}
		return false, fmt.Errorf("endpoints: %w", err)
	}
	s.stale = nil
	for _, n := range names {
		if p, ok := found[n]; !ok || p.Value != s.Values[n] {
			s.stale = append(s.stale, n)
		}
	}
	s.checked = true
	return len(s.stale) == 0, nil
}

// Apply writes the parameters whose value differs.
func (s *Step) Apply(ctx context.Context) error {
	if !s.checked {
		if _, err := s.Check(ctx); err != nil {
			return err
		}
	}
	for _, n := range s.stale {
		if err := s.Params.Put(ctx, n, s.Values[n]); err != nil {
			if retry.Code(err) == "AccessDeniedException" {
				return retry.PermanentError(fmt.Errorf("endpoints: %w: the instance role needs ssm:PutParameter on %s", err, n))
			}
			return fmt.Errorf("endpoints: %w", err)
		}
		s.Log.Info("endpoint published", zap.String("parameter", n), zap.String("value", s.Values[n]))
	}
	s.stale = nil
	return nil
}
