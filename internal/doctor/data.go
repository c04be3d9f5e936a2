package doctor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/moby/moby/client"

	"github.com/monagent/monagent/internal/config"
	"github.com/monagent/monagent/internal/ebs"
)

// Volumes lists Docker volumes; *client.Client is one.
type Volumes interface {
	VolumeList(ctx context.Context, options client.VolumeListOptions) (client.VolumeListResult, error)
}

// StackData asks whether the stack's data lands on the data volume (seed
// section 10, "loki/tempo: data directory on /data"): something is
// mounted at the mount point, compose.data_dir is on that filesystem, and
// every Docker volume of the project is bound to a directory under it
// rather than kept under /var/lib/docker on the root disk. docker may be
// nil when the engine does not answer: the local part still runs.
func StackData(ctx context.Context, root string, c *config.Config, docker Volumes) Check {
	const name = "stack data"
	mp := filepath.Join(root, c.Volume.MountPoint)
	dataDir := filepath.Join(root, c.StackDataDir())
	m, err := ebs.MountAt(mp)
	switch {
	case err != nil:
		return Failed(name, err.Error())
	case m == nil:
		return Failed(name, fmt.Sprintf("nothing is mounted at %s, so %s is on the root disk: the stack's data would not outlive the instance; run `monagent reconcile --only volume`", mp, dataDir))
	}
	if msg, err := sameFilesystem(dataDir, mp); err != nil || msg != "" {
		if err != nil {
			msg = err.Error()
		}
		return Failed(name, msg)
	}
	if docker == nil {
		return Warning(name, fmt.Sprintf("%s is on the filesystem mounted at %s; the project's Docker volumes were not checked: the engine does not answer", dataDir, mp))
	}
	return dockerVolumes(ctx, docker, c.Compose.Project, dataDir, mp)
}

// sameFilesystem returns why dir is not on the filesystem of mountPoint,
// or "" when it is or does not exist yet (the compose step makes it).
func sameFilesystem(dir, mountPoint string) (string, error) {
	var d, m syscall.Stat_t
	if err := syscall.Stat(dir, &d); errors.Is(err, fs.ErrNotExist) {
		return "", nil
	} else if err != nil {
		return "", fmt.Errorf("stat %s: %w", dir, err)
	}
	if err := syscall.Stat(mountPoint, &m); err != nil {
		return "", fmt.Errorf("stat %s: %w", mountPoint, err)
	}
	if d.Dev == m.Dev {
		return "", nil
	}
	on := "another filesystem"
	if mt, err := ebs.MountAt(dir); err == nil && mt != nil {
		on = fmt.Sprintf("%s (%s) mounted over it", mt.Source, mt.FSType)
	} else if real, err := filepath.EvalSymlinks(dir); err == nil && real != dir {
		on = "a link to " + real
	}
	return fmt.Sprintf("%s is %s, not on the data volume mounted at %s: the stack's data would not outlive the instance; "+
		"stop the stack, move its data onto %s and remove what is in the way, then `monagent reconcile`", dir, on, mountPoint, mountPoint), nil
}

// dockerVolumes checks that every volume of the project is bound under
// dataDir, as the compose step's override binds it.
func dockerVolumes(ctx context.Context, docker Volumes, project, dataDir, mp string) Check {
	const name = "stack data"
	res, err := docker.VolumeList(ctx, client.VolumeListOptions{Filters: make(client.Filters).Add("label", "com.docker.compose.project="+project)})
	if err != nil {
		return Failed(name, fmt.Sprintf("list the Docker volumes of project %s: %v", project, err))
	}
	for _, v := range res.Items {
		if dev := v.Options["device"]; strings.HasPrefix(dev, dataDir+"/") {
			continue
		}
		return Failed(name, fmt.Sprintf("Docker volume %s keeps its data at %s, not under %s on the data volume: "+
			"stop the containers that use it (docker compose -p %s down, without --volumes, which would delete the data), "+
			"copy its data to %s, remove it (docker volume rm %s), then `monagent reconcile`",
			v.Name, where(v.Options["device"], v.Mountpoint), dataDir, project, filepath.Join(dataDir, strings.TrimPrefix(v.Name, project+"_")), v.Name))
	}
	n := fmt.Sprintf("%d Docker volumes", len(res.Items))
	if len(res.Items) == 1 {
		n = "1 Docker volume"
	}
	return Pass(name, fmt.Sprintf("%s is on the filesystem mounted at %s, and so are the project's %s", dataDir, mp, n))
}

func where(device, mountpoint string) string {
	if device != "" {
		return device
	}
	return mountpoint
}
