package ec2sim

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/monagent/monagent/internal/atomicfile"
)

// Volume states and attachment states, as EC2 spells them.
const (
	stateCreating  = "creating"
	stateAvailable = "available"
	stateInUse     = "in-use"
	stateDeleting  = "deleting"
	stateError     = "error"

	attAttaching = "attaching"
	attAttached  = "attached"
	attDetaching = "detaching"
)

const (
	linkByID = "by-id"
	linkName = "name"
)

var (
	volumeIDRe   = regexp.MustCompile(`^vol-([0-9a-f]{8}|[0-9a-f]{17})$`)
	instanceIDRe = regexp.MustCompile(`^i-([0-9a-f]{8}|[0-9a-f]{17})$`)
	// deviceRe is the Linux device names EC2 accepts for EBS; it also keeps
	// the "name" link inside the test root.
	deviceRe = regexp.MustCompile(`^/dev/(sd[a-z]{1,2}|xvd[a-z]{1,2}|sd[a-z][1-9][0-9]?)$`)
)

// volume is one simulated EBS volume as persisted.
type volume struct {
	ID          string      `json:"id"`
	SizeGiB     int32       `json:"size_gib"`
	AZ          string      `json:"az"`
	Type        string      `json:"type"`
	Iops        int32       `json:"iops,omitempty"`
	Throughput  int32       `json:"throughput,omitempty"`
	Encrypted   bool        `json:"encrypted,omitempty"`
	KMSKeyID    string      `json:"kms_key_id,omitempty"`
	KMSRevoked  bool        `json:"kms_revoked,omitempty"`
	State       string      `json:"state"`
	Pinned      bool        `json:"pinned,omitempty"` // a seeded state held as given
	CreateTime  time.Time   `json:"create_time"`
	Tags        []tag       `json:"tags,omitempty"`
	Links       []string    `json:"links"`
	ClientToken string      `json:"client_token,omitempty"`
	Attachment  *attachment `json:"attachment,omitempty"`
	// ReleaseAt is when the other instance holding the volume detaches it;
	// zero means never.
	ReleaseAt time.Time `json:"release_at,omitzero"`
}

type attachment struct {
	InstanceID          string    `json:"instance_id"`
	Device              string    `json:"device"`
	State               string    `json:"state"`
	AttachTime          time.Time `json:"attach_time"`
	DeleteOnTermination bool      `json:"delete_on_termination,omitempty"`
}

type tag struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

type stateFile struct {
	Volumes []*volume `json:"volumes"`
	// Instances are the other instances the scenario named, and their AZs.
	Instances map[string]string `json:"instances,omitempty"`
}

func (s *Service) statePath() string { return filepath.Join(s.dataDir, "ec2-state.json") }

func (s *Service) volumeFile(id string) string {
	return filepath.Join(s.dataDir, "volumes", id+".img")
}

// load reads the persisted volumes; a missing file is a fresh simulator.
func (s *Service) load() error {
	b, err := os.ReadFile(s.statePath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("load state: %w", err)
	}
	var st stateFile
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("load state %s: %w", s.statePath(), err)
	}
	for _, v := range st.Volumes {
		if !volumeIDRe.MatchString(v.ID) {
			return fmt.Errorf("load state %s: bad volume id %q", s.statePath(), v.ID)
		}
		s.volumes[v.ID] = v
		s.addHolder(v) // a state file written before instances were kept
	}
	maps.Copy(s.instances, st.Instances)
	return nil
}

// save writes the volumes atomically (see package atomicfile). Callers hold
// s.mu.
func (s *Service) save() error {
	st := stateFile{Volumes: s.sortedVolumes(), Instances: s.instances}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	if err := atomicfile.WriteFile(s.statePath(), b, 0o600); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	return nil
}

// makeBacking creates (or resizes) the volume's sparse backing file.
func (s *Service) makeBacking(id string, sizeGiB int32) error {
	f, err := os.OpenFile(s.volumeFile(id), os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("volume %s: backing file: %w", id, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("volume %s: backing file: %w", id, err)
	}
	if want := int64(sizeGiB) << 30; fi.Size() != want {
		if err := f.Truncate(want); err != nil {
			return fmt.Errorf("volume %s: backing file: %w", id, err)
		}
	}
	return nil
}

func newVolumeID() (string, error) {
	b := make([]byte, 9)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("volume id: %w", err)
	}
	return "vol-" + hex.EncodeToString(b)[:17], nil
}
