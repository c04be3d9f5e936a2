// Package imds reads the instance's identity from the EC2 instance metadata
// service, IMDSv2 only.
package imds

// Identity is what the metadata phase learns about this instance.
type Identity struct {
	InstanceID string `json:"instance_id"`
	Region     string `json:"region"`
	AZ         string `json:"availability_zone"`
	PrivateIP  string `json:"private_ip"`
}
