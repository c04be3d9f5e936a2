// Package ssmsim simulates SSM Parameter Store for awssim: the JSON 1.1
// operations that read and write parameters, with AWS's validation and
// error shapes, persisted under a data directory.
package ssmsim

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/monagent/monagent/rig/awssim/simapi"
)

// maxBody bounds a request body; SSM requests are small.
const maxBody = 1 << 20

// Service is the simulated SSM. It is safe for concurrent use.
type Service struct {
	id   simapi.Identity
	file string // where parameters persist
	// cipherKey makes the opaque "ciphertext" of a SecureString read
	// without decryption; random so that it reveals nothing of the value.
	cipherKey []byte

	mu sync.Mutex
	// params holds each parameter's versions, oldest first; the last is
	// the current one. A name is present only with at least one version.
	params map[string][]*parameter
}

// parameter is one version of a parameter, as persisted.
type parameter struct {
	Name           string    `json:"name"`
	Type           string    `json:"type"`
	Value          string    `json:"value"`
	KeyID          string    `json:"key_id,omitempty"`
	Description    string    `json:"description,omitempty"`
	AllowedPattern string    `json:"allowed_pattern,omitempty"`
	Tier           string    `json:"tier"`
	Version        int64     `json:"version"`
	Labels         []string  `json:"labels,omitempty"`
	LastModified   time.Time `json:"last_modified"`
}

// New returns an SSM that keeps its parameters in dataDir/parameters.json
// (mode 0600: values are secrets), loading any that a previous run left
// there.
func New(id simapi.Identity, dataDir string) (*Service, error) {
	if dataDir == "" {
		return nil, errors.New("ssmsim: empty data directory")
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("ssmsim: %w", err)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("ssmsim: %w", err)
	}
	s := &Service{
		id:        id,
		file:      filepath.Join(dataDir, "parameters.json"),
		cipherKey: key,
		params:    map[string][]*parameter{},
	}
	if err := s.load(); err != nil {
		return nil, err
	}
	return s, nil
}

// Name is SSM's signing name.
func (s *Service) Name() string { return "ssm" }

// Close releases nothing: every change is already on disk.
func (s *Service) Close() error { return nil }

// WriteError writes err in the JSON 1.1 shape.
func (s *Service) WriteError(w http.ResponseWriter, _ *http.Request, err *simapi.APIError) {
	simapi.WriteJSONError(w, err)
}

// Operation reads the operation from X-Amz-Target ("AmazonSSM.GetParameter").
func (s *Service) Operation(r *http.Request) (string, *simapi.APIError) {
	target := r.Header.Get("X-Amz-Target")
	op, ok := strings.CutPrefix(target, "AmazonSSM.")
	if !ok || s.handler(op) == nil {
		return "", simapi.Errorf(http.StatusBadRequest, "UnknownOperationException",
			"awssim: unknown or unsupported operation %q", target)
	}
	return op, nil
}

type handlerFunc func(s *Service, body []byte) (any, *simapi.APIError)

func (s *Service) handler(op string) handlerFunc {
	switch op {
	case "GetParameter":
		return (*Service).getParameter
	case "GetParameters":
		return (*Service).getParameters
	case "GetParametersByPath":
		return (*Service).getParametersByPath
	case "PutParameter":
		return (*Service).putParameter
	case "DeleteParameter":
		return (*Service).deleteParameter
	case "LabelParameterVersion":
		return (*Service).labelParameterVersion
	}
	return nil
}

// Serve answers op.
func (s *Service) Serve(w http.ResponseWriter, r *http.Request, op string) {
	h := s.handler(op)
	if h == nil {
		s.WriteError(w, r, simapi.Errorf(http.StatusBadRequest, "UnknownOperationException", "awssim: unknown operation %q", op))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		s.WriteError(w, r, simapi.Errorf(http.StatusBadRequest, "SerializationException", "cannot read request body: %v", err))
		return
	}
	if len(body) > maxBody {
		s.WriteError(w, r, simapi.Errorf(http.StatusRequestEntityTooLarge, "SerializationException", "request body exceeds %d bytes", maxBody))
		return
	}
	out, aerr := h(s, body)
	if aerr != nil {
		s.WriteError(w, r, aerr)
		return
	}
	simapi.WriteJSON(w, out)
}

// decode reads a JSON request body into v. An empty body is an empty object,
// as the SDK never sends one; a malformed one is a SerializationException.
func decode(body []byte, v any) *simapi.APIError {
	if len(strings.TrimSpace(string(body))) == 0 {
		return nil
	}
	if err := json.Unmarshal(body, v); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return simapi.Errorf(http.StatusBadRequest, "SerializationException",
				"Unexpected value type for field %s", typeErr.Field)
		}
		return simapi.Errorf(http.StatusBadRequest, "SerializationException", "Malformed JSON request body")
	}
	return nil
}

// notNull is the ValidationException AWS gives for a missing required member.
func notNull(member string) *simapi.APIError {
	return validation("1 validation error detected: Value null at '%s' failed to satisfy constraint: Member must not be null", member)
}

func validation(format string, args ...any) *simapi.APIError {
	return simapi.Errorf(http.StatusBadRequest, "ValidationException", format, args...)
}

func parameterNotFound() *simapi.APIError {
	// AWS sends ParameterNotFound with an empty message.
	return &simapi.APIError{Status: http.StatusBadRequest, Code: "ParameterNotFound"}
}

// wireParameter is a parameter as GetParameter and friends return it.
type wireParameter struct {
	ARN              string  `json:"ARN"`
	DataType         string  `json:"DataType"`
	LastModifiedDate float64 `json:"LastModifiedDate"`
	Name             string  `json:"Name"`
	Selector         string  `json:"Selector,omitempty"` // ":3" or ":label" when the name had one
	Type             string  `json:"Type"`
	Value            string  `json:"Value"`
	Version          int64   `json:"Version"`
}

// wire renders version p, read with selector; a SecureString read without
// decryption shows an opaque ciphertext, as AWS does, never the value.
func (s *Service) wire(p *parameter, decrypt bool, selector string) wireParameter {
	value := p.Value
	if p.Type == "SecureString" && !decrypt {
		value = s.ciphertext(p)
	}
	return wireParameter{
		ARN:              fmt.Sprintf("arn:aws:ssm:%s:%s:parameter/%s", s.id.Region, s.id.AccountID, strings.TrimPrefix(p.Name, "/")),
		DataType:         "text",
		LastModifiedDate: float64(p.LastModified.UnixMilli()) / 1000,
		Name:             p.Name,
		Selector:         selector,
		Type:             p.Type,
		Value:            value,
		Version:          p.Version,
	}
}

// ciphertext looks like a KMS blob (base64 starting "AQICAH") and is
// stable for one version of a parameter.
func (s *Service) ciphertext(p *parameter) string {
	mac := hmac.New(sha256.New, s.cipherKey)
	fmt.Fprintf(mac, "%s\x00%d\x00%s", p.Name, p.Version, p.Value)
	sum := mac.Sum(nil)
	blob := []byte{0x01, 0x02, 0x02, 0x00, 0x78}
	for len(blob) < len(p.Value)+96 {
		blob = append(blob, sum...)
		next := sha256.Sum256(sum) // stretch deterministically
		sum = next[:]
	}
	return base64.StdEncoding.EncodeToString(blob[:len(p.Value)+96])
}

func (s *Service) getParameter(body []byte) (any, *simapi.APIError) {
	var in struct {
		Name           *string
		WithDecryption bool
	}
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	if in.Name == nil {
		return nil, notNull("name")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p, sel, aerr := s.resolve(*in.Name)
	if aerr != nil {
		return nil, aerr
	}
	return struct{ Parameter wireParameter }{s.wire(p, in.WithDecryption, sel)}, nil
}

func (s *Service) getParameters(body []byte) (any, *simapi.APIError) {
	var in struct {
		Names          []string
		WithDecryption bool
	}
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	if in.Names == nil {
		return nil, notNull("names")
	}
	if len(in.Names) < 1 || len(in.Names) > 10 {
		return nil, validation("1 validation error detected: Value at 'names' failed to satisfy constraint: Member must have length less than or equal to 10 and greater than or equal to 1")
	}
	out := struct {
		InvalidParameters []string
		Parameters        []wireParameter
	}{InvalidParameters: []string{}, Parameters: []wireParameter{}}
	seen := map[string]bool{}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, name := range in.Names {
		if seen[name] {
			continue
		}
		seen[name] = true
		// A name, version or label that is not there is listed, not an error.
		if p, sel, aerr := s.resolve(name); aerr == nil {
			out.Parameters = append(out.Parameters, s.wire(p, in.WithDecryption, sel))
		} else {
			out.InvalidParameters = append(out.InvalidParameters, name)
		}
	}
	return out, nil
}

func (s *Service) getParametersByPath(body []byte) (any, *simapi.APIError) {
	var in struct {
		Path             *string
		Recursive        bool
		WithDecryption   bool
		MaxResults       *int
		NextToken        *string
		ParameterFilters []json.RawMessage
	}
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	if in.Path == nil {
		return nil, notNull("path")
	}
	if aerr := validatePath(*in.Path); aerr != nil {
		return nil, aerr
	}
	if len(in.ParameterFilters) > 0 {
		return nil, validation("awssim: ParameterFilters is not supported")
	}
	limit := 10
	if in.MaxResults != nil {
		limit = *in.MaxResults
		if limit < 1 || limit > 10 {
			return nil, validation("1 validation error detected: Value '%d' at 'maxResults' failed to satisfy constraint: %s", limit, rangeConstraint(limit))
		}
	}
	after := ""
	if in.NextToken != nil {
		var ok bool
		if after, ok = simapi.DecodeToken(*in.NextToken); !ok {
			return nil, simapi.Errorf(http.StatusBadRequest, "InvalidNextToken", "The specified token is not valid.")
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	names := s.underPath(*in.Path, in.Recursive, after)
	out := struct {
		Parameters []wireParameter
		NextToken  string `json:",omitempty"`
	}{Parameters: []wireParameter{}}
	for i, name := range names {
		if i == limit {
			out.NextToken = simapi.EncodeToken(names[i-1])
			break
		}
		out.Parameters = append(out.Parameters, s.wire(s.current(name), in.WithDecryption, ""))
	}
	return out, nil
}

func rangeConstraint(n int) string {
	if n < 1 {
		return "Member must have value greater than or equal to 1"
	}
	return "Member must have value less than or equal to 10"
}

func (s *Service) putParameter(body []byte) (any, *simapi.APIError) {
	var in struct {
		Name           *string
		Value          *string
		Type           string
		KeyId          string
		Description    *string
		AllowedPattern *string
		Overwrite      bool
		Tier           string
		DataType       string
		Tags           []json.RawMessage
	}
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	switch {
	case in.Name == nil:
		return nil, notNull("name")
	case in.Value == nil:
		return nil, notNull("value")
	}
	if aerr := validateName(*in.Name); aerr != nil {
		return nil, aerr
	}
	tier, limit, aerr := tierOf(in.Tier)
	if aerr != nil {
		return nil, aerr
	}
	if aerr := validateValue(*in.Value, tier, limit); aerr != nil {
		return nil, aerr
	}
	if aerr := validatePut(in.Type, in.KeyId, in.DataType, in.AllowedPattern); aerr != nil {
		return nil, aerr
	}
	if in.Overwrite && len(in.Tags) > 0 {
		return nil, validation("Invalid request: tags and overwrite can't be used together. To create a parameter with tags, please remove overwrite flag. " +
			"To update tags for an existing parameter, please use AddTagsToResource or RemoveTagsFromResource.")
	}
	p := parameter{Name: *in.Name, Type: in.Type, Value: *in.Value, KeyID: in.KeyId, Tier: tier}
	if in.Description != nil {
		p.Description = *in.Description
	}
	if in.AllowedPattern != nil {
		p.AllowedPattern = *in.AllowedPattern
	}
	version, aerr := s.store(p, putFlags{overwrite: in.Overwrite, hasDesc: in.Description != nil, hasPattern: in.AllowedPattern != nil})
	if aerr != nil {
		return nil, aerr
	}
	return struct {
		Tier    string
		Version int64
	}{tier, version}, nil
}

// validatePut checks the request members that need no stored state.
func validatePut(typ, keyID, dataType string, pattern *string) *simapi.APIError {
	if typ != "" && typ != "String" && typ != "StringList" && typ != "SecureString" {
		return validation("1 validation error detected: Value '%s' at 'type' failed to satisfy constraint: Member must satisfy enum value set: [SecureString, StringList, String]", typ)
	}
	if dataType != "" && dataType != "text" {
		return validation("awssim: DataType %q is not supported; only text is", dataType)
	}
	if keyID != "" && typ != "" && typ != "SecureString" {
		return validation("KeyId is required for SecureString type parameter only.")
	}
	if pattern != nil {
		return validatePattern(*pattern)
	}
	return nil
}

// tierOf resolves the requested tier and its value size limit.
func tierOf(tier string) (string, int, *simapi.APIError) {
	switch tier {
	case "", "Standard", "Intelligent-Tiering":
		return "Standard", 4096, nil
	case "Advanced":
		return "Advanced", 8192, nil
	}
	return "", 0, validation("1 validation error detected: Value '%s' at 'tier' failed to satisfy constraint: Member must satisfy enum value set: [Advanced, Intelligent-Tiering, Standard]", tier)
}

// validateValue checks size only; the value is a secret, so no message
// ever repeats it.
func validateValue(v, tier string, limit int) *simapi.APIError {
	switch {
	case v == "":
		return validation("1 validation error detected: Value at 'value' failed to satisfy constraint: Member must have length greater than or equal to 1")
	case len(v) > 8192:
		return validation("1 validation error detected: Value at 'value' failed to satisfy constraint: Member must have length less than or equal to 8192")
	case len(v) > limit:
		return validation("%s tier parameters support a maximum parameter value of %d characters. To create a larger parameter value, upgrade the parameter to use a paid parameter tier. For more information, see https://docs.aws.amazon.com/systems-manager/latest/userguide/parameter-store-advanced-parameters.html", tier, limit)
	}
	return nil
}

// putFlags are the parts of a PutParameter request that say how it
// relates to what is stored.
type putFlags struct {
	overwrite  bool
	hasDesc    bool // Description was sent; else an overwrite keeps the old one
	hasPattern bool // AllowedPattern was sent; else an overwrite keeps the old one
}

// store creates p, or adds it as the next version when overwrite is set,
// and persists the result. Parameter Store keeps maxVersions versions: the
// oldest goes, unless a label holds it.
func (s *Service) store(p parameter, f putFlags) (int64, *simapi.APIError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.params[p.Name]
	next, aerr := nextVersion(old, p, f)
	if aerr != nil {
		return 0, aerr
	}
	kept := old
	if len(old) >= maxVersions {
		if len(old[0].Labels) > 0 {
			return 0, simapi.Errorf(http.StatusBadRequest, "ParameterMaxVersionLimitExceeded",
				"You attempted to create a new version of %s by calling the PutParameter API with the overwrite flag. Version %d, the oldest version, "+
					"can't be deleted because it has a label associated with it. Move the label to another version of the parameter, and try again.",
				p.Name, old[0].Version)
		}
		kept = old[1:]
	}
	s.params[p.Name] = append(slices.Clone(kept), &next)
	if err := s.saveLocked(); err != nil {
		s.restoreLocked(p.Name, old) // keep memory and disk in step
		return 0, simapi.Errorf(http.StatusInternalServerError, "InternalServerError", "awssim: %v", err)
	}
	return next.Version, nil
}

// nextVersion makes p the version that follows versions (none when p is
// new): what the request left out comes from the current version, and the
// value must match the allowed pattern in force.
func nextVersion(versions []*parameter, p parameter, f putFlags) (parameter, *simapi.APIError) {
	if len(versions) == 0 {
		if p.Type == "" {
			return p, validation("A parameter type is required when you create a parameter.")
		}
		p.Version = 1
	} else {
		cur := versions[len(versions)-1]
		switch {
		case !f.overwrite:
			return p, simapi.Errorf(http.StatusBadRequest, "ParameterAlreadyExists",
				"The parameter already exists. To overwrite this value, set the overwrite option in the request to true.")
		case p.Type != "" && p.Type != cur.Type:
			return p, simapi.Errorf(http.StatusBadRequest, "HierarchyTypeMismatchException",
				"Parameter Store doesn't support changing a parameter type in a hierarchy. For example, you can't change a parameter from a String type "+
					"to a SecureString type. You must create a new, unique parameter.")
		}
		p.Type, p.Version = cur.Type, cur.Version+1
		if !f.hasDesc {
			p.Description = cur.Description
		}
		if !f.hasPattern {
			p.AllowedPattern = cur.AllowedPattern
		}
		if p.KeyID == "" {
			p.KeyID = cur.KeyID
		}
	}
	if aerr := matchPattern(p.AllowedPattern, p.Value); aerr != nil {
		return p, aerr
	}
	if p.Type == "SecureString" && p.KeyID == "" {
		p.KeyID = "alias/aws/ssm"
	}
	p.LastModified = time.Now().UTC()
	return p, nil
}

// restoreLocked puts back the versions name had; s.mu must be held.
func (s *Service) restoreLocked(name string, versions []*parameter) {
	if len(versions) == 0 {
		delete(s.params, name)
		return
	}
	s.params[name] = versions
}

func (s *Service) deleteParameter(body []byte) (any, *simapi.APIError) {
	var in struct{ Name *string }
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	if in.Name == nil {
		return nil, notNull("name")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.params[*in.Name]
	if len(old) == 0 {
		return nil, parameterNotFound()
	}
	delete(s.params, *in.Name)
	if err := s.saveLocked(); err != nil {
		s.restoreLocked(*in.Name, old)
		return nil, simapi.Errorf(http.StatusInternalServerError, "InternalServerError", "awssim: %v", err)
	}
	return struct{}{}, nil
}
