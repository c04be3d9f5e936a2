package ssmsim_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"github.com/aws/smithy-go"

	"github.com/monagent/monagent/rig/awssim"
	"github.com/monagent/monagent/rig/awssim/simapi"
	"github.com/monagent/monagent/rig/awssim/ssmsim"
)

var testID = simapi.Identity{Region: "eu-west-1", AccountID: "123456789012"}

type rig struct {
	sim *awssim.Server
	url string
	dir string
	ssm *ssm.Client // no retries, so that every error reaches the test
}

func newRig(t *testing.T) *rig {
	t.Helper()
	dir := t.TempDir()
	svc, err := ssmsim.New(testID, dir)
	if err != nil {
		t.Fatal(err)
	}
	sim := awssim.NewServer(svc)
	ts := httptest.NewServer(sim)
	t.Cleanup(func() {
		ts.Close()
		if err := sim.Close(); err != nil {
			t.Error(err)
		}
	})
	return &rig{sim: sim, url: ts.URL, dir: dir, ssm: newClient(ts.URL, aws.NopRetryer{})}
}

// newClient makes an SDK client for url; a nil retryer is the SDK's
// standard one with a short backoff so the tests stay fast.
func newClient(url string, retryer aws.Retryer) *ssm.Client {
	if retryer == nil {
		retryer = retry.NewStandard(func(o *retry.StandardOptions) {
			o.Backoff = retry.NewExponentialJitterBackoff(50 * time.Millisecond)
		})
	}
	return ssm.New(ssm.Options{
		Region:       "eu-west-1",
		BaseEndpoint: aws.String(url),
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "AKIDTEST", SecretAccessKey: "secret"}, nil
		}),
		Retryer: retryer,
	})
}

func (r *rig) put(t *testing.T, name, value string, typ ssmtypes.ParameterType) {
	t.Helper()
	_, err := r.ssm.PutParameter(context.Background(), &ssm.PutParameterInput{
		Name: aws.String(name), Value: aws.String(value), Type: typ, Overwrite: aws.Bool(true),
	})
	if err != nil {
		t.Fatalf("PutParameter %s: %v", name, err)
	}
}

func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func TestPutAndGetParameter(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	before := time.Now().Add(-time.Second)
	out, err := r.ssm.PutParameter(ctx, &ssm.PutParameterInput{
		Name: aws.String("/mon/db/password"), Value: aws.String("s3cr3t value"), Type: ssmtypes.ParameterTypeSecureString,
		Description: aws.String("db"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if out.Version != 1 || out.Tier != ssmtypes.ParameterTierStandard {
		t.Errorf("PutParameter = version %d tier %q, want 1 Standard", out.Version, out.Tier)
	}

	got, err := r.ssm.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String("/mon/db/password"), WithDecryption: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	p := got.Parameter
	checks := []struct{ field, got, want string }{
		{"Name", aws.ToString(p.Name), "/mon/db/password"},
		{"Value", aws.ToString(p.Value), "s3cr3t value"},
		{"Type", string(p.Type), "SecureString"},
		{"ARN", aws.ToString(p.ARN), "arn:aws:ssm:eu-west-1:123456789012:parameter/mon/db/password"},
		{"DataType", aws.ToString(p.DataType), "text"},
		{"Version", fmt.Sprint(p.Version), "1"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.field, c.got, c.want)
		}
	}
	if lm := aws.ToTime(p.LastModifiedDate); lm.Before(before) || lm.After(time.Now().Add(time.Second)) {
		t.Errorf("LastModifiedDate = %v, want about now", lm)
	}

	enc, err := r.ssm.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String("/mon/db/password")})
	if err != nil {
		t.Fatal(err)
	}
	cipher := aws.ToString(enc.Parameter.Value)
	blob, err := base64.StdEncoding.DecodeString(cipher)
	if err != nil || !strings.HasPrefix(cipher, "AQICAH") || len(blob) < 64 {
		t.Errorf("undecrypted SecureString = %q, want an opaque KMS-like base64 blob", cipher)
	}
	if strings.Contains(cipher, "s3cr3t") || strings.Contains(string(blob), "s3cr3t") {
		t.Errorf("undecrypted SecureString reveals the value: %q", cipher)
	}
	again, err := r.ssm.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String("/mon/db/password")})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(again.Parameter.Value) != cipher {
		t.Error("ciphertext of one version changes between reads")
	}

	// A String is returned as is, decryption or not.
	r.put(t, "plain", "hello", ssmtypes.ParameterTypeString)
	pl, err := r.ssm.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String("plain")})
	if err != nil {
		t.Fatal(err)
	}
	if v := aws.ToString(pl.Parameter.Value); v != "hello" {
		t.Errorf("String value = %q, want hello", v)
	}
	if arn := aws.ToString(pl.Parameter.ARN); arn != "arn:aws:ssm:eu-west-1:123456789012:parameter/plain" {
		t.Errorf("ARN = %q", arn)
	}
}

func TestOverwriteIncrementsVersion(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	r.put(t, "/a/list", "x,y", ssmtypes.ParameterTypeStringList)
	for want := int64(2); want <= 3; want++ {
		// Type may be left out on overwrite: the parameter keeps its own.
		out, err := r.ssm.PutParameter(ctx, &ssm.PutParameterInput{
			Name: aws.String("/a/list"), Value: aws.String(fmt.Sprintf("v%d", want)), Overwrite: aws.Bool(true),
		})
		if err != nil {
			t.Fatal(err)
		}
		if out.Version != want {
			t.Errorf("version = %d, want %d", out.Version, want)
		}
	}
	got, err := r.ssm.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String("/a/list")})
	if err != nil {
		t.Fatal(err)
	}
	if got.Parameter.Type != ssmtypes.ParameterTypeStringList || got.Parameter.Version != 3 || aws.ToString(got.Parameter.Value) != "v3" {
		t.Errorf("after overwrite: %+v", got.Parameter)
	}
}

func TestPutParameterErrors(t *testing.T) {
	r := newRig(t)
	r.put(t, "/exists", "v", ssmtypes.ParameterTypeString)
	deep := strings.Repeat("/l", 16)
	tests := []struct {
		name     string
		in       ssm.PutParameterInput
		code     string
		message  string
		typedErr any
	}{
		{"exists without overwrite", ssm.PutParameterInput{Name: aws.String("/exists"), Value: aws.String("v"), Type: "String"},
			"ParameterAlreadyExists", "The parameter already exists. To overwrite this value, set the overwrite option in the request to true.", new(*ssmtypes.ParameterAlreadyExists)},
		{"type required on create", ssm.PutParameterInput{Name: aws.String("/new"), Value: aws.String("v")},
			"ValidationException", "A parameter type is required when you create a parameter.", nil},
		{"value too long", ssm.PutParameterInput{Name: aws.String("/big"), Value: aws.String(strings.Repeat("x", 4097)), Type: "String"},
			"ValidationException", "Standard tier parameters support a maximum parameter value of 4096 characters", nil},
		{"empty value", ssm.PutParameterInput{Name: aws.String("/empty"), Value: aws.String(""), Type: "String"},
			"ValidationException", "Member must have length greater than or equal to 1", nil},
		{"bad type", ssm.PutParameterInput{Name: aws.String("/t"), Value: aws.String("v"), Type: "Number"},
			"ValidationException", "Member must satisfy enum value set", nil},
		{"slash not leading", ssm.PutParameterInput{Name: aws.String("a/b"), Value: aws.String("v"), Type: "String"},
			"ValidationException", "Parameter name must be a fully qualified name.", nil},
		{"empty level", ssm.PutParameterInput{Name: aws.String("/a//b"), Value: aws.String("v"), Type: "String"},
			"ValidationException", "Parameter name: can't be prefixed", nil},
		{"trailing slash", ssm.PutParameterInput{Name: aws.String("/a/"), Value: aws.String("v"), Type: "String"},
			"ValidationException", "Parameter name: can't be prefixed", nil},
		{"space", ssm.PutParameterInput{Name: aws.String("/a b"), Value: aws.String("v"), Type: "String"},
			"ValidationException", "Parameter name: can't be prefixed", nil},
		{"prefix aws", ssm.PutParameterInput{Name: aws.String("awsThing"), Value: aws.String("v"), Type: "String"},
			"ValidationException", "Parameter name: can't be prefixed", nil},
		{"prefix /SSM", ssm.PutParameterInput{Name: aws.String("/SSM/x"), Value: aws.String("v"), Type: "String"},
			"ValidationException", "Parameter name: can't be prefixed", nil},
		{"too deep", ssm.PutParameterInput{Name: aws.String(deep), Value: aws.String("v"), Type: "String"},
			"HierarchyLevelLimitExceededException", "A hierarchy can have a maximum of 15 levels", new(*ssmtypes.HierarchyLevelLimitExceededException)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.ssm.PutParameter(context.Background(), &tt.in)
			if code := errorCode(err); code != tt.code {
				t.Fatalf("error = %v, want code %s", err, tt.code)
			}
			var ae smithy.APIError
			errors.As(err, &ae)
			if !strings.Contains(ae.ErrorMessage(), tt.message) {
				t.Errorf("message = %q, want it to contain %q", ae.ErrorMessage(), tt.message)
			}
			if tt.typedErr != nil && !errors.As(err, tt.typedErr) {
				t.Errorf("error %T is not %T", err, tt.typedErr)
			}
		})
	}
	// 15 levels is still fine.
	r.put(t, strings.Repeat("/l", 15), "v", ssmtypes.ParameterTypeString)
}

func TestGetParameters(t *testing.T) {
	r := newRig(t)
	r.put(t, "/p/a", "1", ssmtypes.ParameterTypeString)
	r.put(t, "/p/b", "2", ssmtypes.ParameterTypeSecureString)
	out, err := r.ssm.GetParameters(context.Background(), &ssm.GetParametersInput{
		Names: []string{"/p/a", "/p/missing", "/p/b"}, WithDecryption: aws.Bool(true),
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range out.Parameters {
		got = append(got, aws.ToString(p.Name)+"="+aws.ToString(p.Value))
	}
	if strings.Join(got, " ") != "/p/a=1 /p/b=2" {
		t.Errorf("Parameters = %v", got)
	}
	if len(out.InvalidParameters) != 1 || out.InvalidParameters[0] != "/p/missing" {
		t.Errorf("InvalidParameters = %v, want [/p/missing]", out.InvalidParameters)
	}
	_, err = r.ssm.GetParameters(context.Background(), &ssm.GetParametersInput{Names: strings.Split("a b c d e f g h i j k", " ")})
	if errorCode(err) != "ValidationException" {
		t.Errorf("11 names: error = %v, want ValidationException", err)
	}
}

func TestGetParametersByPath(t *testing.T) {
	r := newRig(t)
	for _, n := range []string{"/app/a", "/app/b", "/app/sub/c", "/app/sub/deep/d", "/apple/x", "/other/y", "noslash"} {
		r.put(t, n, "v"+n, ssmtypes.ParameterTypeSecureString)
	}
	tests := []struct {
		path      string
		recursive bool
		want      string
	}{
		{"/app", false, "/app/a /app/b"},
		{"/app/", false, "/app/a /app/b"},
		{"/app", true, "/app/a /app/b /app/sub/c /app/sub/deep/d"},
		{"/app/sub", true, "/app/sub/c /app/sub/deep/d"},
		{"/", false, ""},
		{"/", true, "/app/a /app/b /app/sub/c /app/sub/deep/d /apple/x /other/y"},
		{"/none", true, ""},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s recursive=%v", tt.path, tt.recursive), func(t *testing.T) {
			names, values := byPath(t, r.ssm, tt.path, tt.recursive, 10)
			if got := strings.Join(names, " "); got != tt.want {
				t.Errorf("names = %q, want %q", got, tt.want)
			}
			for i, v := range values {
				if v != "v"+names[i] {
					t.Errorf("%s = %q, want the decrypted value", names[i], v)
				}
			}
		})
	}
}

// byPath reads every page of GetParametersByPath and checks each page's size.
func byPath(t *testing.T, c *ssm.Client, path string, recursive bool, max int32) (names, values []string) {
	t.Helper()
	pager := ssm.NewGetParametersByPathPaginator(c, &ssm.GetParametersByPathInput{
		Path: aws.String(path), Recursive: aws.Bool(recursive), WithDecryption: aws.Bool(true), MaxResults: aws.Int32(max),
	})
	for pages := 0; pager.HasMorePages(); pages++ {
		if pages > 100 {
			t.Fatal("pagination does not end")
		}
		out, err := pager.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Parameters) > int(max) {
			t.Errorf("page has %d parameters, MaxResults %d", len(out.Parameters), max)
		}
		for _, p := range out.Parameters {
			names = append(names, aws.ToString(p.Name))
			values = append(values, aws.ToString(p.Value))
		}
	}
	return names, values
}

func TestGetParametersByPathPagination(t *testing.T) {
	r := newRig(t)
	var want []string
	for i := range 23 {
		n := fmt.Sprintf("/pg/%02d", i)
		want = append(want, n)
		r.put(t, n, "x", ssmtypes.ParameterTypeString)
	}
	r.put(t, "/pg/deeper/not-direct", "x", ssmtypes.ParameterTypeString)

	first, err := r.ssm.GetParametersByPath(context.Background(), &ssm.GetParametersByPathInput{Path: aws.String("/pg")})
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Parameters) != 10 || first.NextToken == nil {
		t.Errorf("default page: %d parameters, NextToken %v; want 10 and a token", len(first.Parameters), first.NextToken)
	}
	for _, max := range []int32{1, 3, 10} {
		names, _ := byPath(t, r.ssm, "/pg", false, max)
		if strings.Join(names, " ") != strings.Join(want, " ") {
			t.Errorf("MaxResults %d: names = %v, want %v", max, names, want)
		}
	}

	errTests := []struct {
		name string
		in   ssm.GetParametersByPathInput
		code string
	}{
		{"MaxResults 11", ssm.GetParametersByPathInput{Path: aws.String("/pg"), MaxResults: aws.Int32(11)}, "ValidationException"},
		{"MaxResults 0", ssm.GetParametersByPathInput{Path: aws.String("/pg"), MaxResults: aws.Int32(0)}, "ValidationException"},
		{"bad token", ssm.GetParametersByPathInput{Path: aws.String("/pg"), NextToken: aws.String("garbage!")}, "InvalidNextToken"},
		{"relative path", ssm.GetParametersByPathInput{Path: aws.String("pg")}, "ValidationException"},
	}
	for _, tt := range errTests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.ssm.GetParametersByPath(context.Background(), &tt.in)
			if code := errorCode(err); code != tt.code {
				t.Errorf("error = %v, want %s", err, tt.code)
			}
		})
	}
	_, err = r.ssm.GetParametersByPath(context.Background(), &ssm.GetParametersByPathInput{Path: aws.String("/pg"), NextToken: aws.String("garbage")})
	var bad *ssmtypes.InvalidNextToken
	if !errors.As(err, &bad) {
		t.Errorf("bad token: error %T, want *types.InvalidNextToken", err)
	}
}

func TestDeleteParameter(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	r.put(t, "/d/x", "v", ssmtypes.ParameterTypeString)
	if _, err := r.ssm.DeleteParameter(ctx, &ssm.DeleteParameterInput{Name: aws.String("/d/x")}); err != nil {
		t.Fatal(err)
	}
	for _, op := range []struct {
		name string
		call func() error
	}{
		{"DeleteParameter", func() error {
			_, err := r.ssm.DeleteParameter(ctx, &ssm.DeleteParameterInput{Name: aws.String("/d/x")})
			return err
		}},
		{"GetParameter", func() error {
			_, err := r.ssm.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String("/d/x")})
			return err
		}},
	} {
		err := op.call()
		var nf *ssmtypes.ParameterNotFound
		if !errors.As(err, &nf) {
			t.Errorf("%s of a deleted parameter: error %v, want *types.ParameterNotFound", op.name, err)
			continue
		}
		if nf.ErrorCode() != "ParameterNotFound" || nf.ErrorMessage() != "" {
			t.Errorf("%s: code %q message %q, want ParameterNotFound with an empty message", op.name, nf.ErrorCode(), nf.ErrorMessage())
		}
	}
}

func TestPersistence(t *testing.T) {
	r := newRig(t)
	r.put(t, "/keep/me", "secret value", ssmtypes.ParameterTypeSecureString)
	r.put(t, "/keep/me", "secret value 2", ssmtypes.ParameterTypeSecureString)

	file := filepath.Join(r.dir, "parameters.json")
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s mode = %v, want 0600", file, fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(r.dir)
	if len(entries) != 1 {
		t.Errorf("data dir holds %d entries, want only parameters.json (no temp files left)", len(entries))
	}

	svc, err := ssmsim.New(testID, r.dir)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(awssim.NewServer(svc))
	defer ts.Close()
	got, err := newClient(ts.URL, aws.NopRetryer{}).GetParameter(context.Background(),
		&ssm.GetParameterInput{Name: aws.String("/keep/me"), WithDecryption: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(got.Parameter.Value) != "secret value 2" || got.Parameter.Version != 2 {
		t.Errorf("after restart: %q version %d", aws.ToString(got.Parameter.Value), got.Parameter.Version)
	}

	if err := os.WriteFile(file, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ssmsim.New(testID, r.dir); err == nil {
		t.Error("New over a corrupt parameters file: no error")
	}
}

func TestSeedAndFaults(t *testing.T) {
	r := newRig(t)
	err := r.sim.ApplyScenario([]byte(`
ssm:
  parameters:
    - {name: /seed/token, value: "tok en", type: SecureString}
    - {name: /seed/url, value: http://x}
faults:
  ssm.GetParameter: {count: 2, code: ThrottlingException, status: 400}
`))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	in := &ssm.GetParameterInput{Name: aws.String("/seed/token"), WithDecryption: aws.Bool(true)}
	_, err = r.ssm.GetParameter(ctx, in)
	if errorCode(err) != "ThrottlingException" {
		t.Fatalf("no-retry client: error = %v, want ThrottlingException", err)
	}
	// One fault left: the standard retryer rides it out.
	got, err := newClient(r.url, nil).GetParameter(ctx, in)
	if err != nil {
		t.Fatalf("retrying client: %v", err)
	}
	if aws.ToString(got.Parameter.Value) != "tok en" || got.Parameter.Type != ssmtypes.ParameterTypeSecureString {
		t.Errorf("seeded parameter = %+v", got.Parameter)
	}
	url, err := r.ssm.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String("/seed/url")})
	if err != nil || url.Parameter.Type != ssmtypes.ParameterTypeString {
		t.Errorf("seeded type defaults to String: %v %v", url, err)
	}
	var throttled, ok int
	for _, c := range r.sim.Calls() {
		if c.Operation == "GetParameter" && c.Code == "ThrottlingException" {
			throttled++
		} else if c.Operation == "GetParameter" && c.Status == 200 {
			ok++
		}
	}
	if throttled != 2 || ok != 2 {
		t.Errorf("call log: %d throttled, %d ok GetParameter calls; want 2 and 2", throttled, ok)
	}

	for _, bad := range []string{
		"ssm: {parameters: [{name: /x, valu: y}]}",
		"ssm: {parameters: [{name: 'bad name', value: y}]}",
		"ssm: {params: []}",
	} {
		if err := r.sim.ApplyScenario([]byte(bad)); err == nil {
			t.Errorf("scenario %q: no error", bad)
		}
	}
}

// TestBadRequests speaks raw HTTP: whatever arrives, the answer is an
// AWS-shaped JSON error.
func TestBadRequests(t *testing.T) {
	r := newRig(t)
	auth := "AWS4-HMAC-SHA256 Credential=AKID/20260101/eu-west-1/ssm/aws4_request, SignedHeaders=host, Signature=00"
	tests := []struct {
		name, target, body string
		code               string
	}{
		{"unknown target", "AmazonSSM.LaunchRockets", "{}", "UnknownOperationException"},
		{"foreign target", "Route53.GetParameter", "{}", "UnknownOperationException"},
		{"no target", "", "{}", "UnknownOperationException"},
		{"malformed JSON", "AmazonSSM.GetParameter", `{"Name": `, "SerializationException"},
		{"wrong type", "AmazonSSM.GetParameter", `{"Name": 5}`, "SerializationException"},
		{"JSON array", "AmazonSSM.PutParameter", `[1,2]`, "SerializationException"},
		{"missing name", "AmazonSSM.GetParameter", `{}`, "ValidationException"},
		{"missing value", "AmazonSSM.PutParameter", `{"Name":"/x","Type":"String"}`, "ValidationException"},
		{"empty body", "AmazonSSM.DeleteParameter", ``, "ValidationException"},
		{"null names", "AmazonSSM.GetParameters", `{"Names":null}`, "ValidationException"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, r.url+"/", strings.NewReader(tt.body))
			req.Header.Set("Authorization", auth)
			req.Header.Set("Content-Type", "application/x-amz-json-1.1")
			if tt.target != "" {
				req.Header.Set("X-Amz-Target", tt.target)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			var body struct {
				Type    string `json:"__type"`
				Message *string
			}
			if err := json.Unmarshal(b, &body); err != nil {
				t.Fatalf("body %q is not JSON: %v", b, err)
			}
			if resp.StatusCode != http.StatusBadRequest || body.Type != tt.code || body.Message == nil {
				t.Errorf("got %d %s, want 400 with __type %s and a message", resp.StatusCode, b, tt.code)
			}
		})
	}
}

func TestConcurrentClients(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("/c/%d", i%4) // pairs race on one name
			for j := range 5 {
				if _, err := r.ssm.PutParameter(ctx, &ssm.PutParameterInput{
					Name: aws.String(name), Value: aws.String(fmt.Sprint(j)), Type: "String", Overwrite: aws.Bool(true),
				}); err != nil {
					errs <- err
					return
				}
				if _, err := r.ssm.GetParametersByPath(ctx, &ssm.GetParametersByPathInput{Path: aws.String("/c")}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i := range 4 {
		got, err := r.ssm.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(fmt.Sprintf("/c/%d", i))})
		if err != nil {
			t.Fatal(err)
		}
		if got.Parameter.Version != 10 {
			t.Errorf("/c/%d version = %d, want 10 after 10 puts", i, got.Parameter.Version)
		}
	}
}
