package secretgen

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestSecretsNeverPrint(t *testing.T) {
	s := fastStore(t)
	key, err := s.Random("k")
	if err != nil {
		t.Fatal(err)
	}
	pw, err := s.Password("p")
	if err != nil {
		t.Fatal(err)
	}
	kp, err := s.TLS("t", Hosts{DNSNames: []string{"localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{
		"key":              key.Reveal(),
		"password":         pw.Password.Reveal(),
		"private key line": pemBody(kp.KeyPEM.Reveal()),
	}
	values := map[string]any{
		"Secret": key, "*Secret": &key,
		"HashedPassword": pw, "*HashedPassword": &pw,
		"KeyPair": kp, "*KeyPair": &kp,
		"slice": []Secret{key}, "map": map[string]Secret{"k": key},
	}
	for vname, v := range values {
		var out strings.Builder
		fmt.Fprintf(&out, "%v|%+v|%#v|%s|%q|%x|%X|%d|%10.3s|", v, v, v, v, v, v, v, v, v)
		fmt.Fprint(&out, v, "|")
		fmt.Fprintln(&out, v)
		js, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		out.Write(js)
		var logged strings.Builder
		slog.New(slog.NewJSONHandler(&logged, nil)).Info("x", "v", v)
		out.WriteString(logged.String())
		for sname, sv := range secrets {
			if strings.Contains(out.String(), sv) {
				t.Errorf("%s prints the %s: %s", vname, sname, out.String())
			}
		}
		if !strings.Contains(out.String(), redacted) {
			t.Errorf("%s: no %q in %s", vname, redacted, out.String())
		}
	}
}

func TestSecretStringers(t *testing.T) {
	s := Secret{"p4ssw0rd"}
	for _, got := range []string{s.String(), s.GoString(), s.LogValue().String(), string(must(s.MarshalText()))} {
		if strings.Contains(got, "p4ssw0rd") || !strings.Contains(got, redacted) {
			t.Errorf("%q", got)
		}
	}
	if s.Reveal() != "p4ssw0rd" {
		t.Error("Reveal does not return the value")
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
