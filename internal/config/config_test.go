package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

const examplePath = "../../packaging/config.example.yaml"

// configErrors flattens err into its *Errors, failing the test if any
// part of it is something else.
func configErrors(t testing.TB, err error) []*Error {
	t.Helper()
	var out []*Error
	var walk func(error)
	walk = func(err error) {
		switch e := err.(type) {
		case *Error:
			out = append(out, e)
		case interface{ Unwrap() []error }:
			for _, inner := range e.Unwrap() {
				walk(inner)
			}
		default:
			t.Fatalf("error %T is not a *config.Error or a join of them: %v", err, err)
		}
	}
	walk(err)
	return out
}

// findError returns the error for key, failing the test when there is none.
func findError(t *testing.T, err error, key string) *Error {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want one for %s", key)
	}
	for _, e := range configErrors(t, err) {
		if e.Key == key {
			return e
		}
	}
	t.Fatalf("no error for key %q in:\n%v", key, err)
	return nil
}

func TestDefaultsValid(t *testing.T) {
	c := Defaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("Defaults().Validate() = %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"prefix", c.Prefix, "monitoring-production"},
		{"volume.id_parameter", c.Volume.IDParameter, "/monitoring-production/ebs/volume-id"},
		{"volume.device", c.Volume.Device, "/dev/xvdf"},
		{"volume.mount_options", c.Volume.MountOptions, "defaults,nofail"},
		{"volume.wait_available", c.Volume.WaitAvailable.Duration, 120 * time.Second},
		{"volume.device_timeout", c.Volume.DeviceTimeout.Duration, 60 * time.Second},
		{"docker.ready_timeout", c.Docker.ReadyTimeout.Duration, 300 * time.Second},
		{"docker.compose_plugin.url", c.Docker.ComposePlugin.URL,
			"https://github.com/docker/compose/releases/download/v2.24.0/docker-compose-linux-x86_64"},
		{"docker.compose_plugin.sha256", c.Docker.ComposePlugin.SHA256, ""},
		{"bundle.bucket_parameter", c.Bundle.BucketParameter, "/monitoring-production/ssm/scripts-bucket-name"},
		{"compose.health_timeout", c.Compose.HealthTimeout.Duration, 180 * time.Second},
		{"compose.settle", c.Compose.Settle.Duration, 10 * time.Second},
		{"stack.resource", c.Stack.Resource, "MonitoringAsg"},
		{"stack signals", c.Stack.Signals(), false},
		{"aws.max_attempts", c.AWS.MaxAttempts, 8},
		{"env.GITHUB_TOKEN.parameter", c.Env["GITHUB_TOKEN"].Parameter, "/monitoring-production/github/api-token"},
		{"env.METRICS_TOKEN in .env", c.Env["METRICS_TOKEN"].InEnv(), false},
		{"endpoints loki", c.Endpoints["/monitoring-production/loki/endpoint"], "http://{private_ip}:3100/loki/api/v1/push"},
	}
	for _, tc := range checks {
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("%s = %v, want %v", tc.name, tc.got, tc.want)
		}
	}
}

func TestDefaultsAreFresh(t *testing.T) {
	a := Defaults()
	*a.Env["GRAFANA_ADMIN_USER"].Value = "root" // must not reach the next caller
	delete(a.Endpoints, "/monitoring-production/loki/endpoint")
	b := Defaults()
	if *b.Env["GRAFANA_ADMIN_USER"].Value != "admin" || len(b.Endpoints) != 2 {
		t.Fatal("Defaults shares maps or pointers between calls")
	}
}

func TestLoadExample(t *testing.T) {
	got, err := Load(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	want := Defaults()
	want.Stack.Name = "Monitoring-Compute-production" // the keys the example sets
	want.Example = true
	if !reflect.DeepEqual(got, want) {
		t.Errorf("example config differs from the defaults:\n got %+v\nwant %+v", got, want)
	}
}

// TestExampleDocumentsEveryKey keeps the example complete as keys are added.
func TestExampleDocumentsEveryKey(t *testing.T) {
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	var walk func(prefix string, typ reflect.Type)
	walk = func(prefix string, typ reflect.Type) {
		for i := range typ.NumField() {
			name := yamlName(typ.Field(i))
			if !strings.Contains(string(data), name+":") {
				t.Errorf("example config lacks %s%s", prefix, name)
			}
			if ft := typ.Field(i).Type; ft.Kind() == reflect.Struct && ft != durationType {
				walk(prefix+name+".", ft)
			}
		}
	}
	walk("", reflect.TypeFor[Config]())
	walk("env.*.", reflect.TypeFor[EnvVar]())
}

func TestParseOverrides(t *testing.T) {
	c, err := Parse([]byte(`
prefix: monitoring-development
region: eu-west-1
volume:
  id: vol-0123456789abcdef0
  mount_point: /srv/data
  wait_available: 5m
docker:
  compose_plugin:
    sha256: ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789
env:
  ONLY: {parameter: '/{prefix}/only'}
`))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"volume.id", c.Volume.ID, "vol-0123456789abcdef0"},
		{"volume.mount_point", c.Volume.MountPoint, "/srv/data"},
		{"volume.wait_available", c.Volume.WaitAvailable.Duration, 5 * time.Minute},
		{"volume.device (default kept)", c.Volume.Device, "/dev/xvdf"},
		{"default parameter follows prefix", c.Volume.IDParameter, "/monitoring-development/ebs/volume-id"},
		{"sha256 lower-cased", c.Docker.ComposePlugin.SHA256, strings.Repeat("abcdef0123456789", 4)},
		{"env replaced wholly", len(c.Env), 1},
		{"env parameter expanded", c.Env["ONLY"].Parameter, "/monitoring-development/only"},
		{"endpoints follow prefix", c.Endpoints["/monitoring-development/tempo/endpoint"], "http://{private_ip}:4317"},
	}
	for _, tc := range checks {
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("%s = %v, want %v", tc.name, tc.got, tc.want)
		}
	}
}

func TestParseNullKeepsDefault(t *testing.T) {
	c, err := Parse([]byte("prefix: p\nvolume:\n  device:\nenv: ~\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Volume.Device != "/dev/xvdf" || len(c.Env) != 4 {
		t.Errorf("device %q, %d env entries; want the defaults", c.Volume.Device, len(c.Env))
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string // appended to "prefix: p\n" unless it sets prefix itself
		key  string
		msg  string
		line int
	}{
		{"prefix missing", "region: eu-west-1\n", "prefix", "prefix: is missing; want the SSM namespace", 0},
		{"prefix empty", `prefix: ""` + "\n", "prefix", "is missing", 1},
		{"prefix slash", "prefix: /monitoring\n", "prefix", `"/monitoring" starts with a slash`, 1},
		{"prefix chars", "prefix: mon itor\n", "prefix", "is not safe in an SSM parameter path", 1},
		{"region", "region: Ireland\n", "region", `"Ireland" is not an AWS region; want a region such as eu-west-1`, 2},
		{"volume id", "volume:\n  id: vol-xyz\n", "volume.id",
			`volume.id: "vol-xyz" is not a volume id; want "vol-" followed by 8 or 17 lowercase hex digits (line 3)`, 3},
		{"volume id upper", "volume: {id: vol-0123456789ABCDEF0}\n", "volume.id", "is not a volume id", 2},
		{"no id nor parameter", "volume: {id: '', id_parameter: ''}\n", "volume.id_parameter", "is empty while volume.id is empty too", 2},
		{"id parameter relative", "volume: {id_parameter: '{prefix}/ebs'}\n", "volume.id_parameter", `"{prefix}/ebs" does not start with /`, 2},
		{"id parameter chars", "volume: {id_parameter: '/p/ebs id'}\n", "volume.id_parameter", "is not an SSM parameter name", 2},
		{"device", "volume: {device: /tmp/xvdf}\n", "volume.device", "want a clean path under /dev", 2},
		{"mount point relative", "volume: {mount_point: data}\n", "volume.mount_point", `"data" is not an absolute path`, 2},
		{"mount point root", "volume: {mount_point: /}\n", "volume.mount_point", "is the root directory", 2},
		{"mount point unclean", "volume: {mount_point: /data/}\n", "volume.mount_point", "is not a clean path; want it written as /data", 2},
		{"fs type", "volume: {fs_type: btrfs}\n", "volume.fs_type", `"btrfs" is not a supported file system; want xfs or ext4`, 2},
		{"mount options nofail", "volume: {mount_options: defaults}\n", "volume.mount_options", "lacks nofail", 2},
		{"owner", "volume: {owner: 'ec2 user'}\n", "volume.owner", "want a user name such as ec2-user, or numeric uid:gid", 2},
		{"owner group name", "volume: {owner: 'ec2-user:ec2-user'}\n", "volume.owner", "is not an owner", 2},
		{"zero timeout", "volume: {attach_timeout: 0s}\n", "volume.attach_timeout", `"0s" is not positive; want a duration greater than zero`, 2},
		{"negative timeout", "docker: {ready_timeout: -5s}\n", "docker.ready_timeout", "is not positive", 2},
		{"bare number duration", "compose: {health_timeout: 180}\n", "compose.health_timeout", `"180" is not a duration; want a Go duration such as "90s"`, 2},
		{"settle past the health timeout", "compose: {health_timeout: 30s, settle: 30s}\n", "compose.settle", "is not shorter than compose.health_timeout (30s)", 2},
		{"sha256", "docker: {compose_plugin: {sha256: abc}}\n", "docker.compose_plugin.sha256", "is not a SHA-256 digest; want 64 hex digits", 2},
		{"plugin url", "docker: {compose_plugin: {url: 'ftp://x/y'}}\n", "docker.compose_plugin.url", "is not an http(s) URL", 2},
		{"plugin version", "docker: {compose_plugin: {version: latest}}\n", "docker.compose_plugin.version", "is not a release version", 2},
		{"docker user", "docker: {user: 'Ec2 User'}\n", "docker.user", "is not a user name", 2},
		{"bundle dir", "bundle: {dir: opt/monitoring}\n", "bundle.dir", "is not an absolute path", 2},
		{"bundle bucket", "bundle: {bucket: 's3://bucket/scripts'}\n", "bundle.bucket", "is not an S3 bucket name", 2},
		{"no bucket nor parameter", "bundle: {bucket_parameter: ''}\n", "bundle.bucket_parameter", "is empty while bundle.bucket is empty too", 2},
		{"key prefix", "bundle: {key_prefix: /scripts/}\n", "bundle.key_prefix", "starts with a slash", 2},
		{"textfile dir", "metrics: {textfile_dir: textfile}\n", "metrics.textfile_dir", "is not an absolute path", 2},
		{"env key", "env:\n  GRAFANA-USER: {value: admin}\n", "env.GRAFANA-USER", "is not a shell identifier", 3},
		{"env both", "env:\n  A: {value: x, parameter: /p/a}\n", "env.A", "has both value and parameter; want exactly one of them", 3},
		{"env neither", "env:\n  A: {optional: true}\n", "env.A", "has neither value nor parameter", 3},
		{"env empty entry", "env:\n  A:\n", "env.A", "has neither value nor parameter", 3},
		{"env parameter", "env:\n  A: {parameter: grafana/pw}\n", "env.A.parameter", "does not start with /", 3},
		{"generate kind", "env:\n  A: {parameter: /p/a, generate: hex64}\n", "env.A.generate", `"hex64" is not a generator; want hex32, base64_32, password or age`, 3},
		{"generate with value", "env:\n  A: {value: x, generate: hex32}\n", "env.A.generate", "is set without parameter", 3},
		{"generate and optional", "env:\n  GITHUB_TOKEN: {parameter: /p/t, optional: true, generate: hex32}\n",
			"env.GITHUB_TOKEN.generate", "is set together with optional: true", 3},
		{"optional with value", "env:\n  A: {value: x, optional: true}\n", "env.A.optional", "is set without parameter", 3},
		{"services without optional", "env:\n  A: {parameter: /p/a, services: [x]}\n", "env.A.services", "is set without optional: true", 3},
		{"service name", "env:\n  A: {parameter: /p/a, optional: true, services: ['a b']}\n", "env.A.services[0]", "is not a service name", 3},
		{"file absolute", "env:\n  A: {parameter: /p/a, file: /etc/token}\n", "env.A.file", "is an absolute path", 3},
		{"file escapes", "env:\n  A: {parameter: /p/a, file: ../../etc/token}\n", "env.A.file", "is not inside the stack directory", 3},
		{"file unclean", "env:\n  A: {parameter: /p/a, file: a//b}\n", "env.A.file", "is not a clean path", 3},
		{"file twice", "env:\n  A: {parameter: /p/a, file: t}\n  B: {parameter: /p/b, file: t}\n", "env.B.file", "is also written by env.A", 4},
		{"file owner names", "env:\n  A: {parameter: /p/a, file: t, file_owner: 'nobody:nogroup'}\n", "env.A.file_owner", "is not a numeric uid:gid", 3},
		{"file owner without file", "env:\n  A: {parameter: /p/a, file_owner: '1:1'}\n", "env.A.file_owner", "is set without file", 3},
		{"env false without file", "env:\n  A: {parameter: /p/a, env: false}\n", "env.A.env", "otherwise the value goes nowhere", 3},
		{"endpoint relative", "endpoints:\n  loki/endpoint: http://x\n", "endpoints.loki/endpoint", "does not start with /", 3},
		{"endpoint empty", "endpoints:\n  /p/loki: ''\n", "endpoints./p/loki", "has an empty value", 3},
		{"endpoint collision", "endpoints:\n  /{prefix}/a: x\n  /p/a: y\n", "endpoints./{prefix}/a", "names the same parameter as another key once expanded: /p/a", 3},
		{"compose file absolute", "compose: {file: /opt/monitoring/docker-compose.yml}\n", "compose.file", "is an absolute path", 2},
		{"compose file escapes", "compose: {file: ../docker-compose.yml}\n", "compose.file", "is not inside the stack directory", 2},
		{"compose project", "compose: {project: Monitoring}\n", "compose.project", "is not a Compose project name", 2},
		{"stack name alone", "stack: {name: Monitoring-Compute, resource: ''}\n", "stack.resource", "is empty while stack.name is set", 2},
		{"stack resource alone", "stack: {resource: MyAsg}\n", "stack.name", "is empty while stack.resource is set", 2},
		{"stack name chars", "stack: {name: 'my stack'}\n", "stack.name", "is not a CloudFormation stack name", 2},
		{"max attempts", "aws: {max_attempts: 0}\n", "aws.max_attempts", `"0" is out of range; want a whole number from 1 to 100`, 2},
		{"max attempts overflow", "aws: {max_attempts: 99999999999999999999}\n", "aws.max_attempts", "is a number; want a whole number", 2},
		{"unknown placeholder", "volume: {id_parameter: '/{prefix}/{stage}/id'}\n", "volume.id_parameter", "uses unknown placeholder {stage}", 2},
		{"placeholder case", "bundle: {key_prefix: '{Region}/'}\n", "bundle.key_prefix", "{Region} (placeholders are lower case)", 2},
		{"version outside url", "bundle: {key_prefix: '{version}/'}\n", "bundle.key_prefix", "want {version} only in docker.compose_plugin.url", 2},
		{"unknown top key", "prefx: p\n", "prefx", "is not a known key (did you mean prefix?); want one of cloud, prefix, region", 2},
		{"unknown env field", "env:\n  A: {parameter: /p/a, optinal: true}\n", "env.A.optinal", "did you mean optional?", 3},
		{"bool type", "packages: {update: yes}\n", "packages.update", `"yes" is a string; want true or false`, 2},
		{"string type", "volume: {device: [a, b]}\n", "volume.device", `"[a, b]" is a list; want a string`, 2},
		{"struct type", "volume: /data\n", "volume", `"/data" is a string; want a mapping with keys kind, id, id_parameter`, 2},
		{"map type", "env: [A, B]\n", "env", "is a list; want a mapping", 2},
		{"list type", "env:\n  A: {parameter: /p/a, optional: true, services: web}\n", "env.A.services", "is a string; want a list of strings", 3},
		{"int type", "aws: {max_attempts: 1.5}\n", "aws.max_attempts", "is a number; want a whole number", 2},
		{"mapping type", "volume: {device: {a: b, c: [d]}}\n", "volume.device", `"{a: b, c: [d]}" is a mapping; want a string`, 2},
		{"bool as int", "aws: {max_attempts: true}\n", "aws.max_attempts", "is a boolean; want a whole number", 2},
		{"mount options spaces", "volume: {mount_options: 'defaults, nofail'}\n", "volume.mount_options", "is not an fstab options field", 2},
		{"duplicate key", "volume:\n  device: /dev/xvdf\n  device: /dev/xvdg\n", "volume.device", "is written twice (first on line 3)", 4},
		{"merge key", "volume:\n  <<: {device: /dev/xvdg}\n", "volume.<<", "is a merge key, which is not supported", 3},
		{"non-scalar key", "endpoints:\n  ? [a]\n  : b\n", "endpoints", "has a key that is a list", 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			doc := tc.yaml
			if !strings.HasPrefix(doc, "prefix") && tc.key != "prefix" {
				doc = "prefix: p\n" + doc
			}
			_, err := Parse([]byte(doc))
			e := findError(t, err, tc.key)
			if !strings.Contains(e.Error(), tc.msg) {
				t.Errorf("error = %q\nwant it to contain %q", e.Error(), tc.msg)
			}
			if e.Line != tc.line {
				t.Errorf("line = %d, want %d (%v)", e.Line, tc.line, e)
			}
		})
	}
}

func TestUnknownKeyAtDepth(t *testing.T) {
	doc := "prefix: p\nvolume:\n  device: /dev/xvdf\n  mount_pont: /data\n"
	_, err := Parse([]byte(doc))
	e := findError(t, err, "volume.mount_pont")
	want := "config: volume.mount_pont: is not a known key (did you mean mount_point?); want one of kind, id, id_parameter, device, mount_point,"
	if !strings.HasPrefix(e.Error(), want) || e.Line != 4 || !strings.HasSuffix(e.Error(), "(line 4)") {
		t.Errorf("error = %q (line %d)\nwant it to start %q and name line 4", e.Error(), e.Line, want)
	}
}

func TestTypeError(t *testing.T) {
	_, err := Parse([]byte("prefix: p\nvolume:\n  wait_available: [1]\n"))
	e := findError(t, err, "volume.wait_available")
	want := `config: volume.wait_available: "[1]" is a list; want a Go duration such as "90s" or "5m" (line 3)`
	if e.Error() != want || e.Value != "[1]" {
		t.Errorf("error = %q (value %q)\nwant %q", e.Error(), e.Value, want)
	}
}

func TestAllErrorsReported(t *testing.T) {
	doc := "prefix: p\nvolume:\n  id: vol-1\n  fs_type: zfs\n  colour: red\ncompose: {health_timeout: 0s}\n"
	_, err := Parse([]byte(doc))
	var keys []string
	for _, e := range configErrors(t, err) {
		keys = append(keys, e.Key)
	}
	want := []string{"volume.id", "volume.fs_type", "volume.colour", "compose.health_timeout"}
	if !reflect.DeepEqual(keys, want) {
		t.Errorf("keys = %q, want %q in file order", keys, want)
	}
}

func TestDocumentErrors(t *testing.T) {
	tests := []struct {
		name, yaml, msg string
	}{
		{"empty", "", "the document is empty"},
		{"comments only", "# nothing\n", "the document is empty"},
		{"null", "~\n", "the document is empty"},
		{"scalar", "hello\n", `"hello" is a string at the top level; want a mapping`},
		{"syntax", "prefix: [p\n", "invalid YAML: did not find expected ',' or ']'"},
		{"unquoted placeholder in flow", "prefix: p\nvolume: {id_parameter: /{prefix}/x}\n",
			"did not find expected ',' or '}'; want strings with {placeholders} quoted inside {...} and [...], such as {parameter: '/{prefix}/name'} (line 2)"},
		{"bad indent", "prefix: p\n\nvolume:\n  id: a\n   b: c\n", "mapping values are not allowed in this context (line 5)"},
		{"tab indent", "prefix: p\nvolume:\n\tid: x\n", "invalid YAML:"},
		{"two documents", "prefix: p\n---\nprefix: q\n", "holds more than one YAML document"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			if err == nil {
				t.Fatal("no error")
			}
			if errs := configErrors(t, err); len(errs) != 1 || !strings.Contains(errs[0].Error(), tc.msg) {
				t.Errorf("error = %v, want one containing %q", err, tc.msg)
			}
		})
	}
}

func TestLoadFileErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.yaml")
	empty := filepath.Join(dir, "empty.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("prefix: p\nvolume: {fs_type: zfs}\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	_, err := Load(missing)
	if e := configErrors(t, err); len(e) != 1 || !errors.Is(err, fs.ErrNotExist) ||
		!strings.Contains(err.Error(), missing+": does not exist") {
		t.Errorf("Load(missing) = %v; want a not-exist error naming the path", err)
	}
	_, err = Load(empty)
	if err == nil || !strings.Contains(err.Error(), empty+": no settings: the document is empty") {
		t.Errorf("Load(empty) = %v; want an empty-file error naming the path", err)
	}
	_, err = Load(bad)
	if err == nil || !strings.Contains(err.Error(), "config: "+bad+": volume.fs_type:") {
		t.Errorf("Load(bad) = %v; want the path before the key", err)
	}
}

func TestSecretValueNotInErrors(t *testing.T) {
	docs := []string{
		"prefix: p\nenv:\n  A: {value: 'hunter2{x}'}\n",
		"prefix: p\nenv:\n  A: {value: [hunter2]}\n",
	}
	for _, doc := range docs {
		_, err := Parse([]byte(doc))
		e := findError(t, err, "env.A.value")
		if strings.Contains(err.Error(), "hunter2") || e.Value != "" {
			t.Errorf("error shows the literal value: %v", err)
		}
	}
}

func TestComposeInterpolationLeftAlone(t *testing.T) {
	c, err := Parse([]byte("prefix: p\nenv:\n  URL: {value: 'http://${HOST}:{region}'}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := *c.Env["URL"].Value; got != "http://${HOST}:{region}" {
		t.Errorf("value = %q, want ${HOST} and {region} kept", got)
	}
}

func TestTooManyErrorsIsBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString("prefix: p\n")
	for i := range 500 {
		b.WriteString("k")
		b.WriteString(strings.Repeat("x", i%7+1))
		b.WriteString(string(rune('a' + i%26)))
		b.WriteString(strings.Repeat("y", i/26))
		b.WriteString(": 1\n")
	}
	_, err := Parse([]byte(b.String()))
	errs := configErrors(t, err)
	if len(errs) > maxErrors+1 {
		t.Errorf("%d errors, want at most %d", len(errs), maxErrors+1)
	}
	if last := errs[len(errs)-1]; !strings.Contains(last.Error(), "more problems not shown") {
		t.Errorf("last error = %v, want a note that more were not shown", last)
	}
}

func TestAliases(t *testing.T) {
	doc := "prefix: p\nx-timeout: &t 45s\n"
	if _, err := Parse([]byte(doc)); err == nil {
		t.Error("unknown top-level key accepted")
	}
	doc = "prefix: p\nvolume:\n  attach_timeout: &t 45s\n  device_timeout: *t\n"
	c, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if c.Volume.DeviceTimeout.Duration != 45*time.Second {
		t.Errorf("device_timeout = %v, want 45s through the alias", c.Volume.DeviceTimeout)
	}
}

func TestAliasBombIsBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString("prefix: p\nenv:\n  A: &a {parameter: /p/a, optional: true, services: [s, s, s, s, s, s, s, s]}\n")
	for i := range 1000 {
		b.WriteString("  B")
		b.WriteString(strings.Repeat("b", i))
		b.WriteString(": *a\n")
	}
	_, err := Parse([]byte(b.String()))
	if e := findError(t, err, "env.B"+strings.Repeat("b", maxAliases)); !strings.Contains(e.Error(), "uses too many aliases") {
		t.Errorf("error = %v, want too many aliases", e)
	}
}

// A file over MaxSize is refused by its size, before any parsing.
func TestOversizeFileIsRefused(t *testing.T) {
	p := filepath.Join(t.TempDir(), "big.yaml")
	doc := "prefix: p\n# " + strings.Repeat("x", MaxSize) + "\n"
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p)
	if err == nil || !strings.Contains(err.Error(), "larger than") || !strings.Contains(err.Error(), p) {
		t.Fatalf("Load = %v; want a size error naming the file", err)
	}
}

// Many '{' closed by one '}' at the end used to make placeholder scanning
// quadratic: 1 MiB of them took 26 s. The largest file accepted now parses
// at the speed of the YAML library (0.04 s here); the bound below is a
// hang guard, 100 times that, which the quadratic scan missed (10 s).
func TestManyOpenBracesParseFast(t *testing.T) {
	for _, fill := range []string{"{", "{a{", "${", "{a "} {
		n := (MaxSize - 64) / len(fill)
		// The closing brace at the end is what made every '{' scan to it.
		doc := "prefix: p\nenv:\n  A: {value: '" + strings.Repeat(fill, n) + "}'}\n"
		done := make(chan error, 1)
		go func() { _, err := Parse([]byte(doc)); done <- err }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("%q×%d: %v", fill, n, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%q×%d: parsing did not finish in 5s", fill, n)
		}
	}
}

// A long prefix used many times in one string used to expand to gigabytes
// (a 200 KB file: 27 s, 9.5 GB). Expansion is bounded, with an error naming
// the key.
func TestPrefixAmplificationIsBounded(t *testing.T) {
	doc := "prefix: " + strings.Repeat("a", 50_000) + "\nvolume:\n  id_parameter: \"" + strings.Repeat("/{prefix}", 20_000) + "\"\n"
	done := make(chan error, 1)
	go func() { _, err := Parse([]byte(doc)); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "volume.id_parameter") || !strings.Contains(err.Error(), "expands to more than") {
			t.Fatalf("Parse = %v; want an error naming the key", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("parsing did not finish in 5s")
	}
}

func BenchmarkExpandOpenBraces(b *testing.B) {
	s := strings.Repeat("{", MaxSize-1) + "}"
	keep := func(name string) (string, *problem) { return name, nil }
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		if _, p := expandString(s, keep); p != nil {
			b.Fatal(p)
		}
	}
}

func TestParameters(t *testing.T) {
	c := Defaults()
	c.Endpoints = map[string]string{"/monitoring-production/loki/endpoint": "x"}
	want := []string{"/monitoring-production/ebs/volume-id", "/monitoring-production/github/api-token",
		"/monitoring-production/grafana/admin-password", "/monitoring-production/loki/endpoint",
		"/monitoring-production/prometheus/metrics-bearer-token", "/monitoring-production/ssm/scripts-bucket-name"}
	if got := c.Parameters(); !slices.Equal(got, want) {
		t.Errorf("Parameters() = %v, want %v", got, want)
	}
	// A volume id or bucket given in the file is not read from SSM.
	c.Volume.ID, c.Bundle.Bucket = "vol-0123456789abcdef0", "scripts"
	if got := c.Parameters(); slices.Contains(got, "/monitoring-production/ebs/volume-id") || slices.Contains(got, "/monitoring-production/ssm/scripts-bucket-name") {
		t.Errorf("Parameters() = %v with the id and bucket set", got)
	}
}
