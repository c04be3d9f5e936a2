package config

import (
	"path"
	"slices"
)

// Generators for EnvVar.Generate. The first three draw 32 bytes from
// crypto/rand.
const (
	GenerateHex32  = "hex32"     // 64 lowercase hex digits
	GenerateBase64 = "base64_32" // 44 characters of standard, padded base64
	// GeneratePassword is a base64_32 password whose bcrypt hash the
	// templates can use (Prometheus web.yml's basic_auth_users).
	GeneratePassword = "password"
	// GenerateAge is an age X25519 identity (AGE-SECRET-KEY-1...), for
	// the backup archives.
	GenerateAge = "age"
)

// Clouds for Config.Cloud.
const (
	CloudAWS  = "aws"
	CloudNone = "none"
	CloudAuto = "auto"
)

// Volume kinds for Volume.Kind.
const (
	VolumeEBS       = "ebs"
	VolumeDevice    = "device"
	VolumeDirectory = "directory"
)

// Smoke profiles for Smoke.Profile.
const (
	ProfileSeed = "seed"
	ProfileACGS = "acgs"
)

// Local reports whether the configuration runs without AWS.
func (c *Config) Local() bool { return c.Cloud == CloudNone }

// VolumeKind is Volume.Kind with its default filled in.
func (c *Config) VolumeKind() string {
	switch {
	case c.Volume.Kind != "":
		return c.Volume.Kind
	case c.Local():
		return VolumeDirectory
	}
	return VolumeEBS
}

// EnvFilePath is where the environment file goes.
func (c *Config) EnvFilePath() string {
	if c.Compose.EnvFile != "" {
		return c.Compose.EnvFile
	}
	return path.Join(c.Bundle.Dir, ".env")
}

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
	if c.Local() {
		return nil
	}
	var names []string
	if c.VolumeKind() == VolumeEBS && c.Volume.ID == "" {
		names = append(names, c.Volume.IDParameter)
	}
	if c.Bundle.Bucket == "" && c.Bundle.Source == "" {
		names = append(names, c.Bundle.BucketParameter)
	}
	if v := c.Bundle.VersionParameter; v != "" && c.Bundle.Source == "" {
		names = append(names, v)
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
