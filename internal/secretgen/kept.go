package secretgen

import "errors"

// ErrEmpty is a value Keep refuses: an empty secret is the restart loop
// the guide's empty token caused.
var ErrEmpty = errors.New("secretgen: empty value")

// Lookup returns the secret kept in file name, whatever its form, or ok
// false when there is none. A file another user could read is an error.
func (s *Store) Lookup(name string) (value Secret, ok bool, err error) {
	path, err := s.path(name)
	if err != nil {
		return Secret{}, false, err
	}
	data, ok, err := read(path, privateMode)
	if err != nil || !ok {
		return Secret{}, false, err
	}
	if len(data) == 0 {
		return Secret{}, false, &FileError{Path: path, Problem: "is empty",
			Fix: "restore it from a backup, or remove it so the next run generates a new one"}
	}
	return Secret{string(data)}, true, nil
}

// Keep stores value in file name unless a value is kept there already,
// and returns the kept one: get-or-create for a value made by the caller
// (a hex token, an age identity).
func (s *Store) Keep(name string, value Secret) (Secret, error) {
	if value.v == "" {
		return Secret{}, ErrEmpty
	}
	if kept, ok, err := s.Lookup(name); err != nil || ok {
		return kept, err
	}
	if err := s.ensureDir(); err != nil {
		return Secret{}, err
	}
	path, _ := s.path(name)
	if err := write(path, []byte(value.v), privateMode); err != nil {
		return Secret{}, err
	}
	return value, nil
}

// Hash returns the bcrypt hash of pw, a password kept elsewhere (SSM),
// from file name+".bcrypt", computing and keeping it when missing, not
// matching pw, or cheaper than BcryptCost. Keeping it means a rerun
// rewrites nothing: bcrypt salts every hash anew.
func (s *Store) Hash(name string, pw Secret) (string, error) {
	path, err := s.path(name + hashSuffix)
	if err != nil {
		return "", err
	}
	if err := s.ensureDir(); err != nil {
		return "", err
	}
	return getOrRehash(path, pw, s.cost())
}

// NewSecret wraps a value made elsewhere, for Keep and Hash.
func NewSecret(v string) Secret { return Secret{v} }

// PeekTLS is TLS without writing: the kept pair, and whether TLS would
// keep it as it is (false when it is missing or due for renewal). A pair
// TLS would refuse is an error here too.
func (s *Store) PeekTLS(name string, hosts Hosts) (KeyPair, bool, error) {
	kp, err := s.pairPaths(name)
	if err != nil {
		return KeyPair{}, false, err
	}
	if err := hosts.check(name); err != nil {
		return KeyPair{}, false, err
	}
	kept, err := readPair(kp)
	if err != nil || kept == nil {
		return KeyPair{}, false, err
	}
	if !selfSigned(kept.Cert) {
		got, err := s.keepOrRenew(*kept, hosts)
		return got, err == nil, err
	}
	return *kept, unusable(kept.Cert, hosts, s.now(), RenewBefore) == "", nil
}

// HashMatches reports whether hash is a bcrypt hash of pw that Hash would
// keep as it is.
func (s *Store) HashMatches(hash string, pw Secret) bool { return hashFits([]byte(hash), pw, s.cost()) }
