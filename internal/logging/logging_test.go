package logging

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"go.uber.org/zap"
)

func TestRedaction(t *testing.T) {
	secrets := []string{
		"s3cr3t-token-value",
		`pa"ss\word<&>`,
		"line1\nline2",
		"ünïcødé-secret",
		"pa\bss-word-1",
		"pa\fss",
		"pa\"ss\u2028word",
		"tab\tand\x01ctl",
	}
	for _, format := range []string{"json", "console"} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			red := NewRedactor()
			log, err := New(Options{Format: format, Out: &buf}, red)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range secrets {
				red.Add(s)
			}
			for _, s := range secrets {
				log.Info("message carries "+s,
					zap.String("field", s),
					zap.Strings("list", []string{"x", s}),
					zap.Error(errors.New("wrapped: "+s)),
					zap.Any("map", map[string]string{"k": s}),
					zap.ByteString("bytes", []byte(s)))
			}
			out := buf.String()
			if !strings.Contains(out, Mask) {
				t.Fatalf("no mask in output:\n%s", out)
			}
			for _, s := range secrets {
				if leaked(out, s) {
					t.Errorf("secret %q readable in:\n%s", s, out)
				}
			}
		})
	}
}

// leaked decodes every line the way a reader of the journal would (JSON
// values unescaped; the console format's message raw, its fields JSON)
// and reports whether the secret is readable anywhere.
func leaked(out, secret string) bool {
	if strings.Contains(out, secret) {
		return true
	}
	for _, line := range strings.Split(out, "\n") {
		if i := strings.IndexByte(line, '{'); i >= 0 {
			var v any
			if json.Unmarshal([]byte(line[i:]), &v) == nil && containsString(v, secret) {
				return true
			}
		}
	}
	return false
}

func containsString(v any, s string) bool {
	switch v := v.(type) {
	case string:
		return strings.Contains(v, s)
	case map[string]any:
		for k, e := range v {
			if strings.Contains(k, s) || containsString(e, s) {
				return true
			}
		}
	case []any:
		for _, e := range v {
			if containsString(e, s) {
				return true
			}
		}
	}
	return false
}

func TestRedactLongestFirst(t *testing.T) {
	red := NewRedactor()
	red.Add("abc")
	red.Add("abcdef")
	if got := red.Redact("x abcdef y abc"); got != "x "+Mask+" y "+Mask {
		t.Fatalf("got %q", got)
	}
}

func TestRedactorIgnoresEmpty(t *testing.T) {
	red := NewRedactor()
	red.Add("")
	if got := red.Redact("keep me"); got != "keep me" {
		t.Fatalf("got %q", got)
	}
}

func TestBadOptions(t *testing.T) {
	for _, o := range []Options{{Format: "xml"}, {Level: "loud"}} {
		if _, err := New(o, NewRedactor()); err == nil {
			t.Errorf("%+v: want error", o)
		}
	}
}
