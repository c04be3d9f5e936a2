// Package host is the metadata phase that comes before every step: it
// reads the instance's identity from IMDSv2 and returns one Host value,
// from which every step is built, with the configuration expanded for this
// instance and the AWS clients set to its region.
package host

import (
	"context"
	"path/filepath"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"go.uber.org/zap"

	"github.com/monagent/monagent/internal/command"
	"github.com/monagent/monagent/internal/config"
	"github.com/monagent/monagent/internal/imds"
	"github.com/monagent/monagent/internal/logging"
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
	Params *ssmparam.Store
	Run    command.Runner
	Log    *zap.Logger
	// Secrets learns every secret value the steps come across.
	Secrets *logging.Redactor
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
	return New(o, id, cfg, awsCfg), nil
}

// New assembles a Host from an identity already known.
func New(o Options, id imds.Identity, cfg *config.Config, awsCfg aws.Config) *Host {
	root := o.Root
	if root == "" {
		root = "/"
	}
	return &Host{
		Root:     root,
		Identity: id,
		Config:   cfg,
		AWS:      awsCfg,
		EC2:      ec2.NewFromConfig(awsCfg),
		CFN:      cloudformation.NewFromConfig(awsCfg),
		Params:   ssmparam.New(ssm.NewFromConfig(awsCfg), o.Secrets),
		Run:      o.Run,
		Log:      o.Log,
		Secrets:  o.Secrets,
	}
}

// Path puts an absolute host path under Root.
func (h *Host) Path(p string) string { return filepath.Join(h.Root, p) }
