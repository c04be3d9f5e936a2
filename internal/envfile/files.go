package envfile

import (
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"slices"
	"strings"

	"github.com/monagent/monagent/internal/config"
	"github.com/monagent/monagent/internal/render"
	"github.com/monagent/monagent/internal/secretgen"
)

// errNotYet is a file Check cannot compare before Apply creates what it
// is made from (a TLS pair, a bcrypt hash).
var errNotYet = errors.New("not created yet")

// paths lists every file the step writes in the stack directory, values
// or not, for the memo's digest.
func (s *Step) paths() []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(s.o.Vars)) {
		if f := s.o.Vars[k].File; f != "" {
			out = append(out, f)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(s.o.Certificates)) {
		c := s.o.Certificates[name]
		out = append(out, c.KeyFile, c.CertFile)
	}
	for _, t := range s.o.Templates {
		out = append(out, t.Target)
	}
	return out
}

// files are all the files the step writes besides the environment file:
// the keys' secret files, the TLS pairs and the rendered templates. With
// create false nothing is created: a missing pair or hash is errNotYet.
func (s *Step) files(create bool) ([]secretFile, error) {
	out := s.secretFiles()
	certs, err := s.certFiles(create)
	if err != nil {
		return nil, err
	}
	out = append(out, certs...)
	tmpls, err := s.templateFiles(create)
	if err != nil {
		return nil, err
	}
	return append(out, tmpls...), nil
}

// hosts are the names every certificate covers: the host's own, and the
// certificate's.
func (s *Step) hosts(c config.Certificate) secretgen.Hosts {
	h := secretgen.Hosts{DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}}
	if s.o.Hostname != "" {
		h.DNSNames = append(h.DNSNames, s.o.Hostname)
	}
	if ip := net.ParseIP(s.o.IP); ip != nil {
		h.IPs = append(h.IPs, ip)
	}
	h.DNSNames = append(h.DNSNames, c.DNSNames...)
	for _, a := range c.IPs {
		if ip := net.ParseIP(a); ip != nil {
			h.IPs = append(h.IPs, ip)
		}
	}
	slices.Sort(h.DNSNames)
	h.DNSNames = slices.Compact(h.DNSNames)
	return h
}

func (s *Step) certFiles(create bool) ([]secretFile, error) {
	var out []secretFile
	for _, name := range slices.Sorted(maps.Keys(s.o.Certificates)) {
		c := s.o.Certificates[name]
		var kp secretgen.KeyPair
		var err error
		if create {
			kp, err = s.o.Kept.TLS(name, s.hosts(c))
			if err == nil && kp.Issued {
				s.o.Log.Info("TLS certificate issued")
			}
		} else {
			var ok bool
			kp, ok, err = s.o.Kept.PeekTLS(name, s.hosts(c))
			if err == nil && !ok {
				return nil, errNotYet
			}
		}
		if err != nil {
			return nil, fmt.Errorf("certificates.%s: %w", name, err)
		}
		uid, gid := parseOwner(c.Owner)
		out = append(out,
			secretFile{rel: c.KeyFile, value: kp.KeyPEM.Reveal(), mode: 0o600, uid: uid, gid: gid},
			secretFile{rel: c.CertFile, value: string(kp.CertPEM), mode: 0o644})
	}
	return out, nil
}

func (s *Step) templateFiles(create bool) ([]secretFile, error) {
	if len(s.o.Templates) == 0 {
		return nil, nil
	}
	declared := map[string]bool{}
	for k := range s.o.Vars {
		declared[k] = true
	}
	data := render.Data{Values: s.values, Declared: declared, Hostname: s.o.Hostname, Bcrypt: func(key string) (string, error) {
		return s.bcrypt(key, create)
	}}
	var out []secretFile
	for i, t := range s.o.Templates {
		src, err := os.ReadFile(s.filePath(t.Source))
		if err != nil {
			return nil, fmt.Errorf("templates[%d]: %w (is it in the bundle?)", i, err)
		}
		b, err := render.Render(t.Source, src, t.Secret, data)
		if errors.Is(err, errNotYet) {
			return nil, err
		}
		if err != nil {
			return nil, fmt.Errorf("templates[%d]: %w", i, err)
		}
		f := secretFile{rel: t.Target, value: string(b), mode: 0o644}
		if t.Secret {
			f.mode = 0o600
			f.uid, f.gid = parseOwner(t.Owner)
		}
		out = append(out, f)
	}
	return out, nil
}

// bcrypt is the kept hash of key's value, made when create is set.
// Verifying a hash costs a bcrypt computation (tens of milliseconds), so
// a pair verified once is remembered: within the run, and across runs by
// a keyed digest in the memo.
func (s *Step) bcrypt(key string, create bool) (string, error) {
	if h, ok := s.verified[key]; ok {
		return h, nil
	}
	pw := secretgen.NewSecret(s.values[key])
	var hash string
	if create {
		h, err := s.o.Kept.Hash(key, pw)
		if err != nil {
			return "", err
		}
		hash = h
	} else {
		kept, ok, err := s.o.Kept.Lookup(key + ".bcrypt")
		if err != nil {
			return "", err
		}
		if !ok {
			return "", errNotYet
		}
		hash = kept.Reveal()
		if !s.knownPair(key, hash) && !s.o.Kept.HashMatches(hash, pw) {
			return "", errNotYet
		}
	}
	if s.verified == nil {
		s.verified = map[string]string{}
	}
	s.verified[key] = hash
	return hash, nil
}

// knownPair reports whether the last run verified exactly this value and
// hash for key.
func (s *Step) knownPair(key, hash string) bool {
	for _, e := range strings.Split(s.lastHashes, ",") {
		if k, d, ok := strings.Cut(e, "="); ok && k == key {
			return d == s.pairSum(key, hash)
		}
	}
	return false
}

// hashesSum lists the pairs verified in this run as key=digest, for the
// memo: keyed digests, never a hash one could test a password against.
func (s *Step) hashesSum() string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(s.verified)) {
		out = append(out, k+"="+s.pairSum(k, s.verified[k]))
	}
	return strings.Join(out, ",")
}

func (s *Step) pairSum(key, hash string) string {
	h := s.o.Seal.New()
	fmt.Fprintf(h, "%s %d:%s %d:%s;", key, len(s.values[key]), s.values[key], len(hash), hash)
	return hex.EncodeToString(h.Sum(nil))
}
