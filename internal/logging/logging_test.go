package logging

import (
	"bytes"
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
				for _, form := range encodings(s) {
					if strings.Contains(out, form) {
						t.Errorf("secret %q leaked as %q in:\n%s", s, form, out)
					}
				}
			}
		})
	}
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
