package config

import "testing"

// FuzzParse seeds with small documents only: the fuzzer's minimizer works
// on every new input it finds, and on a seed the size of the example file
// it spends the whole run minimizing instead of executing. The example is
// covered by TestLoadExample.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"",
		"prefix: p\n",
		"prefix: p\nregion: eu-west-1\nstack: {name: S, resource: R}\n",
		"prefix: p\nvolume:\n  mount_pont: /data\n  wait_available: [1]\n",
		"prefix: p\nvolume: {id: vol-0123456789abcdef0, fs_type: ext4, mount_options: 'defaults,nofail'}\n",
		"prefix: p\nenv:\n  A: &a {parameter: /p/a}\n  B: *a\n  C: {value: '{x}${Y}'}\n",
		"prefix: p\nenv:\n  T: {parameter: '/{prefix}/t', generate: hex32, file: s/t, file_owner: '1:1', env: false}\n",
		"prefix: p\nendpoints:\n  /{prefix}/a: x\n  /p/a: y\n",
		"prefix: p\nmetrics: {textfile_dir: /opt/monitoring/x}\n",
		"prefix: p\ndocker: {compose_plugin: {version: v2.24.0, url: 'https://h/{version}'}}\n",
		"prefix: [p\n",
		"prefix: p\n---\nprefix: q\n",
		"volume: {<<: {id: vol-1}}\n",
		"prefix: '{{{{}'\n",
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
