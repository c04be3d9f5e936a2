package ebs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/smithy-go"
	"go.uber.org/zap/zaptest"

	"github.com/monagent/monagent/internal/command"
	"github.com/monagent/monagent/internal/config"
	"github.com/monagent/monagent/internal/imds"
	"github.com/monagent/monagent/internal/retry"
	"github.com/monagent/monagent/internal/ssmparam"
)

const (
	testVolID = "vol-0123456789abcdef0"
	testKey   = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	me        = "i-0new"
	other     = "i-0old"
	myAZ      = "eu-west-1a"
)

// answer is one DescribeVolumes reply.
type answer struct {
	vol types.Volume
	err error
}

// fakeEC2 replays scripted DescribeVolumes answers: before is used until
// AttachVolume is called, after from then on; the last answer of each
// repeats.
type fakeEC2 struct {
	mu        sync.Mutex
	before    []answer
	after     []answer
	attachErr error

	describes int
	attaches  []*ec2.AttachVolumeInput
}

func (f *fakeEC2) DescribeVolumes(ctx context.Context, in *ec2.DescribeVolumesInput, _ ...func(*ec2.Options)) (*ec2.DescribeVolumesOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.describes++
	script := &f.before
	if len(f.attaches) > 0 && f.attachErr == nil {
		script = &f.after
	}
	a := (*script)[0]
	if len(*script) > 1 {
		*script = (*script)[1:]
	}
	if a.err != nil {
		return nil, a.err
	}
	if len(in.VolumeIds) != 1 || in.VolumeIds[0] != aws.ToString(a.vol.VolumeId) {
		return &ec2.DescribeVolumesOutput{}, nil
	}
	return &ec2.DescribeVolumesOutput{Volumes: []types.Volume{a.vol}}, nil
}

func (f *fakeEC2) AttachVolume(_ context.Context, in *ec2.AttachVolumeInput, _ ...func(*ec2.Options)) (*ec2.AttachVolumeOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attaches = append(f.attaches, in)
	if f.attachErr != nil {
		return nil, f.attachErr
	}
	return &ec2.AttachVolumeOutput{State: types.VolumeAttachmentStateAttaching}, nil
}

func (f *fakeEC2) counts() (describes, attaches int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.describes, len(f.attaches)
}

// fakeParams answers parameter reads from a map; err, when set, answers
// every read.
type fakeParams struct {
	values map[string]string
	err    error
	reads  int
}

func (f *fakeParams) Get(_ context.Context, name string, _ ...func(*ssm.Options)) (ssmparam.Parameter, error) {
	f.reads++
	if f.err != nil {
		return ssmparam.Parameter{}, f.err
	}
	v, ok := f.values[name]
	if !ok {
		return ssmparam.Parameter{}, fmt.Errorf("SSM parameter %s: %w", name, ssmparam.ErrNotFound)
	}
	return ssmparam.Parameter{Name: name, Value: v}, nil
}

type volOpt func(*types.Volume)

func vol(state types.VolumeState, opts ...volOpt) answer {
	v := types.Volume{
		VolumeId:         aws.String(testVolID),
		AvailabilityZone: aws.String(myAZ),
		State:            state,
	}
	for _, o := range opts {
		o(&v)
	}
	return answer{vol: v}
}

func attachedTo(instance string, state types.VolumeAttachmentState) volOpt {
	return func(v *types.Volume) {
		v.Attachments = append(v.Attachments, types.VolumeAttachment{
			InstanceId: aws.String(instance), State: state, VolumeId: v.VolumeId, Device: aws.String("/dev/xvdf"),
		})
	}
}

func inAZ(az string) volOpt { return func(v *types.Volume) { v.AvailabilityZone = aws.String(az) } }

func encrypted(v *types.Volume) { v.Encrypted, v.KmsKeyId = aws.Bool(true), aws.String(testKey) }

func apiErr(code, msg string) answer {
	return answer{err: &smithy.GenericAPIError{Code: code, Message: msg}}
}

func available() answer { return vol(types.VolumeStateAvailable) }
func attached() answer {
	return vol(types.VolumeStateInUse, attachedTo(me, types.VolumeAttachmentStateAttached))
}
func attaching() answer {
	return vol(types.VolumeStateInUse, attachedTo(me, types.VolumeAttachmentStateAttaching))
}
func elsewhere() answer {
	return vol(types.VolumeStateInUse, attachedTo(other, types.VolumeAttachmentStateAttached))
}
func throttled() answer { return apiErr("RequestLimitExceeded", "Request limit exceeded.") }

// volumeConfig is the default volume configuration with the fields of
// override that are set.
func volumeConfig(override config.Volume) config.Volume {
	c := config.Defaults().Volume
	c.ID, c.IDParameter = override.ID, override.IDParameter
	for _, f := range []struct {
		dst *string
		src string
	}{
		{&c.Device, override.Device}, {&c.MountPoint, override.MountPoint}, {&c.FSType, override.FSType},
		{&c.MountOptions, override.MountOptions}, {&c.Owner, override.Owner},
	} {
		if f.src != "" {
			*f.dst = f.src
		}
	}
	return c
}

func testStep(t *testing.T, f *fakeEC2, cfg config.Volume) *Step {
	t.Helper()
	cfg = volumeConfig(cfg)
	cfg.WaitAvailable = config.Duration{Duration: 300 * time.Millisecond}
	cfg.AttachTimeout = config.Duration{Duration: 300 * time.Millisecond}
	cfg.DeviceTimeout = config.Duration{Duration: 300 * time.Millisecond}
	return New(cfg, Options{
		Root:     t.TempDir(),
		Identity: imds.Identity{InstanceID: me, Region: "eu-west-1", AZ: myAZ},
		EC2:      f,
		Params:   &fakeParams{values: map[string]string{"/mon/ebs/volume-id": testVolID, "/mon/bad": "vol-xyz"}},
		Run:      command.Exec{},
		Log:      zaptest.NewLogger(t),
		Backoff:  retry.Backoff{Initial: time.Millisecond, Max: 4 * time.Millisecond},
	})
}

func TestEnsureAttached(t *testing.T) {
	tests := []struct {
		name      string
		before    []answer
		after     []answer
		attachErr error
		// what must happen
		wantAttach    int
		wantMinPolls  int
		wantErr       []string // substrings; nil means success
		wantPermanent bool
	}{
		{
			name:          "wrong AZ",
			before:        []answer{vol(types.VolumeStateAvailable, inAZ("eu-west-1b"))},
			wantErr:       []string{"eu-west-1b", myAZ, "same", "subnet"},
			wantPermanent: true,
		},
		{
			name:   "already attached here",
			before: []answer{attached()},
		},
		{
			name:       "available",
			before:     []answer{available()},
			after:      []answer{attaching(), attaching(), attached()},
			wantAttach: 1,
		},
		{
			name:         "released after three polls",
			before:       []answer{elsewhere(), elsewhere(), elsewhere(), vol(types.VolumeStateInUse, attachedTo(other, types.VolumeAttachmentStateDetaching)), available()},
			after:        []answer{attached()},
			wantAttach:   1,
			wantMinPolls: 6,
		},
		{
			name:          "never released",
			before:        []answer{elsewhere()},
			wantErr:       []string{other, "timed out", "wait_available", "detach-volume"},
			wantPermanent: true,
		},
		{
			name:         "throttled while waiting",
			before:       []answer{elsewhere(), throttled(), throttled(), elsewhere(), throttled(), available()},
			after:        []answer{throttled(), attaching(), attached()},
			wantAttach:   1,
			wantMinPolls: 9,
		},
		{
			name:   "only throttled until the deadline",
			before: []answer{elsewhere(), throttled()},
			// The deadline error carries the last throttling error.
			wantErr: []string{"timed out", "RequestLimitExceeded"},
		},
		{
			name:      "KMS error from AttachVolume",
			before:    []answer{vol(types.VolumeStateAvailable, encrypted)},
			attachErr: &smithy.GenericAPIError{Code: "Client.CustomerKeyHasBeenRevoked", Message: "Volume " + testVolID + " is encrypted with KMS key " + testKey + ", which is not accessible."},
			wantErr: []string{testKey, "kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey",
				"kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncryptFrom", "kms:ReEncryptTo", "customer-managed", "aws/ebs"},
			wantAttach:    1,
			wantPermanent: true,
		},
		{
			name:       "KMS fallback from attaching to available",
			before:     []answer{vol(types.VolumeStateAvailable, encrypted)},
			after:      []answer{vol(types.VolumeStateInUse, encrypted, attachedTo(me, types.VolumeAttachmentStateAttaching)), vol(types.VolumeStateAvailable, encrypted)},
			wantAttach: 1,
			wantErr: []string{testKey, "kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey",
				"kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncryptFrom", "kms:ReEncryptTo", "fell back"},
			wantPermanent: true,
		},
		{
			name:       "unencrypted fallback is not a KMS error",
			before:     []answer{available()},
			after:      []answer{attaching(), available()},
			wantAttach: 1,
			wantErr:    []string{"fell back"},
		},
		{
			name:       "stays attaching",
			before:     []answer{available()},
			after:      []answer{attaching()},
			wantAttach: 1,
			wantErr:    []string{"attaching", "timed out", "attach_timeout"},
		},
		{
			name:          "not found",
			before:        []answer{apiErr("InvalidVolume.NotFound", "The volume '"+testVolID+"' does not exist.")},
			wantErr:       []string{testVolID, "does not exist"},
			wantPermanent: true,
		},
		{
			name:          "device name taken",
			before:        []answer{available()},
			attachErr:     &smithy.GenericAPIError{Code: "InvalidParameterValue", Message: "Invalid value '/dev/xvdf' for unixDevice. Attachment point /dev/xvdf is already in use"},
			wantAttach:    1,
			wantErr:       []string{"volume.device"},
			wantPermanent: true,
		},
		{
			name:          "attached elsewhere while attaching",
			before:        []answer{available()},
			after:         []answer{elsewhere()},
			wantAttach:    1,
			wantErr:       []string{other},
			wantPermanent: false,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeEC2{before: tt.before, after: tt.after, attachErr: tt.attachErr}
			if f.after == nil {
				f.after = []answer{attached()}
			}
			s := testStep(t, f, config.Volume{ID: testVolID, Device: "/dev/xvdf"})
			dev, err := s.ensureAttached(context.Background(), testVolID)
			polls, attaches := f.counts()
			if attaches != tt.wantAttach {
				t.Errorf("AttachVolume called %d times, want %d", attaches, tt.wantAttach)
			}
			if polls < tt.wantMinPolls {
				t.Errorf("DescribeVolumes called %d times, want at least %d", polls, tt.wantMinPolls)
			}
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("ensureAttached: %v", err)
				}
				if dev != "/dev/xvdf" {
					t.Errorf("attached as %q, want EC2's /dev/xvdf", dev)
				}
				if attaches > 0 {
					in := f.attaches[0]
					if aws.ToString(in.Device) != "/dev/xvdf" || aws.ToString(in.InstanceId) != me || aws.ToString(in.VolumeId) != testVolID {
						t.Errorf("AttachVolume input = %s %s %s", aws.ToString(in.VolumeId), aws.ToString(in.InstanceId), aws.ToString(in.Device))
					}
				}
				return
			}
			if err == nil {
				t.Fatal("ensureAttached succeeded, want an error")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if got := retry.IsPermanent(err); got != tt.wantPermanent {
				t.Errorf("permanent = %v, want %v (%v)", got, tt.wantPermanent, err)
			}
		})
	}
}

func TestEnsureAttachedCancelled(t *testing.T) {
	f := &fakeEC2{before: []answer{elsewhere()}}
	s := testStep(t, f, config.Volume{ID: testVolID})
	s.cfg.WaitAvailable = config.Duration{Duration: time.Hour}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := s.ensureAttached(ctx, testVolID)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the context's deadline", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v after cancellation", d)
	}
}

func TestVolumeID(t *testing.T) {
	tests := []struct {
		name          string
		cfg           config.Volume
		want          string
		wantPermanent bool
	}{
		{name: "configured", cfg: config.Volume{ID: testVolID}, want: testVolID},
		{name: "old short id", cfg: config.Volume{ID: "vol-0123abcd"}, want: "vol-0123abcd"},
		{name: "from SSM", cfg: config.Volume{IDParameter: "/mon/ebs/volume-id"}, want: testVolID},
		{name: "bad shape", cfg: config.Volume{ID: "vol-XYZ"}, wantPermanent: true},
		{name: "bad shape in SSM", cfg: config.Volume{IDParameter: "/mon/bad"}, wantPermanent: true},
		{name: "missing parameter", cfg: config.Volume{IDParameter: "/mon/missing"}, wantPermanent: true},
		{name: "nothing configured", cfg: config.Volume{}, wantPermanent: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := testStep(t, &fakeEC2{}, tt.cfg)
			if tt.cfg.ID == "" && tt.cfg.IDParameter == "" {
				s.cfg.ID, s.cfg.IDParameter = "", ""
			}
			got, err := s.volumeID(context.Background())
			if tt.want != "" {
				if err != nil || got != tt.want {
					t.Fatalf("volumeID = %q, %v; want %q", got, err, tt.want)
				}
				return
			}
			if !retry.IsPermanent(err) {
				t.Fatalf("volumeID = %q, %v; want a permanent error", got, err)
			}
		})
	}
}

func TestFingerprint(t *testing.T) {
	base := config.Volume{ID: testVolID, Device: "/dev/xvdf", MountPoint: "/data", FSType: "xfs", Owner: "ec2-user"}
	fp := func(c config.Volume) string {
		s := testStep(t, &fakeEC2{}, c)
		got, err := s.Fingerprint(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	ref := fp(base)
	if fp(base) != ref {
		t.Fatal("fingerprint is not stable")
	}
	viaSSM := base
	viaSSM.ID, viaSSM.IDParameter = "", "/mon/ebs/volume-id"
	if fp(viaSSM) != ref {
		t.Error("the same volume through SSM has another fingerprint")
	}
	for _, change := range []func(*config.Volume){
		func(c *config.Volume) { c.ID = "vol-0123abcd" },
		func(c *config.Volume) { c.Device = "/dev/xvdg" },
		func(c *config.Volume) { c.MountPoint = "/srv" },
		func(c *config.Volume) { c.FSType = "ext4" },
		func(c *config.Volume) { c.MountOptions = "noatime" },
		func(c *config.Volume) { c.Owner = "root" },
	} {
		c := base
		change(&c)
		if fp(c) == ref {
			t.Errorf("fingerprint ignores a change: %+v", c)
		}
	}
}

func TestIsKMSError(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{&smithy.GenericAPIError{Code: "Client.CustomerKeyHasBeenRevoked"}, true},
		{&smithy.GenericAPIError{Code: "VolumeInUse", Message: "VolumeInUse / Client.CustomerKeyHasBeenRevoked: Volume vol-1 is encrypted"}, true},
		{&smithy.GenericAPIError{Code: "IncorrectState", Message: "Volume vol-1 is encrypted with KMS key arn:aws:kms:x, which is not accessible."}, true},
		{&smithy.GenericAPIError{Code: "VolumeInUse", Message: "vol-1 is already attached to an instance"}, false},
		{errors.New("CustomerKeyHasBeenRevoked but not an API error"), false},
	}
	for _, tt := range tests {
		if got := isKMSError(tt.err); got != tt.want {
			t.Errorf("isKMSError(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

// The attachment is seen as soon as the device that carries the volume id
// appears, even while DescribeVolumes still says attaching; without the
// device, the API alone decides.
func TestWaitAttachedSeesTheDevice(t *testing.T) {
	for _, appears := range []bool{true, false} {
		t.Run(fmt.Sprintf("device appears %v", appears), func(t *testing.T) {
			f := &fakeEC2{before: []answer{available()}, after: []answer{attaching()}}
			s := testStep(t, f, config.Volume{ID: testVolID})
			s.backoff = retry.Backoff{Initial: 20 * time.Millisecond, Max: 20 * time.Millisecond}
			link := filepath.Join(s.root, "dev/disk/by-id", "nvme-Amazon_Elastic_Block_Store_"+nvmeSerial(testVolID))
			target := filepath.Join(s.root, "dev/nvme1n1")
			if appears {
				go func() {
					time.Sleep(50 * time.Millisecond)
					if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
						t.Error(err)
					}
					if err := os.WriteFile(target, nil, 0o600); err != nil {
						t.Error(err)
					}
					if err := os.Symlink(target, link); err != nil {
						t.Error(err)
					}
				}()
			}
			start := time.Now()
			name, err := s.ensureAttached(context.Background(), testVolID)
			took := time.Since(start)
			describes, _ := f.counts()
			if !appears {
				if !errors.Is(err, retry.ErrTimeout) {
					t.Fatalf("without the device: %q, %v; want the attach timeout", name, err)
				}
				return
			}
			if err != nil || name != "" {
				t.Fatalf("got %q, %v; want the attachment seen by its device", name, err)
			}
			if took > 150*time.Millisecond {
				t.Errorf("seen after %v, the device appeared after 50ms", took)
			}
			// One describe before the attach, then one every 20 ms at most.
			if max := 1 + int(took/(20*time.Millisecond)) + 1; describes > max {
				t.Errorf("%d DescribeVolumes in %v, want at most %d: the device is looked at between the API calls", describes, took, max)
			}
		})
	}
}
