package ssmsim

import (
	"net/http"
	"strings"

	"github.com/monagent/monagent/rig/awssim/simapi"
)

// maxLevels is the deepest hierarchy AWS allows.
const maxLevels = 15

// maxNameLen is AWS's limit on a name together with its ARN prefix; the
// prefix is counted for the longest partition prefix, as AWS documents.
const maxNameLen = 1011

const invalidName = "Parameter name: can't be prefixed with \"aws\" or \"ssm\" (case-insensitive). " +
	"If formed as a path, it can consist of sub-paths divided by slash symbol; each sub-path can be " +
	"formed as a mix of letters, numbers and the following 3 symbols .-_"

const invalidPath = "The parameter doesn't meet the parameter name requirements. The parameter name must begin " +
	"with a forward slash \"/\". It can't be prefixed with \"aws\" or \"ssm\" (case-insensitive). It must use only " +
	"letters, numbers, or the following symbols: . (period), - (hyphen), _ (underscore). Special characters are " +
	"not allowed. All sub-paths, if specified, must use the forward slash symbol \"/\". Valid example: " +
	"/get/parameters2-/by1./path0_."

// validateName applies AWS's rules for a parameter name being created.
func validateName(name string) *simapi.APIError {
	if name == "" {
		return validation("1 validation error detected: Value '' at 'name' failed to satisfy constraint: Member must have length greater than or equal to 1")
	}
	if len(name) > maxNameLen {
		return validation("The parameter name is too long. The maximum length for a parameter name, including the full length of the parameter ARN, is %d characters.", maxNameLen)
	}
	rel := name
	if strings.Contains(name, "/") {
		var ok bool
		if rel, ok = strings.CutPrefix(name, "/"); !ok {
			return validation("Parameter name must be a fully qualified name.")
		}
	}
	segs := strings.Split(rel, "/")
	if len(segs) > maxLevels {
		return hierarchyTooDeep()
	}
	if reserved(segs[0]) {
		return validation(invalidName)
	}
	for _, seg := range segs {
		if !validSegment(seg) {
			return validation(invalidName)
		}
	}
	return nil
}

// validatePath applies AWS's rules for GetParametersByPath's Path: "/" or
// a fully qualified hierarchy, with or without a trailing slash.
func validatePath(path string) *simapi.APIError {
	rel, ok := strings.CutPrefix(path, "/")
	if !ok {
		return validation(invalidPath)
	}
	rel = strings.TrimSuffix(rel, "/")
	if rel == "" {
		return nil
	}
	segs := strings.Split(rel, "/")
	if len(segs) > maxLevels {
		return hierarchyTooDeep()
	}
	if reserved(segs[0]) {
		return validation(invalidPath)
	}
	for _, seg := range segs {
		if !validSegment(seg) {
			return validation(invalidPath)
		}
	}
	return nil
}

func hierarchyTooDeep() *simapi.APIError {
	return simapi.Errorf(http.StatusBadRequest, "HierarchyLevelLimitExceededException",
		"A hierarchy can have a maximum of %d levels. For more information, see Requirements and constraints for parameter names in the AWS Systems Manager User Guide.", maxLevels)
}

// reserved reports a first level that AWS keeps for itself.
func reserved(seg string) bool {
	l := strings.ToLower(seg)
	return strings.HasPrefix(l, "aws") || strings.HasPrefix(l, "ssm")
}

func validSegment(seg string) bool {
	if seg == "" {
		return false
	}
	for _, c := range []byte(seg) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}
