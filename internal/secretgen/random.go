package secretgen

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"

	"golang.org/x/crypto/bcrypt"
)

const (
	// KeyBytes is the entropy of a Random secret, as `openssl rand
	// -base64 32` gives.
	KeyBytes = 32
	// keyLen is its length in standard base64, padding included.
	keyLen = (KeyBytes + 2) / 3 * 4

	// BcryptCost is bcrypt's own default. With a 256-bit random password
	// no cost makes guessing feasible, so a higher one would buy nothing
	// but CPU: Prometheus checks the hash on basic-auth requests, on a
	// small host. 10 is still the floor that hash auditors and
	// `htpasswd -B` users expect (htpasswd itself defaults to 5), and a
	// kept hash below it is recomputed.
	BcryptCost = bcrypt.DefaultCost

	// hashSuffix names the file beside a password that keeps its hash.
	hashSuffix = ".bcrypt"
)

// Random returns the secret in file name, creating it if missing: 32
// bytes from crypto/rand in standard base64, the file holding exactly the
// 44 characters (no newline), for a Grafana admin password or secret_key
// or a backup key.
func (s *Store) Random(name string) (Secret, error) {
	path, err := s.path(name)
	if err != nil {
		return Secret{}, err
	}
	if err := s.ensureDir(); err != nil {
		return Secret{}, err
	}
	return getOrCreateKey(path)
}

func getOrCreateKey(path string) (Secret, error) {
	data, ok, err := read(path, privateMode)
	if err != nil {
		return Secret{}, err
	}
	if ok {
		if err := checkKey(path, data); err != nil {
			return Secret{}, err
		}
		return Secret{string(data)}, nil
	}
	key, err := newKey()
	if err != nil {
		return Secret{}, err
	}
	if err := write(path, []byte(key), privateMode); err != nil {
		return Secret{}, err
	}
	return Secret{key}, nil
}

func newKey() (string, error) {
	b := make([]byte, KeyBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("secretgen: %w", err)
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// checkKey tells what is wrong with a kept key without quoting it. The
// fix is never "we regenerate it": whatever holds the old value (a login,
// an encrypted backup) would be locked out, so only an operator decides.
func checkKey(path string, data []byte) error {
	problem := ""
	switch raw, err := base64.StdEncoding.Strict().DecodeString(string(data)); {
	case len(data) == 0:
		problem = "is empty"
	case len(data) != keyLen:
		problem = fmt.Sprintf("holds %d bytes, not the %d characters of a base64 %d-byte key (a trailing newline counts)", len(data), keyLen, KeyBytes)
	case err != nil:
		problem = "is not standard base64"
	case len(raw) != KeyBytes:
		problem = fmt.Sprintf("decodes to %d bytes, not %d", len(raw), KeyBytes)
	default:
		return nil
	}
	return &FileError{Path: path, Problem: problem, Fix: "restore it from a backup, or remove it so the next run generates a new one (then give the new value to whatever used the old)"}
}

// HashedPassword is a password and its bcrypt hash.
type HashedPassword struct {
	Password Secret
	// Hash is the bcrypt hash of Password, for Prometheus web.yml's
	// basic_auth_users. It is not redacted: it is meant to be written
	// into configuration, and the password's 256 bits make it useless to
	// a guesser.
	Hash string
}

// Password returns the password in file name and its bcrypt hash, kept in
// name+".bcrypt", creating either if missing. The password is the source
// of truth: a kept hash that does not verify against it, or is cheaper
// than BcryptCost, is recomputed and rewritten. (The guide's
// `htpasswd -nbB user $(openssl rand ...)` kept only the hash, so nobody
// could ever log in with the password.)
func (s *Store) Password(name string) (HashedPassword, error) {
	path, err := s.path(name)
	if err != nil {
		return HashedPassword{}, err
	}
	if err := s.ensureDir(); err != nil {
		return HashedPassword{}, err
	}
	pw, err := getOrCreateKey(path)
	if err != nil {
		return HashedPassword{}, err
	}
	hash, err := getOrRehash(path+hashSuffix, pw, s.cost())
	if err != nil {
		return HashedPassword{}, err
	}
	return HashedPassword{Password: pw, Hash: hash}, nil
}

func (s *Store) cost() int {
	if s.bcryptCost != 0 {
		return s.bcryptCost
	}
	return BcryptCost
}

func getOrRehash(path string, pw Secret, cost int) (string, error) {
	kept, ok, err := read(path, privateMode)
	if err != nil {
		return "", err
	}
	if ok && hashFits(kept, pw, cost) {
		return string(kept), nil
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(pw.Reveal()), cost)
	if err != nil {
		return "", fmt.Errorf("secretgen: bcrypt hash for %s: %w", path, err)
	}
	if err := write(path, hash, privateMode); err != nil {
		return "", err
	}
	return string(hash), nil
}

// hashFits reports whether hash verifies pw at minCost or more; an empty
// or garbled hash simply does not.
func hashFits(hash []byte, pw Secret, minCost int) bool {
	cost, err := bcrypt.Cost(hash)
	return err == nil && cost >= minCost && bcrypt.CompareHashAndPassword(hash, []byte(pw.Reveal())) == nil
}
