package main

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// The database is a JSON document at DATA/grafana.db. Every change is a
// read-modify-write under an flock on DATA/grafana.db.lock, written to a
// temporary file and renamed, so the server and `grafana cli` (run with
// docker exec) can both change it.

const dbFormat = "monagent-rig grafana stand-in v1"

type admin struct {
	Login string `json:"login"`
	Salt  string `json:"salt"`
	Hash  string `json:"hash"` // hex sha256(salt + password)
}

func (a admin) check(user, password string) bool {
	if a.Login == "" || subtle.ConstantTimeCompare([]byte(user), []byte(a.Login)) != 1 {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(hashPassword(a.Salt, password)), []byte(a.Hash)) == 1
}

func hashPassword(salt, password string) string {
	h := sha256.Sum256([]byte(salt + password))
	return hex.EncodeToString(h[:])
}

func newAdmin(login, password string) admin {
	salt := randomString(10)
	return admin{Login: login, Salt: salt, Hash: hashPassword(salt, password)}
}

type folder struct {
	ID    int64  `json:"id"`
	UID   string `json:"uid"`
	Title string `json:"title"`
}

type dashboard struct {
	ID          int64           `json:"id"`
	UID         string          `json:"uid"`
	Title       string          `json:"title"`
	Tags        []string        `json:"tags"`
	FolderUID   string          `json:"folderUid,omitempty"`
	Version     int64           `json:"version"`
	Provisioned bool            `json:"provisioned,omitempty"`
	Provider    string          `json:"provider,omitempty"`
	Path        string          `json:"path,omitempty"`
	Checksum    string          `json:"checksum,omitempty"`
	Created     time.Time       `json:"created"`
	Updated     time.Time       `json:"updated"`
	Data        json.RawMessage `json:"data"`
}

type dbState struct {
	Format     string       `json:"format"`
	Created    time.Time    `json:"created"`
	NextID     int64        `json:"nextId"`
	Admin      admin        `json:"admin"`
	Folders    []folder     `json:"folders"`
	Dashboards []*dashboard `json:"dashboards"`
}

func (s *dbState) allocID() int64 {
	if s.NextID < 1 {
		s.NextID = 1
	}
	id := s.NextID
	s.NextID++
	return id
}

func (s *dbState) dashboardByUID(uid string) *dashboard {
	for _, d := range s.Dashboards {
		if d.UID == uid {
			return d
		}
	}
	return nil
}

func (s *dbState) folderByUID(uid string) *folder {
	for i := range s.Folders {
		if s.Folders[i].UID == uid {
			return &s.Folders[i]
		}
	}
	return nil
}

func (s *dbState) removeDashboard(uid string) {
	out := s.Dashboards[:0]
	for _, d := range s.Dashboards {
		if d.UID != uid {
			out = append(out, d)
		}
	}
	s.Dashboards = out
}

type store struct {
	path string
	mu   sync.Mutex // serialises this process; the flock serialises processes

	// cacheInfo is the file the cache was read from: a write renames a new
	// file into place, and the same size and a coarse mtime alone would not
	// tell two writes a few milliseconds apart.
	cacheInfo os.FileInfo
	cache     *dbState
}

func openStore(dataDir string) *store {
	return &store{path: filepath.Join(dataDir, "grafana.db")}
}

var errNoDB = errors.New("database not initialised")

// init creates the database with the admin user when it does not exist
// (Grafana creates the admin user on first start only; later starts keep the
// stored password whatever GF_SECURITY_ADMIN_PASSWORD says). It reports
// whether it created the database.
func (st *store) init(login, password string, now time.Time) (bool, error) {
	created := false
	err := st.update(func(s *dbState) error {
		if s.Format != "" {
			return nil
		}
		*s = dbState{Format: dbFormat, Created: now.UTC(), NextID: 1, Admin: newAdmin(login, password)}
		created = true
		return nil
	}, true)
	return created, err
}

// read returns the current state (cached while the file is unchanged).
func (st *store) read() (*dbState, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	fi, err := os.Stat(st.path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, errNoDB
		}
		return nil, err
	}
	if c := st.cacheInfo; st.cache != nil && os.SameFile(c, fi) && fi.ModTime().Equal(c.ModTime()) && fi.Size() == c.Size() {
		return st.cache, nil
	}
	s, err := st.load()
	if err != nil {
		return nil, err
	}
	st.cache, st.cacheInfo = s, fi
	return s, nil
}

func (st *store) load() (*dbState, error) {
	b, err := os.ReadFile(st.path)
	if err != nil {
		return nil, err
	}
	s := &dbState{}
	if err := json.Unmarshal(b, s); err != nil {
		return nil, fmt.Errorf("%s is not a stand-in database: %w", st.path, err)
	}
	if s.Format != dbFormat {
		return nil, fmt.Errorf("%s has format %q, want %q", st.path, s.Format, dbFormat)
	}
	return s, nil
}

// update applies fn to the state and writes it back when fn returns nil.
// Unless create is set, the database must exist.
func (st *store) update(fn func(*dbState) error, create bool) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	lock, err := os.OpenFile(st.path+".lock", os.O_CREATE|os.O_RDWR, 0o640)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)

	s, err := st.load()
	switch {
	case err == nil:
	case errors.Is(err, os.ErrNotExist) && create:
		s = &dbState{}
	case errors.Is(err, os.ErrNotExist):
		return errNoDB
	default:
		return err
	}
	before, _ := json.Marshal(s)
	if err := fn(s); err != nil {
		return err
	}
	after, err := json.MarshalIndent(s, "", " ")
	if err != nil {
		return err
	}
	if compact, _ := json.Marshal(s); string(compact) == string(before) {
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(st.path), ".grafana.db.*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(after); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o640); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), st.path); err != nil {
		return err
	}
	st.cache = nil
	return nil
}

const uidAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

func randomString(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	for i := range b {
		b[i] = uidAlphabet[int(b[i])%len(uidAlphabet)]
	}
	return string(b)
}
