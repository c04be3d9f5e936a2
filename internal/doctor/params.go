package doctor

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/monagent/monagent/internal/config"
	"github.com/monagent/monagent/internal/retry"
	"github.com/monagent/monagent/internal/ssmparam"
)

// Kind says what an absent parameter means for a run.
type Kind int

// Kinds, strongest first: a parameter named twice takes the stronger.
const (
	// Required: the run fails without it.
	Required Kind = iota
	// Optional: its services are left out (the GitHub token).
	Optional
	// Generated: the env step creates it once.
	Generated
	// Written: the endpoints step writes it.
	Written
)

// Need is one SSM parameter the configuration reads.
type Need struct {
	Name string
	Kind Kind
	// Use is the configuration key that names it.
	Use string
	// Type and Value are what put-parameter creates it with.
	Type, Value string
	// Services are those an absent optional value leaves out.
	Services []string
	// Secret: the value goes into .env or a secret file.
	Secret bool
}

// Needs lists every SSM parameter c (expanded) reads, as c.Parameters
// does, with what an absent one means.
func Needs(c *config.Config) []Need {
	byName := map[string]Need{}
	add := func(n Need) {
		if old, ok := byName[n.Name]; !ok || n.Kind < old.Kind {
			byName[n.Name] = n
		}
	}
	if c.Volume.ID == "" && c.Volume.IDParameter != "" {
		add(Need{Name: c.Volume.IDParameter, Kind: Required, Use: "volume.id_parameter", Type: "String", Value: "<the data volume's id, vol-...>"})
	}
	if c.Bundle.Bucket == "" && c.Bundle.BucketParameter != "" {
		add(Need{Name: c.Bundle.BucketParameter, Kind: Required, Use: "bundle.bucket_parameter", Type: "String", Value: "<the scripts bucket's name>"})
	}
	for _, k := range slices.Sorted(maps.Keys(c.Env)) {
		if v := c.Env[k]; v.Parameter != "" {
			add(envNeed(k, v))
		}
	}
	for name := range c.Endpoints {
		add(Need{Name: name, Kind: Written, Use: "endpoints", Type: "String", Value: c.Endpoints[name]})
	}
	return slices.SortedFunc(maps.Values(byName), func(a, b Need) int { return strings.Compare(a.Name, b.Name) })
}

func envNeed(key string, v config.EnvVar) Need {
	n := Need{Name: v.Parameter, Kind: Required, Use: "env." + key, Type: "SecureString", Value: "<value>", Secret: true}
	switch {
	case v.Generate != "":
		n.Kind = Generated
	case v.Optional:
		n.Kind, n.Services = Optional, v.Services
	}
	return n
}

// Reader reads parameters, batched; *ssmparam.Store is one.
type Reader interface {
	GetMany(ctx context.Context, names []string) (map[string]ssmparam.Parameter, []string, error)
}

// Parameters reads every needed parameter (one batched, decrypted read)
// and gives a line for each: present and readable, or absent with what
// that means and the put-parameter command that creates it. The values
// bound for .env are registered with secrets whatever their SSM type.
// It also returns the values found, by name, for the checks that use them.
func Parameters(ctx context.Context, r Reader, needs []Need, secrets Secrets) ([]Check, map[string]string) {
	names := make([]string, 0, len(needs))
	for _, n := range needs {
		names = append(names, n.Name)
	}
	if len(names) == 0 {
		return []Check{Pass("ssm parameters", "the configuration reads none")}, nil
	}
	found, _, err := r.GetMany(ctx, names)
	if err != nil {
		return []Check{Failed("ssm parameters", readFailure(err, names))}, nil
	}
	out := make([]Check, 0, len(needs))
	values := map[string]string{}
	for _, n := range needs {
		p, ok := found[n.Name]
		if ok {
			if n.Secret {
				secrets.Add(p.Value)
			}
			values[n.Name] = p.Value
		}
		out = append(out, parameterCheck(n, p, ok))
	}
	return out, values
}

func readFailure(err error, names []string) string {
	if retry.Unreachable(err) {
		return fmt.Sprintf("%v; SSM cannot be reached from this host: check the network path to the SSM endpoint (NAT, VPC endpoint) and AWS_ENDPOINT_URL", err)
	}
	return fmt.Sprintf("%v; the instance role needs ssm:GetParameters on %s (and kms:Decrypt on the key of each SecureString): `monagent iam-policy` prints the statements",
		err, strings.Join(names, ", "))
}

func parameterCheck(n Need, p ssmparam.Parameter, found bool) Check {
	name := "ssm " + n.Name
	if found {
		return Pass(name, fmt.Sprintf("%s, version %d (%s)", p.Type, p.Version, n.Use))
	}
	create := putCommand(n.Name, n.Type, n.Value)
	switch n.Kind {
	case Optional:
		verb := "is"
		if len(n.Services) != 1 {
			verb = "are"
		}
		return Warning(name, fmt.Sprintf("does not exist, so %s %s left out rather than started with an empty value (the restart loop of seed section 7); %s names it; create it: %s",
			strings.Join(n.Services, ", "), verb, n.Use, create))
	case Generated:
		return Pass(name, fmt.Sprintf("does not exist yet; the env step generates it on the next run (%s)", n.Use))
	case Written:
		return Pass(name, "does not exist yet; the endpoints step writes it on the next run")
	}
	return Failed(name, fmt.Sprintf("does not exist, and %s needs it: a run stops at it; create it: %s", n.Use, create))
}
