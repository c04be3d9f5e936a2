package endpoints

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/aws/smithy-go"
	"go.uber.org/zap"

	"github.com/monagent/monagent/internal/retry"
	"github.com/monagent/monagent/internal/ssmparam"
)

type fakeParams struct {
	stored map[string]string
	getErr error
	putErr error

	gets [][]string
	puts []string
}

func (p *fakeParams) GetMany(_ context.Context, names []string) (map[string]ssmparam.Parameter, []string, error) {
	p.gets = append(p.gets, slices.Clone(names))
	if p.getErr != nil {
		return nil, nil, p.getErr
	}
	found := map[string]ssmparam.Parameter{}
	var missing []string
	for _, n := range names {
		if v, ok := p.stored[n]; ok {
			found[n] = ssmparam.Parameter{Name: n, Value: v}
		} else {
			missing = append(missing, n)
		}
	}
	return found, missing, nil
}

func (p *fakeParams) Put(_ context.Context, name, value string) error {
	p.puts = append(p.puts, name)
	if p.putErr != nil {
		return fmt.Errorf("write SSM parameter %s: %w", name, p.putErr)
	}
	p.stored[name] = value
	return nil
}

const (
	loki  = "/monitoring-production/loki/endpoint"
	tempo = "/monitoring-production/tempo/endpoint"
)

func values() map[string]string {
	return map[string]string{
		loki:  "http://10.0.1.10:3100/loki/api/v1/push",
		tempo: "http://10.0.1.10:4317",
	}
}

func step(p *fakeParams, memo map[string]string) *Step {
	s := &Step{Values: values(), Params: p, Log: zap.NewNop()}
	s.Restore(memo)
	return s
}

// run is one run that applies when Check fails, as the engine does; it
// returns the memo the engine keeps.
func run(t *testing.T, p *fakeParams, memo map[string]string) map[string]string {
	t.Helper()
	s := step(p, memo)
	ctx := context.Background()
	ok, err := s.Check(ctx)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if !ok {
		if err := s.Apply(ctx); err != nil {
			t.Fatalf("Apply: %v", err)
		}
		if ok, err := s.Check(ctx); err != nil || !ok {
			t.Fatalf("Check after Apply = %v, %v", ok, err)
		}
	}
	return s.Memo()
}

func TestWritesOnlyWhatDiffers(t *testing.T) {
	tests := []struct {
		name   string
		stored map[string]string
		puts   []string
	}{
		{"none stored", map[string]string{}, []string{loki, tempo}},
		{"one stale", map[string]string{loki: "http://10.0.1.99:3100/loki/api/v1/push", tempo: values()[tempo]}, []string{loki}},
		{"one missing", map[string]string{loki: values()[loki]}, []string{tempo}},
		{"trailing space differs", map[string]string{loki: values()[loki] + " ", tempo: values()[tempo]}, []string{loki}},
		{"all current", values(), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &fakeParams{stored: tt.stored}
			memo := run(t, p, nil)
			if !slices.Equal(p.puts, tt.puts) {
				t.Errorf("Put %v, want %v", p.puts, tt.puts)
			}
			for n, v := range values() {
				if p.stored[n] != v {
					t.Errorf("%s = %q, want %q", n, p.stored[n], v)
				}
			}
			// One batched read per Check; Apply reads nothing more.
			wantGets := 2
			if tt.puts == nil {
				wantGets = 1
			}
			if len(p.gets) != wantGets {
				t.Errorf("reads %v, want %d", p.gets, wantGets)
			}
			for _, g := range p.gets {
				if !slices.Equal(g, []string{loki, tempo}) {
					t.Errorf("read %v, want both names in one call", g)
				}
			}
			// A second run writes nothing.
			p.puts = nil
			run(t, p, memo)
			if len(p.puts) != 0 {
				t.Errorf("second run wrote %v", p.puts)
			}
		})
	}
}

func TestApplyWithoutCheck(t *testing.T) {
	p := &fakeParams{stored: map[string]string{tempo: values()[tempo]}}
	s := step(p, nil)
	if err := s.Apply(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.puts, []string{loki}) {
		t.Errorf("Put %v, want only %s", p.puts, loki)
	}
}

func TestOutage(t *testing.T) {
	throttled := fmt.Errorf("read SSM parameters: %w", &smithy.GenericAPIError{Code: "ThrottlingException"})
	refused := fmt.Errorf("read SSM parameters: %w", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")})
	denied := fmt.Errorf("read SSM parameters: %w", &smithy.GenericAPIError{Code: "AccessDeniedException"})
	p := &fakeParams{stored: map[string]string{}}
	memo := run(t, p, nil)
	otherMemo := map[string]string{"values_sha256": "0000"}

	tests := []struct {
		name    string
		err     error
		memo    map[string]string
		warning bool
	}{
		{"unreachable, memo matches", refused, memo, true},
		{"throttled, memo matches", throttled, memo, true},
		{"unreachable, other values last written", refused, otherMemo, false},
		{"unreachable, never written", refused, nil, false},
		{"access denied, memo matches", denied, memo, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &fakeParams{stored: values(), getErr: tt.err}
			s := step(p, tt.memo)
			ok, err := s.Check(context.Background())
			if tt.warning {
				if err != nil || !ok {
					t.Fatalf("Check = %v, %v; want true with a warning", ok, err)
				}
				if w := s.Warning(); !strings.Contains(w, "could not read") || !strings.Contains(w, "last run wrote") {
					t.Errorf("Warning() = %q", w)
				}
				return
			}
			if err == nil || ok {
				t.Fatalf("Check = %v, %v; want an error", ok, err)
			}
			if !errors.Is(err, tt.err) {
				t.Errorf("error %v does not wrap the SSM error", err)
			}
			if s.Warning() != "" {
				t.Errorf("Warning() = %q with an error", s.Warning())
			}
			if err := s.Apply(context.Background()); err == nil {
				t.Error("Apply succeeded although SSM could not be read")
			}
			if len(p.puts) != 0 {
				t.Errorf("wrote %v without knowing the stored values", p.puts)
			}
		})
	}
}

func TestPutErrors(t *testing.T) {
	tests := []struct {
		name      string
		err       error
		permanent bool
		want      []string
	}{
		{"access denied", &smithy.GenericAPIError{Code: "AccessDeniedException", Message: "not authorized to perform: ssm:PutParameter"},
			true, []string{"ssm:PutParameter", loki, "AccessDeniedException"}},
		{"throttled", &smithy.GenericAPIError{Code: "ThrottlingException"}, false, []string{loki}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &fakeParams{stored: map[string]string{}, putErr: tt.err}
			s := step(p, nil)
			if _, err := s.Check(context.Background()); err != nil {
				t.Fatal(err)
			}
			err := s.Apply(context.Background())
			if err == nil {
				t.Fatal("Apply succeeded")
			}
			if retry.IsPermanent(err) != tt.permanent {
				t.Errorf("error %v: permanent = %t, want %t", err, retry.IsPermanent(err), tt.permanent)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if len(p.puts) != 1 {
				t.Errorf("Put %v: the first failure stops the step", p.puts)
			}
		})
	}
}

func TestMemoAndFingerprint(t *testing.T) {
	a := &Step{Values: values()}
	b := &Step{Values: map[string]string{tempo: values()[tempo], loki: values()[loki]}}
	fa, _ := a.Fingerprint(context.Background())
	fb, _ := b.Fingerprint(context.Background())
	if fa != fb || a.Memo()["values_sha256"] != fa {
		t.Errorf("fingerprint %s / %s, memo %v: want one digest of the values", fa, fb, a.Memo())
	}
	c := &Step{Values: map[string]string{loki: values()[loki], tempo: "http://10.0.1.11:4317"}}
	if fc, _ := c.Fingerprint(context.Background()); fc == fa {
		t.Error("fingerprint ignores a changed value")
	}
}
