package secretgen

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"strings"
	"time"
)

const (
	// Validity is how long an issued certificate lasts.
	Validity = 365 * 24 * time.Hour
	// RenewBefore is how long before expiry a certificate is renewed, so
	// that a host that runs the agent only now and then never serves an
	// expired one.
	RenewBefore = 30 * 24 * time.Hour
	// backdate covers clients whose clock lags the host's: a certificate
	// valid only from this second would be "not yet valid" to them.
	backdate = time.Hour

	keySuffix  = ".key"
	certSuffix = ".crt"
)

// Hosts are the names a certificate must be valid for.
type Hosts struct {
	DNSNames []string
	IPs      []net.IP
}

// check refuses hosts no certificate could be issued for.
func (h Hosts) check(name string) error {
	if len(h.DNSNames)+len(h.IPs) == 0 {
		return fmt.Errorf("secretgen: certificate %s: no DNS name or IP to issue it for", name)
	}
	for _, d := range h.DNSNames {
		if d == "" || strings.ContainsAny(d, " /:") {
			return fmt.Errorf("secretgen: certificate %s: %q is not a DNS name", name, d)
		}
	}
	for _, ip := range h.IPs {
		if ip.To16() == nil {
			return fmt.Errorf("secretgen: certificate %s: an IP is empty or malformed", name)
		}
	}
	return nil
}

func (h Hosts) names() []string {
	out := append([]string(nil), h.DNSNames...)
	for _, ip := range h.IPs {
		out = append(out, ip.String())
	}
	return out
}

// KeyPair is a TLS private key and its certificate, as written on disk.
type KeyPair struct {
	KeyFile, CertFile string
	// KeyPEM is the private key, PKCS#8 in PEM for a pair this package
	// issued. It is the only place the key is kept, so that printing a
	// KeyPair never prints it.
	KeyPEM  Secret
	CertPEM []byte
	Cert    *x509.Certificate
	// Issued is set when this call wrote a new pair: whatever serves it
	// must reload.
	Issued bool
}

// TLSCertificate is the pair for crypto/tls. Unlike KeyPair, the value it
// returns holds the private key in the clear: do not print it.
func (k KeyPair) TLSCertificate() (tls.Certificate, error) {
	return tls.X509KeyPair(k.CertPEM, []byte(k.KeyPEM.Reveal()))
}

// TLS returns the key pair kept in name+".key" (0600) and name+".crt"
// (0644), issuing a self-signed ECDSA P-256 one, valid for Validity, when
// both are missing, or when the kept one is self-signed and expires
// within RenewBefore, is not yet valid, or does not cover every one of
// hosts. Otherwise the pair is returned as it is and the files are not
// touched.
//
// A certificate that is not self-signed was put there by an operator
// (the guide's "replace with CA-signed in production"): it is never
// replaced, and is an error only once it is unusable (expired, not yet
// valid, or missing one of hosts).
func (s *Store) TLS(name string, hosts Hosts) (KeyPair, error) {
	kp, err := s.pairPaths(name)
	if err != nil {
		return KeyPair{}, err
	}
	if err := hosts.check(name); err != nil {
		return KeyPair{}, err
	}
	if err := s.ensureDir(); err != nil {
		return KeyPair{}, err
	}
	kept, err := readPair(kp)
	switch {
	case err != nil:
		return KeyPair{}, err
	case kept == nil:
		return s.issue(kp, hosts)
	}
	return s.keepOrRenew(*kept, hosts)
}

func (s *Store) pairPaths(name string) (KeyPair, error) {
	keyFile, err := s.path(name + keySuffix)
	if err != nil {
		return KeyPair{}, err
	}
	certFile, err := s.path(name + certSuffix)
	return KeyPair{KeyFile: keyFile, CertFile: certFile}, err
}

func (s *Store) keepOrRenew(kp KeyPair, hosts Hosts) (KeyPair, error) {
	if !selfSigned(kp.Cert) {
		if problem := unusable(kp.Cert, hosts, s.now(), 0); problem != "" {
			return KeyPair{}, &FileError{Path: kp.CertFile, Problem: "is not self-signed, so monagent leaves it alone, but it " + problem,
				Fix: "install a renewed certificate and key, or remove both files so the next run issues a self-signed pair"}
		}
		return kp, nil
	}
	if unusable(kp.Cert, hosts, s.now(), RenewBefore) != "" {
		return s.issue(kp, hosts)
	}
	return kp, nil
}

// unusable says why c will not do for hosts within the next margin, or "".
func unusable(c *x509.Certificate, hosts Hosts, now time.Time, margin time.Duration) string {
	if now.Before(c.NotBefore) {
		return "is not valid until " + c.NotBefore.UTC().Format(time.RFC3339)
	}
	if !now.Add(margin).Before(c.NotAfter) {
		return "expires " + c.NotAfter.UTC().Format(time.RFC3339)
	}
	var missing []string
	for _, h := range hosts.names() {
		// VerifyHostname is what a client checks: case-insensitive,
		// wildcards, IP SANs.
		if c.VerifyHostname(h) != nil {
			missing = append(missing, h)
		}
	}
	if len(missing) > 0 {
		return "does not cover " + strings.Join(missing, ", ")
	}
	return ""
}

// selfSigned reports whether c is signed by its own key: one this
// package issued, or the guide's `openssl req -x509`.
func selfSigned(c *x509.Certificate) bool {
	return string(c.RawIssuer) == string(c.RawSubject) &&
		c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil
}

// readPair returns the kept pair, nil when neither file exists.
func readPair(kp KeyPair) (*KeyPair, error) {
	keyPEM, keyOK, err := read(kp.KeyFile, privateMode)
	if err != nil {
		return nil, err
	}
	certPEM, certOK, err := read(kp.CertFile, publicMode)
	if err != nil {
		return nil, err
	}
	if !keyOK && !certOK {
		return nil, nil
	}
	if keyOK != certOK {
		return nil, halfPair(kp, keyOK)
	}
	kp.KeyPEM, kp.CertPEM = Secret{string(keyPEM)}, certPEM
	if err := parsePair(&kp); err != nil {
		return nil, err
	}
	return &kp, nil
}

// halfPair is an error rather than a reissue: the missing file may be
// an operator's certificate or key in the middle of being installed.
func halfPair(kp KeyPair, keyOK bool) error {
	have, lack := kp.KeyFile, kp.CertFile
	if !keyOK {
		have, lack = lack, have
	}
	return &FileError{Path: lack, Problem: "is missing while " + have + " exists",
		Fix: "restore it, or remove " + have + " too so the next run issues a new pair"}
}

// parsePair fills kp.Cert and checks that the key is the certificate's.
func parsePair(kp *KeyPair) error {
	key, err := parseKey(kp.KeyFile, []byte(kp.KeyPEM.Reveal()))
	if err != nil {
		return err
	}
	if kp.Cert, err = parseCert(kp.CertFile, kp.CertPEM); err != nil {
		return err
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(kp.Cert.PublicKey) {
		return &FileError{Path: kp.KeyFile, Problem: "is not the key of the certificate " + kp.CertFile,
			Fix: "restore the matching key or certificate, or remove both files so the next run issues a new pair"}
	}
	return nil
}

const corruptFix = "restore it from a backup, or remove both the key and the certificate so the next run issues a new pair"

func parseKey(path string, data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, &FileError{Path: path, Problem: "holds no PEM block", Fix: corruptFix}
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY": // an operator's, from `openssl ecparam`
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY": // an operator's, from an older openssl
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		err = fmt.Errorf("PEM block %q is not a private key", block.Type)
	}
	if err != nil {
		return nil, &FileError{Path: path, Problem: "is not a usable private key", Fix: corruptFix, Err: err}
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, &FileError{Path: path, Problem: fmt.Sprintf("holds a %T, which cannot sign", key), Fix: corruptFix}
	}
	return signer, nil
}

// parseCert reads the first certificate: an operator's file may carry
// the chain after it.
func parseCert(path string, data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, &FileError{Path: path, Problem: "holds no PEM CERTIFICATE block", Fix: corruptFix}
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, &FileError{Path: path, Problem: "is not a usable certificate", Fix: corruptFix, Err: err}
	}
	return c, nil
}

// issue writes a new key, then its certificate. A crash between the two
// leaves a pair that does not match: the next run reports it rather than
// guess which file to trust.
func (s *Store) issue(kp KeyPair, hosts Hosts) (KeyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return KeyPair{}, fmt.Errorf("secretgen: generate key: %w", err)
	}
	der, err := selfSign(key, hosts, s.now())
	if err != nil {
		return KeyPair{}, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return KeyPair{}, fmt.Errorf("secretgen: encode key: %w", err)
	}
	kp.KeyPEM = Secret{string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))}
	kp.CertPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if kp.Cert, err = x509.ParseCertificate(der); err != nil {
		return KeyPair{}, fmt.Errorf("secretgen: parse issued certificate: %w", err)
	}
	if err := write(kp.KeyFile, []byte(kp.KeyPEM.Reveal()), privateMode); err != nil {
		return KeyPair{}, err
	}
	if err := write(kp.CertFile, kp.CertPEM, publicMode); err != nil {
		return KeyPair{}, err
	}
	kp.Issued = true
	return kp, nil
}

func selfSign(key *ecdsa.PrivateKey, hosts Hosts, now time.Time) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("secretgen: serial number: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		// Clients match the SANs; the CN is for people reading the
		// certificate.
		Subject:               pkix.Name{CommonName: hosts.names()[0]},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(Validity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              hosts.DNSNames,
		IPAddresses:           hosts.IPs,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("secretgen: sign certificate: %w", err)
	}
	return der, nil
}
