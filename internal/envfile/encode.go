// Package envfile renders the stack's .env and secret files from SSM, in
// the quoting Compose's own dotenv parser reads back byte for byte.
package envfile

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Encode renders vals as a .env file, one KEY="value" line per key in
// sorted order, so the same values always give the same bytes. Any value
// without a NUL byte reads back unchanged with Compose's dotenv parser
// (compose-go/v2/dotenv): inside double quotes it expands \\ \" \$ \n \r
// and interpolates $NAME and ${NAME}, so exactly those characters are
// escaped and nothing else. Single quotes cannot carry every value: the
// parser has no way to write a backslash before a quote, or at the end.
func Encode(vals map[string]string) ([]byte, error) {
	var b strings.Builder
	b.WriteString("# Written by monagent. Do not edit: the next run rewrites it.\n")
	for _, k := range slices.Sorted(maps.Keys(vals)) {
		v := vals[k]
		if !validKey(k) {
			return nil, fmt.Errorf(".env key %q: want letters, digits and '_', not starting with a digit", k)
		}
		if strings.IndexByte(v, 0) >= 0 {
			return nil, fmt.Errorf(".env value of %s holds a NUL byte, which no .env file can carry", k)
		}
		b.WriteString(k)
		b.WriteString(`="`)
		b.WriteString(quote(v))
		b.WriteString("\"\n")
	}
	return []byte(b.String()), nil
}

func quote(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '\\', '"', '$':
			b.WriteByte('\\')
			b.WriteByte(c)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func validKey(k string) bool {
	if k == "" || ('0' <= k[0] && k[0] <= '9') {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}
