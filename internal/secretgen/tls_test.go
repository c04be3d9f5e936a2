package secretgen

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func t0() time.Time { return time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC) }

// clockStore is a store whose clock the test moves.
func clockStore(t *testing.T) (*Store, *time.Time) {
	now := t0()
	s := newStore(t)
	s.Now = func() time.Time { return now }
	return s, &now
}

func monitoringHosts() Hosts {
	return Hosts{DNSNames: []string{"monitoring.example.internal", "localhost"}, IPs: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.0.1.5")}}
}

func TestTLSIssue(t *testing.T) {
	s, _ := clockStore(t)
	kp, err := s.TLS("prometheus", monitoringHosts())
	if err != nil {
		t.Fatal(err)
	}
	if !kp.Issued {
		t.Error("Issued not set for a new pair")
	}
	assertMode(t, kp.KeyFile, 0o600)
	assertMode(t, kp.CertFile, 0o644)
	if kp.KeyFile != filepath.Join(s.Dir, "prometheus.key") || kp.CertFile != filepath.Join(s.Dir, "prometheus.crt") {
		t.Errorf("files %s, %s", kp.KeyFile, kp.CertFile)
	}
	block, _ := pem.Decode(snap(t, kp.KeyFile).data)
	if block == nil || block.Type != "PRIVATE KEY" {
		t.Fatalf("key file is not a PKCS#8 PEM block")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if ec, ok := key.(*ecdsa.PrivateKey); !ok || ec.Curve != elliptic.P256() {
		t.Errorf("key is a %T, want ECDSA P-256", key)
	}
	if !bytes.Equal(snap(t, kp.CertFile).data, kp.CertPEM) {
		t.Error("CertPEM is not the certificate file")
	}
	if _, err := kp.TLSCertificate(); err != nil {
		t.Errorf("crypto/tls refuses the pair: %v", err)
	}
	if want := t0().Add(Validity); !kp.Cert.NotAfter.Equal(want) {
		t.Errorf("NotAfter %v, want %v", kp.Cert.NotAfter, want)
	}
	verifyFor(t, kp.Cert, t0(), monitoringHosts())
}

// verifyFor checks a client trusting c accepts it for every host at now.
func verifyFor(t *testing.T, c *x509.Certificate, now time.Time, h Hosts) {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(c)
	for _, name := range h.names() {
		if _, err := c.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, CurrentTime: now}); err != nil {
			t.Errorf("a client trusting the certificate refuses it for %s: %v", name, err)
		}
	}
}

func TestTLSRerunKeepsOrRenews(t *testing.T) {
	day := 24 * time.Hour
	base := monitoringHosts()
	tests := []struct {
		name  string
		after time.Duration // clock move since issue
		hosts Hosts
		renew bool
	}{
		{"same day", 0, base, false},
		{"31 days left", Validity - 31*day, base, false},
		{"30 days left", Validity - RenewBefore, base, true},
		{"29 days left", Validity - 29*day, base, true},
		{"expired", Validity + day, base, true},
		{"clock went back before NotBefore", -2 * time.Hour, base, true},
		{"clock went back within the backdate", -30 * time.Minute, base, false},
		{"subset of the names", 0, Hosts{DNSNames: []string{"localhost"}}, false},
		{"names in another case", 0, Hosts{DNSNames: []string{"MONITORING.example.internal"}}, false},
		{"IPv4 as IPv4-in-IPv6", 0, Hosts{IPs: []net.IP{net.ParseIP("::ffff:10.0.1.5")}}, false},
		{"a new DNS name", 0, Hosts{DNSNames: append([]string{"grafana.example.internal"}, base.DNSNames...), IPs: base.IPs}, true},
		{"a new IP", 0, Hosts{DNSNames: base.DNSNames, IPs: append([]net.IP{net.ParseIP("10.0.1.6")}, base.IPs...)}, true},
		{"an IPv6", 0, Hosts{IPs: []net.IP{net.ParseIP("::1")}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, now := clockStore(t)
			first, err := s.TLS("prometheus", base)
			if err != nil {
				t.Fatal(err)
			}
			keyBefore, certBefore := freeze(t, first.KeyFile), freeze(t, first.CertFile)
			*now = t0().Add(tt.after)
			got, err := s.TLS("prometheus", tt.hosts)
			if err != nil {
				t.Fatal(err)
			}
			if got.Issued != tt.renew {
				t.Fatalf("Issued = %v, want %v", got.Issued, tt.renew)
			}
			if !tt.renew {
				assertUntouched(t, first.KeyFile, keyBefore)
				assertUntouched(t, first.CertFile, certBefore)
				if got.KeyPEM.Reveal() != first.KeyPEM.Reveal() || !bytes.Equal(got.CertPEM, first.CertPEM) {
					t.Error("returned pair differs from the kept one")
				}
				return
			}
			if got.KeyPEM.Reveal() == first.KeyPEM.Reveal() {
				t.Error("renewal kept the old key")
			}
			if !bytes.Equal(snap(t, got.CertFile).data, got.CertPEM) || snap(t, got.KeyFile).data == nil {
				t.Error("renewed pair not written")
			}
			if want := now.Add(Validity); !got.Cert.NotAfter.Equal(want) {
				t.Errorf("renewed NotAfter %v, want %v", got.Cert.NotAfter, want)
			}
			assertMode(t, got.KeyFile, 0o600)
			assertMode(t, got.CertFile, 0o644)
			verifyFor(t, got.Cert, *now, tt.hosts)
			if _, err := got.TLSCertificate(); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestTLSKeyCertMismatch(t *testing.T) {
	s, _ := clockStore(t)
	a, err := s.TLS("a", monitoringHosts())
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.TLS("b", monitoringHosts())
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, a.KeyFile, b.KeyPEM.Reveal(), 0o600)
	keyBefore, certBefore := freeze(t, a.KeyFile), freeze(t, a.CertFile)
	_, err = s.TLS("a", monitoringHosts())
	assertErr(t, err, []string{a.KeyFile, a.CertFile, "not the key of", "remove both"}, pemBody(b.KeyPEM.Reveal()))
	assertUntouched(t, a.KeyFile, keyBefore)
	assertUntouched(t, a.CertFile, certBefore)
}

// pemBody is the first line of base64 in a PEM block: what an error
// quoting the key would contain.
func pemBody(p string) string {
	lines := bytes.Split([]byte(p), []byte("\n"))
	return string(lines[1])
}

func TestTLSCorrupt(t *testing.T) {
	const removed = "<removed>"
	tests := []struct {
		name    string
		cert    bool   // the certificate is changed, else the key
		content string // removed, "@cert", "@key", or the content
		want    []string
	}{
		{"empty key", false, "", []string{".key", "no PEM block"}},
		{"garbage key", false, "hunter2hunter2", []string{".key", "no PEM block"}},
		{"certificate in the key file", false, "@cert", []string{".key", "not a usable private key", `"CERTIFICATE"`}},
		{"truncated key", false, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", []string{".key", "not a usable private key"}},
		{"empty certificate", true, "", []string{".crt", "no PEM CERTIFICATE"}},
		{"key in the certificate file", true, "@key", []string{".crt", "no PEM CERTIFICATE"}},
		{"truncated certificate", true, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", []string{".crt", "not a usable certificate"}},
		{"key missing", false, removed, []string{".key: is missing while", ".crt exists", "remove"}},
		{"certificate missing", true, removed, []string{".crt: is missing while", ".key exists", "remove"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := clockStore(t)
			kp, err := s.TLS("p", monitoringHosts())
			if err != nil {
				t.Fatal(err)
			}
			path, other, mode := kp.KeyFile, kp.CertFile, os.FileMode(0o600)
			if tt.cert {
				path, other, mode = kp.CertFile, kp.KeyFile, 0o644
			}
			switch tt.content {
			case removed:
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
			case "@cert":
				writeFile(t, path, string(kp.CertPEM), mode)
			case "@key":
				writeFile(t, path, kp.KeyPEM.Reveal(), mode)
			default:
				writeFile(t, path, tt.content, mode)
			}
			otherBefore := freeze(t, other)
			_, err = s.TLS("p", monitoringHosts())
			assertErr(t, err, append(tt.want, s.Dir), "hunter2", pemBody(kp.KeyPEM.Reveal()))
			assertUntouched(t, other, otherBefore)
			if _, statErr := os.Stat(path); tt.content == removed && statErr == nil {
				t.Error("the missing file was reissued")
			}
		})
	}
}

// operatorPair writes a CA-signed pair for hosts, valid until notAfter:
// what an operator installs in place of the self-signed one.
func operatorPair(t *testing.T, kp KeyPair, hosts Hosts, notAfter time.Time) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Operator CA"}, NotBefore: t0().Add(-time.Hour),
		NotAfter: notAfter.Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "leaf"}, NotBefore: t0().Add(-time.Hour),
		NotAfter: notAfter, DNSNames: hosts.DNSNames, IPAddresses: hosts.IPs}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key) // SEC 1, as `openssl ecparam -genkey` writes
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, kp.KeyFile, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})), 0o600)
	writeFile(t, kp.CertFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), 0o644)
}

func TestTLSOperatorCertificateIsNeverReplaced(t *testing.T) {
	day := 24 * time.Hour
	hosts := monitoringHosts()
	tests := []struct {
		name  string
		after time.Duration
		hosts Hosts
		want  string // "" when the pair is returned as it is
	}{
		{"valid", 0, hosts, ""},
		{"within the renewal window", 90*day - 10*day, hosts, ""},
		{"expired", 90*day + time.Second, hosts, "expires"},
		{"missing a name", 0, Hosts{DNSNames: []string{"grafana.example.internal"}}, "does not cover grafana.example.internal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, now := clockStore(t)
			kp, err := s.TLS("p", hosts)
			if err != nil {
				t.Fatal(err)
			}
			operatorPair(t, kp, hosts, t0().Add(90*day))
			keyBefore, certBefore := freeze(t, kp.KeyFile), freeze(t, kp.CertFile)
			*now = t0().Add(tt.after)
			got, err := s.TLS("p", tt.hosts)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got.Issued || !bytes.Equal(got.CertPEM, certBefore.data) {
					t.Error("the operator's certificate was not returned as it is")
				}
			} else {
				assertErr(t, err, []string{kp.CertFile, "not self-signed", tt.want, "remove both"})
			}
			assertUntouched(t, kp.KeyFile, keyBefore)
			assertUntouched(t, kp.CertFile, certBefore)
		})
	}
}

func TestTLSAdoptsTheGuidesSelfSignedCertificate(t *testing.T) {
	// The guide's `openssl req -x509 -newkey rsa:2048 -subj /CN=...` has
	// no SANs: self-signed, so monagent may and must replace it.
	s, _ := clockStore(t)
	kp, err := s.TLS("monitoring", monitoringHosts())
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "monitoring.acgs.ai"},
		NotBefore: t0().Add(-time.Hour), NotAfter: t0().Add(Validity)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	writeFile(t, kp.KeyFile, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})), 0o600)
	writeFile(t, kp.CertFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), 0o644)
	got, err := s.TLS("monitoring", monitoringHosts())
	if err != nil {
		t.Fatal(err)
	}
	if !got.Issued {
		t.Fatal("a self-signed certificate without the SANs was kept")
	}
	verifyFor(t, got.Cert, t0(), monitoringHosts())
}

func TestTLSHostsRequired(t *testing.T) {
	for name, h := range map[string]Hosts{
		"none":         {},
		"empty name":   {DNSNames: []string{""}},
		"URL for name": {DNSNames: []string{"https://x"}},
		"nil IP":       {IPs: []net.IP{nil}},
	} {
		t.Run(name, func(t *testing.T) {
			s := newStore(t)
			if _, err := s.TLS("p", h); err == nil {
				t.Fatal("no error")
			}
			if _, err := os.Stat(filepath.Join(s.Dir, "p.key")); err == nil {
				t.Error("a key was written")
			}
		})
	}
}
