package ec2sim

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/monagent/monagent/rig/awssim/simapi"
	"gopkg.in/yaml.v3"
)

// seedDoc is the scenario section; see the package comment.
type seedDoc struct {
	AttachDelay *simapi.Duration `yaml:"attach_delay"`
	CreateDelay *simapi.Duration `yaml:"create_delay"`
	Instances   []seedInstance   `yaml:"instances"`
	Volumes     []seedVolume     `yaml:"volumes"`
}

type seedInstance struct {
	ID string `yaml:"id"`
	AZ string `yaml:"az"`
}

type seedVolume struct {
	ID           string            `yaml:"id"`
	SizeGiB      int32             `yaml:"size_gib"`
	AZ           string            `yaml:"az"`
	Type         string            `yaml:"type"`
	Encrypted    bool              `yaml:"encrypted"`
	KMSKeyID     string            `yaml:"kms_key_id"`
	KMSRevoked   bool              `yaml:"kms_revoked"`
	AttachedTo   string            `yaml:"attached_to"`
	Device       string            `yaml:"device"`
	ReleaseAfter *simapi.Duration  `yaml:"release_after"`
	Links        []string          `yaml:"links"`
	State        string            `yaml:"state"`
	Tags         map[string]string `yaml:"tags"`
}

// Seed applies the scenario section. Volumes it names replace volumes of
// the same id; other volumes stay.
func (s *Service) Seed(node *yaml.Node) error {
	var doc seedDoc
	if err := simapi.DecodeStrict(node, &doc); err != nil {
		return fmt.Errorf("ec2: %w", err)
	}
	for _, in := range doc.Instances {
		if !instanceIDRe.MatchString(in.ID) || !s.validAZ(in.AZ) {
			return fmt.Errorf("ec2: instance %q in %q: want i- and 8 or 17 hex digits, in an AZ of %s", in.ID, in.AZ, s.id.Region)
		}
	}
	vols := make([]*volume, 0, len(doc.Volumes))
	for i, sv := range doc.Volumes {
		v, err := s.seedVolume(sv)
		if err != nil {
			return fmt.Errorf("ec2: volumes[%d]: %w", i, err)
		}
		vols = append(vols, v)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("ec2: service closed")
	}
	if doc.AttachDelay != nil {
		s.attachDelay = doc.AttachDelay.Duration
	}
	if doc.CreateDelay != nil {
		s.createDelay = doc.CreateDelay.Duration
	}
	for _, in := range doc.Instances {
		s.instances[in.ID] = in.AZ
	}
	for i, v := range vols {
		s.addHolder(v)
		if err := s.install(v, doc.Volumes[i].ReleaseAfter); err != nil {
			return fmt.Errorf("ec2: volume %s: %w", v.ID, err)
		}
	}
	return s.save()
}

// seedVolume validates one seeded volume and fills in defaults.
func (s *Service) seedVolume(sv seedVolume) (*volume, error) {
	if !volumeIDRe.MatchString(sv.ID) {
		return nil, fmt.Errorf("id %q: want vol- and 8 or 17 hex digits", sv.ID)
	}
	v := &volume{
		ID:         sv.ID,
		SizeGiB:    sv.SizeGiB,
		AZ:         sv.AZ,
		Type:       sv.Type,
		Encrypted:  sv.Encrypted || sv.KMSKeyID != "" || sv.KMSRevoked,
		KMSRevoked: sv.KMSRevoked,
		CreateTime: time.Now().UTC(),
		Links:      sv.Links,
		State:      stateAvailable,
	}
	if v.SizeGiB == 0 {
		v.SizeGiB = 1
	}
	if v.AZ == "" {
		v.AZ = s.id.AZ
	}
	if v.Type == "" {
		v.Type = "gp3"
	}
	limits, ok := sizeLimits[v.Type]
	if !ok || v.SizeGiB < limits[0] || v.SizeGiB > limits[1] {
		return nil, fmt.Errorf("%s: size_gib %d or type %q invalid", sv.ID, v.SizeGiB, v.Type)
	}
	if !s.validAZ(v.AZ) {
		return nil, fmt.Errorf("%s: az %q is not in region %s", sv.ID, v.AZ, s.id.Region)
	}
	defaultPerf(v)
	if v.Encrypted {
		v.KMSKeyID = s.keyARN(sv.KMSKeyID)
	}
	if v.Links == nil {
		v.Links = []string{linkByID}
	}
	for _, l := range v.Links {
		if l != linkByID && l != linkName {
			return nil, fmt.Errorf("%s: links: %q is neither %s nor %s", sv.ID, l, linkByID, linkName)
		}
	}
	for _, k := range sortedKeys(sv.Tags) {
		v.Tags = append(v.Tags, tag{Key: k, Value: sv.Tags[k]})
	}
	if err := s.seedState(v, sv); err != nil {
		return nil, fmt.Errorf("%s: %w", sv.ID, err)
	}
	return v, nil
}

func (s *Service) seedState(v *volume, sv seedVolume) error {
	if sv.AttachedTo != "" {
		if !instanceIDRe.MatchString(sv.AttachedTo) {
			return fmt.Errorf("attached_to %q: want i- and 8 or 17 hex digits", sv.AttachedTo)
		}
		dev := sv.Device
		if dev == "" {
			dev = "/dev/xvdf"
		}
		if !deviceRe.MatchString(dev) {
			return fmt.Errorf("device %q is not an EBS device name", dev)
		}
		v.State = stateInUse
		v.Attachment = &attachment{InstanceID: sv.AttachedTo, Device: dev, State: attAttached, AttachTime: v.CreateTime}
	}
	if sv.ReleaseAfter != nil && v.Attachment == nil {
		return errors.New("release_after needs attached_to")
	}
	switch sv.State {
	case "", v.State:
	case stateCreating, stateDeleting, stateError:
		if v.Attachment != nil {
			return fmt.Errorf("state %q with attached_to", sv.State)
		}
		v.State, v.Pinned = sv.State, true
	default:
		return fmt.Errorf("state %q: want available, in-use (with attached_to), creating, deleting or error", sv.State)
	}
	return nil
}

// install puts a seeded volume in place of any volume with its id, making
// its backing file and, if it is attached here, its device. Callers hold
// s.mu.
func (s *Service) install(v *volume, releaseAfter *simapi.Duration) error {
	if old := s.volumes[v.ID]; old != nil {
		s.cancel(v.ID)
		if err := s.releaseDevice(old, v.ID); err != nil {
			return err
		}
	}
	if err := s.makeBacking(v.ID, v.SizeGiB); err != nil {
		return err
	}
	s.volumes[v.ID] = v
	if v.Attachment != nil && v.Attachment.InstanceID == s.id.InstanceID {
		if err := s.setupDevice(v); err != nil {
			return err
		}
	}
	if releaseAfter != nil {
		v.ReleaseAt = time.Now().Add(releaseAfter.Duration)
		s.schedule(v.ID, releaseAfter.Duration, s.startRelease)
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// addHolder records the other instance a seeded volume is attached to, so
// that it exists for AttachVolume. Callers hold s.mu.
func (s *Service) addHolder(v *volume) {
	a := v.Attachment
	if a == nil || a.InstanceID == s.id.InstanceID {
		return
	}
	if _, ok := s.instances[a.InstanceID]; !ok {
		s.instances[a.InstanceID] = ""
	}
}
