package ebs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"go.uber.org/zap"

	"github.com/monagent/monagent/internal/command"
	"github.com/monagent/monagent/internal/retry"
)

// blkidNothingFound is blkid's exit status when the device carries no
// signature at all.
const blkidNothingFound = 2

// supportedFS reports whether monagent creates and mounts filesystems of
// type t.
func supportedFS(t string) bool { return t == "xfs" || t == "ext4" }

// Signature is what `blkid -p` finds on a device.
type Signature struct {
	Blank  bool // no signature at all: the only state monagent formats
	Type   string
	UUID   string
	PTType string
	Usage  string
}

// Probe reads the device's signature with `blkid -p`, which reads the
// device itself, not blkid's cache. It fails on any answer other than
// "found" (0) or "nothing found" (2).
func Probe(ctx context.Context, run command.Runner, dev string) (Signature, error) {
	// blkid also exits 2 for a device it cannot open, so make sure the
	// device reads before trusting "nothing found".
	if err := readable(dev); err != nil {
		return Signature{}, err
	}
	res, err := run.Run(ctx, command.Cmd{Name: "blkid", Args: []string{"-p", "-o", "export", dev}, Timeout: probeTimeout,
		Answers: []int{blkidNothingFound}})
	if command.ExitCode(err) == blkidNothingFound {
		return Signature{Blank: true}, nil
	}
	if err != nil {
		return Signature{}, err
	}
	var sig Signature
	for _, line := range strings.Split(string(res.Stdout), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok {
			continue
		}
		v = strings.ReplaceAll(v, `\`, "")
		switch k {
		case "TYPE":
			sig.Type = v
		case "UUID":
			sig.UUID = v
		case "PTTYPE":
			sig.PTType = v
		case "USAGE":
			sig.Usage = v
		}
	}
	return sig, nil
}

// readable checks that dev opens and its first block reads.
func readable(dev string) error {
	f, err := os.Open(dev)
	if err != nil {
		return fmt.Errorf("volume: open device: %w", err)
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Errorf("volume: size of %s: %w", dev, err)
	}
	if size == 0 {
		return fmt.Errorf("volume: %s has size 0", dev)
	}
	if _, err := f.ReadAt(make([]byte, 512), 0); err != nil {
		return fmt.Errorf("volume: read %s: %w", dev, err)
	}
	return nil
}

// probe is Probe with the step's wording on failure. A probe cut short
// (the run cancelled, blkid timed out on a slow device) says nothing about
// the device: it is an ordinary error, retried by the next run. Any other
// failure stops the step for good.
func (s *Step) probe(ctx context.Context, volID, dev string) (Signature, error) {
	sig, err := Probe(ctx, s.run, dev)
	if err != nil && (ctx.Err() != nil || errors.Is(err, command.ErrTimeout)) {
		return sig, fmt.Errorf("volume: probe %s (%s): %w", volID, dev, err)
	}
	if err != nil {
		return sig, retry.PermanentError(fmt.Errorf(
			"volume: cannot tell what %s (%s) holds: %w; monagent formats a volume only when blkid -p reports no signature at all, so it stops here: inspect the device (blkid -p %s, lsblk -f)",
			volID, dev, err, dev))
	}
	return sig, nil
}

// ensureFilesystem gives a blank device a filesystem and returns the
// filesystem's UUID. A device holding anything else is never touched.
func (s *Step) ensureFilesystem(ctx context.Context, volID, dev string) (string, error) {
	fsType := s.cfg.FSType
	if !supportedFS(fsType) {
		return "", retry.PermanentError(fmt.Errorf("volume: fs_type %q is not supported (xfs or ext4)", fsType))
	}
	// Probe here, right before mkfs, rather than trust Check's probe: a
	// wait for the attachment and the device may have come between, and
	// mkfs is no safety net (mkfs.ext4 without a terminal formats a device
	// that holds a filesystem without asking).
	sig, err := s.probe(ctx, volID, dev)
	if err != nil {
		return "", err
	}
	if sig.Blank {
		if sig, err = s.mkfs(ctx, volID, dev); err != nil {
			return "", err
		}
	}
	return s.usable(volID, dev, sig)
}

// noDiscard skips discarding the blocks of a blank volume, which EBS does
// not need and which makes mkfs of a large volume take minutes.
func noDiscard(fsType string) []string {
	if fsType == "xfs" {
		return []string{"-K"}
	}
	return []string{"-E", "nodiscard"}
}

// mkfs creates the filesystem on a device blkid has just found blank,
// never with a force flag. Once started it runs to the end, even if the
// run is cancelled.
func (s *Step) mkfs(ctx context.Context, volID, dev string) (Signature, error) {
	fsType := s.cfg.FSType
	if err := ctx.Err(); err != nil {
		return Signature{}, err
	}
	s.log.Info("volume is blank, creating filesystem", zap.String("volume_id", volID),
		zap.String("device", dev), zap.String("fs_type", fsType))
	cmd := command.Cmd{Name: "mkfs." + fsType, Args: append(noDiscard(fsType), dev), Timeout: mkfsTimeout, Uninterruptible: true}
	if _, err := s.run.Run(ctx, cmd); err != nil {
		return Signature{}, fmt.Errorf("volume: create %s filesystem on %s (%s): %w", fsType, volID, dev, err)
	}
	// Verify even when the run was cancelled meanwhile: mkfs finished, and
	// what it left must be known before anything else happens.
	sig, err := s.probe(context.WithoutCancel(ctx), volID, dev)
	if err != nil {
		return sig, err
	}
	if sig.Blank || sig.Type != fsType {
		return sig, fmt.Errorf("volume: after mkfs.%s, blkid -p on %s reports type %q", fsType, dev, sig.Type)
	}
	return sig, nil
}

// usable returns the UUID of a filesystem of the configured type, and a
// permanent error naming what was found and what to do otherwise.
func (s *Step) usable(volID, dev string, sig Signature) (string, error) {
	want := s.cfg.FSType
	const never = "monagent never formats a volume that holds data"
	switch {
	case sig.PTType != "":
		return "", retry.PermanentError(fmt.Errorf(
			"volume: %s (%s) holds a %s partition table, config expects a %s filesystem on the whole device: %s; mount its partition yourself, or wipe the volume (wipefs -a %s) after taking a snapshot",
			volID, dev, sig.PTType, want, never, dev))
	case sig.Type == want && sig.UUID != "":
		return sig.UUID, nil
	case sig.Type == want:
		return "", retry.PermanentError(fmt.Errorf("volume: the %s filesystem on %s (%s) has no UUID; give it one (xfs_admin -U generate / tune2fs -U random)", want, volID, dev))
	case sig.Type != "" && supportedFS(sig.Type):
		return "", retry.PermanentError(fmt.Errorf(
			"volume: %s (%s) holds a filesystem of type %s, config says %s: %s; set volume.fs_type: %s to use it, or wipe it yourself after taking a snapshot",
			volID, dev, sig.Type, want, never, sig.Type))
	case sig.Type != "":
		return "", retry.PermanentError(fmt.Errorf(
			"volume: %s (%s) holds a signature of type %s (usage %s), config says %s: %s; copy its data elsewhere and wipe it yourself after taking a snapshot",
			volID, dev, sig.Type, sig.Usage, want, never))
	}
	return "", retry.PermanentError(fmt.Errorf(
		"volume: blkid -p finds a signature on %s (%s) but no type (usage %q): %s; inspect it with blkid -p %s",
		volID, dev, sig.Usage, never, dev))
}
