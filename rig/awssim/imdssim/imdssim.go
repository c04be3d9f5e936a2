// Package imdssim simulates the EC2 instance metadata service (IMDSv2) for
// awssim: session tokens from PUT /latest/api/token, then the metadata paths
// an on-instance agent reads, each guarded by the token header.
//
// Operations, as named in awssim's call log and fault keys: "GetToken"
// (PUT /latest/api/token), "GetMetadata" (/latest/meta-data/...) and
// "GetDynamicData" (/latest/dynamic/...). Errors are written as IMDS writes
// them: a bare HTTP status with its text, no AWS error document.
//
// Scenario section "imds":
//
//	imds:
//	  v1_only: true          # token PUT answers 403, GETs need no token
//	  instance_id: i-0abc    # identity overrides (empty keeps New's value)
//	  region: eu-west-1
//	  az: eu-west-1a
//	  private_ip: 10.0.0.12
//	  account_id: "123456789012"
//	  instance_type: t3.medium
//	  ami_id: ami-0123456789abcdef0
//	  role: monitoring-role  # serve instance-profile credentials for it
package imdssim

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/monagent/monagent/rig/awssim/simapi"
	"gopkg.in/yaml.v3"
)

const (
	tokenHeader = "X-Aws-Ec2-Metadata-Token"
	ttlHeader   = "X-Aws-Ec2-Metadata-Token-Ttl-Seconds"
	maxTTL      = 21600
)

// Config is what the simulated instance reports. It is also the shape of the
// scenario section.
type Config struct {
	V1Only       *bool  `yaml:"v1_only"`
	InstanceID   string `yaml:"instance_id"`
	Region       string `yaml:"region"`
	AZ           string `yaml:"az"`
	PrivateIP    string `yaml:"private_ip"`
	AccountID    string `yaml:"account_id"`
	InstanceType string `yaml:"instance_type"`
	AMIID        string `yaml:"ami_id"`
	Role         string `yaml:"role"`
}

// Service is the simulated IMDS. It is safe for concurrent use.
type Service struct {
	started time.Time

	mu     sync.Mutex
	cfg    Config
	tokens map[string]time.Time // token -> expiry
}

// New returns an IMDS reporting id.
func New(id simapi.Identity) (*Service, error) {
	if id.InstanceID == "" || id.Region == "" || id.AZ == "" {
		return nil, fmt.Errorf("imdssim: identity needs instance id, region and AZ, have %+v", id)
	}
	cfg := Config{
		InstanceID:   id.InstanceID,
		Region:       id.Region,
		AZ:           id.AZ,
		PrivateIP:    id.PrivateIP,
		AccountID:    id.AccountID,
		InstanceType: "t3.medium",
		AMIID:        "ami-0a1b2c3d4e5f60718",
	}
	if cfg.PrivateIP == "" {
		cfg.PrivateIP = "10.0.0.10"
	}
	if cfg.AccountID == "" {
		cfg.AccountID = "123456789012"
	}
	return &Service{started: time.Now().UTC(), cfg: cfg, tokens: map[string]time.Time{}}, nil
}

// Name implements simapi.Service.
func (s *Service) Name() string { return "imds" }

// Close implements simapi.Service; IMDS holds nothing.
func (s *Service) Close() error { return nil }

// Seed applies the scenario section: a flag and identity overrides.
func (s *Service) Seed(node *yaml.Node) error {
	var in Config
	if err := simapi.DecodeStrict(node, &in); err != nil {
		return fmt.Errorf("imds: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if in.V1Only != nil {
		s.cfg.V1Only = in.V1Only
	}
	override(&s.cfg.InstanceID, in.InstanceID)
	override(&s.cfg.Region, in.Region)
	override(&s.cfg.AZ, in.AZ)
	override(&s.cfg.PrivateIP, in.PrivateIP)
	override(&s.cfg.AccountID, in.AccountID)
	override(&s.cfg.InstanceType, in.InstanceType)
	override(&s.cfg.AMIID, in.AMIID)
	override(&s.cfg.Role, in.Role)
	return nil
}

// v1Only reports whether the host blocks the token PUT. Callers hold s.mu.
func (s *Service) v1Only() bool { return s.cfg.V1Only != nil && *s.cfg.V1Only }

func override(dst *string, v string) {
	if v != "" {
		*dst = v
	}
}

// Operation implements simapi.Service.
func (s *Service) Operation(r *http.Request) (string, *simapi.APIError) {
	p := r.URL.Path
	switch {
	case p == "/latest/api/token":
		if r.Method != http.MethodPut {
			return "GetToken", status(http.StatusMethodNotAllowed)
		}
		return "GetToken", nil
	case strings.HasPrefix(p, "/latest/meta-data"):
		return "GetMetadata", getOnly(r)
	case strings.HasPrefix(p, "/latest/dynamic"):
		return "GetDynamicData", getOnly(r)
	}
	return "", status(http.StatusNotFound)
}

func getOnly(r *http.Request) *simapi.APIError {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return status(http.StatusMethodNotAllowed)
	}
	return nil
}

func status(code int) *simapi.APIError {
	return &simapi.APIError{Status: code, Code: strings.ReplaceAll(http.StatusText(code), " ", ""), Message: http.StatusText(code)}
}

// WriteError implements simapi.Service: IMDS answers with a bare status.
func (s *Service) WriteError(w http.ResponseWriter, _ *http.Request, e *simapi.APIError) {
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(e.Status)
	_, _ = fmt.Fprintln(w, http.StatusText(e.Status))
}

// Serve implements simapi.Service.
func (s *Service) Serve(w http.ResponseWriter, r *http.Request, op string) {
	if op == "GetToken" {
		s.serveToken(w, r)
		return
	}
	if e := s.authorize(r); e != nil {
		s.WriteError(w, r, e)
		return
	}
	body, ok := s.lookup(strings.TrimPrefix(r.URL.Path, "/latest/"))
	if !ok {
		s.WriteError(w, r, status(http.StatusNotFound))
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write([]byte(body))
	}
}

func (s *Service) serveToken(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	v1Only := s.v1Only()
	s.mu.Unlock()
	// A host that blocks the token PUT (v1_only), and IMDS itself for a
	// request that went through a proxy, answer 403.
	if v1Only || r.Header.Get("X-Forwarded-For") != "" {
		s.WriteError(w, r, status(http.StatusForbidden))
		return
	}
	ttl, err := strconv.Atoi(r.Header.Get(ttlHeader))
	if err != nil || ttl < 1 || ttl > maxTTL {
		s.WriteError(w, r, status(http.StatusBadRequest))
		return
	}
	tok, err := newToken()
	if err != nil {
		s.WriteError(w, r, status(http.StatusInternalServerError))
		return
	}
	s.mu.Lock()
	now := time.Now()
	for t, exp := range s.tokens {
		if !now.Before(exp) {
			delete(s.tokens, t)
		}
	}
	s.tokens[tok] = now.Add(time.Duration(ttl) * time.Second)
	s.mu.Unlock()

	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set(ttlHeader, strconv.Itoa(ttl))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(tok))
}

func newToken() (string, error) {
	b := make([]byte, 42)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("token: %w", err)
	}
	return base64.URLEncoding.EncodeToString(b), nil
}

// authorize checks the session token; without v1_only every read needs one.
func (s *Service) authorize(r *http.Request) *simapi.APIError {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.v1Only() {
		return nil
	}
	tok := r.Header.Get(tokenHeader)
	exp, ok := s.tokens[tok]
	if tok == "" || !ok || !time.Now().Before(exp) {
		return status(http.StatusUnauthorized)
	}
	return nil
}

// lookup answers a path under /latest/: a leaf's value, or for a directory
// its entries, one a line, subdirectories with a slash. Real IMDS lists a
// directory whether or not the path ends in a slash.
func (s *Service) lookup(p string) (string, bool) {
	tree := s.tree()
	if v, ok := tree[p]; ok {
		return v, true
	}
	return listDir(tree, strings.TrimSuffix(p, "/")+"/")
}

// listDir lists the entries of directory dir (ending in "/") of tree.
func listDir(tree map[string]string, dir string) (string, bool) {
	seen := map[string]bool{}
	for k := range tree {
		rest, ok := strings.CutPrefix(k, dir)
		if !ok || rest == "" {
			continue
		}
		if i := strings.Index(rest, "/"); i >= 0 {
			rest = rest[:i+1]
		}
		seen[rest] = true
	}
	if len(seen) == 0 {
		return "", false
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, "\n"), true
}

// tree is every leaf the simulated instance serves, keyed by path under
// /latest/.
func (s *Service) tree() map[string]string {
	s.mu.Lock()
	c := s.cfg
	s.mu.Unlock()
	host := "ip-" + strings.ReplaceAll(c.PrivateIP, ".", "-") + "." + c.Region + ".compute.internal"
	t := map[string]string{
		"meta-data/ami-id":                      c.AMIID,
		"meta-data/hostname":                    host,
		"meta-data/instance-id":                 c.InstanceID,
		"meta-data/instance-type":               c.InstanceType,
		"meta-data/local-hostname":              host,
		"meta-data/local-ipv4":                  c.PrivateIP,
		"meta-data/placement/availability-zone": c.AZ,
		"meta-data/placement/region":            c.Region,
		"dynamic/instance-identity/document":    s.identityDocument(c),
	}
	if c.Role != "" {
		t["meta-data/iam/info"] = s.iamInfo(c)
		t["meta-data/iam/security-credentials/"+c.Role] = s.credentials()
	}
	return t
}

// identityDocument is the document as EC2 gives it, nulls included.
func (s *Service) identityDocument(c Config) string {
	doc := struct {
		AccountID               string   `json:"accountId"`
		Architecture            string   `json:"architecture"`
		AvailabilityZone        string   `json:"availabilityZone"`
		BillingProducts         []string `json:"billingProducts"`
		DevpayProductCodes      []string `json:"devpayProductCodes"`
		MarketplaceProductCodes []string `json:"marketplaceProductCodes"`
		ImageID                 string   `json:"imageId"`
		InstanceID              string   `json:"instanceId"`
		InstanceType            string   `json:"instanceType"`
		KernelID                *string  `json:"kernelId"`
		PendingTime             string   `json:"pendingTime"`
		PrivateIP               string   `json:"privateIp"`
		RamdiskID               *string  `json:"ramdiskId"`
		Region                  string   `json:"region"`
		Version                 string   `json:"version"`
	}{
		AccountID:        c.AccountID,
		Architecture:     "x86_64",
		AvailabilityZone: c.AZ,
		ImageID:          c.AMIID,
		InstanceID:       c.InstanceID,
		InstanceType:     c.InstanceType,
		PendingTime:      s.started.Format(time.RFC3339),
		PrivateIP:        c.PrivateIP,
		Region:           c.Region,
		Version:          "2017-09-30",
	}
	b, _ := json.MarshalIndent(doc, "", "  ")
	return string(b)
}

func (s *Service) iamInfo(c Config) string {
	b, _ := json.MarshalIndent(map[string]string{
		"Code":               "Success",
		"LastUpdated":        s.started.Format(time.RFC3339),
		"InstanceProfileArn": "arn:aws:iam::" + c.AccountID + ":instance-profile/" + c.Role,
		"InstanceProfileId":  "AIPAAWSSIMINSTANCEPROF",
	}, "", "  ")
	return string(b)
}

// credentials are fixed placeholders: awssim does not check signatures, and
// the SDK only needs a well-formed, unexpired set.
func (s *Service) credentials() string {
	now := time.Now().UTC()
	b, _ := json.MarshalIndent(map[string]string{
		"Code":            "Success",
		"LastUpdated":     now.Format(time.RFC3339),
		"Type":            "AWS-HMAC",
		"AccessKeyId":     "ASIAAWSSIMEXAMPLE000",
		"SecretAccessKey": "awssim-placeholder-secret",
		"Token":           "awssim-placeholder-session-token",
		"Expiration":      now.Add(6 * time.Hour).Format(time.RFC3339),
	}, "", "  ")
	return string(b)
}
