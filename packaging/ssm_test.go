package packaging_test

// The SSM Command document packaging/ssm/monagent-reconcile.json: its
// structure (schema 2.2), its parameters and their references, and what
// its commands run, checked against a stub of /usr/bin/monagent and the
// real binary's verbs and flags.

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

const ssmDocPath = "ssm/monagent-reconcile.json"

type ssmDoc struct {
	SchemaVersion string                  `json:"schemaVersion"`
	Description   string                  `json:"description"`
	Parameters    map[string]ssmParameter `json:"parameters"`
	MainSteps     []ssmStep               `json:"mainSteps"`
}

type ssmParameter struct {
	Type              string  `json:"type"`
	Description       string  `json:"description"`
	Default           *string `json:"default"`
	AllowedPattern    string  `json:"allowedPattern"`
	InterpolationType string  `json:"interpolationType"`
}

type ssmStep struct {
	Action       string              `json:"action"`
	Name         string              `json:"name"`
	Precondition map[string][]string `json:"precondition"`
	Inputs       struct {
		RunCommand       []string `json:"runCommand"`
		TimeoutSeconds   string   `json:"timeoutSeconds"`
		WorkingDirectory string   `json:"workingDirectory"`
	} `json:"inputs"`
}

// readSSMDoc decodes the document strictly: a misspelt key is an error.
func readSSMDoc(t *testing.T) (ssmDoc, []byte) {
	t.Helper()
	raw, err := os.ReadFile(ssmDocPath)
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(raw) {
		t.Fatalf("%s is not valid JSON", ssmDocPath)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var doc ssmDoc
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("%s: %v", ssmDocPath, err)
	}
	return doc, raw
}

// refPattern matches a {{ name }} parameter reference.
var refPattern = regexp.MustCompile(`\{\{\s*([^{}\s]+)\s*\}\}`)

func TestSSMDocumentStructure(t *testing.T) {
	doc, raw := readSSMDoc(t)
	if doc.SchemaVersion != "2.2" {
		t.Errorf("schemaVersion = %q, want \"2.2\"", doc.SchemaVersion)
	}
	if len(strings.TrimSpace(doc.Description)) < 20 {
		t.Errorf("description %q: say what the document does", doc.Description)
	}

	// Parameters: typed, described, with defaults their own pattern accepts.
	wantDefaults := map[string]string{
		"configPath":       "/etc/monagent/config.yaml",
		"only":             "",
		"executionTimeout": "3600",
	}
	if len(doc.Parameters) != len(wantDefaults) {
		t.Errorf("parameters %v, want exactly %v", keys(doc.Parameters), keys(wantDefaults))
	}
	patterns := map[string]*regexp.Regexp{}
	for name, p := range doc.Parameters {
		if !regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*$`).MatchString(name) {
			t.Errorf("parameter %q: use letters, digits and _ only (it becomes the variable SSM_%s)", name, name)
		}
		if p.Type != "String" {
			t.Errorf("parameter %s: type %q, want String", name, p.Type)
		}
		if strings.TrimSpace(p.Description) == "" {
			t.Errorf("parameter %s: no description", name)
		}
		if p.Default == nil {
			t.Errorf("parameter %s: no default (every parameter is optional)", name)
			continue
		}
		if want, ok := wantDefaults[name]; !ok {
			t.Errorf("unexpected parameter %s", name)
		} else if *p.Default != want {
			t.Errorf("parameter %s: default %q, want %q", name, *p.Default, want)
		}
		if p.AllowedPattern == "" {
			t.Errorf("parameter %s: no allowedPattern: a value reaches a shell command", name)
			continue
		}
		re, err := regexp.Compile(p.AllowedPattern)
		if err != nil {
			t.Errorf("parameter %s: allowedPattern %q: %v", name, p.AllowedPattern, err)
			continue
		}
		patterns[name] = re
		if !re.MatchString(*p.Default) {
			t.Errorf("parameter %s: its default %q does not match its allowedPattern %q", name, *p.Default, p.AllowedPattern)
		}
		if p.InterpolationType != "" && p.InterpolationType != "ENV_VAR" {
			t.Errorf("parameter %s: interpolationType %q, want ENV_VAR or none", name, p.InterpolationType)
		}
	}
	// No value that could leave its quotes or run a command gets through.
	hostile := []string{"'", `"`, "$(id)", "`id`", "a;b", "a b", "a\nb", "a|b", "a&b", "{{ x }}", `a\b`}
	accept := map[string][]string{
		"configPath":       {"/etc/monagent/config.yaml", "/etc/monagent/prod-eu.yaml"},
		"only":             {"", "compose", "volume,signal", "docker-ready,bundle,env,compose,endpoints"},
		"executionTimeout": {"60", "3600", "172800"},
	}
	reject := map[string][]string{
		"configPath":       {"", "relative.yaml"},
		"only":             {",", "compose,", "Compose"},
		"executionTimeout": {"", "0", "5", "172801", "-1", "1e3"},
	}
	for name, re := range patterns {
		for _, v := range accept[name] {
			if !re.MatchString(v) {
				t.Errorf("parameter %s: allowedPattern refuses %q", name, v)
			}
		}
		for _, v := range append(reject[name], hostile...) {
			if re.MatchString(v) {
				t.Errorf("parameter %s: allowedPattern accepts %q", name, v)
			}
		}
	}

	// Every {{ reference }} anywhere in the document is a declared
	// parameter, and every parameter is used.
	used := map[string]bool{}
	for _, m := range refPattern.FindAllStringSubmatch(string(raw), -1) {
		name := m[1]
		if strings.HasPrefix(name, "ssm:") || strings.HasPrefix(name, "resolve:") {
			continue
		}
		if _, ok := doc.Parameters[name]; !ok {
			t.Errorf("%s references {{ %s }}, which is not a declared parameter", ssmDocPath, name)
		}
		used[name] = true
	}
	for name, p := range doc.Parameters {
		if p.InterpolationType == "ENV_VAR" && strings.Contains(string(raw), "SSM_"+name) {
			used[name] = true
		}
		if !used[name] {
			t.Errorf("parameter %s is declared but never used", name)
		}
	}

	// Steps: shell scripts, named, reconcile first, then smoke.
	if len(doc.MainSteps) != 2 {
		t.Fatalf("mainSteps: %d steps, want 2 (reconcile, smoke)", len(doc.MainSteps))
	}
	names := map[string]bool{}
	for i, s := range doc.MainSteps {
		if s.Action != "aws:runShellScript" {
			t.Errorf("mainSteps[%d]: action %q, want aws:runShellScript", i, s.Action)
		}
		if !regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`).MatchString(s.Name) || names[s.Name] {
			t.Errorf("mainSteps[%d]: name %q: want a unique name of letters, digits, '_', '.', '-'", i, s.Name)
		}
		names[s.Name] = true
		if len(s.Inputs.RunCommand) == 0 {
			t.Errorf("mainSteps[%d] (%s): no inputs.runCommand", i, s.Name)
		}
		if pre := s.Precondition["StringEquals"]; len(pre) != 2 || pre[0] != "platformType" || pre[1] != "Linux" {
			t.Errorf("mainSteps[%d] (%s): precondition %v, want StringEquals [platformType Linux]", i, s.Name, s.Precondition)
		}
		// A timeout: literal seconds, or the executionTimeout parameter.
		switch to := s.Inputs.TimeoutSeconds; {
		case refPattern.MatchString(to):
			if m := refPattern.FindStringSubmatch(to); m[0] != to || m[1] != "executionTimeout" {
				t.Errorf("mainSteps[%d] (%s): timeoutSeconds %q", i, s.Name, to)
			}
		default:
			if n, err := strconv.Atoi(to); err != nil || n < 1 || n > 172800 {
				t.Errorf("mainSteps[%d] (%s): timeoutSeconds %q, want 1 to 172800 seconds", i, s.Name, to)
			}
		}
		script := strings.Join(s.Inputs.RunCommand, "\n")
		if s.Inputs.RunCommand[0] != "#!/bin/bash" || !strings.Contains(script, "set -euo pipefail") {
			t.Errorf("mainSteps[%d] (%s): start with #!/bin/bash and set -euo pipefail", i, s.Name)
		}
		// monagent by its full path: the agent's PATH need not hold /usr/bin first.
		for _, line := range s.Inputs.RunCommand {
			if regexp.MustCompile(`(^|[^/])\bmonagent\s+(reconcile|smoke|status|bootstrap)`).MatchString(line) {
				t.Errorf("mainSteps[%d] (%s): call /usr/bin/monagent by its path: %q", i, s.Name, line)
			}
		}
	}
	if doc.MainSteps[0].Name != "reconcile" || doc.MainSteps[1].Name != "smoke" {
		t.Errorf("mainSteps are %q, %q; want reconcile, then smoke", doc.MainSteps[0].Name, doc.MainSteps[1].Name)
	}
}

// TestSSMDocumentCommands runs each step's script the way the SSM agent
// does (parameters as SSM_<name> variables, or only interpolated into the
// text by an older agent), with /usr/bin/monagent replaced by a stub that
// records its arguments.
func TestSSMDocumentCommands(t *testing.T) {
	doc, _ := readSSMDoc(t)
	dir := t.TempDir()
	argsFile := filepath.Join(dir, "args")
	stub := filepath.Join(dir, "monagent")
	if err := os.WriteFile(stub, []byte("#!/bin/sh\nprintf '%s\\n' \"$@\" >\""+argsFile+"\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	steps := map[string]ssmStep{}
	for _, s := range doc.MainSteps {
		steps[s.Name] = s
	}

	// run runs a step's script with the given parameter values; envVars
	// says whether the agent sets SSM_<name> (interpolationType ENV_VAR)
	// or only interpolates {{ name }} (an agent older than 3.3.2746.0).
	run := func(step string, values map[string]string, envVars bool) []string {
		t.Helper()
		s, ok := steps[step]
		if !ok {
			t.Fatalf("no step %q", step)
		}
		all := map[string]string{}
		for name, p := range doc.Parameters {
			all[name] = *p.Default
		}
		for k, v := range values {
			all[k] = v
		}
		script := refPattern.ReplaceAllStringFunc(strings.Join(s.Inputs.RunCommand, "\n"), func(ref string) string {
			return all[refPattern.FindStringSubmatch(ref)[1]]
		})
		if !strings.Contains(script, "/usr/bin/monagent") {
			t.Fatalf("step %s does not run /usr/bin/monagent:\n%s", step, script)
		}
		script = strings.ReplaceAll(script, "/usr/bin/monagent", stub)
		path := filepath.Join(dir, step+".sh")
		if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		os.Remove(argsFile)
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "sh", "-c", path) // as the agent runs _script.sh
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
		if envVars {
			for name, p := range doc.Parameters {
				if p.InterpolationType == "ENV_VAR" {
					cmd.Env = append(cmd.Env, "SSM_"+name+"="+all[name])
				}
			}
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("step %s with %v (ENV_VAR %v): %v\n%s", step, values, envVars, err, out)
		}
		b, err := os.ReadFile(argsFile)
		if err != nil {
			t.Fatalf("step %s did not run monagent: %v", step, err)
		}
		return strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	}

	for _, envVars := range []bool{true, false} {
		for _, c := range []struct {
			step   string
			values map[string]string
			want   []string
		}{
			{"reconcile", nil, []string{"reconcile", "--config", "/etc/monagent/config.yaml"}},
			{"reconcile", map[string]string{"only": "compose,endpoints"}, []string{"reconcile", "--config", "/etc/monagent/config.yaml", "--only", "compose,endpoints"}},
			{"reconcile", map[string]string{"configPath": "/etc/monagent/other.yaml", "only": "volume"}, []string{"reconcile", "--config", "/etc/monagent/other.yaml", "--only", "volume"}},
			{"smoke", nil, []string{"smoke", "--config", "/etc/monagent/config.yaml"}},
			{"smoke", map[string]string{"configPath": "/etc/monagent/other.yaml"}, []string{"smoke", "--config", "/etc/monagent/other.yaml"}},
		} {
			if got := run(c.step, c.values, envVars); strings.Join(got, " ") != strings.Join(c.want, " ") {
				t.Errorf("step %s with %v (ENV_VAR %v) runs monagent %q, want %q", c.step, c.values, envVars, got, c.want)
			}
		}
	}
}

// TestSSMDocumentVerbs checks that the verbs and flags the document uses
// exist in monagent.
func TestSSMDocumentVerbs(t *testing.T) {
	root := repoRoot(t)
	bin := filepath.Join(t.TempDir(), "monagent")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	gocmd := "go"
	if _, err := exec.LookPath(gocmd); err != nil {
		gocmd = "/usr/local/go/bin/go"
	}
	build := exec.CommandContext(ctx, gocmd, "build", "-o", bin, "./cmd/monagent")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/monagent: %v\n%s", err, out)
	}
	for verb, flags := range map[string][]string{
		"reconcile": {"--only", "--config"},
		"smoke":     {"--config"},
	} {
		out, err := exec.CommandContext(ctx, bin, verb, "--help").CombinedOutput()
		if err != nil {
			t.Errorf("monagent %s --help: %v\n%s", verb, err, out)
			continue
		}
		for _, f := range flags {
			if !strings.Contains(string(out), f+" ") {
				t.Errorf("monagent %s --help does not list %s:\n%s", verb, f, out)
			}
		}
	}

	// The README shows how to run the document on a fleet by tag.
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"aws ssm create-document", "aws ssm send-command", "--document-name monagent-reconcile", "--targets Key=tag:"} {
		if !strings.Contains(string(readme), s) {
			t.Errorf("packaging/README.md does not show %q", s)
		}
	}
}

func keys[V any](m map[string]V) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	return k
}
