// Package seal keys the digests monagent keeps of secret-bearing files.
//
// The state file records what the last successful run wrote, so that the
// next run can tell whether .env changed. A bare SHA-256 of .env would let
// whoever reads the state file test guesses of a short password offline;
// an HMAC under a random key that never leaves the host does not.
package seal

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"os"
	"path/filepath"
)

// Path is the key file, beside the state file.
const Path = "/var/lib/monagent/seal.key"

const keySize = 32

// Key is the host's digest key.
type Key struct{ k []byte }

// NewKey is a key of the given bytes, for tests.
func NewKey(b []byte) *Key { return &Key{k: b} }

// Load reads the key at path, making it (0600, in a 0700 directory) the
// first time. Two runs making it at once agree on one: the key is linked
// into place, never renamed over another.
func Load(path string) (*Key, error) {
	for range 2 {
		b, err := os.ReadFile(path)
		switch {
		case err == nil && len(b) == keySize:
			return &Key{k: b}, nil
		case err == nil:
			return nil, fmt.Errorf("seal: %s holds %d bytes, not a %d-byte key: remove it, and the next run makes a new one", path, len(b), keySize)
		case !errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("seal: %w", err)
		}
		if err := create(path); err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("seal: %s vanished as it was made", path)
}

// create links a new random key to path, unless one is there already.
func create(path string) error {
	k := make([]byte, keySize)
	if _, err := rand.Read(k); err != nil {
		return fmt.Errorf("seal: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("seal: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".seal-")
	if err != nil {
		return fmt.Errorf("seal: %w", err)
	}
	defer os.Remove(f.Name())
	_, err = f.Write(k)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("seal: %w", err)
	}
	if err := os.Link(f.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("seal: %w", err)
	}
	return nil
}

// New returns an HMAC-SHA256 under the key.
func (k *Key) New() hash.Hash { return hmac.New(sha256.New, k.k) }

// Sum is the hex HMAC of b.
func (k *Key) Sum(b []byte) string {
	h := k.New()
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}
