package retry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/aws/smithy-go"
)

func TestBackoffNext(t *testing.T) {
	b := Backoff{Initial: 20 * time.Millisecond, Max: 100 * time.Millisecond}
	var got []time.Duration
	var d time.Duration
	for range 5 {
		d = b.Next(d)
		got = append(got, d)
	}
	want := []time.Duration{20, 40, 80, 100, 100}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("delays %v, want %v ms", got, want)
		}
	}
}

var fast = Backoff{Initial: time.Millisecond, Max: 2 * time.Millisecond}

func throttle() error { return &smithy.GenericAPIError{Code: "Throttling", Message: "Rate exceeded"} }

func TestPoll(t *testing.T) {
	fatal := errors.New("wrong AZ")
	tests := []struct {
		name    string
		answers []error // nil: not yet; the last repeats
		doneAt  int     // call that reports done, 0: never
		wantErr []string
		wantIs  error
	}{
		{"done at once", nil, 1, nil, nil},
		{"done after transient errors", []error{throttle(), throttle()}, 3, nil, nil},
		{"other error stops", []error{nil, fatal}, 0, []string{"wrong AZ"}, fatal},
		{"timeout carries the last transient error", []error{throttle()}, 0, []string{"timed out", "Throttling"}, ErrTimeout},
		{"timeout without errors", []error{nil}, 0, []string{"timed out after 50ms"}, ErrTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			err := Poll(context.Background(), fast, 50*time.Millisecond, nil, func(context.Context) (bool, error) {
				calls++
				if calls == tt.doneAt {
					return true, nil
				}
				if len(tt.answers) == 0 {
					return false, nil
				}
				return false, tt.answers[min(calls, len(tt.answers))-1]
			})
			if tt.wantErr == nil {
				if err != nil || calls != tt.doneAt {
					t.Fatalf("Poll = %v after %d calls, want success at %d", err, calls, tt.doneAt)
				}
				return
			}
			for _, w := range tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Fatalf("Poll = %v, want it to mention %q", err, w)
				}
			}
			if !errors.Is(err, tt.wantIs) {
				t.Fatalf("Poll = %v, want errors.Is %v", err, tt.wantIs)
			}
		})
	}
}

func TestPollCancelled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err := Poll(ctx, Backoff{Initial: time.Hour, Max: time.Hour}, time.Hour, nil, func(context.Context) (bool, error) { return false, nil })
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrTimeout) {
		t.Fatalf("Poll = %v, want the caller's deadline, not a timeout of the wait", err)
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		err         error
		want        Class
		unreachable bool
	}{
		{throttle(), Throttled, true},
		{&smithy.GenericAPIError{Code: "RequestLimitExceeded"}, Throttled, true},
		{fmt.Errorf("volume: describe: %w", &smithy.GenericAPIError{Code: "InternalError", Fault: smithy.FaultServer}), Transient, true},
		{&net.OpError{Op: "dial", Err: errors.New("connection refused")}, Transient, true},
		{&smithy.GenericAPIError{Code: "AccessDeniedException"}, Fatal, false},
		{&smithy.GenericAPIError{Code: "InvalidVolume.NotFound"}, Fatal, false},
		{PermanentError(errors.New("wrong AZ")), Fatal, false},
		{context.DeadlineExceeded, Transient, true},
		{&smithy.GenericAPIError{Code: "SomethingNew"}, Other, false},
	}
	for _, tt := range tests {
		if got := Classify(tt.err); got != tt.want {
			t.Errorf("Classify(%v) = %v, want %v", tt.err, got, tt.want)
		}
		if got := Unreachable(tt.err); got != tt.unreachable {
			t.Errorf("Unreachable(%v) = %v, want %v", tt.err, got, tt.unreachable)
		}
	}
	if Code(fmt.Errorf("x: %w", throttle())) != "Throttling" || Message(throttle()) != "Rate exceeded" {
		t.Error("Code or Message does not look through wrapping")
	}
}
