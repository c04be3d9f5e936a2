package backup

import (
	"errors"
	"fmt"
	"strings"

	"filippo.io/age"
)

// NewIdentity returns a new X25519 identity, AGE-SECRET-KEY-1...: the key
// that Unpack and the age CLI decrypt with. Pack needs only its public
// key, the recipient.
func NewIdentity() (string, error) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return "", fmt.Errorf("new backup key: %w", err)
	}
	return id.String(), nil
}

// ParseIdentity reads an X25519 identity: the AGE-SECRET-KEY-1... line,
// or a key file as age-keygen writes it (lines starting with "#" and blank
// lines are skipped). Its errors never hold the key, not even in part:
// they end up in logs.
func ParseIdentity(s string) (*age.X25519Identity, error) {
	key, err := keyLine(s)
	if err != nil {
		return nil, err
	}
	switch {
	case strings.HasPrefix(key, "age1"):
		return nil, errors.New("backup key: this is a public key (age1...), which only encrypts: decrypting needs the secret key, AGE-SECRET-KEY-1...")
	case !strings.HasPrefix(key, "AGE-SECRET-KEY-1"):
		return nil, errors.New("backup key: not an age secret key: want AGE-SECRET-KEY-1... as age-keygen or monagent makes it (a passphrase cannot be used)")
	}
	id, err := age.ParseX25519Identity(key)
	if err != nil {
		// age's error may quote a character of the key.
		return nil, fmt.Errorf("backup key: malformed AGE-SECRET-KEY-1 key, %d characters where a key has 74 (a typo, or a copy cut short or joined with other text)", len(key))
	}
	return id, nil
}

// ParseRecipient reads an X25519 recipient, age1...: the public key Pack
// encrypts to, so that a host that only makes backups need not hold the
// secret key.
func ParseRecipient(s string) (*age.X25519Recipient, error) {
	key, err := keyLine(s)
	if err != nil {
		return nil, err
	}
	if strings.HasPrefix(key, "AGE-SECRET-KEY-") {
		return nil, errors.New("backup recipient: this is a secret key; give its public key (age1..., age-keygen -y prints it)")
	}
	r, err := age.ParseX25519Recipient(key)
	if err != nil {
		return nil, fmt.Errorf("backup recipient: %w (want age1... as age-keygen prints it)", err)
	}
	return r, nil
}

// keyLine is the one line of s that is not blank or a comment.
func keyLine(s string) (string, error) {
	var keys []string
	for line := range strings.Lines(s) {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			keys = append(keys, line)
		}
	}
	switch len(keys) {
	case 0:
		return "", errors.New("backup key: empty: want one AGE-SECRET-KEY-1... or age1... line")
	case 1:
		return keys[0], nil
	}
	return "", fmt.Errorf("backup key: %d key lines: want one", len(keys))
}
