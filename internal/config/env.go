package config

import "path"

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
