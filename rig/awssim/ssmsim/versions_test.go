package ssmsim_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"github.com/aws/smithy-go"

	"github.com/monagent/monagent/rig/awssim"
	"github.com/monagent/monagent/rig/awssim/simtest"
	"github.com/monagent/monagent/rig/awssim/ssmsim"
)

// putVersions writes values to name in turn: version 1, 2, ...
func (r *rig) putVersions(t *testing.T, name string, typ ssmtypes.ParameterType, values ...string) {
	t.Helper()
	for _, v := range values {
		r.put(t, name, v, typ)
	}
}

func (r *rig) label(t *testing.T, name string, version int64, labels ...string) *ssm.LabelParameterVersionOutput {
	t.Helper()
	in := &ssm.LabelParameterVersionInput{Name: aws.String(name), Labels: labels}
	if version > 0 {
		in.ParameterVersion = aws.Int64(version)
	}
	out, err := r.ssm.LabelParameterVersion(context.Background(), in)
	if err != nil {
		t.Fatalf("LabelParameterVersion %s %v: %v", name, labels, err)
	}
	return out
}

// apiError returns err's code and message; every error awssim answers a
// selector with must say what went wrong.
func apiError(t *testing.T, err error) (string, string) {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v (%T) is not an API error", err, err)
	}
	return ae.ErrorCode(), ae.ErrorMessage()
}

func TestGetParameterSelectors(t *testing.T) {
	r := newRig(t)
	r.putVersions(t, "/sel/p", ssmtypes.ParameterTypeString, "v1", "v2", "v3")
	r.label(t, "/sel/p", 2, "stable")
	r.label(t, "/sel/p", 0, "latest") // the current version

	tests := []struct {
		name         string
		wantValue    string
		wantVersion  int64
		wantSelector string
		wantCode     string
		wantMessage  string
	}{
		{name: "/sel/p", wantValue: "v3", wantVersion: 3},
		{name: "/sel/p:1", wantValue: "v1", wantVersion: 1, wantSelector: ":1"},
		{name: "/sel/p:2", wantValue: "v2", wantVersion: 2, wantSelector: ":2"},
		{name: "/sel/p:stable", wantValue: "v2", wantVersion: 2, wantSelector: ":stable"},
		{name: "/sel/p:latest", wantValue: "v3", wantVersion: 3, wantSelector: ":latest"},
		{name: "/sel/p:9", wantCode: "ParameterVersionNotFound", wantMessage: "Systems Manager could not find version 9 of /sel/p. Verify the version and try again."},
		{name: "/sel/p:nolabel", wantCode: "ParameterNotFound", wantMessage: "Parameter /sel/p:nolabel not found."},
		{name: "/sel/missing:1", wantCode: "ParameterNotFound", wantMessage: "Parameter /sel/missing:1 not found."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := r.ssm.GetParameter(context.Background(), &ssm.GetParameterInput{Name: aws.String(tt.name)})
			if tt.wantCode != "" {
				code, msg := apiError(t, err)
				if code != tt.wantCode || msg != tt.wantMessage {
					t.Errorf("error %s %q, want %s %q", code, msg, tt.wantCode, tt.wantMessage)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			p := out.Parameter
			if aws.ToString(p.Name) != "/sel/p" || aws.ToString(p.Value) != tt.wantValue || p.Version != tt.wantVersion ||
				aws.ToString(p.Selector) != tt.wantSelector || aws.ToString(p.ARN) != "arn:aws:ssm:eu-west-1:123456789012:parameter/sel/p" {
				t.Errorf("Parameter = name %q value %q version %d selector %q ARN %q; want /sel/p %q %d %q",
					aws.ToString(p.Name), aws.ToString(p.Value), p.Version, aws.ToString(p.Selector), aws.ToString(p.ARN),
					tt.wantValue, tt.wantVersion, tt.wantSelector)
			}
		})
	}
}

func TestGetParametersSelectors(t *testing.T) {
	r := newRig(t)
	r.putVersions(t, "/sel/q", ssmtypes.ParameterTypeString, "a", "b")
	r.label(t, "/sel/q", 1, "first")
	out, err := r.ssm.GetParameters(context.Background(), &ssm.GetParametersInput{
		Names: []string{"/sel/q:1", "/sel/q:first", "/sel/q:7", "/sel/q:other", "/sel/q"},
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range out.Parameters {
		got = append(got, fmt.Sprintf("%s%s=%s@%d", aws.ToString(p.Name), aws.ToString(p.Selector), aws.ToString(p.Value), p.Version))
	}
	if want := []string{"/sel/q:1=a@1", "/sel/q:first=a@1", "/sel/q=b@2"}; !slices.Equal(got, want) {
		t.Errorf("Parameters = %v, want %v", got, want)
	}
	if want := []string{"/sel/q:7", "/sel/q:other"}; !slices.Equal(out.InvalidParameters, want) {
		t.Errorf("InvalidParameters = %v, want %v", out.InvalidParameters, want)
	}
}

func TestLabelParameterVersion(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	r.putVersions(t, "/lab/p", ssmtypes.ParameterTypeSecureString, "secret-1", "secret-2")
	out := r.label(t, "/lab/p", 1, "prod", "aws-reserved", "9lives", "bad/label", "prod")
	if out.ParameterVersion != 1 || !slices.Equal(out.InvalidLabels, []string{"aws-reserved", "9lives", "bad/label"}) {
		t.Errorf("LabelParameterVersion = version %d invalid %v", out.ParameterVersion, out.InvalidLabels)
	}
	read := func(ref string) (string, int64) {
		t.Helper()
		got, err := r.ssm.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(ref), WithDecryption: aws.Bool(true)})
		if err != nil {
			t.Fatalf("GetParameter %s: %v", ref, err)
		}
		return aws.ToString(got.Parameter.Value), got.Parameter.Version
	}
	if v, n := read("/lab/p:prod"); v != "secret-1" || n != 1 {
		t.Errorf("/lab/p:prod = %q version %d, want secret-1 version 1", v, n)
	}
	// A label names one version: labelling version 2 moves it.
	r.label(t, "/lab/p", 2, "prod")
	if v, n := read("/lab/p:prod"); v != "secret-2" || n != 2 {
		t.Errorf("after the move /lab/p:prod = %q version %d, want secret-2 version 2", v, n)
	}
	// Without decryption a selected SecureString stays opaque.
	enc, err := r.ssm.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String("/lab/p:1")})
	if err != nil || strings.Contains(aws.ToString(enc.Parameter.Value), "secret") || !strings.HasPrefix(aws.ToString(enc.Parameter.Value), "AQICAH") {
		t.Errorf("undecrypted /lab/p:1 = %+v, %v", enc, err)
	}

	errs := []struct {
		name     string
		in       ssm.LabelParameterVersionInput
		code     string
		contains string
	}{
		{"unknown version", ssm.LabelParameterVersionInput{Name: aws.String("/lab/p"), ParameterVersion: aws.Int64(7), Labels: []string{"x"}},
			"ParameterVersionNotFound", "could not find version 7 of /lab/p"},
		{"unknown parameter", ssm.LabelParameterVersionInput{Name: aws.String("/lab/none"), Labels: []string{"x"}},
			"ParameterNotFound", "/lab/none"},
		{"no labels", ssm.LabelParameterVersionInput{Name: aws.String("/lab/p"), Labels: []string{}},
			"ValidationException", "'labels'"},
		{"eleven labels on one version", ssm.LabelParameterVersionInput{Name: aws.String("/lab/p"), ParameterVersion: aws.Int64(2),
			Labels: []string{"l1", "l2", "l3", "l4", "l5", "l6", "l7", "l8", "l9", "l10"}},
			"ParameterVersionLabelLimitExceeded", "maximum 10 labels"},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.ssm.LabelParameterVersion(ctx, &tt.in)
			if code, msg := apiError(t, err); code != tt.code || !strings.Contains(msg, tt.contains) {
				t.Errorf("error %s %q, want %s containing %q", code, msg, tt.code, tt.contains)
			}
		})
	}
}

func TestPutParameterRejects(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	tag := []ssmtypes.Tag{{Key: aws.String("team"), Value: aws.String("mon")}}
	_, err := r.ssm.PutParameter(ctx, &ssm.PutParameterInput{
		Name: aws.String("/rej/max"), Value: aws.String("100"), Type: ssmtypes.ParameterTypeString, AllowedPattern: aws.String(`\d{1,4}`), Tags: tag,
	})
	if err != nil {
		t.Fatalf("create with a pattern and tags: %v", err)
	}
	tests := []struct {
		name     string
		in       ssm.PutParameterInput
		code     string
		message  string
		typedErr any
	}{
		{"tags with overwrite", ssm.PutParameterInput{Name: aws.String("/rej/max"), Value: aws.String("200"), Overwrite: aws.Bool(true), Tags: tag},
			"ValidationException", "Invalid request: tags and overwrite can't be used together. To create a parameter with tags, please remove overwrite flag. " +
				"To update tags for an existing parameter, please use AddTagsToResource or RemoveTagsFromResource.", nil},
		{"tags with overwrite on a new name", ssm.PutParameterInput{Name: aws.String("/rej/new"), Value: aws.String("1"), Type: ssmtypes.ParameterTypeString, Overwrite: aws.Bool(true), Tags: tag},
			"ValidationException", "Invalid request: tags and overwrite can't be used together.", nil},
		{"value breaks the stored pattern", ssm.PutParameterInput{Name: aws.String("/rej/max"), Value: aws.String("10,000"), Type: ssmtypes.ParameterTypeString, Overwrite: aws.Bool(true)},
			"ParameterPatternMismatchException", `Parameter value, cannot be validated against allowedPattern: \d{1,4}`, new(*ssmtypes.ParameterPatternMismatchException)},
		{"value breaks its own pattern", ssm.PutParameterInput{Name: aws.String("/rej/pw"), Value: aws.String("short"), Type: ssmtypes.ParameterTypeSecureString, AllowedPattern: aws.String(".{8,20}")},
			"ParameterPatternMismatchException", "Parameter value, cannot be validated against allowedPattern: .{8,20}", nil},
		{"pattern that is no regexp", ssm.PutParameterInput{Name: aws.String("/rej/re"), Value: aws.String("qqq"), Type: ssmtypes.ParameterTypeString, AllowedPattern: aws.String("(")},
			"InvalidAllowedPatternException", "regular expression", new(*ssmtypes.InvalidAllowedPatternException)},
		{"type change", ssm.PutParameterInput{Name: aws.String("/rej/max"), Value: aws.String("300"), Type: ssmtypes.ParameterTypeSecureString, Overwrite: aws.Bool(true)},
			"HierarchyTypeMismatchException", "Parameter Store doesn't support changing a parameter type in a hierarchy.", new(*ssmtypes.HierarchyTypeMismatchException)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.ssm.PutParameter(ctx, &tt.in)
			code, msg := apiError(t, err)
			if code != tt.code || !strings.Contains(msg, tt.message) {
				t.Errorf("error %s %q, want %s containing %q", code, msg, tt.code, tt.message)
			}
			if strings.Contains(msg, aws.ToString(tt.in.Value)) && code != "ValidationException" {
				t.Errorf("message %q repeats the value", msg)
			}
			if tt.typedErr != nil && !errors.As(err, tt.typedErr) {
				t.Errorf("error %T is not %T", err, tt.typedErr)
			}
		})
	}
	// Nothing refused was stored; what obeys the rules still is.
	got, err := r.ssm.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String("/rej/max")})
	if err != nil || got.Parameter.Version != 1 || aws.ToString(got.Parameter.Value) != "100" {
		t.Fatalf("after refusals: %+v, %v", got, err)
	}
	ok, err := r.ssm.PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String("/rej/max"), Value: aws.String("9999"), Type: ssmtypes.ParameterTypeString, Overwrite: aws.Bool(true)})
	if err != nil || ok.Version != 2 {
		t.Errorf("overwrite of the same type with a matching value: %+v, %v", ok, err)
	}
}

func TestPutParameterRejectsCLI(t *testing.T) {
	r := newRig(t)
	r.cli(t, "ssm", "put-parameter", "--name", "/cli/max", "--value", "100", "--allowed-pattern", `\d{1,4}`, "--type", "String")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"pattern", []string{"--value", "10,000", "--type", "String", "--overwrite"},
			`(ParameterPatternMismatchException) when calling the PutParameter operation: Parameter value, cannot be validated against allowedPattern: \d{1,4}`},
		{"type change", []string{"--value", "200", "--type", "SecureString", "--overwrite"},
			"(HierarchyTypeMismatchException) when calling the PutParameter operation: Parameter Store doesn't support changing a parameter type"},
		{"tags and overwrite", []string{"--value", "200", "--overwrite", "--tags", "Key=team,Value=mon"},
			"(ValidationException) when calling the PutParameter operation: Invalid request: tags and overwrite can't be used together."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"--output", "json", "ssm", "put-parameter", "--name", "/cli/max"}, tt.args...)
			_, err := simtest.AWSCLI(t, r.url, args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("put-parameter %v: %v, want an error containing %q", tt.args, err, tt.want)
			}
		})
	}
}

func TestSelectorsCLI(t *testing.T) {
	r := newRig(t)
	r.putVersions(t, "/cli/sel", ssmtypes.ParameterTypeString, "old", "new")
	var labelled struct {
		InvalidLabels    []string
		ParameterVersion int64
	}
	if err := json.Unmarshal(r.cli(t, "ssm", "label-parameter-version", "--name", "/cli/sel", "--parameter-version", "1", "--labels", "previous"), &labelled); err != nil {
		t.Fatal(err)
	}
	if labelled.ParameterVersion != 1 || len(labelled.InvalidLabels) != 0 {
		t.Errorf("label-parameter-version = %+v", labelled)
	}
	for _, ref := range []string{"/cli/sel:1", "/cli/sel:previous"} {
		var got struct {
			Parameter struct {
				Name, Value, Selector string
				Version               int64
			}
		}
		if err := json.Unmarshal(r.cli(t, "ssm", "get-parameter", "--name", ref), &got); err != nil {
			t.Fatal(err)
		}
		if p := got.Parameter; p.Name != "/cli/sel" || p.Value != "old" || p.Version != 1 || p.Selector != ref[len("/cli/sel"):] {
			t.Errorf("get-parameter %s = %+v", ref, p)
		}
	}
	_, err := simtest.AWSCLI(t, r.url, "ssm", "get-parameter", "--name", "/cli/sel:5")
	want := "(ParameterVersionNotFound) when calling the GetParameter operation: Systems Manager could not find version 5 of /cli/sel."
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("get-parameter of a missing version: %v, want %q", err, want)
	}
}

// TestVersionHistory keeps versions and labels across a restart and drops
// the oldest version past 100, unless it has a label.
func TestVersionHistory(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	for i := 1; i <= 100; i++ {
		r.put(t, "/hist/p", fmt.Sprint("v", i), ssmtypes.ParameterTypeString)
	}
	r.label(t, "/hist/p", 1, "genesis")
	_, err := r.ssm.PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String("/hist/p"), Value: aws.String("v101"), Overwrite: aws.Bool(true)})
	if code, msg := apiError(t, err); code != "ParameterMaxVersionLimitExceeded" || !strings.Contains(msg, "Version 1, the oldest version, can't be deleted") {
		t.Errorf("101st version with version 1 labelled: %s %q", code, msg)
	}
	r.label(t, "/hist/p", 50, "genesis") // moves the label off version 1
	r.put(t, "/hist/p", "v101", ssmtypes.ParameterTypeString)

	svc, err := ssmsim.New(testID, r.dir)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(awssim.NewServer(svc))
	defer ts.Close()
	c := newClient(ts.URL, aws.NopRetryer{})
	for ref, want := range map[string]string{"/hist/p:2": "v2", "/hist/p:genesis": "v50", "/hist/p": "v101"} {
		got, err := c.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(ref)})
		if err != nil || aws.ToString(got.Parameter.Value) != want {
			t.Errorf("after restart %s = %+v, %v; want %s", ref, got, err, want)
		}
	}
	_, err = c.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String("/hist/p:1")})
	if code, _ := apiError(t, err); code != "ParameterVersionNotFound" {
		t.Errorf("version 1 after 101 versions: %v, want ParameterVersionNotFound", err)
	}
}

// TestSeedReplacesType: a scenario states what a parameter is, so seeding
// another type replaces it rather than failing as PutParameter would.
func TestSeedReplacesType(t *testing.T) {
	r := newRig(t)
	for _, typ := range []string{"String", "SecureString"} {
		if err := r.sim.ApplyScenario([]byte("ssm: {parameters: [{name: /seed/t, value: x, type: " + typ + "}]}")); err != nil {
			t.Fatalf("seed as %s: %v", typ, err)
		}
	}
	got, err := r.ssm.GetParameter(context.Background(), &ssm.GetParameterInput{Name: aws.String("/seed/t")})
	if err != nil || got.Parameter.Type != ssmtypes.ParameterTypeSecureString || got.Parameter.Version != 1 {
		t.Errorf("reseeded parameter = %+v, %v; want a SecureString at version 1", got, err)
	}
}
