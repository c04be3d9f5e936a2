// Package host is the metadata phase that comes before every step: it
// reads the instance's identity from IMDSv2 and returns one Host value,
// from which every step is built, with the configuration expanded for this
// instance and the AWS clients set to its region.
package host

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/moby/moby/client"
	"go.uber.org/zap"

	"github.com/monagent/monagent/internal/command"
	"github.com/monagent/monagent/internal/config"
	"github.com/monagent/monagent/internal/imds"
	"github.com/monagent/monagent/internal/logging"
	"github.com/monagent/monagent/internal/seal"
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
	id, err := imds.Fetch(ctx, imds.NewClient(o.AWS))
	if err != nil {
		return nil, err
	}
	o.Log.Info("instance identity", zap.String("instance_id", id.InstanceID), zap.String("region", id.Region),
		zap.String("az", id.AZ), zap.String("private_ip", id.PrivateIP))
	awsCfg := o.AWS.Copy()
	if awsCfg.Region == "" {
		awsCfg.Region = id.Region
	}
	// imds.Fetch never returns an empty value, so every placeholder has one.
	cfg, err := o.Config.Expand(config.Vars{InstanceID: id.InstanceID, Region: id.Region, AZ: id.AZ, PrivateIP: id.PrivateIP})
	if err != nil {
		return nil, err
	}
	return New(o, id, cfg, awsCfg)
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
		Params:  ssmparam.New(ssm.NewFromConfig(awsCfg), o.Secrets),
		Docker:  docker,
		Run:     o.Run,
		Log:     o.Log,
		Secrets: o.Secrets,
	}, nil
}

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
