// Command promtail is the test rig's stand-in for grafana/promtail (Promtail
// is gone from Loki 3.7's source and its image cannot be pulled here). It
// reads the same -config.file and:
//
//   - serves server.http_listen_port (9080): /ready answers 200 "Ready" once at
//     least one file matches a scrape config's __path__ glob, else 500 "Not
//     ready: Unable to find any logs to tail. ...", like the real one;
//     /targets lists every scrape config with its targets (HTML, or JSON with
//     ?format=json or Accept: application/json); /metrics;
//   - every second, tails the matching files (re-globbed every 10 s, starting
//     at most 1 MiB before a file's end) and pushes new lines to each client
//     URL with Loki's JSON push API, labelled with the static labels and
//     filename. A scrape config with a json/docker/cri pipeline stage gets
//     Docker's JSON log lines decoded: the line is the "log" field, "stream"
//     becomes a label and "time" the timestamp (the seed's containers job).
//     Other pipeline stages are ignored;
//   - writes the read offsets to positions.filename.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html/template"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"
)

const (
	readyMsg    = "Ready"
	notReadyMsg = "Not ready: Unable to find any logs to tail. Please verify permissions, volumes, scrape_config, etc."
	maxBacklog  = 1 << 20 // bytes read from an existing file at first sight
	maxPending  = 10000   // entries kept while Loki does not accept them
)

type staticConfig struct {
	Targets []string          `yaml:"targets"`
	Labels  map[string]string `yaml:"labels"`
}

type scrapeConfig struct {
	JobName        string           `yaml:"job_name"`
	StaticConfigs  []staticConfig   `yaml:"static_configs"`
	PipelineStages []map[string]any `yaml:"pipeline_stages"`
}

type config struct {
	Server struct {
		HTTPListenAddress string `yaml:"http_listen_address"`
		HTTPListenPort    int    `yaml:"http_listen_port"`
		GRPCListenPort    int    `yaml:"grpc_listen_port"`
	} `yaml:"server"`
	Positions struct {
		Filename string `yaml:"filename"`
	} `yaml:"positions"`
	Clients []struct {
		URL string `yaml:"url"`
	} `yaml:"clients"`
	ScrapeConfigs []scrapeConfig `yaml:"scrape_configs"`
}

func loadConfig(path string) (*config, error) {
	c := &config{}
	c.Server.HTTPListenPort = 9080
	c.Positions.Filename = "/var/log/positions.yaml"
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("error loading config file %s: %w", path, err)
	}
	if err := yaml.Unmarshal(b, c); err != nil {
		return nil, fmt.Errorf("error parsing config file %s: %w", path, err)
	}
	for i, sc := range c.ScrapeConfigs {
		if sc.JobName == "" {
			return nil, fmt.Errorf("scrape config %d has no job_name", i)
		}
	}
	return c, nil
}

// dockerJSON reports whether a scrape config decodes Docker JSON log lines.
func (sc scrapeConfig) dockerJSON() bool {
	for _, st := range sc.PipelineStages {
		for k := range st {
			if k == "json" || k == "docker" || k == "cri" {
				return true
			}
		}
	}
	return false
}

type target struct {
	Job      string            `json:"job"`
	Path     string            `json:"path"`
	Labels   map[string]string `json:"labels"`
	Ready    bool              `json:"ready"`
	Offset   int64             `json:"offset"`
	docker   bool
	partial  []byte // an unterminated last line
	lastSeen time.Time
}

type glob struct {
	job     string
	pattern string
	labels  map[string]string
	docker  bool
}

type entry struct {
	labels string // canonical {k="v",...}
	lbls   map[string]string
	ts     time.Time
	line   string
}

type promtail struct {
	cfg    *config
	client *http.Client
	now    func() time.Time

	mu      sync.Mutex
	globs   []glob
	targets map[string]*target // by path
	pending []entry
	sent    int64
	dropped int64
	read    int64
	lastErr string
}

func newPromtail(cfg *config) *promtail {
	p := &promtail{cfg: cfg, client: &http.Client{Timeout: 10 * time.Second}, now: time.Now, targets: map[string]*target{}}
	for _, sc := range cfg.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			path := st.Labels["__path__"]
			if path == "" {
				continue
			}
			lbls := map[string]string{}
			for k, v := range st.Labels {
				if !strings.HasPrefix(k, "__") {
					lbls[k] = v
				}
			}
			p.globs = append(p.globs, glob{job: sc.JobName, pattern: path, labels: lbls, docker: sc.dockerJSON()})
		}
	}
	return p
}

// sync re-globs the paths: new files become targets, vanished ones go.
func (p *promtail) sync() {
	seen := map[string]bool{}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, g := range p.globs {
		matches, _ := filepath.Glob(g.pattern)
		for _, m := range matches {
			fi, err := os.Stat(m)
			if err != nil || !fi.Mode().IsRegular() {
				continue
			}
			seen[m] = true
			if _, ok := p.targets[m]; ok {
				continue
			}
			lbls := map[string]string{"filename": m}
			for k, v := range g.labels {
				lbls[k] = v
			}
			off := fi.Size() - maxBacklog
			if off < 0 {
				off = 0
			}
			p.targets[m] = &target{Job: g.job, Path: m, Labels: lbls, Ready: true, Offset: off, docker: g.docker}
		}
	}
	for path := range p.targets {
		if !seen[path] {
			delete(p.targets, path)
		}
	}
}

func (p *promtail) ready() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.targets) > 0
}

// readAll reads the new complete lines of every target into pending.
func (p *promtail) readAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, t := range p.targets {
		for _, e := range p.readTarget(t) {
			p.read++
			if len(p.pending) >= maxPending {
				p.pending = p.pending[1:]
				p.dropped++
			}
			p.pending = append(p.pending, e)
		}
	}
}

func (p *promtail) readTarget(t *target) []entry {
	f, err := os.Open(t.Path)
	if err != nil {
		t.Ready = false
		return nil
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil
	}
	if fi.Size() < t.Offset { // truncated or rotated
		t.Offset, t.partial = 0, nil
	}
	if fi.Size() == t.Offset {
		return nil
	}
	n := fi.Size() - t.Offset
	if n > 4<<20 {
		n = 4 << 20
	}
	buf := make([]byte, n)
	k, _ := f.ReadAt(buf, t.Offset)
	buf = buf[:k]
	t.Offset += int64(k)
	t.Ready = true
	data := append(t.partial, buf...)
	last := bytes.LastIndexByte(data, '\n')
	if last < 0 {
		t.partial = data
		return nil
	}
	t.partial = append([]byte(nil), data[last+1:]...)
	var out []entry
	for _, line := range strings.Split(string(data[:last]), "\n") {
		if line == "" {
			continue
		}
		out = append(out, makeEntry(t, line, p.now()))
	}
	return out
}

// makeEntry turns one line of a target into a log entry.
func makeEntry(t *target, line string, now time.Time) entry {
	lbls := t.Labels
	ts := now
	if t.docker {
		var d struct {
			Log    string `json:"log"`
			Stream string `json:"stream"`
			Time   string `json:"time"`
		}
		if json.Unmarshal([]byte(line), &d) == nil && (d.Log != "" || d.Stream != "") {
			line = strings.TrimRight(d.Log, "\n")
			if d.Stream != "" {
				lbls = map[string]string{"stream": d.Stream}
				for k, v := range t.Labels {
					lbls[k] = v
				}
			}
			if tt, err := time.Parse(time.RFC3339Nano, d.Time); err == nil {
				ts = tt
			}
		}
	}
	return entry{labels: labelString(lbls), lbls: lbls, ts: ts, line: line}
}

func labelString(l map[string]string) string {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", k, l[k])
	}
	b.WriteByte('}')
	return b.String()
}

// pushBody builds Loki's JSON push request for entries.
func pushBody(entries []entry) ([]byte, error) {
	type stream struct {
		Stream map[string]string `json:"stream"`
		Values [][2]string       `json:"values"`
	}
	var streams []*stream
	by := map[string]*stream{}
	for _, e := range entries {
		s := by[e.labels]
		if s == nil {
			s = &stream{Stream: e.lbls}
			by[e.labels] = s
			streams = append(streams, s)
		}
		s.Values = append(s.Values, [2]string{strconv.FormatInt(e.ts.UnixNano(), 10), e.line})
	}
	return json.Marshal(map[string]any{"streams": streams})
}

// push sends the pending entries (at most 1000 a request) to every client.
func (p *promtail) push(ctx context.Context) {
	p.mu.Lock()
	batch := p.pending
	if len(batch) > 1000 {
		batch = batch[:1000]
	}
	p.mu.Unlock()
	if len(batch) == 0 || len(p.cfg.Clients) == 0 {
		return
	}
	body, err := pushBody(batch)
	if err != nil {
		return
	}
	var failed error
	for _, c := range p.cfg.Clients {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, bytes.NewReader(body))
		if err != nil {
			failed = err
			continue
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("User-Agent", "promtail/3.0.0")
		resp, err := p.client.Do(req)
		if err != nil {
			failed = err
			continue
		}
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
			failed = fmt.Errorf("server returned HTTP status %s: %s", resp.Status, strings.TrimSpace(string(msg)))
		} else if resp.StatusCode >= 400 { // rejected for good (too old, too big): drop, like promtail
			p.mu.Lock()
			p.lastErr = fmt.Sprintf("final error sending batch: server returned HTTP status %s: %s", resp.Status, strings.TrimSpace(string(msg)))
			p.dropped += int64(len(batch))
			p.mu.Unlock()
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if failed != nil { // keep for a retry
		p.lastErr = "error sending batch, will retry: " + failed.Error()
		return
	}
	if p.lastErr == "" || strings.HasPrefix(p.lastErr, "error sending batch, will retry") {
		p.lastErr = ""
	}
	p.sent += int64(len(batch))
	p.pending = p.pending[len(batch):]
}

func (p *promtail) writePositions() error {
	path := p.cfg.Positions.Filename
	if path == "" {
		return nil
	}
	p.mu.Lock()
	var b strings.Builder
	b.WriteString("positions:\n")
	paths := make([]string, 0, len(p.targets))
	for k := range p.targets {
		paths = append(paths, k)
	}
	sort.Strings(paths)
	for _, k := range paths {
		fmt.Fprintf(&b, "  %s: \"%d\"\n", k, p.targets[k].Offset)
	}
	p.mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

type jobView struct {
	Job     string    `json:"job"`
	Globs   []string  `json:"paths"`
	Targets []*target `json:"targets"`
}

func (p *promtail) jobs() []jobView {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []jobView
	idx := map[string]int{}
	for _, sc := range p.cfg.ScrapeConfigs {
		idx[sc.JobName] = len(out)
		out = append(out, jobView{Job: sc.JobName, Targets: []*target{}})
	}
	for _, g := range p.globs {
		out[idx[g.job]].Globs = append(out[idx[g.job]].Globs, g.pattern)
	}
	paths := make([]string, 0, len(p.targets))
	for k := range p.targets {
		paths = append(paths, k)
	}
	sort.Strings(paths)
	for _, k := range paths {
		t := *p.targets[k]
		i := idx[t.Job]
		out[i].Targets = append(out[i].Targets, &t)
	}
	return out
}

var targetsPage = template.Must(template.New("targets").Parse(`<!DOCTYPE html>
<html><head><title>Promtail</title></head><body>
<h1>Targets</h1>
{{range .}}<h2 id="job-{{.Job}}">{{.Job}} ({{len .Targets}})</h2>
<p>paths: {{range .Globs}}<code>{{.}}</code> {{end}}</p>
<table><thead><tr><th>Path</th><th>State</th><th>Labels</th><th>Offset</th></tr></thead><tbody>
{{range .Targets}}<tr><td>{{.Path}}</td><td>{{if .Ready}}true{{else}}false{{end}}</td><td>{{range $k, $v := .Labels}}{{$k}}="{{$v}}" {{end}}</td><td>{{.Offset}}</td></tr>
{{end}}</tbody></table>
{{end}}</body></html>
`))

func (p *promtail) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, r *http.Request) {
		if !p.ready() {
			http.Error(w, notReadyMsg, http.StatusInternalServerError)
			return
		}
		io.WriteString(w, readyMsg)
	})
	mux.HandleFunc("GET /targets", func(w http.ResponseWriter, r *http.Request) {
		jobs := p.jobs()
		if r.URL.Query().Get("format") == "json" || strings.Contains(r.Header.Get("Accept"), "application/json") {
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]any{"scrapeConfigs": jobs})
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		targetsPage.Execute(w, jobs)
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		defer p.mu.Unlock()
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		fmt.Fprintf(w, "# HELP promtail_targets_active_total Number of active total.\n# TYPE promtail_targets_active_total gauge\npromtail_targets_active_total %d\n", len(p.targets))
		fmt.Fprintf(w, "# HELP promtail_read_lines_total Number of lines read.\n# TYPE promtail_read_lines_total counter\npromtail_read_lines_total %d\n", p.read)
		fmt.Fprintf(w, "# HELP promtail_sent_entries_total Number of log entries sent to the ingester.\n# TYPE promtail_sent_entries_total counter\npromtail_sent_entries_total %d\n", p.sent)
		fmt.Fprintf(w, "# HELP promtail_dropped_entries_total Number of log entries dropped.\n# TYPE promtail_dropped_entries_total counter\npromtail_dropped_entries_total %d\n", p.dropped)
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/targets", http.StatusFound)
	})
	return mux
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "level=error ts=%s msg=\"error creating promtail\" error=%q\n", time.Now().UTC().Format(time.RFC3339Nano), err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, log io.Writer) error {
	fs := flag.NewFlagSet("promtail", flag.ContinueOnError)
	fs.SetOutput(log)
	cfgFile := fs.String("config.file", "config.yml", "yaml file to load")
	fs.Bool("config.expand-env", false, "ignored")
	fs.Bool("dry-run", false, "ignored")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		fmt.Println("promtail, version 3.0.0 (branch: HEAD, revision: standin)")
		return nil
	}
	cfg, err := loadConfig(*cfgFile)
	if err != nil {
		return err
	}
	p := newPromtail(cfg)
	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.Server.HTTPListenAddress, strconv.Itoa(cfg.Server.HTTPListenPort)))
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: p.handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	fmt.Fprintf(log, "level=info ts=%s caller=server.go msg=\"server listening on addresses\" http=%s\n", time.Now().UTC().Format(time.RFC3339Nano), ln.Addr())
	fmt.Fprintf(log, "level=info ts=%s caller=main.go msg=\"Starting Promtail\" version=\"(version=3.0.0, branch=HEAD, revision=standin)\"\n", time.Now().UTC().Format(time.RFC3339Nano))

	p.sync()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var lastErr string
	for i := 1; ; i++ {
		select {
		case <-ctx.Done():
			p.writePositions()
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			srv.Shutdown(sctx)
			return nil
		case err := <-errc:
			if !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		case <-tick.C:
		}
		if i%10 == 0 {
			p.sync()
			if err := p.writePositions(); err != nil {
				fmt.Fprintf(log, "level=error msg=\"error writing positions file\" error=%q\n", err)
			}
		}
		p.readAll()
		p.push(ctx)
		p.mu.Lock()
		e := p.lastErr
		p.mu.Unlock()
		if e != "" && e != lastErr {
			fmt.Fprintf(log, "level=warn ts=%s component=client host=loki msg=%q\n", time.Now().UTC().Format(time.RFC3339Nano), e)
		}
		lastErr = e
	}
}
