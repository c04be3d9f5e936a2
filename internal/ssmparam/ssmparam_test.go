package ssmparam

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"github.com/aws/smithy-go"
)

type fake struct {
	params  map[string]types.Parameter
	fail    int // first n calls fail with throttling
	calls   int
	batches [][]string
}

func (f *fake) throttled() bool {
	f.calls++
	return f.calls <= f.fail
}

var errThrottle = &smithy.GenericAPIError{Code: "ThrottlingException", Message: "Rate exceeded"}

func (f *fake) GetParameter(_ context.Context, in *ssm.GetParameterInput, _ ...func(*ssm.Options)) (*ssm.GetParameterOutput, error) {
	if f.throttled() {
		return nil, errThrottle
	}
	p, ok := f.params[aws.ToString(in.Name)]
	if !ok {
		return nil, &smithy.GenericAPIError{Code: "ParameterNotFound"}
	}
	p.Name = in.Name
	return &ssm.GetParameterOutput{Parameter: &p}, nil
}

func (f *fake) GetParameters(_ context.Context, in *ssm.GetParametersInput, _ ...func(*ssm.Options)) (*ssm.GetParametersOutput, error) {
	if f.throttled() {
		return nil, errThrottle
	}
	if !aws.ToBool(in.WithDecryption) {
		return nil, errors.New("read without decryption")
	}
	if len(in.Names) > 10 {
		return nil, &smithy.GenericAPIError{Code: "ValidationException", Message: "more than 10 names"}
	}
	f.batches = append(f.batches, in.Names)
	out := &ssm.GetParametersOutput{}
	for _, n := range in.Names {
		if p, ok := f.params[n]; ok {
			p.Name = aws.String(n)
			out.Parameters = append(out.Parameters, p)
		} else {
			out.InvalidParameters = append(out.InvalidParameters, n)
		}
	}
	return out, nil
}

func (f *fake) PutParameter(_ context.Context, in *ssm.PutParameterInput, _ ...func(*ssm.Options)) (*ssm.PutParameterOutput, error) {
	if f.throttled() {
		return nil, errThrottle
	}
	n := aws.ToString(in.Name)
	if _, ok := f.params[n]; ok && !aws.ToBool(in.Overwrite) {
		return nil, &smithy.GenericAPIError{Code: "ParameterAlreadyExists", Message: "The parameter already exists."}
	}
	f.params[n] = types.Parameter{Name: in.Name, Value: in.Value, Type: in.Type, Version: 1}
	return &ssm.PutParameterOutput{Version: 1}, nil
}

type secrets []string

func (s *secrets) Add(v string) { *s = append(*s, v) }

func TestGetReadsOnceAndRegistersSecrets(t *testing.T) {
	f := &fake{params: map[string]types.Parameter{
		"/p/id":  {Value: aws.String("vol-1"), Type: types.ParameterTypeString, Version: 3},
		"/p/pwd": {Value: aws.String("hunter2"), Type: types.ParameterTypeSecureString},
	}}
	var sec secrets
	s := New(f, &sec)
	for range 3 {
		p, err := s.Get(context.Background(), "/p/id")
		if err != nil || p.Value != "vol-1" || p.Version != 3 {
			t.Fatalf("Get = %+v, %v", p, err)
		}
		if _, err := s.Get(context.Background(), "/p/pwd"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(context.Background(), "/p/missing"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "/p/missing") {
			t.Fatalf("want ErrNotFound naming the parameter, got %v", err)
		}
	}
	if f.calls != 3 || s.Calls() != 3 {
		t.Fatalf("%d calls to AWS (store counted %d), want 3: one per name, a missing one included", f.calls, s.Calls())
	}
	if len(sec) != 1 || sec[0] != "hunter2" {
		t.Fatalf("secrets registered: %q, want only the SecureString", sec)
	}
}

// Prefetch reads every name a run needs in calls of ten; later reads are
// served from the cache.
func TestPrefetchBatches(t *testing.T) {
	f := &fake{params: map[string]types.Parameter{}}
	var names []string
	for i := range 23 {
		n := "/p/" + string(rune('a'+i))
		names = append(names, n)
		if i%2 == 0 {
			f.params[n] = types.Parameter{Value: aws.String(n)}
		}
	}
	s := New(f, nil)
	if err := s.Prefetch(context.Background(), names); err != nil {
		t.Fatal(err)
	}
	found, missing, err := s.GetMany(context.Background(), names)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.batches) != 3 || len(found) != 12 || len(missing) != 11 {
		t.Fatalf("batches %d, found %d, missing %d", len(f.batches), len(found), len(missing))
	}
}

// An outage is remembered for the run: the next read fails at once with
// the same error instead of waiting out the retries again.
func TestOutageIsRememberedForTheRun(t *testing.T) {
	f := &fake{params: map[string]types.Parameter{"/p/id": {Value: aws.String("vol-1")}}, fail: 100}
	s := New(f, nil)
	_, err1 := s.Get(context.Background(), "/p/id")
	_, err2 := s.Get(context.Background(), "/p/other")
	if err1 == nil || err2 == nil || !strings.Contains(err2.Error(), "ThrottlingException") || f.calls != 1 {
		t.Fatalf("errors %v / %v after %d calls; want the outage remembered after one", err1, err2, f.calls)
	}
}

// Create is get-or-create: an existing value wins and is never replaced.
func TestCreate(t *testing.T) {
	f := &fake{params: map[string]types.Parameter{"/p/old": {Value: aws.String("theirs"), Type: types.ParameterTypeSecureString}}}
	var sec secrets
	s := New(f, &sec)
	p, err := s.Create(context.Background(), "/p/new", "mine")
	if err != nil || p.Value != "mine" {
		t.Fatalf("Create new = %+v, %v", p, err)
	}
	p, err = s.Create(context.Background(), "/p/old", "mine-too")
	if err != nil || p.Value != "theirs" || aws.ToString(f.params["/p/old"].Value) != "theirs" {
		t.Fatalf("Create existing = %+v, %v; stored %q", p, err, aws.ToString(f.params["/p/old"].Value))
	}
	if got, _ := s.Get(context.Background(), "/p/new"); got.Value != "mine" {
		t.Fatalf("Get after Create = %+v", got)
	}
	for _, want := range []string{"mine", "mine-too", "theirs"} {
		found := false
		for _, v := range sec {
			found = found || v == want
		}
		if !found {
			t.Errorf("%q not registered as a secret (%q)", want, sec)
		}
	}
}
