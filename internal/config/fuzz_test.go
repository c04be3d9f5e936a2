package config

import (
	"os"
	"testing"
)

func FuzzParse(f *testing.F) {
	example, err := os.ReadFile(examplePath)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	for _, s := range []string{
		"",
		"prefix: p\n",
		"prefix: p\nvolume:\n  mount_pont: /data\n  wait_available: [1]\n",
		"prefix: p\nenv:\n  A: &a {parameter: /p/a}\n  B: *a\n  C: {value: '{x}${Y}'}\n",
		"prefix: p\nendpoints:\n  /{prefix}/a: x\n  /p/a: y\n",
		"prefix: [p\n",
		"prefix: p\n---\nprefix: q\n",
		"volume: {<<: {id: vol-1}}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			if c != nil {
				t.Fatal("Parse returned a config with an error")
			}
			for _, e := range configErrors(t, err) {
				if e.Error() == "" {
					t.Fatal("empty error message")
				}
			}
			return
		}
		// What Parse accepts is valid and usable once the instance is known.
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted a config that Validate rejects: %v", err)
		}
		if _, err := c.Expand(sampleVars()); err != nil {
			t.Fatalf("Expand failed on a parsed config: %v", err)
		}
	})
}
