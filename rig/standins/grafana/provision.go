package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Datasources and dashboards from the provisioning directory, read the way
// Grafana reads them: every *.yaml/*.yml file of provisioning/datasources and
// provisioning/dashboards. Datasource values are interpolated one by one
// after parsing, as Grafana does ($VAR, ${VAR}, $__env{VAR}, $__file{PATH};
// $$ is a literal $), so a value may expand to text YAML could not hold
// inline, such as a PEM certificate. Dashboard provider files are expanded
// ($VAR, ${VAR}) as a whole before parsing.

type datasource struct {
	ID             int64             `json:"id"`
	UID            string            `json:"uid"`
	OrgID          int64             `json:"orgId"`
	Name           string            `json:"name"`
	Type           string            `json:"type"`
	TypeName       string            `json:"typeName"`
	TypeLogoURL    string            `json:"typeLogoUrl"`
	Access         string            `json:"access"`
	URL            string            `json:"url"`
	User           string            `json:"user"`
	Database       string            `json:"database"`
	BasicAuth      bool              `json:"basicAuth"`
	BasicAuthUser  string            `json:"basicAuthUser"`
	IsDefault      bool              `json:"isDefault"`
	JSONData       map[string]any    `json:"jsonData"`
	ReadOnly       bool              `json:"readOnly"`
	SecureJSONData map[string]string `json:"-"`
}

type dsFile struct {
	APIVersion  int `yaml:"apiVersion"`
	Datasources []struct {
		Name           string            `yaml:"name"`
		Type           string            `yaml:"type"`
		UID            string            `yaml:"uid"`
		OrgID          int64             `yaml:"orgId"`
		Access         string            `yaml:"access"`
		URL            string            `yaml:"url"`
		User           string            `yaml:"user"`
		Database       string            `yaml:"database"`
		BasicAuth      bool              `yaml:"basicAuth"`
		BasicAuthUser  string            `yaml:"basicAuthUser"`
		IsDefault      bool              `yaml:"isDefault"`
		Editable       bool              `yaml:"editable"`
		JSONData       map[string]any    `yaml:"jsonData"`
		SecureJSONData map[string]string `yaml:"secureJsonData"`
	} `yaml:"datasources"`
}

var typeNames = map[string]string{
	"prometheus": "Prometheus", "loki": "Loki", "tempo": "Tempo", "cloudwatch": "CloudWatch",
	"postgres": "PostgreSQL", "grafana-postgresql-datasource": "PostgreSQL", "mysql": "MySQL",
	"elasticsearch": "Elasticsearch", "influxdb": "InfluxDB", "jaeger": "Jaeger", "zipkin": "Zipkin",
	"alertmanager": "Alertmanager", "graphite": "Graphite",
}

var envRef = regexp.MustCompile(`\$\$|\$\{(\w+)\}|\$(\w+)`)

// expandEnv expands $VAR and ${VAR}; $$ is a literal $.
func expandEnv(s string, getenv func(string) string) string {
	return envRef.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		name := strings.Trim(m, "${}")
		return getenv(name)
	})
}

func yamlFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if n := e.Name(); !e.IsDir() && (strings.HasSuffix(n, ".yaml") || strings.HasSuffix(n, ".yml")) {
			out = append(out, filepath.Join(dir, n))
		}
	}
	sort.Strings(out)
	return out, nil
}

// loadDatasources reads provisioning/datasources. Like Grafana it refuses a
// configuration with more than one default datasource in an organisation.
func loadDatasources(dir string, getenv func(string) string) ([]datasource, error) {
	files, err := yamlFiles(dir)
	if err != nil {
		return nil, err
	}
	var out []datasource
	defaults := map[int64]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var df dsFile
		if err := yaml.Unmarshal(b, &df); err != nil {
			return nil, fmt.Errorf("failed to load datasource configs from %s: %w", f, err)
		}
		for _, d := range df.Datasources {
			var err error
			in := func(s string) string {
				if err != nil {
					return s
				}
				s, err = interpolate(s, getenv)
				return s
			}
			d.Name, d.Type, d.UID, d.Access, d.URL = in(d.Name), in(d.Type), in(d.UID), in(d.Access), in(d.URL)
			d.User, d.Database, d.BasicAuthUser = in(d.User), in(d.Database), in(d.BasicAuthUser)
			for k, v := range d.SecureJSONData {
				d.SecureJSONData[k] = in(v)
			}
			if d.JSONData == nil {
				d.JSONData = map[string]any{}
			}
			d.JSONData = interpolateJSON(d.JSONData, in).(map[string]any)
			if err != nil {
				return nil, fmt.Errorf("failed to load datasource configs from %s: %w", f, err)
			}
			if d.Name == "" {
				return nil, fmt.Errorf("datasource in %s has no name", f)
			}
			org := d.OrgID
			if org == 0 {
				org = 1
			}
			if d.IsDefault {
				if prev, ok := defaults[org]; ok {
					return nil, fmt.Errorf("datasource.yaml config is invalid. Only one datasource per organization can be marked as default (%s and %s)", prev, d.Name)
				}
				defaults[org] = d.Name
			}
			uid := d.UID
			if uid == "" {
				h := sha256.Sum256([]byte(d.Name))
				uid = hex.EncodeToString(h[:])[:14]
			}
			access := d.Access
			if access == "" {
				access = "proxy"
			}
			tn := typeNames[d.Type]
			if tn == "" {
				tn = d.Type
			}
			jd := d.JSONData
			out = append(out, datasource{
				ID: int64(len(out) + 1), UID: uid, OrgID: org, Name: d.Name, Type: d.Type, TypeName: tn,
				TypeLogoURL: "public/app/plugins/datasource/" + d.Type + "/img/logo.svg",
				Access:      access, URL: d.URL, User: d.User, Database: d.Database, BasicAuth: d.BasicAuth, BasicAuthUser: d.BasicAuthUser,
				IsDefault: d.IsDefault, JSONData: jd, ReadOnly: !d.Editable, SecureJSONData: d.SecureJSONData,
			})
		}
	}
	return out, nil
}

// interpolateJSON interpolates the strings of jsonData and nothing else,
// so numbers and booleans keep their types, as in Grafana.
func interpolateJSON(v any, in func(string) string) any {
	switch v := v.(type) {
	case string:
		return in(v)
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			out[k] = interpolateJSON(x, in)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = interpolateJSON(x, in)
		}
		return out
	}
	return v
}

type provider struct {
	Name              string `yaml:"name"`
	OrgID             int64  `yaml:"orgId"`
	Folder            string `yaml:"folder"`
	FolderUID         string `yaml:"folderUid"`
	Type              string `yaml:"type"`
	DisableDeletion   bool   `yaml:"disableDeletion"`
	UpdateIntervalSec int    `yaml:"updateIntervalSeconds"`
	Options           struct {
		Path string `yaml:"path"`
	} `yaml:"options"`
}

func loadProviders(dir string, getenv func(string) string) ([]provider, error) {
	files, err := yamlFiles(dir)
	if err != nil {
		return nil, err
	}
	var out []provider
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var pf struct {
			Providers []provider `yaml:"providers"`
		}
		if err := yaml.Unmarshal([]byte(expandEnv(string(b), getenv)), &pf); err != nil {
			return nil, fmt.Errorf("failed to load dashboard providers from %s: %w", f, err)
		}
		for _, p := range pf.Providers {
			if p.Type == "" {
				p.Type = "file"
			}
			out = append(out, p)
		}
	}
	return out, nil
}

type fileDashboard struct {
	path, uid, title string
	tags             []string
	checksum         string
	data             map[string]any
}

// readDashboardFiles walks a provider's path for *.json dashboards.
func readDashboardFiles(root string, warn func(string, ...any)) []fileDashboard {
	var out []fileDashboard
	filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			warn("failed to read dashboards path %s: %v", path, err)
			return nil
		}
		if d.IsDir() || !strings.HasSuffix(d.Name(), ".json") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			warn("failed to read dashboard file %s: %v", path, err)
			return nil
		}
		var data map[string]any
		if err := json.Unmarshal(b, &data); err != nil {
			warn("failed to load dashboard from %s: %v", path, err)
			return nil
		}
		title, _ := data["title"].(string)
		if title == "" {
			warn("failed to load dashboard from %s: dashboard title cannot be empty", path)
			return nil
		}
		uid, _ := data["uid"].(string)
		if uid == "" {
			h := sha256.Sum256([]byte(path))
			uid = hex.EncodeToString(h[:])[:14]
		}
		sum := sha256.Sum256(b)
		out = append(out, fileDashboard{path: path, uid: uid, title: title, tags: stringList(data["tags"]), checksum: hex.EncodeToString(sum[:]), data: data})
		return nil
	})
	return out
}

func stringList(v any) []string {
	l, _ := v.([]any)
	out := []string{}
	for _, x := range l {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// syncDashboards brings the provisioned dashboards of the database in line
// with the providers' files.
func syncDashboards(s *dbState, providers []provider, now time.Time, warn func(string, ...any)) error {
	seen := map[string]bool{}
	for _, p := range providers {
		if p.Type != "file" || p.Options.Path == "" {
			continue
		}
		folderUID := ""
		if p.Folder != "" {
			folderUID = p.FolderUID
			if folderUID == "" {
				h := sha256.Sum256([]byte(p.Folder))
				folderUID = hex.EncodeToString(h[:])[:14]
			}
			if s.folderByUID(folderUID) == nil {
				s.Folders = append(s.Folders, folder{ID: s.allocID(), UID: folderUID, Title: p.Folder})
			}
		}
		for _, fd := range readDashboardFiles(p.Options.Path, warn) {
			if seen[fd.uid] {
				warn("the same UID is used more than once: uid=%s path=%s", fd.uid, fd.path)
				continue
			}
			seen[fd.uid] = true
			d := s.dashboardByUID(fd.uid)
			if d != nil && d.Provisioned && d.Checksum == fd.checksum && d.FolderUID == folderUID {
				continue
			}
			if d == nil {
				d = &dashboard{ID: s.allocID(), UID: fd.uid, Created: now.UTC()}
				s.Dashboards = append(s.Dashboards, d)
			}
			d.Title, d.Tags, d.FolderUID = fd.title, fd.tags, folderUID
			d.Provisioned, d.Provider, d.Path, d.Checksum = true, p.Name, fd.path, fd.checksum
			d.Version++
			d.Updated = now.UTC()
			fd.data["id"] = d.ID
			fd.data["uid"] = d.UID
			fd.data["version"] = d.Version
			raw, err := json.Marshal(fd.data)
			if err != nil {
				return err
			}
			d.Data = raw
		}
	}
	// Dashboards whose files are gone (a provider with disableDeletion keeps them).
	keep := map[string]bool{}
	for _, p := range providers {
		if p.DisableDeletion {
			keep[p.Name] = true
		}
	}
	out := s.Dashboards[:0]
	for _, d := range s.Dashboards {
		if d.Provisioned && !seen[d.UID] && !keep[d.Provider] {
			continue
		}
		out = append(out, d)
	}
	s.Dashboards = out
	return nil
}
