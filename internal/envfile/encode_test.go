package envfile

import (
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/dotenv"
)

// parse reads b as Compose does: no process environment to look up.
func parse(t testing.TB, b []byte) map[string]string {
	t.Helper()
	got, err := dotenv.UnmarshalBytesWithLookup(b, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf("compose's dotenv refuses %q: %v", b, err)
	}
	return got
}

func TestEncodeRoundTrip(t *testing.T) {
	values := map[string]string{
		"PLAIN":     "admin",
		"EMPTY":     "",
		"QUOTES":    `it's "quoted" '`,
		"DOLLAR":    "pa$$word $HOME ${OTHER} ${OTHER:-x} $",
		"BACKSLASH": `C:\dir\ \\ \n \" \$ \0123 \`,
		"SPACES":    "  leading and trailing  ",
		"LINES":     "one\ntwo\r\nthree\n",
		"HASH":      "a # not a comment",
		"UNICODE":   "ünïcødé ✓ \t tab",
		"EQUALS":    "a=b==c",
		"CONTROL":   "\x01\x1b[0m\x7f\xff",
	}
	b, err := Encode(values)
	if err != nil {
		t.Fatal(err)
	}
	got := parse(t, b)
	for k, v := range values {
		if got[k] != v {
			t.Errorf("%s: read back %q, want %q\nfile:\n%s", k, got[k], v, b)
		}
	}
	if len(got) != len(values) {
		t.Errorf("read back %d keys, want %d", len(got), len(values))
	}
}

func TestEncodeRefuses(t *testing.T) {
	for _, vals := range []map[string]string{{"A": "nul\x00byte"}, {"1A": "x"}, {"A-B": "x"}, {"": "x"}} {
		if _, err := Encode(vals); err == nil {
			t.Errorf("Encode(%q) accepted", vals)
		}
	}
}

func TestEncodeIsStable(t *testing.T) {
	a, _ := Encode(map[string]string{"B": "2", "A": "1"})
	b, _ := Encode(map[string]string{"A": "1", "B": "2"})
	if string(a) != string(b) || !strings.Contains(string(a), "A=\"1\"\nB=\"2\"\n") {
		t.Fatalf("not stable and sorted:\n%s\n%s", a, b)
	}
}

// Any value without NUL survives encode → Compose's parser unchanged.
func FuzzEncodeRoundTrip(f *testing.F) {
	for _, s := range []string{"", "x", `\`, `"`, "$", "${A}", "\n", `\"`, `\\$`, "a\\", "'", "\r\n", "#", " x ", "\\0123"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		if strings.IndexByte(v, 0) >= 0 {
			return
		}
		b, err := Encode(map[string]string{"K": v, "OTHER": "o"})
		if err != nil {
			t.Fatal(err)
		}
		if got := parse(t, b); got["K"] != v || got["OTHER"] != "o" {
			t.Fatalf("value %q read back as %q (OTHER %q); file:\n%s", v, got["K"], got["OTHER"], b)
		}
	})
}
