// Package host is the metadata phase that comes before every step: it
// reads the instance's identity from IMDSv2 and returns one Host value,
// from which every step is built, with the configuration expanded for this
// instance and the AWS clients set to its region.
package host

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/moby/moby/client"
	"go.uber.org/zap"

	"github.com/monagent/monagent/internal/atomicfile"
	"github.com/monagent/monagent/internal/command"
	"github.com/monagent/monagent/internal/config"
	"github.com/monagent/monagent/internal/envfile"
	"github.com/monagent/monagent/internal/imds"
	"github.com/monagent/monagent/internal/localparam"
	"github.com/monagent/monagent/internal/logging"
	"github.com/monagent/monagent/internal/seal"
	"github.com/monagent/monagent/internal/secretgen"
	"github.com/monagent/monagent/internal/ssmparam"
)

// Host is what every step is built from.
type Host struct {
	// Root prefixes every host path; "/" on a real instance.
	Root     string
	Identity imds.Identity
	// Config is the configuration with {instance_id}, {region}, {az} and
	// {private_ip} filled in.
	Config *config.Config
	AWS    aws.Config
	EC2    *ec2.Client
	CFN    *cloudformation.Client
	S3     *s3.Client
	Params *ssmparam.Store
	// Values is where the env step reads and keeps its values: SSM, or
	// off AWS the host's own store.
	Values envfile.Params
	// Kept is the host's secret store: generated values off AWS, and
	// everywhere the bcrypt hashes and TLS pairs.
	Kept *secretgen.Store
	// Docker is the engine's API (DOCKER_HOST, else the local socket); it
	// connects on first use.
	Docker *client.Client
	Run    command.Runner
	Log    *zap.Logger
	// Secrets learns every secret value the steps come across.
	Secrets *logging.Redactor
	// Seal keys the digests of secret-bearing files the state keeps; the
	// converging verbs load it.
	Seal *seal.Key
}

// Options are what the phase starts from.
type Options struct {
	Root    string
	Config  *config.Config // as loaded: instance placeholders not yet filled
	AWS     aws.Config     // the region may be empty: IMDS fills it
	Run     command.Runner
	Log     *zap.Logger
	Secrets *logging.Redactor
}

// Discover reads the instance identity and builds the Host.
func Discover(ctx context.Context, o Options) (*Host, error) {
	id, cfg, err := identify(ctx, o)
	if err != nil {
		return nil, err
	}
	o.Config = cfg
	o.Log.Info("instance identity", zap.String("cloud", cfg.Cloud), zap.String("instance_id", id.InstanceID), zap.String("region", id.Region),
		zap.String("az", id.AZ), zap.String("private_ip", id.PrivateIP))
	awsCfg := o.AWS.Copy()
	if awsCfg.Region == "" {
		awsCfg.Region = id.Region
	}
	// On AWS every placeholder has a value; off it {region} and {az} have
	// none, and a configuration using them fails here, naming the key.
	cfg, err = o.Config.Expand(config.Vars{InstanceID: id.InstanceID, Region: id.Region, AZ: id.AZ, PrivateIP: id.PrivateIP})
	if err != nil {
		return nil, err
	}
	return New(o, id, cfg, awsCfg)
}

// identify reads the identity the configuration's cloud calls for. With
// cloud: auto the answer is decided once per host and pinned (PinPath):
// one slow metadata reply must never turn an instance into a host off AWS
// for a run, whose secrets, data directory and signal all differ.
func identify(ctx context.Context, o Options) (imds.Identity, *config.Config, error) {
	cfg := o.Config
	switch cfg.Cloud {
	case config.CloudNone:
		id, err := imds.Local()
		return id, cfg, err
	case config.CloudAuto:
		return identifyAuto(ctx, o)
	}
	id, err := imds.Fetch(ctx, imds.NewClient(o.AWS))
	return id, cfg, err
}

// PinPath records what cloud: auto found on this host: aws or none.
const PinPath = "/var/lib/monagent/cloud"

func identifyAuto(ctx context.Context, o Options) (imds.Identity, *config.Config, error) {
	pinFile := filepath.Join(o.Root, PinPath)
	cloud := Pinned(o.Root)
	if cloud == "" {
		cloud = config.CloudNone
		if imds.OnEC2(o.Root) {
			cloud = config.CloudAWS
		} else if _, err := imds.Probe(ctx, imds.NewClient(o.AWS)); err == nil {
			cloud = config.CloudAWS
		} else {
			o.Log.Info("no instance metadata: a host off AWS (cloud: auto)", zap.Error(err))
		}
		// The state's directory: 0700, as the state store makes it.
		err := os.MkdirAll(filepath.Dir(pinFile), 0o700)
		if err == nil {
			err = (atomicfile.Options{}).WriteFile(pinFile, []byte(cloud+"\n"), 0o644)
		}
		if err != nil {
			return imds.Identity{}, nil, fmt.Errorf("cloud: auto: record what was found in %s: %w", pinFile, err)
		}
		o.Log.Info("cloud: auto decided for this host", zap.String("cloud", cloud), zap.String("pinned_in", pinFile))
	}
	resolved := *o.Config
	resolved.Cloud = cloud
	if cloud == config.CloudNone {
		id, err := imds.Local()
		return id, &resolved, err
	}
	id, err := imds.Fetch(ctx, imds.NewClient(o.AWS))
	if err != nil {
		err = fmt.Errorf("%w (cloud: auto found instance metadata on this host before, %s; remove that file if the host has left AWS)", err, pinFile)
	}
	return id, &resolved, err
}

// Pinned is the cloud cloud: auto decided on this host, "" when none yet.
func Pinned(root string) string {
	b, err := os.ReadFile(filepath.Join(root, PinPath))
	if err != nil {
		return ""
	}
	switch c := strings.TrimSpace(string(b)); c {
	case config.CloudAWS, config.CloudNone:
		return c
	}
	return ""
}

// Resolve is cfg with cloud: auto replaced by what was decided on this
// host, for the verbs that do not decide it themselves (smoke, doctor).
func Resolve(root string, cfg *config.Config) *config.Config {
	if cfg.Cloud != config.CloudAuto {
		return cfg
	}
	c := Pinned(root)
	if c == "" {
		return cfg
	}
	out := *cfg
	out.Cloud = c
	return &out
}

// New assembles a Host from an identity already known.
func New(o Options, id imds.Identity, cfg *config.Config, awsCfg aws.Config) (*Host, error) {
	root := o.Root
	if root == "" {
		root = "/"
	}
	docker, err := client.New(client.FromEnv)
	if err != nil {
		return nil, fmt.Errorf("docker client (DOCKER_HOST, DOCKER_CERT_PATH): %w", err)
	}
	if cfg.Local() {
		cfg = localKeys(cfg)
	}
	kept := &secretgen.Store{Dir: filepath.Join(root, cfg.Secrets.Dir)}
	// One store for every SSM read: the run's up-front batched read
	// serves the env step too.
	store := ssmparam.New(ssm.NewFromConfig(awsCfg), o.Secrets)
	var params envfile.Params = store
	if cfg.Local() {
		params = &localparam.Store{File: filepath.Join(root, cfg.Secrets.File), Kept: kept, Secrets: o.Secrets}
		if cfg.Secrets.File == "" {
			params.(*localparam.Store).File = ""
		}
	}
	return &Host{
		Root:     root,
		Identity: id,
		Config:   cfg,
		AWS:      awsCfg,
		EC2:      ec2.NewFromConfig(awsCfg),
		CFN:      cloudformation.NewFromConfig(awsCfg),
		// A bundle object without a stored checksum is normal (the size
		// and ETag are checked); the SDK would warn once per object.
		S3:      s3.NewFromConfig(awsCfg, func(o *s3.Options) { o.DisableLogOutputChecksumValidationSkipped = true }),
		Params:  store,
		Values:  params,
		Kept:    kept,
		Docker:  docker,
		Run:     o.Run,
		Log:     o.Log,
		Secrets: o.Secrets,
	}, nil
}

// localKeys gives every env value its own key as its name in the local
// store: a parameter path written for AWS means nothing off it.
func localKeys(c *config.Config) *config.Config {
	out := *c
	out.Env = make(map[string]config.EnvVar, len(c.Env))
	for k, v := range c.Env {
		if v.Value == nil {
			v.Parameter = k
		}
		out.Env[k] = v
	}
	return &out
}

// OnAWS reports whether the host runs with AWS: instance metadata, EBS,
// SSM and the stack signal.
func (h *Host) OnAWS() bool { return !h.Config.Local() }

// Path puts an absolute host path under Root.
func (h *Host) Path(p string) string { return filepath.Join(h.Root, p) }

// ComposeEnv is the environment `docker compose` needs here. Under a
// --root prefix the plugin is installed below it, where the docker CLI
// does not look: DOCKER_CONFIG points the CLI at that plugin directory.
func (h *Host) ComposeEnv() []string {
	if h.Root == "/" {
		return nil
	}
	return []string{"DOCKER_CONFIG=" + h.Path("/usr/local/lib/docker")}
}
