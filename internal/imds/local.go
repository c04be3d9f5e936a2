package imds

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsimds "github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
)

// ProbeTimeout bounds the question "is this an EC2 instance?" of cloud:
// auto. IMDS answers in milliseconds where it exists; elsewhere the
// connection to 169.254.169.254 hangs or is refused.
const ProbeTimeout = 2 * time.Second

// Probe reads the identity with one short attempt; an error means no
// instance metadata here.
func Probe(ctx context.Context, c *awsimds.Client) (Identity, error) {
	ctx, cancel := context.WithTimeout(ctx, ProbeTimeout)
	defer cancel()
	doc, err := c.GetInstanceIdentityDocument(ctx, &awsimds.GetInstanceIdentityDocumentInput{}, func(o *awsimds.Options) {
		o.Retryer = aws.NopRetryer{}
	})
	if err != nil {
		return Identity{}, err
	}
	if doc.InstanceID == "" || doc.Region == "" || doc.AvailabilityZone == "" || doc.PrivateIP == "" {
		return Identity{}, errors.New("instance metadata: incomplete identity document")
	}
	return Identity{InstanceID: doc.InstanceID, Region: doc.Region, AZ: doc.AvailabilityZone, PrivateIP: doc.PrivateIP}, nil
}

// Local is the identity of a host off EC2: its host name stands for the
// instance id, its first global unicast address for the private IP, and
// region and zone are unknown (a configuration that uses them fails to
// expand, naming the key).
func Local() (Identity, error) {
	name, err := os.Hostname()
	if err != nil || strings.TrimSpace(name) == "" {
		return Identity{}, fmt.Errorf("host identity: no host name (%v); set one with hostnamectl", err)
	}
	return Identity{InstanceID: name, PrivateIP: localIP()}, nil
}

// localIP prefers an IPv4 address: it is what the guide's scrapers and
// curl lines use.
func localIP() string {
	ifaces, err := net.Interfaces()
	if err != nil {
		return ""
	}
	var addrs []net.Addr
	for _, i := range ifaces {
		// Container bridges and their veths are this host's own networks,
		// not an address anyone else reaches it by.
		if i.Flags&net.FlagUp == 0 || i.Flags&net.FlagLoopback != 0 || strings.HasPrefix(i.Name, "docker") ||
			strings.HasPrefix(i.Name, "br-") || strings.HasPrefix(i.Name, "veth") {
			continue
		}
		a, err := i.Addrs()
		if err == nil {
			addrs = append(addrs, a...)
		}
	}
	var v6 string
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok || !n.IP.IsGlobalUnicast() {
			continue
		}
		if n.IP.To4() != nil {
			return n.IP.String()
		}
		if v6 == "" {
			v6 = n.IP.String()
		}
	}
	return v6
}

// OnEC2 reports whether the firmware says this is an EC2 instance: Nitro
// instances name Amazon EC2 as the vendor, Xen ones carry amazon in the
// BIOS version; both have an instance id as the board's asset tag or a
// product UUID starting with ec2.
func OnEC2(root string) bool {
	read := func(name string) string {
		b, _ := os.ReadFile(filepath.Join(root, "/sys/class/dmi/id", name))
		return strings.ToLower(strings.TrimSpace(string(b)))
	}
	return read("sys_vendor") == "amazon ec2" || strings.Contains(read("bios_version"), "amazon") ||
		strings.HasPrefix(read("board_asset_tag"), "i-") || strings.HasPrefix(read("product_uuid"), "ec2")
}
