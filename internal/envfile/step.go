package envfile

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"filippo.io/age"
	"go.uber.org/zap"

	"github.com/monagent/monagent/internal/atomicfile"
	"github.com/monagent/monagent/internal/config"
	"github.com/monagent/monagent/internal/retry"
	"github.com/monagent/monagent/internal/seal"
	"github.com/monagent/monagent/internal/secretgen"
	"github.com/monagent/monagent/internal/ssmparam"
)

// Name is the .env file's name in the stack directory.
const Name = ".env"

// Params reads and creates SSM parameters; *ssmparam.Store is one.
type Params interface {
	GetMany(ctx context.Context, names []string) (map[string]ssmparam.Parameter, []string, error)
	Create(ctx context.Context, name, value string) (ssmparam.Parameter, error)
}

// Secrets learns secret values; *logging.Redactor is one.
type Secrets interface {
	Add(secret string)
}

// Options are the step's collaborators.
type Options struct {
	Root string
	// Dir is the stack directory (bundle.dir), as seen from the host root.
	Dir     string
	Vars    map[string]config.EnvVar
	Params  Params
	Secrets Secrets
	// Seal keys the digests the memo keeps of what was written.
	Seal *seal.Key
	Log  *zap.Logger
	// EnvFile is where the environment file goes, as seen from the host
	// root; "" means Name in Dir.
	EnvFile string
	// Kept is the host's secret store: bcrypt hashes and TLS pairs.
	Kept         *secretgen.Store
	Certificates map[string]config.Certificate
	Templates    []config.Template
	// LocalFile, off AWS, is where an operator puts the values the host
	// cannot generate (secrets.file): the messages about a missing value
	// point there instead of at SSM.
	LocalFile string
	// Hostname and IP are the host's names, for the certificates and
	// the templates.
	Hostname, IP string
}

// Step renders .env and the secret files.
type Step struct {
	o Options

	values   map[string]string // key -> value, resolved this run
	missing  []string          // optional keys whose parameter is absent
	warnings []string
	resolved bool
	// down is the SSM error of a run that could not resolve the values.
	down error

	lastEnvSum   string // memo: keyed digest of the .env last written
	lastFilesSum string // memo: keyed digest of the secret files last written
	// verified maps a key to the bcrypt hash checked against its value
	// in this run; lastHashes is the keyed digest of the last run's.
	verified   map[string]string
	lastHashes string
	// lastPath is where the last run wrote the environment file: when
	// compose.env_file moves, the old file and its secrets go.
	lastPath string
}

// New returns the step.
func New(o Options) *Step {
	if o.Root == "" {
		o.Root = "/"
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	return &Step{o: o}
}

// Path is the environment file under the root.
func (s *Step) Path() string {
	if s.o.EnvFile != "" {
		return filepath.Join(s.o.Root, s.o.EnvFile)
	}
	return filepath.Join(s.o.Root, s.o.Dir, Name)
}

func (s *Step) filePath(rel string) string { return filepath.Join(s.o.Root, s.o.Dir, rel) }

// Restore implements engine.Memoizer.
func (s *Step) Restore(memo map[string]string) {
	s.lastEnvSum, s.lastFilesSum = memo["env_hmac"], memo["files_hmac"]
	s.lastHashes = memo["bcrypt_hmac"]
	s.lastPath = memo["env_path"]
}

// Memo implements engine.Memoizer: keyed digests of what was written,
// never the values, nor a bare hash one could test guesses against.
func (s *Step) Memo() map[string]string {
	sum, _ := s.sumFile(s.Path())
	return map[string]string{"env_hmac": sum, "files_hmac": s.filesSum(), "bcrypt_hmac": s.hashesSum(),
		"env_path": s.Path()}
}

// filesSum digests the secret files as they are on disk.
func (s *Step) filesSum() string {
	h := s.o.Seal.New()
	for _, f := range s.paths() {
		b, err := os.ReadFile(s.filePath(f))
		if err != nil {
			fmt.Fprintf(h, "%s missing;", f)
			continue
		}
		fmt.Fprintf(h, "%s %d:%s;", f, len(b), b)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func (s *Step) sumFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return s.o.Seal.Sum(b), nil
}

// Warning implements engine.Warner.
func (s *Step) Warning() string { return strings.Join(s.warnings, "; ") }

// Fingerprint digests the mapping, never the values: they are secrets.
func (s *Step) Fingerprint(context.Context) (string, error) {
	h := sha256.New()
	for _, k := range slices.Sorted(maps.Keys(s.o.Vars)) {
		v := s.o.Vars[k]
		lit := ""
		if v.Value != nil {
			lit = "literal"
		}
		fmt.Fprintf(h, "%s|%s|%s|%t|%v|%s|%s|%s|%t;", k, lit, v.Parameter, v.Optional, v.Services, v.Generate, v.File, v.FileOwner, v.InEnv())
	}
	fmt.Fprintf(h, "%s|%v|%v|%s|%s;", s.o.EnvFile, s.o.Certificates, s.o.Templates, s.o.Hostname, s.o.IP)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Check resolves every value (one batched SSM read) and compares what
// would be written with what is on disk, byte for byte, mode and owner
// included. When SSM cannot be reached and .env is the one the last
// successful run wrote, that is a warning, not a failure.
func (s *Step) Check(ctx context.Context) (bool, error) {
	if err := s.resolve(ctx, false); err != nil {
		if s.down != nil && s.lastEnvSum != "" {
			if sum, _ := s.sumFile(s.Path()); sum == s.lastEnvSum && s.filesSum() == s.lastFilesSum {
				s.warnings = append(s.warnings, fmt.Sprintf("could not read SSM (%v); %s is the one the last successful run wrote", s.down, Name))
				s.o.Log.Warn("SSM unreadable; .env unchanged since the last successful run", zap.Error(s.down))
				return true, nil
			}
		}
		return false, err
	}
	if len(s.generateNeeded()) > 0 {
		return false, nil
	}
	env, err := s.render()
	if err != nil {
		return false, err
	}
	if ok, err := sameFile(s.Path(), env, 0o600, 0, 0); err != nil || !ok {
		return false, err
	}
	files, err := s.files(false)
	if errors.Is(err, errNotYet) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	for _, f := range files {
		if ok, err := sameFile(s.filePath(f.rel), []byte(f.value), f.mode, f.uid, f.gid); err != nil || !ok {
			return false, err
		}
	}
	for _, rel := range s.staleFiles() {
		if _, err := os.Lstat(s.filePath(rel)); err == nil {
			return false, nil
		}
	}
	return true, nil
}

// staleFiles are the files of optional keys whose parameter is absent: a
// file left from when it existed would keep its services on.
func (s *Step) staleFiles() []string {
	var out []string
	for _, k := range s.missing {
		if f := s.o.Vars[k].File; f != "" {
			out = append(out, f)
		}
	}
	return out
}

// Apply creates the generated secrets that do not exist yet, then writes
// .env and the secret files that differ.
func (s *Step) Apply(ctx context.Context) error {
	if err := s.resolve(ctx, false); err != nil {
		return err
	}
	for _, k := range s.generateNeeded() {
		if err := s.generate(ctx, k); err != nil {
			return err
		}
	}
	env, err := s.render()
	if err != nil {
		return err
	}
	if err := writeIfDifferent(s.Path(), env, 0o600, 0, 0); err != nil {
		return err
	}
	if err := s.removeMoved(); err != nil {
		return err
	}
	files, err := s.files(true)
	if err != nil {
		return err
	}
	for _, f := range files {
		if err := writeIfDifferent(s.filePath(f.rel), []byte(f.value), f.mode, f.uid, f.gid); err != nil {
			return err
		}
	}
	for _, rel := range s.staleFiles() {
		if err := os.Remove(s.filePath(rel)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("env: remove %s, whose parameter is gone: %w", rel, err)
		}
	}
	return nil
}

// removeMoved removes the environment file the last run wrote elsewhere:
// left behind, its secrets would outlive their rotation, and a hand-run
// `docker compose up` in the stack directory would read it.
func (s *Step) removeMoved() error {
	old := s.lastPath
	if old == "" || old == s.Path() {
		return nil
	}
	if err := os.Remove(old); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("env: remove %s, the environment file before compose.env_file moved: %w", old, err)
	}
	s.o.Log.Info("environment file moved; the old one removed", zap.String("old", old), zap.String("new", s.Path()))
	return nil
}

// resolve reads the values once per run.
func (s *Step) resolve(ctx context.Context, again bool) error {
	if s.resolved && !again {
		return nil
	}
	s.values, s.missing = map[string]string{}, nil
	var names []string
	for _, v := range s.o.Vars {
		if v.Parameter != "" && !slices.Contains(names, v.Parameter) {
			names = append(names, v.Parameter)
		}
	}
	slices.Sort(names)
	found, _, err := s.o.Params.GetMany(ctx, names)
	if err != nil {
		if retry.Unreachable(err) {
			s.down = err
		}
		return fmt.Errorf("env: %w", err)
	}
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(s.o.Vars)) {
		v := s.o.Vars[k]
		switch p, ok := found[v.Parameter]; {
		case v.Value != nil:
			s.values[k] = *v.Value
		case ok:
			// Whatever its SSM type: a value bound for .env is a secret.
			if s.o.Secrets != nil {
				s.o.Secrets.Add(p.Value)
			}
			s.values[k] = p.Value
		case v.Generate != "":
			// Apply creates it.
		case v.Optional:
			s.missing = append(s.missing, k)
		default:
			errs = append(errs, fmt.Errorf("env.%s: %s does not exist; create it: %s", k, s.source(v.Parameter), s.putCommand(v.Parameter)))
		}
	}
	if len(errs) > 0 {
		return retry.PermanentError(errors.Join(errs...))
	}
	s.resolved = true
	s.warnOptional()
	return nil
}

func (s *Step) warnOptional() {
	s.warnings = nil
	for _, k := range s.missing {
		v := s.o.Vars[k]
		what := fmt.Sprintf("%s %s left out instead of started with an empty value", strings.Join(v.Services, ", "), plural(len(v.Services), "is", "are"))
		if len(v.Services) == 0 {
			// A receiver in a template, guarded by has.
			what = "what the templates guard with has \"" + k + "\" is left out instead of rendered empty"
		}
		msg := fmt.Sprintf("%s: %s does not exist, so %s; create it: %s", k, s.source(v.Parameter), what, s.putCommand(v.Parameter))
		s.warnings = append(s.warnings, msg)
		logMsg := "optional secret absent; its services are left out"
		if len(v.Services) == 0 {
			logMsg = "optional secret absent; what the templates guard with has is left out"
		}
		s.o.Log.Warn(logMsg, zap.String("key", k),
			zap.String("parameter", v.Parameter), zap.Strings("services", v.Services), zap.String("create", s.putCommand(v.Parameter)))
	}
}

// source names where a value comes from, for messages.
func (s *Step) source(param string) string {
	if s.o.LocalFile != "" {
		return "the value " + param
	}
	return "SSM parameter " + param
}

func (s *Step) putCommand(param string) string {
	if s.o.LocalFile != "" {
		return fmt.Sprintf("add the line %s=<value> to %s (root-owned, mode 0600)", param, s.o.LocalFile)
	}
	return fmt.Sprintf("aws ssm put-parameter --name %s --type SecureString --value '<value>'", param)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// generateNeeded lists the keys to generate: their parameter is absent.
func (s *Step) generateNeeded() []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(s.o.Vars)) {
		if _, ok := s.values[k]; !ok && s.o.Vars[k].Generate != "" {
			out = append(out, k)
		}
	}
	return out
}

// generate makes a value and stores it get-or-create: a value someone else
// stored first wins, and no later run replaces it.
func (s *Step) generate(ctx context.Context, k string) error {
	v := s.o.Vars[k]
	value, err := newSecret(v.Generate)
	if err != nil {
		return fmt.Errorf("env.%s: %w", k, err)
	}
	if s.o.Secrets != nil {
		s.o.Secrets.Add(value)
	}
	p, err := s.o.Params.Create(ctx, v.Parameter, value)
	if err != nil {
		return fmt.Errorf("env.%s: %w", k, err)
	}
	if s.o.Secrets != nil {
		s.o.Secrets.Add(p.Value) // someone else's, when theirs came first
	}
	s.values[k] = p.Value
	if p.Value == value {
		s.o.Log.Info("generated secret stored", zap.String("key", k), zap.String("parameter", v.Parameter))
	} else {
		s.o.Log.Info("secret already stored by someone else; using it", zap.String("key", k), zap.String("parameter", v.Parameter))
	}
	return nil
}

func newSecret(kind string) (string, error) {
	if kind == config.GenerateAge {
		id, err := age.GenerateX25519Identity()
		if err != nil {
			return "", err
		}
		return id.String(), nil
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	switch kind {
	case config.GenerateHex32:
		return hex.EncodeToString(b), nil
	case config.GenerateBase64, config.GeneratePassword:
		return base64.StdEncoding.EncodeToString(b), nil
	}
	return "", fmt.Errorf("unknown generator %q", kind)
}

// render is the .env content: every key with a value that goes to .env.
// An absent optional key is left out altogether, never written empty: an
// empty GITHUB_TOKEN is the restart loop of seed section 7.
func (s *Step) render() ([]byte, error) {
	vals := map[string]string{}
	for k, v := range s.values {
		if s.o.Vars[k].InEnv() {
			vals[k] = v
		}
	}
	return Encode(vals)
}

// secretFile is one file the step writes in the stack directory.
type secretFile struct {
	rel, value string
	mode       fs.FileMode
	uid, gid   int
}

// secretFiles are the files of the keys with file: set.
func (s *Step) secretFiles() []secretFile {
	var out []secretFile
	for _, k := range slices.Sorted(maps.Keys(s.o.Vars)) {
		v := s.o.Vars[k]
		val, ok := s.values[k]
		if v.File == "" || !ok {
			continue
		}
		f := secretFile{rel: v.File, value: val, mode: 0o600}
		f.uid, f.gid = parseOwner(v.FileOwner)
		out = append(out, f)
	}
	return out
}

// parseOwner reads a validated numeric uid:gid; "" is root.
func parseOwner(s string) (uid, gid int) {
	if u, g, ok := strings.Cut(s, ":"); ok {
		uid, _ = strconv.Atoi(u)
		gid, _ = strconv.Atoi(g)
	}
	return uid, gid
}

// Disabled is the services the compose step leaves out, read from what the
// env step wrote: those of every optional key whose value is absent, from
// .env (env, as parsed) for a key bound for it, from the stack directory
// dir for a file-only key. The env step writes exactly the values it has,
// and warns of the others by the same keys.
func Disabled(dir string, vars map[string]config.EnvVar, env map[string]string) []string {
	var out []string
	for k, v := range vars {
		if v.Optional && absent(dir, k, v, env) {
			out = append(out, v.Services...)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func absent(dir, k string, v config.EnvVar, env map[string]string) bool {
	if v.InEnv() {
		_, ok := env[k]
		return !ok
	}
	_, err := os.Stat(filepath.Join(dir, v.File))
	return err != nil
}

// sameFile reports whether path holds exactly data with mode and owner.
func sameFile(path string, data []byte, mode fs.FileMode, uid, gid int) (bool, error) {
	got, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("env: %w", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return false, fmt.Errorf("env: %w", err)
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	return bytes.Equal(got, data) && fi.Mode().Perm() == mode && st != nil && int(st.Uid) == uid && int(st.Gid) == gid, nil
}

// writeIfDifferent replaces path atomically when its content, mode or
// owner differ; an unchanged file keeps its inode and mtime.
func writeIfDifferent(path string, data []byte, mode fs.FileMode, uid, gid int) error {
	if ok, err := sameFile(path, data, mode, uid, gid); err != nil || ok {
		return err
	}
	// The directories let the file's owner (a container's user) through,
	// whatever the umask; the file itself is 0600.
	if err := atomicfile.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("env: %w", err)
	}
	opts := atomicfile.Options{Owner: &atomicfile.Owner{UID: uid, GID: gid}}
	if err := opts.WriteFile(path, data, mode); err != nil {
		return fmt.Errorf("env: %w", err)
	}
	return nil
}
