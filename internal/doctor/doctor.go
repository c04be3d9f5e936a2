// Package doctor holds the checks of `monagent doctor`: the rows of the
// seed's troubleshooting tables (section 10) asked of this host. Each
// check is one line with a name; on success it says what it found, on
// failure it names the thing, the value and the fix, the command to run
// included.
//
// Every check is read-only: AWS is asked with read calls and dry runs
// only, nothing is created on disk, and the values read (SSM parameters,
// .env) are registered as secrets before anything can print them.
package doctor

import "fmt"

// Status is a check's outcome.
type Status int

// The outcomes: a warning does not fail doctor, a failure does.
const (
	OK Status = iota
	Warn
	Fail
)

// Check is one line of doctor's report.
type Check struct {
	Name   string
	Status Status
	// Detail is what was found, or what is wrong and how to fix it.
	Detail string
}

// Pass, Warning and Failed make a check of each outcome.
func Pass(name, detail string) Check    { return Check{Name: name, Status: OK, Detail: detail} }
func Warning(name, detail string) Check { return Check{Name: name, Status: Warn, Detail: detail} }
func Failed(name, detail string) Check  { return Check{Name: name, Status: Fail, Detail: detail} }

// Skipped reports checks that could not run because one they depend on
// failed: a failure, so that no problem is hidden behind another, with
// the reason.
func Skipped(reason string, names ...string) []Check {
	out := make([]Check, 0, len(names))
	for _, n := range names {
		out = append(out, Failed(n, "skipped: "+reason))
	}
	return out
}

// Secrets learns values that must never be printed; *logging.Redactor is
// one.
type Secrets interface {
	Add(secret string)
}

// putCommand is the command that creates a parameter, in the form the env
// step prints it.
func putCommand(name, typ, value string) string {
	return fmt.Sprintf("aws ssm put-parameter --name %s --type %s --value '%s'", name, typ, value)
}
