package ssmsim

import (
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/monagent/monagent/rig/awssim/simapi"
)

// maxVersions is how many versions of a parameter Parameter Store keeps.
const maxVersions = 100

// Limits on labels, as LabelParameterVersion documents them.
const (
	maxLabelsPerCall    = 10
	maxLabelsPerVersion = 10
	maxLabelLen         = 100
)

// maxPatternLen is the longest AllowedPattern PutParameter takes.
const maxPatternLen = 1024

// current is the latest version of name, nil if there is none. s.mu must be
// held.
func (s *Service) current(name string) *parameter {
	versions := s.params[name]
	if len(versions) == 0 {
		return nil
	}
	return versions[len(versions)-1]
}

// resolve finds the version that a GetParameter(s) name asks for: "name"
// (the current version), "name:3" (version 3) or "name:label". It returns
// the version and the selector AWS echoes (":3", ":label" or "").
func (s *Service) resolve(ref string) (*parameter, string, *simapi.APIError) {
	name, sel, hasSel := strings.Cut(ref, ":")
	versions := s.params[name]
	switch {
	case len(versions) == 0 && !hasSel:
		return nil, "", parameterNotFound()
	case len(versions) == 0:
		return nil, "", notFound(ref)
	case !hasSel:
		return versions[len(versions)-1], "", nil
	}
	// Labels cannot begin with a digit, so digits select a version.
	if isDigits(sel) {
		n, err := strconv.ParseInt(sel, 10, 64)
		if i := slices.IndexFunc(versions, func(p *parameter) bool { return p.Version == n }); err == nil && i >= 0 {
			return versions[i], ":" + sel, nil
		}
		return nil, "", simapi.Errorf(http.StatusBadRequest, "ParameterVersionNotFound",
			"Systems Manager could not find version %s of %s. Verify the version and try again.", sel, name)
	}
	if i := slices.IndexFunc(versions, func(p *parameter) bool { return slices.Contains(p.Labels, sel) }); i >= 0 {
		return versions[i], ":" + sel, nil
	}
	return nil, "", notFound(ref)
}

// notFound is ParameterNotFound naming what was asked for. (A plain name
// that does not exist gets AWS's empty message instead: parameterNotFound.)
func notFound(ref string) *simapi.APIError {
	return simapi.Errorf(http.StatusBadRequest, "ParameterNotFound", "Parameter %s not found.", ref)
}

func isDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

// validatePattern checks an AllowedPattern. AWS evaluates Java regular
// expressions; Go's RE2 syntax covers the usual ones (no backreferences or
// lookaround).
func validatePattern(pattern string) *simapi.APIError {
	if len(pattern) > maxPatternLen {
		return validation("1 validation error detected: Value at 'allowedPattern' failed to satisfy constraint: Member must have length less than or equal to %d", maxPatternLen)
	}
	if _, err := compilePattern(pattern); err != nil {
		return simapi.Errorf(http.StatusBadRequest, "InvalidAllowedPatternException",
			"The request does not meet the regular expression requirement: %s", pattern)
	}
	return nil
}

// compilePattern anchors pattern: the whole value must match, as Java's
// String.matches does.
func compilePattern(pattern string) (*regexp.Regexp, error) {
	return regexp.Compile(`^(?:` + pattern + `)$`)
}

// matchPattern checks value against pattern ("" allows anything). The
// message names the pattern, never the value, which may be a secret.
func matchPattern(pattern, value string) *simapi.APIError {
	if pattern == "" {
		return nil
	}
	re, err := compilePattern(pattern)
	if err == nil && re.MatchString(value) {
		return nil
	}
	return simapi.Errorf(http.StatusBadRequest, "ParameterPatternMismatchException",
		"Parameter value, cannot be validated against allowedPattern: %s", pattern)
}

// labelParameterVersion moves labels onto one version of a parameter (the
// current one unless ParameterVersion names another). Labels that break
// the naming rules are returned as InvalidLabels, not an error.
func (s *Service) labelParameterVersion(body []byte) (any, *simapi.APIError) {
	var in struct {
		Name             *string
		ParameterVersion *int64
		Labels           []string
	}
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	if aerr := validateLabelRequest(in.Name, in.Labels); aerr != nil {
		return nil, aerr
	}
	valid, invalid := splitLabels(in.Labels)
	s.mu.Lock()
	defer s.mu.Unlock()
	target, aerr := s.labelTarget(*in.Name, in.ParameterVersion)
	if aerr != nil {
		return nil, aerr
	}
	if aerr := s.moveLabelsLocked(*in.Name, target, valid); aerr != nil {
		return nil, aerr
	}
	return struct {
		InvalidLabels    []string
		ParameterVersion int64
	}{invalid, target.Version}, nil
}

func validateLabelRequest(name *string, labels []string) *simapi.APIError {
	switch {
	case name == nil:
		return notNull("name")
	case labels == nil:
		return notNull("labels")
	case len(labels) < 1 || len(labels) > maxLabelsPerCall:
		return validation("1 validation error detected: Value at 'labels' failed to satisfy constraint: Member must have length less than or equal to %d and greater than or equal to 1", maxLabelsPerCall)
	}
	for _, l := range labels {
		if len(l) > maxLabelLen || l == "" {
			return validation("1 validation error detected: Value '[%s]' at 'labels' failed to satisfy constraint: Member must satisfy constraint: "+
				"[Member must have length less than or equal to %d, Member must have length greater than or equal to 1]", l, maxLabelLen)
		}
	}
	return nil
}

// splitLabels sorts labels into those AWS accepts and those it returns as
// invalid: a label is letters, digits, '.', '-' and '_', and does not begin
// with a digit, "aws" or "ssm" (any case).
func splitLabels(labels []string) (valid, invalid []string) {
	invalid = []string{}
	for _, l := range labels {
		lower := strings.ToLower(l)
		bad := strings.HasPrefix(lower, "aws") || strings.HasPrefix(lower, "ssm") || isDigits(l[:1]) ||
			strings.IndexFunc(l, func(r rune) bool { return !labelRune(r) }) >= 0
		switch {
		case bad:
			invalid = append(invalid, l)
		case !slices.Contains(valid, l):
			valid = append(valid, l)
		}
	}
	return valid, invalid
}

func labelRune(r rune) bool {
	return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '.' || r == '-' || r == '_'
}

// labelTarget is the version LabelParameterVersion labels. s.mu must be
// held.
func (s *Service) labelTarget(name string, version *int64) (*parameter, *simapi.APIError) {
	versions := s.params[name]
	if len(versions) == 0 {
		return nil, notFound(name)
	}
	if version == nil {
		return versions[len(versions)-1], nil
	}
	if i := slices.IndexFunc(versions, func(p *parameter) bool { return p.Version == *version }); i >= 0 {
		return versions[i], nil
	}
	return nil, simapi.Errorf(http.StatusBadRequest, "ParameterVersionNotFound",
		"Systems Manager could not find version %d of %s. Verify the version and try again.", *version, name)
}

// moveLabelsLocked attaches labels to target, taking them off any other
// version of name (a label names one version), and persists the result.
// s.mu must be held.
func (s *Service) moveLabelsLocked(name string, target *parameter, labels []string) *simapi.APIError {
	merged := slices.Clone(target.Labels)
	for _, l := range labels {
		if !slices.Contains(merged, l) {
			merged = append(merged, l)
		}
	}
	if len(merged) > maxLabelsPerVersion {
		return simapi.Errorf(http.StatusBadRequest, "ParameterVersionLabelLimitExceeded",
			"A parameter version can have maximum %d labels.Move one or more labels to another version and try again.", maxLabelsPerVersion)
	}
	versions := s.params[name]
	before := make([][]string, len(versions))
	for i, p := range versions {
		before[i] = p.Labels
		if p != target {
			p.Labels = slices.DeleteFunc(slices.Clone(p.Labels), func(l string) bool { return slices.Contains(labels, l) })
		}
	}
	target.Labels = merged
	if err := s.saveLocked(); err != nil {
		for i, p := range versions {
			p.Labels = before[i] // keep memory and disk in step
		}
		return simapi.Errorf(http.StatusInternalServerError, "InternalServerError", "awssim: %v", err)
	}
	return nil
}
