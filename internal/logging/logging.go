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

// Add registers a secret. Every encoding a log line may carry it in (raw,
// JSON-escaped with and without HTML escaping) is masked.
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

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// redactingWriter masks secrets in each encoded log entry. zap hands a
// WriteSyncer one whole entry per Write, so a secret never straddles calls.
type redactingWriter struct {
	out zapcore.WriteSyncer
	r   *Redactor
}

func (w redactingWriter) Write(p []byte) (int, error) {
	if _, err := io.WriteString(w.out, w.r.Redact(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (w redactingWriter) Sync() error { return w.out.Sync() }

// Options configure New.
type Options struct {
	Format string // json (default) or console
	Level  string // debug, info (default), warn, error
	Out    io.Writer
}

// New builds a logger whose every line goes through red.
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
	out := zapcore.AddSync(o.Out)
	core := zapcore.NewCore(enc, redactingWriter{out: out, r: red}, level)
	return zap.New(core), nil
}
