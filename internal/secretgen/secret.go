package secretgen

import (
	"fmt"
	"io"
	"log/slog"
)

const redacted = "[redacted]"

// Secret is a value that must never reach a log, an error or a state
// file: every way fmt, slog, zap (a Stringer) or an encoder (a
// TextMarshaler: encoding/json, yaml.v3) can render it prints
// "[redacted]". Reveal is the one way to the value, so a leak needs a
// call one can grep for.
type Secret struct{ v string }

// Reveal returns the value, to be written where it is used.
func (s Secret) Reveal() string { return s.v }

// String redacts: it is what zap and %s use.
func (Secret) String() string { return redacted }

// GoString redacts %#v.
func (Secret) GoString() string { return "secretgen.Secret{" + redacted + "}" }

// Format redacts every verb, %x and %q included, which would otherwise
// bypass String.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		io.WriteString(f, s.GoString())
		return
	}
	io.WriteString(f, redacted)
}

// LogValue redacts for log/slog.
func (Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText redacts for encoders: a struct holding a Secret that is
// dumped to JSON or YAML must not carry the value along.
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }
