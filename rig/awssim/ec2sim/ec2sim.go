// Package ec2sim simulates the EBS volume part of EC2 for awssim: the Query
// protocol at API version 2016-11-15, answered in the XML the AWS SDK and
// the AWS CLI parse, with EC2's error codes and wording.
//
// Operations: CreateVolume, DescribeVolumes, AttachVolume, DetachVolume and
// DeleteVolume. Volumes are sparse files under the data directory. When a
// volume attached to the simulated instance reaches "attached", a real loop
// device is made from its file and linked where udev would put it:
//
//	<root>/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol<id without dash> -> /dev/loopN
//	<root><Device>, e.g. <root>/dev/xvdf -> /dev/loopN   (volume option links: [name])
//
// Detach, delete and Close release the loop device and remove the links.
// Volumes and attachments persist in <dataDir>/ec2-state.json; a new Service
// over the same directory makes the devices of attached volumes again.
//
// # KMS key not accessible
//
// A volume seeded with kms_revoked: true cannot be attached to the simulated
// instance. The seed's section 4 incident records the failure as
//
//	VolumeInUse / Client.CustomerKeyHasBeenRevoked:
//	Volume vol-xxx is encrypted with KMS key arn:aws:kms:..., which is not accessible.
//
// so ec2sim answers HTTP 400 with error code VolumeInUse and the message
// "Client.CustomerKeyHasBeenRevoked: Volume vol-xxx is encrypted with KMS key
// <arn>, which is not accessible." A client must therefore tell this
// permanent failure from "attached to another instance" (also VolumeInUse)
// by the CustomerKeyHasBeenRevoked in the message, as it would on AWS.
//
// # Scenario
//
//	ec2:
//	  attach_delay: 300ms   # attaching->attached and detaching->detached
//	  create_delay: 0s      # creating->available for CreateVolume
//	  instances:            # other instances that exist, and their AZs; a
//	    - {id: i-0bbbbccccddddeeee, az: eu-west-1b}  # volume's holder exists too
//	  volumes:
//	    - id: vol-0123456789abcdef0
//	      size_gib: 1
//	      az: eu-west-1a
//	      type: gp3
//	      encrypted: true
//	      kms_key_id: arn:aws:kms:eu-west-1:111122223333:key/...
//	      kms_revoked: true
//	      attached_to: i-0aaaabbbbccccdddd  # or the simulated instance
//	      device: /dev/xvdf
//	      release_after: 10s  # the other instance detaches it then
//	      links: [by-id, name]
//	      tags: {Name: monitoring-data}
//	    - id: vol-0123456789abcdef1
//	      state: error        # held as given: creating, deleting or error (unattached)
//
// AttachVolume answers InvalidInstanceID.NotFound for any instance but the
// simulated one, those listed and those holding a seeded volume.
package ec2sim

import (
	"errors"
	"fmt"
	"log"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/monagent/monagent/rig/awssim/simapi"
)

const defaultAttachDelay = 300 * time.Millisecond

// Service is the simulated EC2. It is safe for concurrent use.
type Service struct {
	id      simapi.Identity
	dataDir string
	root    string

	mu          sync.Mutex
	closed      bool
	volumes     map[string]*volume
	instances   map[string]string   // other instances the scenario names -> AZ ("" for a volume holder's)
	attachDelay time.Duration       // attaching->attached, detaching->detached
	createDelay time.Duration       // creating->available
	pending     map[string]*pending // one scheduled transition per volume
	loops       map[string]string   // volume id -> loop device, while attached here
}

// pending is a scheduled state transition; a timer whose pending is no
// longer the volume's current one has been superseded and does nothing.
type pending struct{ timer *time.Timer }

// New returns an EC2 whose volumes live under dataDir and whose device links
// go under root ("/" on a real host, a temporary directory in tests).
func New(id simapi.Identity, dataDir, root string) (*Service, error) {
	if id.InstanceID == "" || id.Region == "" || id.AZ == "" {
		return nil, fmt.Errorf("ec2sim: identity needs instance id, region and AZ, have %+v", id)
	}
	if dataDir == "" {
		return nil, errors.New("ec2sim: no data directory")
	}
	if root == "" {
		root = "/"
	}
	if id.AccountID == "" {
		id.AccountID = "123456789012"
	}
	s := &Service{
		id:          id,
		dataDir:     dataDir,
		root:        root,
		volumes:     map[string]*volume{},
		instances:   map[string]string{},
		attachDelay: defaultAttachDelay,
		pending:     map[string]*pending{},
		loops:       map[string]string{},
	}
	if err := os.MkdirAll(filepath.Join(dataDir, "volumes"), 0o755); err != nil {
		return nil, fmt.Errorf("ec2sim: %w", err)
	}
	if err := s.load(); err != nil {
		return nil, fmt.Errorf("ec2sim: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.resume(); err != nil {
		s.releaseAll()
		return nil, fmt.Errorf("ec2sim: %w", err)
	}
	return s, nil
}

// resume settles what a stopped simulator left in flight, as if the
// transitions had finished meanwhile, and remakes this instance's devices.
func (s *Service) resume() error {
	for _, v := range s.sortedVolumes() {
		if !v.Pinned {
			switch v.State {
			case stateCreating:
				v.State = stateAvailable
			case stateDeleting:
				delete(s.volumes, v.ID)
				_ = os.Remove(s.volumeFile(v.ID))
				continue
			}
		}
		if a := v.Attachment; a != nil {
			switch a.State {
			case attAttaching:
				a.State = attAttached
			case attDetaching:
				v.Attachment, v.State = nil, stateAvailable
				continue
			}
		}
		if err := s.makeBacking(v.ID, v.SizeGiB); err != nil {
			return err
		}
		if a := v.Attachment; a != nil && a.InstanceID == s.id.InstanceID {
			if err := s.setupDevice(v); err != nil {
				return err
			}
		}
		if !v.ReleaseAt.IsZero() && v.Attachment != nil {
			s.schedule(v.ID, time.Until(v.ReleaseAt), s.startRelease)
		}
	}
	return s.save()
}

// Name implements simapi.Service.
func (s *Service) Name() string { return "ec2" }

// Close stops pending transitions and releases every loop device and link.
// The persisted state keeps the attachments, so a new Service over the same
// data directory brings the devices back.
func (s *Service) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for id, p := range s.pending {
		p.timer.Stop()
		delete(s.pending, id)
	}
	return s.releaseAll()
}

func (s *Service) releaseAll() error {
	var errs []error
	for _, id := range slices.Sorted(maps.Keys(s.loops)) {
		errs = append(errs, s.releaseDevice(s.volumes[id], id))
	}
	return errors.Join(errs...)
}

// schedule runs fn(id) under s.mu after d, replacing any transition already
// pending for the volume. Callers hold s.mu.
func (s *Service) schedule(id string, d time.Duration, fn func(id string)) {
	s.cancel(id)
	p := &pending{}
	// The callback takes s.mu, which the caller holds, so p.timer is set
	// before the callback can read anything.
	p.timer = time.AfterFunc(d, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.closed || s.pending[id] != p {
			return
		}
		delete(s.pending, id)
		fn(id)
		if err := s.save(); err != nil {
			log.Printf("awssim ec2: %v", err)
		}
	})
	s.pending[id] = p
}

// cancel stops the volume's pending transition. Callers hold s.mu.
func (s *Service) cancel(id string) {
	if p := s.pending[id]; p != nil {
		p.timer.Stop()
		delete(s.pending, id)
	}
}

// finishCreate: creating -> available.
func (s *Service) finishCreate(id string) {
	if v := s.volumes[id]; v != nil && v.State == stateCreating {
		v.State = stateAvailable
	}
}

// finishAttach: attaching -> attached; on this instance the device appears.
// If the loop device cannot be made the attachment stays "attaching", as a
// stuck attachment does on AWS, and the reason goes to the log.
func (s *Service) finishAttach(id string) {
	v := s.volumes[id]
	if v == nil || v.Attachment == nil || v.Attachment.State != attAttaching {
		return
	}
	if v.Attachment.InstanceID == s.id.InstanceID {
		if err := s.setupDevice(v); err != nil {
			log.Printf("awssim ec2: attach %s: %v", id, err)
			return
		}
	}
	v.Attachment.State = attAttached
}

// startRelease is the other instance letting go of the volume.
func (s *Service) startRelease(id string) {
	v := s.volumes[id]
	if v == nil || v.Attachment == nil || v.Attachment.State == attDetaching {
		return
	}
	v.ReleaseAt = time.Time{}
	v.Attachment.State = attDetaching
	s.schedule(id, s.attachDelay, s.finishDetach)
}

// finishDetach: detaching -> detached; the device goes away.
func (s *Service) finishDetach(id string) {
	v := s.volumes[id]
	if v == nil || v.Attachment == nil || v.Attachment.State != attDetaching {
		return
	}
	if err := s.releaseDevice(v, id); err != nil {
		log.Printf("awssim ec2: detach %s: %v", id, err)
	}
	v.Attachment = nil
	v.ReleaseAt = time.Time{}
	if v.State == stateInUse {
		v.State = stateAvailable
	}
}

// setupDevice makes the loop device and links for v. Callers hold s.mu.
func (s *Service) setupDevice(v *volume) error {
	dev, err := attachLoop(s.volumeFile(v.ID))
	if err != nil {
		return err
	}
	s.loops[v.ID] = dev
	for _, p := range s.linkPaths(v) {
		if err := link(p, dev); err != nil {
			return errors.Join(err, s.releaseDevice(v, v.ID))
		}
	}
	return nil
}

// releaseDevice removes v's links and loop device. v may be nil when the
// volume is already gone. Callers hold s.mu.
func (s *Service) releaseDevice(v *volume, id string) error {
	var errs []error
	if v != nil {
		for _, p := range s.linkPaths(v) {
			errs = append(errs, removeLink(p))
		}
	}
	if dev, ok := s.loops[id]; ok {
		if err := detachLoop(dev); err != nil {
			errs = append(errs, err)
		} else {
			delete(s.loops, id)
		}
	}
	return errors.Join(errs...)
}

func (s *Service) linkPaths(v *volume) []string {
	var out []string
	for _, l := range v.Links {
		switch l {
		case linkByID:
			out = append(out, filepath.Join(s.root, "dev", "disk", "by-id", byIDName(v.ID)))
		case linkName:
			if v.Attachment != nil && deviceRe.MatchString(v.Attachment.Device) {
				out = append(out, filepath.Join(s.root, v.Attachment.Device))
			}
		}
	}
	return out
}

// instanceAZOf is the AZ of an instance: the simulated one's, one the
// scenario gives, or else the volume's (the scenario named the instance
// only as a volume's holder, which is in that volume's AZ).
func (s *Service) instanceAZOf(instanceID string, v *volume) string {
	if instanceID == s.id.InstanceID {
		return s.id.AZ
	}
	if az := s.instances[instanceID]; az != "" {
		return az
	}
	return v.AZ
}

// instanceExists reports an instance EC2 would know: the simulated one, or
// one the scenario named, in its instances or as a volume's holder.
// Callers hold s.mu.
func (s *Service) instanceExists(instanceID string) bool {
	_, named := s.instances[instanceID]
	return instanceID == s.id.InstanceID || named
}

func (s *Service) sortedVolumes() []*volume {
	out := make([]*volume, 0, len(s.volumes))
	for _, id := range slices.Sorted(maps.Keys(s.volumes)) {
		out = append(out, s.volumes[id])
	}
	return out
}

// Operation implements simapi.Service: the Query protocol's Action.
func (s *Service) Operation(r *http.Request) (string, *simapi.APIError) {
	known := s.handlers()
	return simapi.QueryAction(r, func(a string) bool { _, ok := known[a]; return ok })
}

type handler func(form url.Values) (any, *simapi.APIError)

func (s *Service) handlers() map[string]handler {
	return map[string]handler{
		"CreateVolume":    s.createVolume,
		"DescribeVolumes": s.describeVolumes,
		"AttachVolume":    s.attachVolume,
		"DetachVolume":    s.detachVolume,
		"DeleteVolume":    s.deleteVolume,
	}
}

// Serve implements simapi.Service.
func (s *Service) Serve(w http.ResponseWriter, r *http.Request, op string) {
	h, ok := s.handlers()[op]
	if !ok {
		s.WriteError(w, r, simapi.InvalidAction(op))
		return
	}
	out, aerr := h(r.Form)
	if aerr != nil {
		s.WriteError(w, r, aerr)
		return
	}
	simapi.WriteXML(w, out)
}

// WriteError implements simapi.Service.
func (s *Service) WriteError(w http.ResponseWriter, _ *http.Request, e *simapi.APIError) {
	simapi.WriteEC2Error(w, e)
}
