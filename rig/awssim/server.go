// Package awssim is a loopback AWS for tests: IMDSv2, EC2, SSM,
// CloudFormation and S3 on one HTTP server, speaking their real wire
// protocols so that the AWS SDK and the AWS CLI accept it unchanged.
//
// The server routes each request to a service (package simapi's Service),
// injects configured faults and latency, and logs every call; the services
// live in their own packages.
package awssim

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/monagent/monagent/rig/awssim/simapi"
	"gopkg.in/yaml.v3"
)

// Seeder is a service that takes its section of a scenario file.
type Seeder interface {
	Seed(section *yaml.Node) error
}

// Call is one logged API call.
type Call struct {
	Service   string    `json:"service"`
	Operation string    `json:"operation"`
	Time      time.Time `json:"time"`
	Status    int       `json:"status"`
	Code      string    `json:"code,omitempty"`
}

// Server is the simulator. It is safe for concurrent use.
type Server struct {
	services map[string]simapi.Service

	mu     sync.Mutex
	calls  []Call
	faults map[string]*simapi.Fault // key: "service.Operation" or "service.*"
}

// NewServer mounts services, each under its signing name.
func NewServer(services ...simapi.Service) *Server {
	s := &Server{services: map[string]simapi.Service{}, faults: map[string]*simapi.Fault{}}
	for _, svc := range services {
		s.services[svc.Name()] = svc
	}
	return s
}

// Close releases every service's resources.
func (s *Server) Close() error {
	var errs []error
	for _, svc := range s.services {
		errs = append(errs, svc.Close())
	}
	return errors.Join(errs...)
}

// SetFault installs, or with nil removes, a fault for "service.Operation"
// ("service.*" matches every operation of the service).
func (s *Server) SetFault(key string, f *simapi.Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f == nil {
		delete(s.faults, key)
		return
	}
	c := *f
	s.faults[key] = &c
}

// Calls returns a copy of the call log.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call{}, s.calls...)
}

// ApplyScenario seeds services and installs faults from a YAML (or JSON)
// scenario document: top-level keys are "faults" and service names.
func (s *Server) ApplyScenario(doc []byte) error {
	var top map[string]yaml.Node
	if err := yaml.Unmarshal(doc, &top); err != nil {
		return fmt.Errorf("scenario: %w", err)
	}
	for key, node := range top {
		node := node
		if key == "faults" {
			var faults map[string]*simapi.Fault
			if err := simapi.DecodeStrict(&node, &faults); err != nil {
				return fmt.Errorf("scenario: faults: %w", err)
			}
			for k, f := range faults {
				if !strings.Contains(k, ".") {
					return fmt.Errorf("scenario: faults: key %q: want service.Operation, e.g. ec2.AttachVolume", k)
				}
				s.SetFault(k, f)
			}
			continue
		}
		svc, ok := s.services[key]
		if !ok {
			return fmt.Errorf("scenario: unknown section %q: want faults or one of %s", key, strings.Join(s.names(), ", "))
		}
		seeder, ok := svc.(Seeder)
		if !ok {
			return fmt.Errorf("scenario: service %q takes no scenario section", key)
		}
		if err := seeder.Seed(&node); err != nil {
			return fmt.Errorf("scenario: %s: %w", key, err)
		}
	}
	return nil
}

func (s *Server) names() []string {
	var out []string
	for n := range s.services {
		out = append(out, n)
	}
	return out
}

// takeFault returns the delay to apply and an error to inject, if any.
func (s *Server) takeFault(svc, op string) (time.Duration, *simapi.APIError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.faults[svc+"."+op]
	if f == nil {
		f = s.faults[svc+".*"]
	}
	if f == nil {
		return 0, nil
	}
	delay := f.Delay.Duration
	if f.Count == 0 || (f.Code == "" && f.Status == 0) {
		return delay, nil
	}
	if f.Count > 0 {
		f.Count--
	}
	status := f.Status
	if status == 0 {
		status = http.StatusBadRequest
	}
	code := f.Code
	if code == "" {
		code = strings.ReplaceAll(http.StatusText(status), " ", "")
	}
	msg := f.Message
	if msg == "" {
		msg = "Rate exceeded"
		if status >= 500 {
			msg = "We encountered an internal error. Please try again."
		}
	}
	return delay, &simapi.APIError{Status: status, Code: code, Message: msg}
}

func (s *Server) record(c Call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, c)
}

// ServeHTTP routes a request to the control API, IMDS or an AWS service.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/_sim/") {
		s.serveControl(w, r)
		return
	}
	name := serviceOf(r)
	svc := s.services[name]
	defer func() {
		// A service bug must answer 500 in the service's shape, never kill
		// the simulator.
		if v := recover(); v != nil {
			aerr := simapi.Errorf(http.StatusInternalServerError, "InternalFailure", "awssim: %v", v)
			if svc != nil {
				svc.WriteError(w, r, aerr)
			} else {
				simapi.WriteJSONError(w, aerr)
			}
		}
	}()
	if svc == nil {
		simapi.WriteJSONError(w, simapi.Errorf(http.StatusBadRequest, "UnknownService",
			"awssim: cannot tell which AWS service this request is for (no SigV4 credential scope, no X-Amz-Target)"))
		return
	}
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	op, aerr := svc.Operation(r)
	if aerr == nil {
		delay, fault := s.takeFault(name, op)
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		aerr = fault
	}
	if aerr != nil {
		rec.code = aerr.Code
		svc.WriteError(rec, r, aerr)
	} else {
		svc.Serve(rec, r, op)
	}
	s.record(Call{Service: name, Operation: op, Time: time.Now().UTC(), Status: rec.status, Code: rec.code})
}

// credentialScope matches ".../20260101/eu-west-1/ssm/aws4_request".
var credentialScope = regexp.MustCompile(`Credential=[^/]+/\d{8}/[^/]+/([^/,]+)/aws4_request`)

// serviceOf tells which service a request is for: IMDS by path, the rest by
// the SigV4 credential scope that the SDK and the CLI sign with.
func serviceOf(r *http.Request) string {
	if strings.HasPrefix(r.URL.Path, "/latest/") {
		return "imds"
	}
	if m := credentialScope.FindStringSubmatch(r.Header.Get("Authorization")); m != nil {
		return m[1]
	}
	if c := r.URL.Query().Get("X-Amz-Credential"); c != "" {
		if parts := strings.Split(c, "/"); len(parts) == 5 {
			return parts[3]
		}
	}
	if strings.HasPrefix(r.Header.Get("X-Amz-Target"), "AmazonSSM.") {
		return "ssm"
	}
	return ""
}

type statusRecorder struct {
	http.ResponseWriter
	status int
	code   string
	wrote  bool
}

func (r *statusRecorder) WriteHeader(code int) {
	if !r.wrote {
		r.status = code
		r.wrote = true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	r.wrote = true
	return r.ResponseWriter.Write(b)
}

// Files serves dir read-only under /_files/ (the rig's stand-in for a
// release download), with the faults of "files.Download": its delay
// stands in for a download's latency, its error for a broken mirror.
func (s *Server) Files(dir string) http.Handler {
	fs := http.StripPrefix("/_files/", http.FileServer(http.Dir(dir)))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		delay, fault := s.takeFault("files", "Download")
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		if fault != nil {
			rec.code = fault.Code
			http.Error(rec, fault.Error(), fault.Status)
		} else {
			fs.ServeHTTP(rec, r)
		}
		s.record(Call{Service: "files", Operation: "Download", Time: time.Now().UTC(), Status: rec.status, Code: rec.code})
	})
}
