package sim

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

const (
	// Region, StackName, Resource, VolumeID and Device are the simulated
	// account of scripts/demo-scenario.yaml.
	Region    = "eu-west-1"
	StackName = "Monitoring-Compute-production"
	Resource  = "MonitoringAsg"
	VolumeID  = "vol-0a1b2c3d4e5f60718"
	Device    = "/dev/xvdf"
	// DefaultInstanceID is the instance id awssim reports by default.
	DefaultInstanceID = "i-0123456789abcdef0"

	// awsStartTimeout bounds awssim's start and its stop.
	awsStartTimeout = 30 * time.Second
	// attachTimeout bounds an attachment or a detachment.
	attachTimeout = time.Minute
)

// AWSOptions describe one awssim run.
type AWSOptions struct {
	// Bin is the awssim binary (make build: bin/awssim).
	Bin string
	// Data is awssim's state directory: the same directory is the same
	// account across runs (its volumes, stacks, parameters).
	Data string
	// Root is where awssim makes the attached volume's device links
	// (Root/dev/disk/by-id/...), bound into the instance at /dev/disk.
	Root string
	// Scenario, Files: awssim's --scenario and --files ("" for none).
	Scenario, Files string
	// Addr is the loopback address to listen on; "" picks a free port.
	Addr string
	// InstanceID is the simulated instance's id; "" for awssim's default.
	InstanceID string
	// Log receives awssim's output (appended).
	Log string
}

// AWS is a running awssim process: the simulated account.
type AWS struct {
	url        string
	instanceID string
	root       string
	cmd        *exec.Cmd
	done       chan struct{}
	waitErr    error
	logFile    *os.File
}

// StartAWS starts awssim and waits for its ready line. It is stopped by
// Stop (SIGTERM: awssim releases its loop devices and device links), or,
// if this process dies, by the kernel's parent-death signal.
func StartAWS(ctx context.Context, o AWSOptions) (*AWS, error) {
	if o.Addr == "" {
		o.Addr = "127.0.0.1:0"
	}
	if o.InstanceID == "" {
		o.InstanceID = DefaultInstanceID
	}
	for _, d := range []string{o.Data, o.Root, filepath.Dir(o.Log)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("awssim: %w", err)
		}
	}
	logFile, err := os.OpenFile(o.Log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("awssim log: %w", err)
	}
	args := []string{"--addr", o.Addr, "--data", o.Data, "--root", o.Root, "--instance-id", o.InstanceID}
	if o.Scenario != "" {
		args = append(args, "--scenario", o.Scenario)
	}
	if o.Files != "" {
		args = append(args, "--files", o.Files)
	}
	cmd := exec.Command(o.Bin, args...)
	cmd.Stderr = logFile
	// A process group of its own: a terminal's Ctrl-C reaches the caller,
	// which stops the instance before awssim (and its loop device).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM, Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		logFile.Close()
		return nil, fmt.Errorf("awssim: %w", err)
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", o.Bin, err)
	}
	a := &AWS{instanceID: o.InstanceID, root: o.Root, cmd: cmd, done: make(chan struct{}), logFile: logFile}
	go func() { a.waitErr = cmd.Wait(); close(a.done) }()
	u, err := a.readyURL(ctx, stdout)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("awssim %s: %w\n%s", strings.Join(args, " "), err, tailOf(o.Log)), a.Stop(context.Background()))
	}
	a.url = u
	return a, nil
}

// readyURL reads awssim's ready line ("awssim ready on http://... (...)")
// and copies the rest of its output to the log.
func (a *AWS) readyURL(ctx context.Context, stdout io.Reader) (string, error) {
	type result struct {
		url string
		err error
	}
	ch := make(chan result, 1)
	go func() {
		r := bufio.NewReader(stdout)
		line, err := r.ReadString('\n')
		fmt.Fprint(a.logFile, line)
		go io.Copy(a.logFile, r) // ends when awssim does
		f := strings.Fields(line)
		if err != nil || len(f) < 4 || !strings.HasPrefix(f[3], "http://") {
			ch <- result{err: fmt.Errorf("no ready line (got %q): %v", line, err)}
			return
		}
		ch <- result{url: f[3]}
	}()
	ctx, cancel := context.WithTimeout(ctx, awsStartTimeout)
	defer cancel()
	select {
	case r := <-ch:
		return r.url, r.err
	case <-ctx.Done():
		return "", fmt.Errorf("no ready line: %w", ctx.Err())
	}
}

// URL is awssim's endpoint ("http://127.0.0.1:PORT"), for AWS_ENDPOINT_URL.
func (a *AWS) URL() string { return a.url }

// HostPort is awssim's "127.0.0.1:PORT".
func (a *AWS) HostPort() string {
	u, err := url.Parse(a.url)
	if err != nil {
		return ""
	}
	return u.Host
}

// InstanceID is the simulated instance's id.
func (a *AWS) InstanceID() string { return a.instanceID }

// Root is where the device links are made.
func (a *AWS) Root() string { return a.root }

// Stop stops awssim (SIGTERM; it releases its loop devices and links),
// waiting up to 30 s before killing it. A second call does nothing.
func (a *AWS) Stop(ctx context.Context) error {
	if a.cmd == nil {
		return nil
	}
	defer func() { a.cmd = nil; a.logFile.Close() }()
	select {
	case <-a.done:
		return nil
	default:
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, awsStartTimeout)
	defer cancel()
	select {
	case <-a.done:
		return nil
	case <-ctx.Done():
		_ = a.cmd.Process.Kill()
		<-a.done
		return fmt.Errorf("awssim did not stop within %s of SIGTERM: killed it (its loop devices may remain: losetup -l)", awsStartTimeout)
	}
}

// Config is an SDK configuration for awssim.
func (a *AWS) Config() aws.Config {
	return aws.Config{
		Region:       Region,
		Credentials:  credentials.NewStaticCredentialsProvider("rig", "rig", ""),
		BaseEndpoint: aws.String(a.url),
	}
}

// Attach attaches the volume to the simulated instance through the EC2
// API, unless it is attached to it already, and returns its loop device
// once awssim has made the by-id link (bind it into the instance before
// boot: a device node made later does not appear inside).
func (a *AWS) Attach(ctx context.Context, volumeID, device string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, attachTimeout)
	defer cancel()
	c := ec2.NewFromConfig(a.Config())
	v, err := describeVolume(ctx, c, volumeID)
	if err != nil {
		return "", err
	}
	if !attachedTo(v, a.instanceID) {
		_, err := c.AttachVolume(ctx, &ec2.AttachVolumeInput{VolumeId: aws.String(volumeID),
			InstanceId: aws.String(a.instanceID), Device: aws.String(device)})
		if err != nil {
			return "", fmt.Errorf("attach %s to %s: %w", volumeID, a.instanceID, err)
		}
	}
	link := filepath.Join(a.root, "dev/disk/by-id", "nvme-Amazon_Elastic_Block_Store_"+strings.ReplaceAll(volumeID, "-", ""))
	var dev string
	err = poll(ctx, 50*time.Millisecond, "the device link "+link, func() (bool, string, error) {
		d, err := filepath.EvalSymlinks(link)
		if err != nil {
			return false, err.Error(), nil
		}
		dev = d
		return true, "", nil
	})
	return dev, err
}

// Detach detaches the volume and waits until it is available.
func (a *AWS) Detach(ctx context.Context, volumeID string) error {
	ctx, cancel := context.WithTimeout(ctx, attachTimeout)
	defer cancel()
	c := ec2.NewFromConfig(a.Config())
	if _, err := c.DetachVolume(ctx, &ec2.DetachVolumeInput{VolumeId: aws.String(volumeID)}); err != nil {
		return fmt.Errorf("detach %s: %w", volumeID, err)
	}
	return poll(ctx, 100*time.Millisecond, volumeID+" available", func() (bool, string, error) {
		v, err := describeVolume(ctx, c, volumeID)
		if err != nil {
			return false, "", err
		}
		return v.State == ec2types.VolumeStateAvailable, string(v.State), nil
	})
}

func describeVolume(ctx context.Context, c *ec2.Client, id string) (ec2types.Volume, error) {
	out, err := c.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{id}})
	if err != nil {
		return ec2types.Volume{}, fmt.Errorf("describe %s: %w", id, err)
	}
	if len(out.Volumes) != 1 {
		return ec2types.Volume{}, fmt.Errorf("describe %s: %d volumes", id, len(out.Volumes))
	}
	return out.Volumes[0], nil
}

func attachedTo(v ec2types.Volume, instanceID string) bool {
	for _, at := range v.Attachments {
		if aws.ToString(at.InstanceId) == instanceID {
			return true
		}
	}
	return false
}

// Signal is one signal the stack received, from its events.
type Signal struct {
	Status   string // SUCCESS or FAILURE
	UniqueID string
	Time     time.Time
}

// Signals returns the signals of the stack's events, oldest first.
func (a *AWS) Signals(ctx context.Context) ([]Signal, error) {
	events, err := a.StackEvents(ctx)
	if err != nil {
		return nil, err
	}
	var sig []Signal
	for _, e := range events {
		var s Signal
		if n, _ := fmt.Sscanf(e.Reason, "Received %s signal with UniqueId %s", &s.Status, &s.UniqueID); n == 2 {
			s.Time = e.Time
			sig = append(sig, s)
		}
	}
	return sig, nil
}

// Event is one stack event.
type Event struct {
	Time                     time.Time
	Resource, Status, Reason string
}

// StackEvents returns the stack's events, oldest first.
func (a *AWS) StackEvents(ctx context.Context) ([]Event, error) {
	c := cloudformation.NewFromConfig(a.Config())
	p := cloudformation.NewDescribeStackEventsPaginator(c, &cloudformation.DescribeStackEventsInput{StackName: aws.String(StackName)})
	var events []Event
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("stack events of %s: %w", StackName, err)
		}
		for _, e := range out.StackEvents {
			events = append(events, Event{Time: aws.ToTime(e.Timestamp), Resource: aws.ToString(e.LogicalResourceId),
				Status: string(e.ResourceStatus), Reason: aws.ToString(e.ResourceStatusReason)})
		}
	}
	// Newest first on the wire.
	for i, j := 0, len(events)-1; i < j; i, j = i+1, j-1 {
		events[i], events[j] = events[j], events[i]
	}
	return events, nil
}

// StackStatus returns the stack's status.
func (a *AWS) StackStatus(ctx context.Context) (string, error) {
	c := cloudformation.NewFromConfig(a.Config())
	out, err := c.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String(StackName)})
	if err != nil {
		return "", fmt.Errorf("describe %s: %w", StackName, err)
	}
	if len(out.Stacks) != 1 {
		return "", fmt.Errorf("describe %s: %d stacks", StackName, len(out.Stacks))
	}
	return string(out.Stacks[0].StackStatus), nil
}

// Call is one entry of awssim's call log (GET /_sim/calls).
type Call struct {
	Service   string    `json:"service"`
	Operation string    `json:"operation"`
	Time      time.Time `json:"time"`
	Status    int       `json:"status"`
	Code      string    `json:"code"`
}

// Calls returns awssim's call log: every API call this awssim process
// served.
func (a *AWS) Calls(ctx context.Context) ([]Call, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.url+"/_sim/calls", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("awssim call log: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("awssim call log: %s", resp.Status)
	}
	var calls []Call
	if err := json.NewDecoder(resp.Body).Decode(&calls); err != nil {
		return nil, fmt.Errorf("awssim call log: %w", err)
	}
	return calls, nil
}

// Apply applies a scenario document (docs/awssim.md) to the running
// account: latencies, faults, a volume held by another instance.
func (a *AWS) Apply(ctx context.Context, scenario string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.url+"/_sim/scenario", strings.NewReader(scenario))
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("awssim scenario: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("awssim scenario: %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}

// tailOf returns the last lines of a log file, indented.
func tailOf(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "\t(" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > errLines {
		lines = lines[len(lines)-errLines:]
	}
	return "\t" + strings.Join(lines, "\n\t")
}
