package config

import (
	"strings"
	"testing"
)

func TestExpandString(t *testing.T) {
	vars := map[string]string{"prefix": "mon", "az": "eu-west-1a"}
	lookup := func(name string) (string, *problem) {
		if v, ok := vars[name]; ok {
			return v, nil
		}
		return "", &problem{what: "unknown " + name}
	}
	tests := []struct {
		in, want, problem string
	}{
		{"/{prefix}/a", "/mon/a", ""},
		{"{prefix}{az}", "moneu-west-1a", ""},
		{"{{prefix}}", "{mon}", ""},
		{"${prefix}", "${prefix}", ""},
		{"{not a name}", "{not a name}", ""},
		{`{"json": 1}`, `{"json": 1}`, ""},
		{"{}", "{}", ""},
		{"{1x}", "{1x}", ""},
		{"open {prefix", "open {prefix", ""},
		{"/{stage}/x", "", "unknown stage"},
		{"ok {prefix} then {nope}", "", "unknown nope"},
	}
	for _, tc := range tests {
		got, p := expandString(tc.in, lookup)
		switch {
		case tc.problem == "" && (p != nil || got != tc.want):
			t.Errorf("expandString(%q) = %q, %v; want %q", tc.in, got, p, tc.want)
		case tc.problem != "" && (p == nil || p.what != tc.problem):
			t.Errorf("expandString(%q) problem = %v; want %q", tc.in, p, tc.problem)
		}
	}
}

func TestExpand(t *testing.T) {
	c, err := Parse([]byte(`
prefix: mon
stack: {name: 'Compute-{region}', resource: Asg}
env:
  HOST: {value: '{instance_id}.{az}'}
endpoints:
  /{prefix}/{instance_id}/loki: http://{private_ip}:3100
`))
	if err != nil {
		t.Fatal(err)
	}
	v := Vars{InstanceID: "i-0abc", Region: "eu-west-1", AZ: "eu-west-1b", PrivateIP: "10.1.2.3"}
	x, err := c.Expand(v)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct{ name, got, want string }{
		{"stack.name", x.Stack.Name, "Compute-eu-west-1"},
		{"env value", *x.Env["HOST"].Value, "i-0abc.eu-west-1b"},
		{"endpoint", x.Endpoints["/mon/i-0abc/loki"], "http://10.1.2.3:3100"},
		{"original untouched", *c.Env["HOST"].Value, "{instance_id}.{az}"},
		{"original endpoint untouched", c.Endpoints["/mon/{instance_id}/loki"], "http://{private_ip}:3100"},
	}
	for _, tc := range checks {
		if tc.got != tc.want {
			t.Errorf("%s = %q, want %q", tc.name, tc.got, tc.want)
		}
	}
	*x.Env["HOST"].Value = "changed"
	if *c.Env["HOST"].Value == "changed" {
		t.Error("Expand's copy shares a pointer with the original")
	}
}

func TestExpandMissingVar(t *testing.T) {
	c := Defaults()
	_, err := c.Expand(Vars{InstanceID: "i-1", Region: "eu-west-1", AZ: "eu-west-1a"})
	errs := configErrors(t, err)
	if len(errs) != 2 {
		t.Fatalf("got %d errors, want one per endpoint: %v", len(errs), err)
	}
	e := errs[0]
	want := `config: endpoints./monitoring-production/loki/endpoint: "http://{private_ip}:3100/loki/api/v1/push" uses {private_ip}, which is not known for this instance`
	if !strings.HasPrefix(e.Error(), want) {
		t.Errorf("error = %q\nwant it to start %q", e.Error(), want)
	}
}

func TestExpandKeyCollision(t *testing.T) {
	c, err := Parse([]byte("prefix: p\nendpoints:\n  /p/{az}: a\n  /p/eu-west-1a: b\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Expand(Vars{InstanceID: "i-1", Region: "eu-west-1", AZ: "eu-west-1a", PrivateIP: "10.0.0.1"})
	if e := findError(t, err, "endpoints./p/{az}"); !strings.Contains(e.Error(), "names the same parameter as another key") {
		t.Errorf("error = %v", e)
	}
}

func TestPrefixCannotForgePlaceholder(t *testing.T) {
	// Expanding {prefix} "pr" in "{{prefix}efix}" yields "{prefix}", which
	// Expand would read again; the load must refuse it instead.
	_, err := Parse([]byte("prefix: pr\nbundle: {key_prefix: '{{prefix}efix}'}\n"))
	if e := findError(t, err, "bundle.key_prefix"); !strings.Contains(e.Error(), "holds {prefix} once {prefix} is expanded") {
		t.Errorf("error = %v", e)
	}
}
