package config

import (
	"path"
	"slices"
)

// Generators for EnvVar.Generate. Both draw 32 bytes from crypto/rand.
const (
	GenerateHex32  = "hex32"     // 64 lowercase hex digits
	GenerateBase64 = "base64_32" // 44 characters of standard, padded base64
)

// InEnv reports whether the value belongs in .env; env: false keeps a
// value that is only written to its file out of it.
func (e EnvVar) InEnv() bool { return e.Env == nil || *e.Env }

// StackDataDir is where the stack's named volumes live on the data volume.
func (c *Config) StackDataDir() string {
	if c.Compose.DataDir != "" {
		return c.Compose.DataDir
	}
	return path.Join(c.Volume.MountPoint, c.Compose.Project)
}

// Signals reports whether bootstrap sends the CloudFormation signal: it
// needs both the stack name and the resource's logical id.
func (s Stack) Signals() bool { return s.Name != "" && s.Resource != "" }

// Parameters lists every SSM parameter the configuration reads, sorted:
// the run reads them in one batched call at its start, and the instance
// role's policy grants exactly these.
func (c *Config) Parameters() []string {
	var names []string
	if c.Volume.ID == "" {
		names = append(names, c.Volume.IDParameter)
	}
	if c.Bundle.Bucket == "" {
		names = append(names, c.Bundle.BucketParameter)
	}
	for _, v := range c.Env {
		if v.Parameter != "" {
			names = append(names, v.Parameter)
		}
	}
	for n := range c.Endpoints {
		names = append(names, n)
	}
	slices.Sort(names)
	return slices.Compact(names)
}
