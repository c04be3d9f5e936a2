package docker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/monagent/monagent/internal/atomicfile"
	"github.com/monagent/monagent/internal/command"
	"github.com/monagent/monagent/internal/retry"
)

// pluginPath is the plugin file under the host root.
func (s *Step) pluginPath() string { return filepath.Join(s.o.Root, PluginPath) }

// pluginInstalled reports whether the plugin file is the pinned one: by
// checksum when one is configured, else by the version it reports.
func (s *Step) pluginInstalled(ctx context.Context) (bool, error) {
	path := s.pluginPath()
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		s.o.Log.Info("compose plugin not installed", zap.String("path", path))
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("docker: %w", err)
	}
	if fi.Mode().Perm()&0o111 == 0 {
		return false, nil
	}
	want := s.o.Config.ComposePlugin.SHA256
	if want == "" {
		v, err := s.pluginVersion(ctx, path)
		return err == nil && strings.TrimPrefix(v, "v") == strings.TrimPrefix(s.o.Config.ComposePlugin.Version, "v"), nil
	}
	got, err := FileSHA256(path)
	if err != nil {
		return false, fmt.Errorf("docker: %w", err)
	}
	if got != want {
		s.o.Log.Info("compose plugin differs from the pinned checksum", zap.String("path", path), zap.String("sha256", got))
	}
	return got == want, nil
}

// pluginVersion asks the plugin binary itself (standalone mode).
func (s *Step) pluginVersion(ctx context.Context, path string) (string, error) {
	res, err := s.o.Run.Run(ctx, command.Cmd{Name: path, Args: []string{"version", "--short"}, Timeout: 15 * time.Second})
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(res.Stdout)), nil
}

// ensurePlugin downloads the plugin into a temporary file beside its
// place, checks the checksum, and only then renames it into place, mode
// 0755: a mismatch or a cut download installs nothing.
func (s *Step) ensurePlugin(ctx context.Context) error {
	if ok, err := s.pluginInstalled(ctx); err != nil || ok {
		return err
	}
	p := s.o.Config.ComposePlugin
	if p.SHA256 == "" {
		return retry.PermanentError(fmt.Errorf("docker: the Compose plugin at %s is not %s, and docker.compose_plugin.sha256 is empty: "+
			"monagent downloads only what it can verify; set it to the sha256sum of %s", s.pluginPath(), p.Version, p.URL))
	}
	if err := os.MkdirAll(filepath.Dir(s.pluginPath()), 0o755); err != nil {
		return fmt.Errorf("docker: %w", err)
	}
	// Poll bounds every attempt by the timeout and, past it, reports the
	// last failure.
	start := time.Now()
	var lastWrong string
	err := retry.Poll(ctx, s.o.Backoff, p.DownloadTimeout.Duration, s.o.Log, func(ctx context.Context) (bool, error) {
		err := s.download(ctx)
		// A body cut short without a length reads as a wrong checksum: a
		// mismatch is final only when the same wrong file comes twice.
		var m *mismatchError
		if errors.As(err, &m) {
			if m.got == lastWrong {
				return true, retry.PermanentError(err)
			}
			lastWrong = m.got
			return true, retry.TransientError(err)
		}
		return true, err
	})
	if err != nil {
		return fmt.Errorf("docker: install the Compose plugin %s from %s: %w", p.Version, p.URL, err)
	}
	s.o.Log.Info("compose plugin installed", zap.String("path", s.pluginPath()), zap.String("version", p.Version),
		zap.Duration("duration", time.Since(start)))
	return nil
}

// download fetches the plugin once. A failed request or a cut body is
// transient (Poll retries it); a checksum mismatch is a *mismatchError.
func (s *Step) download(ctx context.Context) error {
	p := s.o.Config.ComposePlugin
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL, nil)
	if err != nil {
		return retry.PermanentError(err)
	}
	resp, err := s.o.HTTP.Do(req)
	if err != nil {
		return retry.TransientError(err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout:
		return retry.TransientError(fmt.Errorf("GET %s: %s", p.URL, resp.Status))
	case resp.StatusCode != http.StatusOK:
		return retry.PermanentError(fmt.Errorf("GET %s: %s", p.URL, resp.Status))
	}
	sum := sha256.New()
	opts := atomicfile.Options{Verify: func() error { return checkSum(sum, p.SHA256, p.URL) }}
	err = opts.WriteFrom(s.pluginPath(), io.TeeReader(resp.Body, sum), 0o755)
	var m *mismatchError
	if err != nil && !errors.As(err, &m) {
		return retry.TransientError(err)
	}
	return err
}

// mismatchError is a download whose checksum is not the pinned one.
type mismatchError struct{ url, got, want string }

func (e *mismatchError) Error() string {
	return fmt.Sprintf("checksum mismatch: %s has sha256 %s, docker.compose_plugin.sha256 is %s; nothing was installed", e.url, e.got, e.want)
}

func checkSum(sum hash.Hash, want, url string) error {
	if got := hex.EncodeToString(sum.Sum(nil)); got != want {
		return &mismatchError{url: url, got: got, want: want}
	}
	return nil
}

// FileSHA256 is the hex SHA-256 of the file at path: what
// docker.compose_plugin.sha256 pins.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
