package compose

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"go.uber.org/zap"
	"gopkg.in/yaml.v3"
)

// pullTimeout bounds the pull of one image.
const pullTimeout = 15 * time.Minute

// pullers is how many images are pulled at once.
const pullers = 3

// ImageAPI is the part of the Docker client the pull step uses.
type ImageAPI interface {
	ImageInspect(ctx context.Context, image string, opts ...client.ImageInspectOption) (client.ImageInspectResult, error)
	ImagePull(ctx context.Context, ref string, options client.ImagePullOptions) (client.ImagePullResponse, error)
}

// PullOptions are the pull step's collaborators.
type PullOptions struct {
	Root     string
	StackDir string // bundle.dir
	File     string // compose.file
	Docker   ImageAPI
	Log      *zap.Logger
}

// Pull is the pull step: the stack's images, fetched as soon as the engine
// answers and the bundle is there, beside the volume and the secrets,
// which `up` needs and a pull does not. A pull that fails is a warning:
// `up` pulls what is still missing, with the CLI's credentials, and names
// a real failure.
type Pull struct {
	o        PullOptions
	images   []string
	failed   map[string]error
	warnings []string
}

// NewPull returns the step.
func NewPull(o PullOptions) *Pull {
	if o.Root == "" {
		o.Root = "/"
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	return &Pull{o: o, failed: map[string]error{}}
}

// Warning implements engine.Warner.
func (p *Pull) Warning() string { return strings.Join(p.warnings, "; ") }

// Restore implements engine.Memoizer: an image that could not be pulled
// ahead is not asked for again on every run (a registry that needs the
// login `up` has and this step has not): `up` pulls it.
func (p *Pull) Restore(memo map[string]string) {
	for _, img := range strings.Fields(memo["not_pulled"]) {
		p.failed[img] = errors.New("not pulled ahead in an earlier run")
	}
}

// Memo implements engine.Memoizer.
func (p *Pull) Memo() map[string]string {
	return map[string]string{"not_pulled": strings.Join(slices.Sorted(maps.Keys(p.failed)), " ")}
}

// Fingerprint is the list of images.
func (p *Pull) Fingerprint(context.Context) (string, error) {
	if err := p.load(); err != nil {
		return "", err
	}
	return strings.Join(p.images, " "), nil
}

// load reads the images the compose file names. One that depends on a
// variable is left to `up`: .env may not be written yet.
func (p *Pull) load() error {
	if p.images != nil {
		return nil
	}
	b, err := os.ReadFile(filepath.Join(p.o.Root, p.o.StackDir, p.o.File))
	if err != nil {
		return fmt.Errorf("pull: %w", err)
	}
	var doc struct {
		Services map[string]struct {
			Image string `yaml:"image"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("pull: %s: %w", p.o.File, err)
	}
	p.images = []string{}
	for _, s := range doc.Services {
		if s.Image != "" && !strings.Contains(s.Image, "$") && !slices.Contains(p.images, s.Image) {
			p.images = append(p.images, s.Image)
		}
	}
	slices.Sort(p.images)
	return nil
}

// Check passes when every image is here, or failed to pull in this run.
func (p *Pull) Check(ctx context.Context) (bool, error) {
	missing, err := p.missing(ctx)
	return len(missing) == 0, err
}

func (p *Pull) missing(ctx context.Context) ([]string, error) {
	if err := p.load(); err != nil {
		return nil, err
	}
	var out []string
	for _, img := range p.images {
		if _, failed := p.failed[img]; failed {
			continue
		}
		_, err := p.o.Docker.ImageInspect(ctx, img)
		switch {
		case cerrdefs.IsNotFound(err):
			out = append(out, img)
		case err != nil:
			return nil, fmt.Errorf("pull: inspect image %s: %w", img, err)
		}
	}
	return out, nil
}

// Apply pulls the missing images, a few at a time.
func (p *Pull) Apply(ctx context.Context) error {
	missing, err := p.missing(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	errs := make([]error, len(missing))
	sem := make(chan struct{}, pullers)
	var wg sync.WaitGroup
	for i, img := range missing {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = p.pull(ctx, img)
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	for i, img := range missing {
		if errs[i] != nil {
			p.failed[img] = errs[i]
			p.warnings = append(p.warnings, fmt.Sprintf("image %s not pulled ahead (%v): `up` pulls it", img, errs[i]))
			p.o.Log.Warn("image not pulled ahead; up pulls it", zap.String("image", img), zap.Error(errs[i]))
		}
	}
	p.o.Log.Info("images pulled", zap.Strings("images", missing), zap.Int("failed", len(p.failed)), zap.Duration("duration", time.Since(start)))
	return nil
}

func (p *Pull) pull(ctx context.Context, img string) error {
	ctx, cancel := context.WithTimeout(ctx, pullTimeout)
	defer cancel()
	p.o.Log.Info("pulling image", zap.String("image", img))
	resp, err := p.o.Docker.ImagePull(ctx, img, client.ImagePullOptions{})
	if err != nil {
		return err
	}
	return resp.Wait(ctx)
}
