// Package simapi is the contract between awssim's server and its simulated
// services: the service interface, AWS-shaped errors in each wire protocol,
// and injected faults.
package simapi

import (
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// Identity is the simulated instance and account.
type Identity struct {
	Region     string
	AZ         string
	InstanceID string
	PrivateIP  string
	AccountID  string
}

// Service is one simulated AWS service mounted on the server.
type Service interface {
	// Name is the SigV4 signing name: ec2, ssm, cloudformation, s3, imds.
	Name() string
	// Operation names the API operation a request asks for.
	Operation(r *http.Request) (string, *APIError)
	// Serve answers a request for op.
	Serve(w http.ResponseWriter, r *http.Request, op string)
	// WriteError writes err in the service's wire shape.
	WriteError(w http.ResponseWriter, r *http.Request, err *APIError)
	// Close releases what the service holds (loop devices, files).
	Close() error
}

// APIError is an AWS error as a service returns it.
type APIError struct {
	Status  int
	Code    string
	Message string
}

func (e *APIError) Error() string { return e.Code + ": " + e.Message }

// Errorf builds an APIError.
func Errorf(status int, code, format string, args ...any) *APIError {
	return &APIError{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Common errors, named as AWS names them.
func MissingParameter(name string) *APIError {
	return Errorf(http.StatusBadRequest, "MissingParameter", "The request must contain the parameter %s", name)
}

func InvalidAction(op string) *APIError {
	return Errorf(http.StatusBadRequest, "InvalidAction", "The action %s is not valid for this web service.", op)
}

var requestCounter atomic.Uint64

// RequestID makes the request id every AWS response carries.
func RequestID() string {
	n := requestCounter.Add(1)
	return fmt.Sprintf("%08x-%04x-4000-8000-%012x", uint32(time.Now().Unix()), uint16(n>>32), n&0xffffffffffff)
}

// ParseQuery reads the form of a Query-protocol request (EC2, CloudFormation):
// POST body, or the URL query for GET.
func ParseQuery(r *http.Request) (url.Values, *APIError) {
	if err := r.ParseForm(); err != nil {
		return nil, Errorf(http.StatusBadRequest, "MalformedQueryString", "cannot parse request: %v", err)
	}
	return r.Form, nil
}

// WriteXML writes v as an XML document with status 200.
func WriteXML(w http.ResponseWriter, v any) {
	b, err := xml.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(xml.Header))
	_, _ = w.Write(b)
}

// WriteEC2Error writes an error in EC2's Query shape.
func WriteEC2Error(w http.ResponseWriter, e *APIError) {
	type xmlErr struct {
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	}
	type resp struct {
		XMLName   xml.Name `xml:"Response"`
		Errors    []xmlErr `xml:"Errors>Error"`
		RequestID string   `xml:"RequestID"`
	}
	writeXMLStatus(w, e.Status, resp{Errors: []xmlErr{{e.Code, e.Message}}, RequestID: RequestID()})
}

// WriteQueryError writes an error in the awsquery shape CloudFormation uses.
func WriteQueryError(w http.ResponseWriter, xmlns string, e *APIError) {
	typ := "Sender"
	if e.Status >= 500 {
		typ = "Receiver"
	}
	type xmlErr struct {
		Type    string `xml:"Type"`
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	}
	type resp struct {
		XMLName   xml.Name `xml:"ErrorResponse"`
		Xmlns     string   `xml:"xmlns,attr"`
		Error     xmlErr   `xml:"Error"`
		RequestID string   `xml:"RequestId"`
	}
	writeXMLStatus(w, e.Status, resp{Xmlns: xmlns, Error: xmlErr{typ, e.Code, e.Message}, RequestID: RequestID()})
}

// WriteS3Error writes an error in S3's REST shape. resource may be empty.
func WriteS3Error(w http.ResponseWriter, r *http.Request, e *APIError) {
	type resp struct {
		XMLName   xml.Name `xml:"Error"`
		Code      string   `xml:"Code"`
		Message   string   `xml:"Message"`
		Resource  string   `xml:"Resource,omitempty"`
		RequestID string   `xml:"RequestId"`
	}
	w.Header().Set("x-amz-request-id", RequestID())
	if r.Method == http.MethodHead {
		// HEAD responses have no body; the SDK reads the status alone.
		w.WriteHeader(e.Status)
		return
	}
	writeXMLStatus(w, e.Status, resp{Code: e.Code, Message: e.Message, Resource: r.URL.Path, RequestID: RequestID()})
}

// WriteJSONError writes an error in the JSON 1.1 shape SSM uses.
func WriteJSONError(w http.ResponseWriter, e *APIError) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-RequestId", RequestID())
	w.Header().Set("X-Amzn-ErrorType", e.Code)
	w.WriteHeader(e.Status)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": e.Code, "message": e.Message})
}

// WriteJSON writes v as a JSON 1.1 response with status 200.
func WriteJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-RequestId", RequestID())
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(v)
}

func writeXMLStatus(w http.ResponseWriter, status int, v any) {
	b, err := xml.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(xml.Header))
	_, _ = w.Write(b)
}

// Fault is an injected behaviour for one operation.
type Fault struct {
	Delay   Duration `json:"delay,omitempty" yaml:"delay,omitempty"`
	Count   int      `json:"count,omitempty" yaml:"count,omitempty"`   // fail the next Count calls; -1 for every call
	Status  int      `json:"status,omitempty" yaml:"status,omitempty"` // HTTP status of the injected error
	Code    string   `json:"code,omitempty" yaml:"code,omitempty"`     // e.g. ThrottlingException, RequestLimitExceeded
	Message string   `json:"message,omitempty" yaml:"message,omitempty"`
}

// Duration is a time.Duration written "2s" in JSON and YAML.
type Duration struct{ time.Duration }

func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("duration %q: want a Go duration such as \"2s\": %w", b, err)
	}
	d.Duration = v
	return nil
}

func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// QueryAction reads the Action of a Query-protocol request (EC2,
// CloudFormation). known tells whether the service implements it; an
// unknown action is still returned, so the call log names it.
func QueryAction(r *http.Request, known func(string) bool) (string, *APIError) {
	form, aerr := ParseQuery(r)
	if aerr != nil {
		return "", aerr
	}
	action := form.Get("Action")
	if action == "" {
		return "", Errorf(http.StatusBadRequest, "MissingAction", "The request must contain the parameter Action")
	}
	if !known(action) {
		return action, InvalidAction(action)
	}
	return action, nil
}

// tokenPrefix marks pagination tokens so that a client never mistakes one
// for a name.
const tokenPrefix = "awssim1:"

// EncodeToken makes a pagination token that carries the last entry returned.
func EncodeToken(last string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(tokenPrefix + last))
}

// DecodeToken returns the last entry a token carries; false for a token
// awssim did not make.
func DecodeToken(tok string) (string, bool) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return "", false
	}
	return strings.CutPrefix(string(b), tokenPrefix)
}
