// Package localparam stands in for SSM on a host off AWS (cloud: none):
// the env step reads and creates its values here, by env key. Values an
// operator supplies (an SMTP password, a webhook) come from one root-only
// KEY=VALUE file; values the host generates are kept in the secret store,
// one 0600 file each, get-or-create.
package localparam

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"

	"github.com/compose-spec/compose-go/v2/dotenv"

	"github.com/monagent/monagent/internal/secretgen"
	"github.com/monagent/monagent/internal/ssmparam"
)

// Secrets learns secret values; *logging.Redactor is one.
type Secrets interface {
	Add(secret string)
}

// Store reads the operator's file and keeps generated values.
type Store struct {
	// File is the operator's KEY=VALUE file; "" means none.
	File    string
	Kept    *secretgen.Store
	Secrets Secrets
}

// GetMany returns the values found for names, from the operator's file
// first: what an operator wrote there replaces what the host generated.
func (s *Store) GetMany(_ context.Context, names []string) (map[string]ssmparam.Parameter, []string, error) {
	given, err := s.operator()
	if err != nil {
		return nil, nil, err
	}
	found := map[string]ssmparam.Parameter{}
	var missing []string
	for _, n := range names {
		if v, ok := given[n]; ok && v != "" {
			found[n] = s.param(n, v)
			continue
		}
		v, ok, err := s.Kept.Lookup(n)
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			missing = append(missing, n)
			continue
		}
		found[n] = s.param(n, v.Reveal())
	}
	return found, missing, nil
}

// Create keeps value under name unless a value is kept already, and
// returns the kept one.
func (s *Store) Create(_ context.Context, name, value string) (ssmparam.Parameter, error) {
	if s.Secrets != nil {
		s.Secrets.Add(value)
	}
	kept, err := s.Kept.Keep(name, secretgen.NewSecret(value))
	if err != nil {
		return ssmparam.Parameter{}, err
	}
	return s.param(name, kept.Reveal()), nil
}

func (s *Store) param(name, value string) ssmparam.Parameter {
	if s.Secrets != nil {
		s.Secrets.Add(value)
	}
	return ssmparam.Parameter{Name: name, Value: value, Type: "SecureString", Version: 1}
}

// operator reads the operator's file, refusing one that others could
// read or change: it holds the secrets SSM would hold.
func (s *Store) operator() (map[string]string, error) {
	if s.File == "" {
		return nil, nil
	}
	fi, err := os.Stat(s.File)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("secrets.file: %w", err)
	}
	if err := private(s.File, fi); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(s.File)
	if err != nil {
		return nil, fmt.Errorf("secrets.file: %w", err)
	}
	// The parser expands $NAME and ${NAME} in unquoted and double-quoted
	// values, and warns on stderr naming each NAME it cannot find: a
	// password such as "pa$word" would come out as "pa", with "word" in
	// the log. Every expansion asks lookup first (so does a line that is
	// a key alone, to inherit it); answering it stops the warning, and
	// the file is refused rather than read cut short.
	looked := false
	vals, err := dotenv.UnmarshalBytesWithLookup(data, func(string) (string, bool) { looked = true; return "", true })
	if err != nil {
		// The parser's message may quote a line; the lines are secrets.
		return nil, fmt.Errorf("secrets.file %s: not KEY=VALUE lines in .env syntax; fix the file (values with spaces or # in single quotes)", s.File)
	}
	if looked {
		return nil, fmt.Errorf("secrets.file %s: a value holds $ outside single quotes, which .env syntax expands as a variable, or a line is a key without =VALUE; put values holding $ in single quotes, and give every key its value", s.File)
	}
	return vals, nil
}

func private(path string, fi fs.FileInfo) error {
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("secrets.file %s: mode %04o lets other users read it; run: chmod 600 %s, and rotate its secrets if they may have leaked",
			path, fi.Mode().Perm(), path)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("secrets.file %s: belongs to uid %d, not to uid %d that runs monagent; run: chown %d:%d %s",
			path, st.Uid, os.Geteuid(), os.Geteuid(), os.Getegid(), path)
	}
	return nil
}
