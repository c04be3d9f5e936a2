// Package logging builds monagent's zap logger. Every line passes through a
// Redactor, so a secret the agent has learned can never reach the journal,
// whatever field or message it hides in.
package logging

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Mask replaces a redacted secret.
const Mask = "[REDACTED]"

// Redactor holds the secret values known to the process. It is safe for
// concurrent use; secrets are added as they are read.
type Redactor struct {
	mu      sync.RWMutex
	secrets map[string]struct{}
	forms   []string // every encoding of every secret, longest first
}

// NewRedactor returns an empty Redactor.
func NewRedactor() *Redactor {
	return &Redactor{secrets: map[string]struct{}{}}
}

// Add registers a secret. Every encoding a line may carry it in is masked:
// raw, as zap's JSON encoder escapes it, and as encoding/json does (with
// and without HTML escaping) for status --json.
func (r *Redactor) Add(secret string) {
	if secret == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.secrets[secret]; ok {
		return
	}
	r.secrets[secret] = struct{}{}
	for _, f := range encodings(secret) {
		if !contains(r.forms, f) {
			r.forms = append(r.forms, f)
		}
	}
	// Longest first, so a secret that contains another is masked whole.
	sort.Slice(r.forms, func(i, j int) bool { return len(r.forms[i]) > len(r.forms[j]) })
}

// Redact masks every known secret in s.
func (r *Redactor) Redact(s string) string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, f := range r.forms {
		s = strings.ReplaceAll(s, f, Mask)
	}
	return s
}

func encodings(secret string) []string {
	out := []string{secret}
	if z := zapEscaped(secret); z != "" {
		out = append(out, z)
	}
	for _, html := range []bool{true, false} {
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(html)
		if err := enc.Encode(secret); err == nil {
			q := strings.TrimSuffix(b.String(), "\n")
			out = append(out, q[1:len(q)-1])
		}
	}
	return out
}

// zapEscaped is secret as zap's JSON encoder writes it inside quotes,
// which differs from encoding/json (\u0008 for \b, U+2028 raw, ...).
func zapEscaped(secret string) string {
	enc := zapcore.NewJSONEncoder(zapcore.EncoderConfig{})
	buf, err := enc.EncodeEntry(zapcore.Entry{}, []zapcore.Field{zap.String("k", secret)})
	if err != nil {
		return ""
	}
	defer buf.Free()
	s := strings.TrimSuffix(buf.String(), "\n")
	if !strings.HasPrefix(s, `{"k":"`) || !strings.HasSuffix(s, `"}`) {
		return ""
	}
	return s[len(`{"k":"`) : len(s)-len(`"}`)]
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Writer is the one redaction point: every byte the agent writes (log
// entries, the final error, status and smoke reports) goes through a
// Writer, which masks the known secrets in each Write. zap hands it one
// whole entry per Write and the CLI whole lines, so a secret never
// straddles two calls.
type Writer struct {
	out zapcore.WriteSyncer
	r   *Redactor
}

// NewWriter masks r's secrets in everything written to out.
func NewWriter(out io.Writer, r *Redactor) *Writer {
	return &Writer{out: zapcore.AddSync(out), r: r}
}

func (w *Writer) Write(p []byte) (int, error) {
	if _, err := io.WriteString(w.out, w.r.Redact(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Sync flushes the underlying writer when it can be flushed.
func (w *Writer) Sync() error { return w.out.Sync() }

// Options configure New.
type Options struct {
	Format string // json (default) or console
	Level  string // debug, info (default), warn, error
	Out    io.Writer
}

// New builds a logger whose every line goes through red. Out may already
// be a *Writer; it is not wrapped twice.
func New(o Options, red *Redactor) (*zap.Logger, error) {
	level := zapcore.InfoLevel
	if o.Level != "" {
		if err := level.UnmarshalText([]byte(o.Level)); err != nil {
			return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", o.Level)
		}
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.TimeKey = "time"
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	encCfg.EncodeDuration = zapcore.StringDurationEncoder
	var enc zapcore.Encoder
	switch o.Format {
	case "", "json":
		enc = zapcore.NewJSONEncoder(encCfg)
	case "console":
		encCfg.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(encCfg)
	default:
		return nil, fmt.Errorf("--log-format %q: want json or console", o.Format)
	}
	w, ok := o.Out.(*Writer)
	if !ok {
		w = NewWriter(o.Out, red)
	}
	core := zapcore.NewCore(enc, w, level)
	return zap.New(core), nil
}
