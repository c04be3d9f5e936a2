package cfnsim

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/monagent/monagent/rig/awssim/simapi"
)

// query is a request's form with CloudFormation's validation wording.
type query struct{ url.Values }

// required returns a parameter that must be present, with the error AWS
// gives when it is not (field names are camelCase there).
func (q query) required(name string) (string, *simapi.APIError) {
	v := q.Get(name)
	if v == "" {
		return "", validationf("1 validation error detected: Value null at '%s' failed to satisfy constraint: Member must not be null", lowerFirst(name))
	}
	return v, nil
}

// parameters reads Parameters.member.N.ParameterKey/ParameterValue.
func (q query) parameters() []parameter {
	var out []parameter
	for i := 1; ; i++ {
		prefix := "Parameters.member." + strconv.Itoa(i) + "."
		key, ok := q.Values[prefix+"ParameterKey"]
		if !ok {
			return out
		}
		out = append(out, parameter{Key: key[0], Value: q.Get(prefix + "ParameterValue")})
	}
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}

func validationf(format string, args ...any) *simapi.APIError {
	return simapi.Errorf(http.StatusBadRequest, "ValidationError", format, args...)
}

func stackNotFound(ref string) *simapi.APIError {
	return validationf("Stack with id %s does not exist", ref)
}

type createInput struct {
	Name            string
	Template        string
	OnFailure       string
	DisableRollback bool
	Parameters      []parameter
}

var stackNamePattern = regexp.MustCompile(`^[a-zA-Z][-a-zA-Z0-9]{0,127}$`)

func (s *Service) createStack(q query) (any, *simapi.APIError) {
	name, aerr := q.required("StackName")
	if aerr != nil {
		return nil, aerr
	}
	if q.Get("TemplateURL") != "" {
		return nil, validationf("awssim: TemplateURL is not supported; pass the template as TemplateBody")
	}
	in := createInput{
		Name:       name,
		Template:   q.Get("TemplateBody"),
		OnFailure:  q.Get("OnFailure"),
		Parameters: q.parameters(),
	}
	if v := q.Get("DisableRollback"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, validationf("1 validation error detected: Value '%s' at 'disableRollback' failed to satisfy constraint: Member must be a boolean", v)
		}
		in.DisableRollback = b
	}
	id, aerr := s.create(in)
	if aerr != nil {
		return nil, aerr
	}
	return createStackResult{StackID: id}, nil
}

// create validates in and starts the stack, as CreateStack does.
func (s *Service) create(in createInput) (string, *simapi.APIError) {
	if !stackNamePattern.MatchString(in.Name) {
		return "", validationf("1 validation error detected: Value '%s' at 'stackName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z][-a-zA-Z0-9]*", in.Name)
	}
	onFailure, aerr := resolveOnFailure(in.OnFailure, in.DisableRollback)
	if aerr != nil {
		return "", aerr
	}
	if in.Template == "" {
		return "", validationf("Either Template URL or Template Body must be specified.")
	}
	if len(in.Template) > maxTemplateBody {
		return "", validationf("1 validation error detected: Value at 'templateBody' failed to satisfy constraint: Member must have length less than or equal to %d", maxTemplateBody)
	}
	tmpl, err := parseTemplate(in.Template)
	if err != nil {
		return "", templateAPIError(err)
	}
	params, aerr := bindParameters(tmpl, in.Parameters)
	if aerr != nil {
		return "", aerr
	}
	policies := make([]signalPolicy, len(tmpl.Resources))
	for i, spec := range tmpl.Resources {
		if !spec.Signal {
			continue
		}
		p, err := spec.resolveSignal(params)
		if err != nil {
			return "", templateAPIError(err)
		}
		policies[i] = p
	}

	var id string
	aerr = s.mutate(func(now time.Time) *simapi.APIError {
		if s.lookupLocked(in.Name, false) != nil {
			return simapi.Errorf(http.StatusBadRequest, "AlreadyExistsException", "Stack [%s] already exists", in.Name)
		}
		st := &stack{
			ID: s.stackARN(in.Name), Name: in.Name, Description: tmpl.Description,
			OnFailure: onFailure, Parameters: in.Parameters, Created: now,
		}
		s.stacks = append(s.stacks, st)
		s.startLocked(now, st, tmpl, policies)
		id = st.ID
		return nil
	})
	return id, aerr
}

// startLocked creates st's resources: those without a signal policy
// complete at once, the others wait on a timer for their signals.
func (s *Service) startLocked(now time.Time, st *stack, tmpl *template, policies []signalPolicy) {
	st.setStatus(now, createInProgress, "User Initiated")
	for i, spec := range tmpl.Resources {
		r := &resource{LogicalID: spec.LogicalID, Type: spec.Type}
		st.Resources = append(st.Resources, r)
		st.setResource(now, r, createInProgress, "")
		r.PhysicalID = physicalID(st.Name, spec.LogicalID, spec.Type)
		st.setResource(now, r, createInProgress, "Resource creation Initiated")
		if p := policies[i]; p.Count > 0 {
			r.SignalCount = p.Count
			r.Deadline = now.Add(p.Timeout)
			s.scheduleLocked(st, r)
			continue
		}
		st.setResource(now, r, createComplete, "")
	}
	st.completeIfDone(now)
}

func resolveOnFailure(v string, disableRollback bool) (string, *simapi.APIError) {
	if v != "" && disableRollback {
		return "", validationf("You cannot specify both DisableRollback and OnFailure.")
	}
	switch {
	case disableRollback:
		return onFailureDoNothing, nil
	case v == "":
		return onFailureRollback, nil
	case v == onFailureRollback || v == onFailureDoNothing || v == onFailureDelete:
		return v, nil
	}
	return "", validationf("1 validation error detected: Value '%s' at 'onFailure' failed to satisfy constraint: Member must satisfy enum value set: [DO_NOTHING, ROLLBACK, DELETE]", v)
}

// bindParameters merges the given parameters with the template's defaults.
func bindParameters(tmpl *template, given []parameter) (map[string]string, *simapi.APIError) {
	out := map[string]string{}
	var unknown []string
	for _, p := range given {
		if _, ok := tmpl.Parameters[p.Key]; !ok {
			unknown = append(unknown, p.Key)
			continue
		}
		out[p.Key] = p.Value
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, validationf("Parameters: [%s] do not exist in the template", strings.Join(unknown, ", "))
	}
	var missing []string
	for name, def := range tmpl.Parameters {
		if _, ok := out[name]; ok {
			continue
		}
		if def == nil {
			missing = append(missing, name)
			continue
		}
		out[name] = *def
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, validationf("Parameters: [%s] must have values", strings.Join(missing, ", "))
	}
	return out, nil
}

func templateAPIError(err error) *simapi.APIError {
	var te *templateError
	if errors.As(err, &te) {
		return validationf("%s", err.Error())
	}
	return validationf("Template format error: %v", err)
}

func (s *Service) signalResource(q query) (any, *simapi.APIError) {
	ref, aerr := q.required("StackName")
	if aerr != nil {
		return nil, aerr
	}
	logicalID, aerr := q.required("LogicalResourceId")
	if aerr != nil {
		return nil, aerr
	}
	uniqueID, aerr := q.required("UniqueId")
	if aerr != nil {
		return nil, aerr
	}
	status, aerr := q.required("Status")
	if aerr != nil {
		return nil, aerr
	}
	if status != "SUCCESS" && status != "FAILURE" {
		return nil, validationf("1 validation error detected: Value '%s' at 'status' failed to satisfy constraint: Member must satisfy enum value set: [SUCCESS, FAILURE]", status)
	}
	aerr = s.mutate(func(now time.Time) *simapi.APIError {
		st := s.lookupLocked(ref, false)
		if st == nil {
			return stackNotFound(ref)
		}
		r := st.resource(logicalID)
		if r == nil {
			return validationf("Resource %s does not exist for stack %s", logicalID, st.Name)
		}
		if st.Status != createInProgress {
			return validationf("Stack %s is in %s state and cannot be signaled", st.ID, st.Status)
		}
		if r.SignalCount == 0 && r.Status == createComplete {
			return validationf("Resource %s is in %s state and cannot be signaled: it has no CreationPolicy", logicalID, r.Status)
		}
		if !r.waiting() {
			return validationf("Resource %s is in %s state and cannot be signaled", logicalID, r.Status)
		}
		s.signalLocked(now, st, r, uniqueID, status)
		return nil
	})
	return nil, aerr
}

func (s *Service) signalLocked(now time.Time, st *stack, r *resource, uniqueID, status string) {
	reason := fmt.Sprintf("Received %s signal with UniqueId %s", status, uniqueID)
	if status == "FAILURE" {
		st.fail(now, r, reason)
		s.stopTimersLocked(st)
		return
	}
	st.logResource(now, r, createInProgress, reason)
	if !r.addSignal(uniqueID) {
		return
	}
	s.stopTimerLocked(st, r)
	st.setResource(now, r, createComplete, "")
	st.completeIfDone(now)
}

func (s *Service) deleteStack(q query) (any, *simapi.APIError) {
	ref, aerr := q.required("StackName")
	if aerr != nil {
		return nil, aerr
	}
	// Deleting a stack that does not exist succeeds, as on AWS.
	return nil, s.mutate(func(now time.Time) *simapi.APIError {
		st := s.lookupLocked(ref, false)
		if st == nil {
			return nil
		}
		s.stopTimersLocked(st)
		st.setStatus(now, deleteInProgress, "User Initiated")
		st.deleteResources(now)
		st.setStatus(now, deleteComplete, "")
		st.Deleted = now
		return nil
	})
}

func (s *Service) describeStacks(q query) (any, *simapi.APIError) {
	ref := q.Get("StackName")
	s.mu.Lock()
	defer s.mu.Unlock()
	var out describeStacksResult
	if ref != "" {
		st := s.lookupLocked(ref, true)
		if st == nil {
			return nil, stackNotFound(ref)
		}
		out.Stacks = append(out.Stacks, toXMLStack(st))
		return out, nil
	}
	for i := len(s.stacks) - 1; i >= 0; i-- {
		if st := s.stacks[i]; !st.deleted() {
			out.Stacks = append(out.Stacks, toXMLStack(st))
		}
	}
	return out, nil
}

func (s *Service) describeStackEvents(q query) (any, *simapi.APIError) {
	ref, aerr := q.required("StackName")
	if aerr != nil {
		return nil, aerr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.lookupLocked(ref, true)
	if st == nil {
		return nil, stackNotFound(ref)
	}
	// A token is a position in the oldest-first history, so that events
	// added between pages do not shift what the next page holds.
	end := len(st.Events)
	if tok := q.Get("NextToken"); tok != "" {
		n, ok := decodeToken(tok, st.ID)
		if !ok || n > end {
			return nil, validationf("Invalid NextToken")
		}
		end = n
	}
	start := max(0, end-s.pageSize)
	var out describeStackEventsResult
	for i := end - 1; i >= start; i-- {
		out.StackEvents = append(out.StackEvents, toXMLEvent(st, st.Events[i]))
	}
	if start > 0 {
		out.NextToken = encodeToken(st.ID, start)
	}
	return out, nil
}

func encodeToken(stackID string, pos int) string {
	return base64.RawURLEncoding.EncodeToString([]byte(stackID + "#" + strconv.Itoa(pos)))
}

func decodeToken(tok, stackID string) (int, bool) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return 0, false
	}
	id, pos, ok := strings.Cut(string(b), "#")
	if !ok || id != stackID {
		return 0, false
	}
	n, err := strconv.Atoi(pos)
	return n, err == nil && n > 0
}

func (s *Service) describeStackResource(q query) (any, *simapi.APIError) {
	ref, aerr := q.required("StackName")
	if aerr != nil {
		return nil, aerr
	}
	logicalID, aerr := q.required("LogicalResourceId")
	if aerr != nil {
		return nil, aerr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.lookupLocked(ref, true)
	if st == nil {
		return nil, stackNotFound(ref)
	}
	r := st.resource(logicalID)
	if r == nil {
		return nil, validationf("Resource %s does not exist for stack %s", logicalID, st.Name)
	}
	return describeStackResourceResult{Detail: toXMLResourceDetail(st, r)}, nil
}

func (s *Service) describeStackResources(q query) (any, *simapi.APIError) {
	ref, aerr := q.required("StackName")
	if aerr != nil {
		return nil, aerr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.lookupLocked(ref, true)
	if st == nil {
		return nil, stackNotFound(ref)
	}
	logicalID := q.Get("LogicalResourceId")
	var out describeStackResourcesResult
	for _, r := range st.Resources {
		if logicalID == "" || r.LogicalID == logicalID {
			out.Resources = append(out.Resources, toXMLResource(st, r))
		}
	}
	return out, nil
}
