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
	params map[string]types.Parameter
	fail   int // first n calls fail with throttling
	calls  int
}

func (f *fake) GetParameter(_ context.Context, in *ssm.GetParameterInput, _ ...func(*ssm.Options)) (*ssm.GetParameterOutput, error) {
	f.calls++
	if f.calls <= f.fail {
		return nil, &smithy.GenericAPIError{Code: "ThrottlingException", Message: "Rate exceeded"}
	}
	if !aws.ToBool(in.WithDecryption) {
		return nil, errors.New("read without decryption")
	}
	p, ok := f.params[aws.ToString(in.Name)]
	if !ok {
		return nil, &smithy.GenericAPIError{Code: "ParameterNotFound", Message: "Parameter " + aws.ToString(in.Name) + " not found."}
	}
	return &ssm.GetParameterOutput{Parameter: &p}, nil
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
	}
	if f.calls != 2 || s.Calls() != 2 {
		t.Fatalf("%d calls to AWS (store counted %d), want 2", f.calls, s.Calls())
	}
	if len(sec) != 1 || sec[0] != "hunter2" {
		t.Fatalf("secrets registered: %q, want only the SecureString", sec)
	}
}

func TestGetErrors(t *testing.T) {
	f := &fake{params: map[string]types.Parameter{"/p/id": {Value: aws.String("vol-1")}}, fail: 1}
	s := New(f, nil)
	if _, err := s.Get(context.Background(), "/p/id"); err == nil || !strings.Contains(err.Error(), "/p/id") {
		t.Fatalf("want a throttling error naming the parameter, got %v", err)
	}
	// A failed read is not cached: the next one asks again and succeeds.
	if p, err := s.Get(context.Background(), "/p/id"); err != nil || p.Value != "vol-1" {
		t.Fatalf("second Get = %+v, %v", p, err)
	}
	_, err := s.Get(context.Background(), "/p/missing")
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "/p/missing") {
		t.Fatalf("want ErrNotFound naming the parameter, got %v", err)
	}
}
