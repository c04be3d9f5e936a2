package ec2sim_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
	"github.com/monagent/monagent/rig/awssim"
	"github.com/monagent/monagent/rig/awssim/ec2sim"
	"github.com/monagent/monagent/rig/awssim/simapi"
)

var testID = simapi.Identity{
	Region:     "eu-west-1",
	AZ:         "eu-west-1a",
	InstanceID: "i-0123456789abcdef0",
	PrivateIP:  "10.1.2.3",
	AccountID:  "111122223333",
}

const otherInstance = "i-0aaaabbbbccccdddd"

// otherExists is a scenario in which otherInstance exists, in the
// simulated instance's AZ: AttachVolume refuses instances nobody named.
const otherExists = "ec2:\n  instances:\n    - {id: " + otherInstance + ", az: eu-west-1a}\n"

// env is one simulator: its directories, server and an SDK client.
type env struct {
	dataDir, root string
	svc           *ec2sim.Service
	sim           *awssim.Server
	url           string
	client        *ec2.Client
}

// start serves a fresh EC2 with scenario applied (attach_delay defaults to
// 20ms here to keep tests fast). Cleanup closes the service and checks that
// no loop device is left backed by a file of its data directory.
func start(t *testing.T, scenario string) *env {
	t.Helper()
	e := &env{dataDir: t.TempDir(), root: t.TempDir()}
	e.open(t)
	if err := e.sim.ApplyScenario([]byte("ec2:\n  attach_delay: 20ms\n")); err != nil {
		t.Fatal(err)
	}
	if scenario != "" {
		if err := e.sim.ApplyScenario([]byte(scenario)); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if err := e.close(); err != nil {
			t.Error(err)
		}
		// A detach the kernel defers while something (udev, a blkid
		// probe) still holds the device open ends moments later: a leak
		// is a device still there after that.
		loops := loopsUnder(t, e.dataDir)
		for deadline := time.Now().Add(5 * time.Second); len(loops) > 0 && time.Now().Before(deadline); loops = loopsUnder(t, e.dataDir) {
			time.Sleep(50 * time.Millisecond)
		}
		if len(loops) > 0 {
			t.Errorf("leaked loop devices: %v", loops)
		}
	})
	return e
}

// open (re)starts the service over e's directories.
func (e *env) open(t *testing.T) {
	t.Helper()
	svc, err := ec2sim.New(testID, e.dataDir, e.root)
	if err != nil {
		t.Fatal(err)
	}
	e.svc = svc
	e.sim = awssim.NewServer(svc)
	srv := httptest.NewServer(e.sim)
	t.Cleanup(srv.Close)
	e.url = srv.URL
	e.client = newClient(e.url, 0)
}

func (e *env) close() error {
	if e.sim == nil {
		return nil
	}
	err := e.sim.Close()
	e.sim = nil
	return err
}

// newClient is an SDK client for url; maxAttempts 1 turns retries off, 0
// retries quickly with the standard retryer.
func newClient(url string, maxAttempts int) *ec2.Client {
	return ec2.New(ec2.Options{
		Region:       "eu-west-1",
		BaseEndpoint: aws.String(url),
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "not-a-secret", ""),
		Retryer: retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxBackoff = 10 * time.Millisecond
			if maxAttempts > 0 {
				o.MaxAttempts = maxAttempts
			}
		}),
	})
}

// loopsUnder lists loop devices whose backing file is under dir.
func loopsUnder(t *testing.T, dir string) []string {
	t.Helper()
	paths, err := filepath.Glob("/sys/block/loop*/loop/backing_file")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err == nil && strings.HasPrefix(strings.TrimSpace(string(b)), dir+"/") {
			out = append(out, p)
		}
	}
	return out
}

func (e *env) describe(t *testing.T, id string) types.Volume {
	t.Helper()
	out, err := e.client.DescribeVolumes(context.Background(), &ec2.DescribeVolumesInput{VolumeIds: []string{id}})
	if err != nil {
		t.Fatalf("DescribeVolumes(%s): %v", id, err)
	}
	if len(out.Volumes) != 1 {
		t.Fatalf("DescribeVolumes(%s): %d volumes", id, len(out.Volumes))
	}
	return out.Volumes[0]
}

// waitFor polls the volume until ok says yes, for at most 10s (the
// machine is shared and may be slow).
func (e *env) waitFor(t *testing.T, id, what string, ok func(types.Volume) bool) types.Volume {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		v := e.describe(t, id)
		if ok(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("volume %s never became %s: %+v", id, what, v)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func attached(v types.Volume) bool {
	return len(v.Attachments) == 1 && v.Attachments[0].State == types.VolumeAttachmentStateAttached
}

func available(v types.Volume) bool {
	return v.State == types.VolumeStateAvailable && len(v.Attachments) == 0
}

func (e *env) createVolume(t *testing.T, az string) string {
	t.Helper()
	out, err := e.client.CreateVolume(context.Background(), &ec2.CreateVolumeInput{
		AvailabilityZone: aws.String(az),
		Size:             aws.Int32(1),
		VolumeType:       types.VolumeTypeGp3,
	})
	if err != nil {
		t.Fatalf("CreateVolume: %v", err)
	}
	return aws.ToString(out.VolumeId)
}

func (e *env) byIDLink(id string) string {
	return filepath.Join(e.root, "dev/disk/by-id", "nvme-Amazon_Elastic_Block_Store_"+strings.ReplaceAll(id, "-", ""))
}

// apiError returns err's AWS error code and message, failing if it has none.
func apiError(t *testing.T, err error) (string, string) {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v is not an AWS API error", err)
	}
	return ae.ErrorCode(), ae.ErrorMessage()
}
