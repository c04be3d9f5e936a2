package imdssim_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/monagent/monagent/rig/awssim"
	"github.com/monagent/monagent/rig/awssim/imdssim"
	"github.com/monagent/monagent/rig/awssim/simapi"
)

var testID = simapi.Identity{
	Region:     "eu-west-1",
	AZ:         "eu-west-1a",
	InstanceID: "i-0123456789abcdef0",
	PrivateIP:  "10.1.2.3",
	AccountID:  "111122223333",
}

// start serves a fresh IMDS behind awssim's router, with scenario applied.
func start(t *testing.T, scenario string) (*awssim.Server, string) {
	t.Helper()
	svc, err := imdssim.New(testID)
	if err != nil {
		t.Fatal(err)
	}
	sim := awssim.NewServer(svc)
	if scenario != "" {
		if err := sim.ApplyScenario([]byte(scenario)); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(sim)
	t.Cleanup(func() {
		srv.Close()
		if err := sim.Close(); err != nil {
			t.Error(err)
		}
	})
	return sim, srv.URL
}

func strictClient(url string) *imds.Client {
	return imds.New(imds.Options{Endpoint: url, EnableFallback: aws.FalseTernary})
}

func getMeta(t *testing.T, c *imds.Client, path string) (string, error) {
	t.Helper()
	out, err := c.GetMetadata(context.Background(), &imds.GetMetadataInput{Path: path})
	if err != nil {
		return "", err
	}
	defer out.Content.Close()
	b, err := io.ReadAll(out.Content)
	return string(b), err
}

func TestSDKReadsMetadata(t *testing.T) {
	_, url := start(t, "")
	c := strictClient(url)
	for path, want := range map[string]string{
		"instance-id":                 testID.InstanceID,
		"placement/region":            testID.Region,
		"placement/availability-zone": testID.AZ,
		"local-ipv4":                  testID.PrivateIP,
		"placement/":                  "availability-zone\nregion",
	} {
		got, err := getMeta(t, c, path)
		if err != nil {
			t.Fatalf("GetMetadata(%s): %v", path, err)
		}
		if got != want {
			t.Errorf("GetMetadata(%s) = %q, want %q", path, got, want)
		}
	}
	region, err := c.GetRegion(context.Background(), nil)
	if err != nil || region.Region != testID.Region {
		t.Errorf("GetRegion = %+v, %v", region, err)
	}
	doc, err := c.GetInstanceIdentityDocument(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	d := doc.InstanceIdentityDocument
	if d.InstanceID != testID.InstanceID || d.Region != testID.Region || d.AvailabilityZone != testID.AZ ||
		d.PrivateIP != testID.PrivateIP || d.AccountID != testID.AccountID || d.Version != "2017-09-30" {
		t.Errorf("identity document = %+v", d)
	}
	if _, err := getMeta(t, c, "no-such-thing"); !hasStatus(err, http.StatusNotFound) {
		t.Errorf("unknown path: err = %v, want 404", err)
	}
}

// TestDirectoryListing reads directories as real IMDS serves them: listed
// with or without the trailing slash.
func TestDirectoryListing(t *testing.T) {
	_, url := start(t, "imds:\n  role: monitoring-role\n")
	root := "ami-id\nhostname\niam/\ninstance-id\ninstance-type\nlocal-hostname\nlocal-ipv4\nplacement/"
	tests := []struct {
		path string // under /latest/
		want string // "" for 404
	}{
		{"meta-data/placement", "availability-zone\nregion"},
		{"meta-data/placement/", "availability-zone\nregion"},
		{"meta-data", root},
		{"meta-data/", root},
		{"meta-data/iam", "info\nsecurity-credentials/"},
		{"meta-data/iam/security-credentials", "monitoring-role"},
		{"dynamic", "instance-identity/"},
		{"dynamic/instance-identity", "document"},
		{"meta-data/placement/region", testID.Region},
		{"meta-data/no-such-dir", ""},
		{"meta-data/no-such-dir/", ""},
	}
	hdr := map[string]string{"X-aws-ec2-metadata-token": token(t, url, "60")}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			code, body := do(t, http.MethodGet, url+"/latest/"+tt.path, hdr)
			switch {
			case tt.want == "" && code != http.StatusNotFound:
				t.Errorf("GET: %d %q, want 404", code, body)
			case tt.want != "" && (code != http.StatusOK || body != tt.want):
				t.Errorf("GET: %d %q, want 200 %q", code, body, tt.want)
			}
		})
	}
	// The SDK asks for a directory by the path it is given, slash or not.
	got, err := getMeta(t, strictClient(url), "placement")
	if err != nil || got != "availability-zone\nregion" {
		t.Errorf("SDK GetMetadata(placement) = %q, %v", got, err)
	}
}

func hasStatus(err error, code int) bool {
	var se interface{ HTTPStatusCode() int }
	return errors.As(err, &se) && se.HTTPStatusCode() == code
}

func do(t *testing.T, method, url string, hdr map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func token(t *testing.T, url, ttl string) string {
	t.Helper()
	code, body := do(t, http.MethodPut, url+"/latest/api/token", map[string]string{"X-aws-ec2-metadata-token-ttl-seconds": ttl})
	if code != http.StatusOK || body == "" {
		t.Fatalf("token PUT: %d %q", code, body)
	}
	return body
}

func TestTokenRules(t *testing.T) {
	_, url := start(t, "")
	ttlCases := []struct {
		ttl  string
		want int
	}{
		{"", http.StatusBadRequest},
		{"0", http.StatusBadRequest},
		{"21601", http.StatusBadRequest},
		{"ten", http.StatusBadRequest},
		{"1", http.StatusOK},
		{"21600", http.StatusOK},
	}
	for _, tc := range ttlCases {
		hdr := map[string]string{}
		if tc.ttl != "" {
			hdr["X-aws-ec2-metadata-token-ttl-seconds"] = tc.ttl
		}
		if code, _ := do(t, http.MethodPut, url+"/latest/api/token", hdr); code != tc.want {
			t.Errorf("PUT token ttl %q: %d, want %d", tc.ttl, code, tc.want)
		}
	}
	if code, _ := do(t, http.MethodGet, url+"/latest/api/token", nil); code != http.StatusMethodNotAllowed {
		t.Errorf("GET token: %d, want 405", code)
	}

	good := token(t, url, "60")
	short := token(t, url, "1")
	id := url + "/latest/meta-data/instance-id"
	readCases := []struct {
		name  string
		token string
		want  int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"unknown token", "bm90LWEtdG9rZW4=", http.StatusUnauthorized},
		{"good token", good, http.StatusOK},
	}
	for _, tc := range readCases {
		hdr := map[string]string{}
		if tc.token != "" {
			hdr["X-aws-ec2-metadata-token"] = tc.token
		}
		code, body := do(t, http.MethodGet, id, hdr)
		if code != tc.want {
			t.Errorf("%s: %d %q, want %d", tc.name, code, body, tc.want)
		}
		if code == http.StatusUnauthorized && strings.TrimSpace(body) != "Unauthorized" {
			t.Errorf("%s: body %q, want the bare status text", tc.name, body)
		}
	}
	time.Sleep(1100 * time.Millisecond)
	if code, _ := do(t, http.MethodGet, id, map[string]string{"X-aws-ec2-metadata-token": short}); code != http.StatusUnauthorized {
		t.Errorf("expired token: %d, want 401", code)
	}
	if code, _ := do(t, http.MethodGet, url+"/latest/nothing", nil); code != http.StatusNotFound {
		t.Errorf("unknown /latest path: %d, want 404", code)
	}
}

func TestV1Only(t *testing.T) {
	sim, url := start(t, "imds:\n  v1_only: true\n")
	if code, _ := do(t, http.MethodPut, url+"/latest/api/token", map[string]string{"X-aws-ec2-metadata-token-ttl-seconds": "60"}); code != http.StatusForbidden {
		t.Errorf("token PUT: %d, want 403", code)
	}
	if code, body := do(t, http.MethodGet, url+"/latest/meta-data/instance-id", nil); code != http.StatusOK || body != testID.InstanceID {
		t.Errorf("GET without token: %d %q", code, body)
	}
	if _, err := getMeta(t, strictClient(url), "instance-id"); err == nil {
		t.Error("client without fallback read metadata from a v1-only host")
	}
	got, err := getMeta(t, imds.New(imds.Options{Endpoint: url}), "instance-id")
	if err != nil || got != testID.InstanceID {
		t.Errorf("client with fallback: %q, %v", got, err)
	}
	if err := sim.ApplyScenario([]byte("imds:\n  v1_only: false\n")); err != nil {
		t.Fatal(err)
	}
	if got, err := getMeta(t, strictClient(url), "instance-id"); err != nil || got != testID.InstanceID {
		t.Errorf("after v1_only: false: %q, %v", got, err)
	}
}

func TestSeedOverridesIdentity(t *testing.T) {
	_, url := start(t, `
imds:
  instance_id: i-0fedcba9876543210
  region: us-east-2
  az: us-east-2c
  private_ip: 172.16.0.9
  role: monitoring-role
`)
	c := strictClient(url)
	doc, err := c.GetInstanceIdentityDocument(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	d := doc.InstanceIdentityDocument
	if d.InstanceID != "i-0fedcba9876543210" || d.Region != "us-east-2" || d.AvailabilityZone != "us-east-2c" ||
		d.PrivateIP != "172.16.0.9" || d.AccountID != testID.AccountID {
		t.Errorf("identity document = %+v", d)
	}
	creds, err := ec2rolecreds.New(func(o *ec2rolecreds.Options) { o.Client = c }).Retrieve(context.Background())
	if err != nil {
		t.Fatalf("instance-profile credentials: %v", err)
	}
	if creds.AccessKeyID == "" || creds.SecretAccessKey == "" || !creds.CanExpire || creds.Expires.Before(time.Now()) {
		t.Errorf("credentials = %+v", creds)
	}
}

func TestSeedRejectsUnknownKeys(t *testing.T) {
	svc, err := imdssim.New(testID)
	if err != nil {
		t.Fatal(err)
	}
	sim := awssim.NewServer(svc)
	if err := sim.ApplyScenario([]byte("imds:\n  v1only: true\n")); err == nil || !strings.Contains(err.Error(), "v1only") {
		t.Errorf("ApplyScenario with a misspelt key: %v", err)
	}
}

func TestNewRejectsEmptyIdentity(t *testing.T) {
	if _, err := imdssim.New(simapi.Identity{Region: "eu-west-1"}); err == nil {
		t.Error("New accepted an identity without instance id")
	}
}

func TestFaultIsPlainStatus(t *testing.T) {
	sim, url := start(t, "")
	sim.SetFault("imds.GetMetadata", &simapi.Fault{Count: 1, Status: http.StatusServiceUnavailable})
	tok := token(t, url, "60")
	hdr := map[string]string{"X-aws-ec2-metadata-token": tok}
	code, body := do(t, http.MethodGet, url+"/latest/meta-data/instance-id", hdr)
	if code != http.StatusServiceUnavailable || strings.TrimSpace(body) != "Service Unavailable" {
		t.Errorf("faulted GET: %d %q", code, body)
	}
	if code, _ := do(t, http.MethodGet, url+"/latest/meta-data/instance-id", hdr); code != http.StatusOK {
		t.Errorf("GET after the fault ran out: %d", code)
	}
	calls := sim.Calls()
	if len(calls) != 3 || calls[1].Operation != "GetMetadata" || calls[1].Status != http.StatusServiceUnavailable {
		t.Errorf("call log = %+v", calls)
	}
}

func TestCurl(t *testing.T) {
	_, url := start(t, "")
	tok, err := exec.Command("curl", "-sS", "--fail", "-X", "PUT", url+"/latest/api/token",
		"-H", "X-aws-ec2-metadata-token-ttl-seconds: 300").Output()
	if err != nil {
		t.Fatalf("curl token: %v", err)
	}
	out, err := exec.Command("curl", "-sS", "--fail", url+"/latest/dynamic/instance-identity/document",
		"-H", "X-aws-ec2-metadata-token: "+string(tok)).Output()
	if err != nil {
		t.Fatalf("curl document: %v", err)
	}
	var doc map[string]any
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("document %q: %v", out, err)
	}
	if doc["instanceId"] != testID.InstanceID || doc["region"] != testID.Region || doc["kernelId"] != nil {
		t.Errorf("document = %v", doc)
	}
	if _, ok := doc["kernelId"]; !ok {
		t.Error("document lacks kernelId: null, which EC2 includes")
	}
	err = exec.Command("curl", "-sS", "--fail", url+"/latest/meta-data/instance-id").Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 22 {
		t.Errorf("curl without token: %v, want HTTP error exit 22", err)
	}
}

func TestConcurrentClients(t *testing.T) {
	_, url := start(t, "")
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := strictClient(url)
			for range 10 {
				out, err := c.GetMetadata(context.Background(), &imds.GetMetadataInput{Path: "instance-id"})
				if err != nil {
					errs <- err
					return
				}
				out.Content.Close()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
