// Package cfnsim simulates the part of AWS CloudFormation an instance
// bootstrap uses: stacks whose resources wait for SignalResource under a
// CreationPolicy, time out on real timers, and roll back as AWS does, with
// the event history DescribeStackEvents shows. It speaks the Query protocol
// (API version 2010-05-15) that the AWS SDK and the AWS CLI use.
package cfnsim

import (
	"fmt"
	"log"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/monagent/monagent/internal/atomicfile"
	"github.com/monagent/monagent/rig/awssim/simapi"
	"gopkg.in/yaml.v3"
)

// xmlns is the namespace of every CloudFormation response.
const xmlns = "http://cloudformation.amazonaws.com/doc/2010-05-15/"

// defaultPageSize is how many events a DescribeStackEvents page holds.
const defaultPageSize = 100

// Service is the simulated CloudFormation. It is safe for concurrent use.
type Service struct {
	id       simapi.Identity
	path     string // state file; "" keeps state in memory only
	pageSize int

	mu      sync.Mutex
	stacks  []*stack // creation order, deleted ones included
	timers  map[string]*time.Timer
	closed  bool
	version uint64 // bumped by every change, so saves land in order

	saveMu     sync.Mutex
	saved      uint64
	saveClosed bool // under saveMu: Close has returned
}

// New returns the service for id's account and region, keeping its state
// under dataDir (nothing is persisted when dataDir is empty). Stacks saved
// by an earlier run are loaded; a resource still waiting for signals resumes
// its timeout from the recorded deadline, and fails at once if that passed.
func New(id simapi.Identity, dataDir string) (*Service, error) {
	if id.Region == "" {
		id.Region = "us-east-1"
	}
	if id.AccountID == "" {
		id.AccountID = "123456789012"
	}
	s := &Service{id: id, pageSize: defaultPageSize, timers: map[string]*time.Timer{}}
	if dataDir == "" {
		return s, nil
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("cfnsim: %w", err)
	}
	s.path = filepath.Join(dataDir, "cloudformation.json")
	stacks, err := load(s.path)
	if err != nil {
		return nil, err
	}
	s.stacks = stacks
	if err := s.resume(); err != nil {
		return nil, err
	}
	return s, nil
}

// resume restarts the timers of resources still waiting.
func (s *Service) resume() error {
	aerr := s.mutate(func(now time.Time) *simapi.APIError {
		for _, st := range s.stacks {
			for _, r := range st.Resources {
				if !r.waiting() {
					continue
				}
				if !now.Before(r.Deadline) {
					st.fail(now, r, timeoutReason(r))
					s.stopTimersLocked(st)
					break // fail handled every other resource of st
				}
				s.scheduleLocked(st, r)
			}
		}
		return nil
	})
	if aerr != nil {
		return fmt.Errorf("cfnsim: resuming stacks: %w", aerr)
	}
	return nil
}

// Name is CloudFormation's SigV4 signing name.
func (s *Service) Name() string { return "cloudformation" }

// Operation reads the Query-protocol Action.
func (s *Service) Operation(r *http.Request) (string, *simapi.APIError) {
	return simapi.QueryAction(r, func(a string) bool { _, ok := handlers[a]; return ok })
}

// handler answers one action with the value for its <ActionResult>
// element, or nil for actions whose response has none.
type handler func(s *Service, q query) (any, *simapi.APIError)

var handlers = map[string]handler{
	"CreateStack":            (*Service).createStack,
	"DeleteStack":            (*Service).deleteStack,
	"DescribeStacks":         (*Service).describeStacks,
	"DescribeStackEvents":    (*Service).describeStackEvents,
	"DescribeStackResource":  (*Service).describeStackResource,
	"DescribeStackResources": (*Service).describeStackResources,
	"SignalResource":         (*Service).signalResource,
}

// Serve answers op.
func (s *Service) Serve(w http.ResponseWriter, r *http.Request, op string) {
	form, aerr := simapi.ParseQuery(r)
	if aerr != nil {
		s.WriteError(w, r, aerr)
		return
	}
	h, ok := handlers[op]
	if !ok {
		s.WriteError(w, r, simapi.InvalidAction(op))
		return
	}
	result, aerr := h(s, query{form})
	if aerr != nil {
		s.WriteError(w, r, aerr)
		return
	}
	simapi.WriteXML(w, response{
		XMLName: xmlName(op + "Response"),
		Xmlns:   xmlns,
		Result:  result,
		Meta:    responseMetadata{RequestID: simapi.RequestID()},
	})
}

// WriteError writes err in the awsquery error shape.
func (s *Service) WriteError(w http.ResponseWriter, r *http.Request, err *simapi.APIError) {
	simapi.WriteQueryError(w, xmlns, err)
}

// Close stops every timer and waits for a save under way: once it
// returns, nothing writes the state file (a new Service may own it, or
// its directory be removed). A timeout that fired as it closed is found
// again from its deadline by the next Service.
func (s *Service) Close() error {
	s.mu.Lock()
	s.closed = true
	for k, t := range s.timers {
		t.Stop()
		delete(s.timers, k)
	}
	s.mu.Unlock()
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	s.saveClosed = true
	return nil
}

// seedStack is one entry of the scenario's "stacks" list.
type seedStack struct {
	Name            string            `yaml:"name"`
	Template        string            `yaml:"template"`
	OnFailure       string            `yaml:"on_failure"`
	DisableRollback bool              `yaml:"disable_rollback"`
	Parameters      map[string]string `yaml:"parameters"`
}

// Seed creates the stacks of a scenario's "cloudformation" section as
// CreateStack would:
//
//	cloudformation:
//	  stacks:
//	    - name: Monitoring-Compute-production
//	      on_failure: ROLLBACK          # or DO_NOTHING, DELETE
//	      parameters: {Key: value}
//	      template: |
//	        Resources: ...
//
// A stack whose name already exists is left as it is, so that a scenario
// can be applied again to a simulator restarted on its own data.
func (s *Service) Seed(section *yaml.Node) error {
	var sec struct {
		Stacks []seedStack `yaml:"stacks"`
	}
	if err := simapi.DecodeStrict(section, &sec); err != nil {
		return fmt.Errorf("want {stacks: [{name, template, on_failure, parameters}]}: %w", err)
	}
	for i, ss := range sec.Stacks {
		in := createInput{
			Name: ss.Name, Template: ss.Template, OnFailure: ss.OnFailure,
			DisableRollback: ss.DisableRollback,
		}
		for _, k := range slices.Sorted(maps.Keys(ss.Parameters)) {
			in.Parameters = append(in.Parameters, parameter{Key: k, Value: ss.Parameters[k]})
		}
		_, aerr := s.create(in)
		if aerr != nil && aerr.Code == "AlreadyExistsException" {
			continue
		}
		if aerr != nil {
			return fmt.Errorf("stacks[%d] (%s): %w", i, ss.Name, aerr)
		}
	}
	return nil
}

// mutate runs fn under the lock and then saves the new state, outside the
// lock. fn must not block.
func (s *Service) mutate(fn func(now time.Time) *simapi.APIError) *simapi.APIError {
	s.mu.Lock()
	aerr := fn(time.Now().UTC())
	var (
		data    []byte
		version uint64
		err     error
	)
	// A closed service writes nothing: its timers are stopped and a new
	// Service may already own the file.
	save := aerr == nil && s.path != "" && !s.closed
	if save {
		s.version++
		version = s.version
		data, err = encodeState(s.stacks)
	}
	s.mu.Unlock()
	if !save {
		return aerr
	}
	if err == nil {
		err = s.save(data, version)
	}
	if err != nil {
		return simapi.Errorf(http.StatusInternalServerError, "InternalFailure", "awssim: saving CloudFormation state: %v", err)
	}
	return nil
}

// save writes the state of version unless a newer one is already written.
func (s *Service) save(data []byte, version uint64) error {
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	if version <= s.saved || s.saveClosed {
		return nil
	}
	if err := atomicfile.WriteFile(s.path, data, 0o600); err != nil {
		return err
	}
	s.saved = version
	return nil
}

func timerKey(st *stack, r *resource) string { return st.ID + "\x00" + r.LogicalID }

// scheduleLocked arms r's timeout. The timer takes the lock itself, so a
// timeout shows in DescribeStacks without any request arriving.
func (s *Service) scheduleLocked(st *stack, r *resource) {
	if s.closed {
		return
	}
	stackID, logicalID := st.ID, r.LogicalID
	s.timers[timerKey(st, r)] = time.AfterFunc(time.Until(r.Deadline), func() {
		s.expire(stackID, logicalID)
	})
}

func (s *Service) stopTimersLocked(st *stack) {
	for _, r := range st.Resources {
		s.stopTimerLocked(st, r)
	}
}

func (s *Service) stopTimerLocked(st *stack, r *resource) {
	k := timerKey(st, r)
	if t, ok := s.timers[k]; ok {
		t.Stop()
		delete(s.timers, k)
	}
}

// expire fails a resource whose signals did not arrive in time.
func (s *Service) expire(stackID, logicalID string) {
	aerr := s.mutate(func(now time.Time) *simapi.APIError {
		if s.closed {
			return nil
		}
		st := s.byIDLocked(stackID)
		if st == nil {
			return nil
		}
		r := st.resource(logicalID)
		if r == nil || !r.waiting() {
			return nil
		}
		delete(s.timers, timerKey(st, r))
		if now.Before(r.Deadline) {
			s.scheduleLocked(st, r) // fired early: clocks disagree by a hair
			return nil
		}
		st.fail(now, r, timeoutReason(r))
		s.stopTimersLocked(st)
		return nil
	})
	if aerr != nil {
		// A timer has no caller to answer; the state stays correct in
		// memory and the next successful save writes it.
		log.Printf("cfnsim: timeout of %s in %s: %v", logicalID, stackID, aerr)
	}
}

// timeoutReason is AWS's reason for a resource whose signals did not come.
func timeoutReason(r *resource) string {
	return fmt.Sprintf("Failed to receive %d resource signal(s) within the specified duration", r.SignalCount-len(r.Signals))
}

func (s *Service) byIDLocked(id string) *stack {
	for _, st := range s.stacks {
		if st.ID == id {
			return st
		}
	}
	return nil
}

// lookupLocked finds a stack by name or stack id. By name only a live stack
// is found; by id a deleted stack is too when withDeleted is set, as AWS
// keeps deleted stacks visible by id.
func (s *Service) lookupLocked(ref string, withDeleted bool) *stack {
	if strings.HasPrefix(ref, "arn:") {
		st := s.byIDLocked(ref)
		if st == nil || (st.deleted() && !withDeleted) {
			return nil
		}
		return st
	}
	for _, st := range s.stacks {
		if st.Name == ref && !st.deleted() {
			return st
		}
	}
	return nil
}

func (s *Service) stackARN(name string) string {
	return fmt.Sprintf("arn:aws:cloudformation:%s:%s:stack/%s/%s", s.id.Region, s.id.AccountID, name, newUUID())
}
