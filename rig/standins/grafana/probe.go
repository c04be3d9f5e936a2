package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// checkHealth probes a datasource over the network the way Grafana's health
// check does for its type, and returns ("OK"|"ERROR", message).
//
//   - prometheus: GET URL/api/v1/query?query=1%2B1
//   - loki:       GET URL/loki/api/v1/labels
//   - tempo:      GET URL/api/echo
//   - postgres, grafana-postgresql-datasource, mysql: a TCP connection to
//     host:port (the stand-in does not speak SQL)
//   - cloudwatch: a TCP connection to the region's CloudWatch endpoint (or
//     jsonData.endpoint) on 443; no credentials are checked
//   - anything else with a URL: GET URL, any status below 500
//
// HTTP probes use the datasource's HTTP settings as Grafana's proxy does:
// basicAuth with basicAuthUser and secureJsonData.basicAuthPassword;
// jsonData.tlsAuthWithCACert with secureJsonData.tlsCACert (PEM),
// jsonData.tlsAuth with secureJsonData.tlsClientCert/tlsClientKey,
// jsonData.tlsSkipVerify, jsonData.serverName.
func checkHealth(ctx context.Context, client *http.Client, ds datasource) (string, string) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	base := strings.TrimRight(ds.URL, "/")
	if strings.HasPrefix(base, "http") {
		c, err := datasourceClient(client, ds)
		if err != nil {
			return "ERROR", err.Error()
		}
		client = c
	}
	switch ds.Type {
	case "prometheus":
		if err := httpProbe(ctx, client, base+"/api/v1/query?query=1%2B1", nil); err != nil {
			return "ERROR", "There was an error returned querying the Prometheus API: " + err.Error()
		}
		return "OK", "Successfully queried the Prometheus API."
	case "loki":
		if err := httpProbe(ctx, client, base+"/loki/api/v1/labels", nil); err != nil {
			return "ERROR", "Unable to connect with Loki. Please check the server logs for more details: " + err.Error()
		}
		return "OK", "Data source successfully connected."
	case "tempo":
		if err := httpProbe(ctx, client, base+"/api/echo", func(b []byte) error {
			if strings.TrimSpace(string(b)) != "echo" {
				return fmt.Errorf("unexpected /api/echo answer %q", b)
			}
			return nil
		}); err != nil {
			return "ERROR", "failed to connect to Tempo: " + err.Error()
		}
		return "OK", "Data source successfully connected."
	case "postgres", "grafana-postgresql-datasource", "mysql":
		addr := ds.URL
		if u, err := url.Parse(ds.URL); err == nil && u.Host != "" {
			addr = u.Host
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			port := "5432"
			if ds.Type == "mysql" {
				port = "3306"
			}
			addr = net.JoinHostPort(addr, port)
		}
		if err := tcpProbe(ctx, addr); err != nil {
			return "ERROR", err.Error()
		}
		return "OK", "Database Connection OK"
	case "cloudwatch":
		region, _ := ds.JSONData["defaultRegion"].(string)
		if region == "" {
			region = "us-east-1"
		}
		host := "monitoring." + region + ".amazonaws.com"
		if ep, _ := ds.JSONData["endpoint"].(string); ep != "" {
			if u, err := url.Parse(ep); err == nil && u.Host != "" {
				host = u.Host
			}
		}
		if _, _, err := net.SplitHostPort(host); err != nil {
			host = net.JoinHostPort(host, "443")
		}
		if err := tcpProbe(ctx, host); err != nil {
			return "ERROR", "1. CloudWatch metrics query failed: " + err.Error() + "\n2. CloudWatch logs query failed: " + err.Error()
		}
		return "OK", "1. Successfully queried the CloudWatch metrics API.\n2. Successfully queried the CloudWatch logs API."
	}
	if ds.URL == "" {
		return "ERROR", "Health check not implemented for plugin " + ds.Type
	}
	if err := httpProbe(ctx, client, base, nil); err != nil {
		return "ERROR", err.Error()
	}
	return "OK", "Data source is working"
}

// datasourceClient is base with the datasource's TLS settings and basic
// auth; base itself when the datasource has neither.
func datasourceClient(base *http.Client, ds datasource) (*http.Client, error) {
	flag := func(k string) bool { b, _ := ds.JSONData[k].(bool); return b }
	secure := ds.SecureJSONData
	c := *base
	if flag("tlsAuthWithCACert") || flag("tlsAuth") || flag("tlsSkipVerify") || ds.JSONData["serverName"] != nil {
		cfg := &tls.Config{InsecureSkipVerify: flag("tlsSkipVerify")}
		cfg.ServerName, _ = ds.JSONData["serverName"].(string)
		if flag("tlsAuthWithCACert") {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM([]byte(secure["tlsCACert"])) {
				return nil, errors.New("failed to add CA certificate: secureJsonData.tlsCACert holds no PEM certificate")
			}
			cfg.RootCAs = pool
		}
		if flag("tlsAuth") {
			cert, err := tls.X509KeyPair([]byte(secure["tlsClientCert"]), []byte(secure["tlsClientKey"]))
			if err != nil {
				return nil, fmt.Errorf("invalid TLS client certificate or key: %w", err)
			}
			cfg.Certificates = []tls.Certificate{cert}
		}
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = cfg
		c.Transport = t
	}
	if ds.BasicAuth {
		next := c.Transport
		if next == nil {
			next = http.DefaultTransport
		}
		c.Transport = basicAuth{next, ds.BasicAuthUser, secure["basicAuthPassword"]}
	}
	return &c, nil
}

type basicAuth struct {
	next       http.RoundTripper
	user, pass string
}

func (b basicAuth) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.SetBasicAuth(b.user, b.pass)
	return b.next.RoundTrip(r)
}

func httpProbe(ctx context.Context, client *http.Client, u string, check func([]byte) error) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	if check != nil {
		return check(body)
	}
	return nil
}

func tcpProbe(ctx context.Context, addr string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return c.Close()
}
