package compose

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"go.uber.org/zap"

	"github.com/monagent/monagent/internal/retry"
)

// renderOverride is the override file that binds each named volume to
// hostDir/<name>, a directory on the data volume.
func renderOverride(names []string, hostDir, dataDir string) []byte {
	var b strings.Builder
	b.WriteString("# Written by monagent: the stack's named volumes live on the data volume, under " + dataDir + ".\n")
	if len(names) == 0 {
		b.WriteString("{}\n")
		return []byte(b.String())
	}
	b.WriteString("volumes:\n")
	for _, n := range names {
		fmt.Fprintf(&b, "  %s:\n    driver: local\n    driver_opts:\n      type: none\n      o: bind\n      device: %q\n",
			n, filepath.Join(hostDir, n))
	}
	return []byte(b.String())
}

// prepareVolumes makes each named volume's directory on the data volume,
// empty, so that Docker fills it from the image the first time, with the
// image's owner; and refuses a volume Docker already has with other
// options: its data would stay behind on the root disk.
func (s *Step) prepareVolumes(ctx context.Context) error {
	hostDir := s.path(s.o.DataDir)
	for name, v := range s.m.project.Volumes {
		dev := v.DriverOpts["device"]
		if dev == "" || !strings.HasPrefix(dev, hostDir+"/") {
			continue
		}
		if err := os.MkdirAll(dev, 0o755); err != nil {
			return fmt.Errorf("compose: volume %s: %w", name, err)
		}
		got, err := s.o.Docker.VolumeInspect(ctx, v.Name, client.VolumeInspectOptions{})
		switch {
		case cerrdefs.IsNotFound(err):
			continue
		case err != nil:
			return fmt.Errorf("compose: inspect volume %s: %w", v.Name, err)
		}
		if have := got.Volume.Options["device"]; have != dev {
			where := "kept at " + got.Volume.Mountpoint
			if have != "" {
				where = "bound to " + have
			}
			return retry.PermanentError(fmt.Errorf("compose: Docker already has volume %s, %s, not on the data volume at %s: "+
				"stop the containers that use it (docker compose -p %s down, without --volumes, which would delete the data), "+
				"copy its data to %s, then remove it (docker volume rm %s); monagent does not move data by itself",
				v.Name, where, dev, s.o.Config.Project, dev, v.Name))
		}
		s.o.Log.Debug("volume on the data volume", zap.String("volume", v.Name), zap.String("device", dev))
	}
	return nil
}
