package config

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// maxErrors bounds how many problems one load reports; past that the
// user is better served by fixing the first ones and trying again.
const maxErrors = 50

// maxShown bounds how much of a bad value an error message repeats.
const maxShown = 80

// Error is one problem with the configuration. Every error returned by
// Parse and Load is an *Error or an errors.Join of them.
type Error struct {
	File    string // the file, when loaded from one
	Key     string // dotted path of the offending key, e.g. "volume.id" or "env.GITHUB_TOKEN.generate"
	Value   string // the offending value as written; empty when it is missing or secret
	Problem string // what is wrong, e.g. "is not a volume id"
	Want    string // what is expected instead
	Line    int    // line in the file, 0 when unknown (a default, or no file)
	Err     error  // underlying cause, for errors.Is; Problem already describes it
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("config: ")
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	if e.Value != "" {
		fmt.Fprintf(&b, "%q ", shorten(e.Value))
	}
	b.WriteString(e.Problem)
	if e.Want != "" {
		b.WriteString("; want ")
		b.WriteString(e.Want)
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, " (line %d)", e.Line)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// newError builds an Error, leaving out the value of keys that may hold
// a secret: messages end up in logs.
func newError(key, value, problem, want string, line int) *Error {
	if isSecret(key) {
		value = ""
	}
	return &Error{Key: key, Value: value, Problem: problem, Want: want, Line: line}
}

// isSecret reports whether key is a literal .env value, which may be a
// password written inline.
func isSecret(key string) bool {
	return strings.HasPrefix(key, "env.") && strings.HasSuffix(key, ".value")
}

// shorten keeps messages readable when a value is a whole pasted document.
func shorten(s string) string {
	r := []rune(s)
	if len(r) <= maxShown {
		return s
	}
	return string(r[:maxShown-1]) + "…"
}

// join orders errs by line so the user reads them top to bottom (problems
// with defaults, which have no line, come last), names the file in each
// and returns them as one error.
func join(errs []*Error, file string) error {
	if len(errs) == 0 {
		return nil
	}
	line := func(e *Error) int {
		if e.Line > 0 {
			return e.Line
		}
		return int(^uint(0) >> 1)
	}
	slices.SortStableFunc(errs, func(a, b *Error) int { return cmp.Compare(line(a), line(b)) })
	if len(errs) > maxErrors {
		more := &Error{Problem: "more problems not shown", Want: "the ones above fixed first"}
		errs = append(errs[:maxErrors:maxErrors], more)
	}
	out := make([]error, len(errs))
	for i, e := range errs {
		e.File = file
		out[i] = e
	}
	if len(out) == 1 {
		return out[0]
	}
	return errors.Join(out...)
}
