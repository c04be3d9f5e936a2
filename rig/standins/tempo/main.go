// Command tempo is the test rig's stand-in for grafana/tempo (Tempo cannot be
// had here). It reads the same -config.file and answers what the seed stack's
// smoke tests and Grafana's Tempo datasource use:
//
//   - HTTP API on server.http_listen_port (3200): /ready (503 "Ingester not
//     ready: waiting for 15s after being ready" for
//     ingester.lifecycler.min_ready_duration after start, like the real one,
//     then 200 "ready"), /status, /status/version, /status/services,
//     /status/endpoints, /status/config, /api/echo, /api/status/buildinfo,
//     /api/search, /api/search/tags, /api/traces/{id} (404), /metrics;
//   - OTLP receivers: gRPC (cleartext HTTP/2) on the grpc endpoint (4317) and
//     HTTP on the http endpoint (4318, POST /v1/traces). Each export is
//     acknowledged and its payload appended to a file in the WAL directory.
//
// On start it creates the storage directories of its config and writes
// tempo_cluster_seed.json into the trace storage path (as Tempo does), so a
// volume on /var/tempo gets data.
package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"
)

const version = "2.6.1"

type endpoint struct {
	Endpoint string `yaml:"endpoint"`
}

type config struct {
	Server struct {
		HTTPListenAddress string `yaml:"http_listen_address"`
		HTTPListenPort    int    `yaml:"http_listen_port"`
	} `yaml:"server"`
	Distributor struct {
		Receivers struct {
			OTLP *struct {
				Protocols struct {
					GRPC *endpoint `yaml:"grpc"`
					HTTP *endpoint `yaml:"http"`
				} `yaml:"protocols"`
			} `yaml:"otlp"`
		} `yaml:"receivers"`
	} `yaml:"distributor"`
	Ingester struct {
		Lifecycler struct {
			MinReadyDuration time.Duration `yaml:"min_ready_duration"`
		} `yaml:"lifecycler"`
	} `yaml:"ingester"`
	Storage struct {
		Trace struct {
			Backend string `yaml:"backend"`
			Local   struct {
				Path string `yaml:"path"`
			} `yaml:"local"`
			WAL struct {
				Path string `yaml:"path"`
			} `yaml:"wal"`
		} `yaml:"trace"`
	} `yaml:"storage"`
	MetricsGenerator struct {
		Storage struct {
			Path string `yaml:"path"`
		} `yaml:"storage"`
	} `yaml:"metrics_generator"`

	raw []byte
}

func loadConfig(path string) (*config, error) {
	c := &config{}
	c.Server.HTTPListenPort = 3200
	c.Ingester.Lifecycler.MinReadyDuration = 15 * time.Second
	c.Storage.Trace.Backend = "local"
	c.Storage.Trace.Local.Path = "/var/tempo/traces"
	c.Storage.Trace.WAL.Path = "/var/tempo/wal"
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("failed to read configFile %s: %w", path, err)
		}
		if err := yaml.Unmarshal(b, c); err != nil {
			return nil, fmt.Errorf("failed to parse configFile %s: %w", path, err)
		}
		c.raw = b
	}
	return c, nil
}

// receivers returns the OTLP gRPC and HTTP listen addresses ("" when off).
func (c *config) receivers() (grpcAddr, httpAddr string) {
	o := c.Distributor.Receivers.OTLP
	if o == nil {
		return "", ""
	}
	if o.Protocols.GRPC != nil {
		grpcAddr = o.Protocols.GRPC.Endpoint
		if grpcAddr == "" {
			grpcAddr = "localhost:4317"
		}
	}
	if o.Protocols.HTTP != nil {
		httpAddr = o.Protocols.HTTP.Endpoint
		if httpAddr == "" {
			httpAddr = "localhost:4318"
		}
	}
	return grpcAddr, httpAddr
}

type server struct {
	cfg     *config
	start   time.Time
	now     func() time.Time
	mu      sync.Mutex // guards WAL appends
	exports atomic.Int64
	bytes   atomic.Int64
}

func newServer(cfg *config, now func() time.Time) *server {
	return &server{cfg: cfg, start: now(), now: now}
}

// prepareStorage creates the configured directories and the cluster seed file.
func (s *server) prepareStorage() error {
	for _, d := range []string{s.cfg.Storage.Trace.Local.Path, s.cfg.Storage.Trace.WAL.Path, s.cfg.MetricsGenerator.Storage.Path} {
		if d == "" {
			continue
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("failed to create storage directory: %w", err)
		}
	}
	seed := filepath.Join(s.cfg.Storage.Trace.Local.Path, "tempo_cluster_seed.json")
	if _, err := os.Stat(seed); err == nil {
		return nil
	}
	var uid [16]byte
	if f, err := os.Open("/dev/urandom"); err == nil {
		io.ReadFull(f, uid[:])
		f.Close()
	}
	b, _ := json.Marshal(map[string]any{
		"UID":        fmt.Sprintf("%x-%x-%x-%x-%x", uid[0:4], uid[4:6], uid[6:8], uid[8:10], uid[10:16]),
		"created_at": s.now().UTC().Format(time.RFC3339Nano),
		"version":    map[string]string{"version": version, "revision": "standin", "branch": "HEAD", "goVersion": "go"},
	})
	return os.WriteFile(seed, b, 0o644)
}

// appendWAL stores one received export.
func (s *server) appendWAL(proto string, body []byte) error {
	s.exports.Add(1)
	s.bytes.Add(int64(len(body)))
	dir := s.cfg.Storage.Trace.WAL.Path
	if dir == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := os.OpenFile(filepath.Join(dir, "otlp-"+proto+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	var hdr [12]byte
	binary.BigEndian.PutUint64(hdr[:8], uint64(s.now().UnixNano()))
	binary.BigEndian.PutUint32(hdr[8:], uint32(len(body)))
	_, err = f.Write(append(hdr[:], body...))
	return err
}

func (s *server) readyErr() error {
	if d := s.cfg.Ingester.Lifecycler.MinReadyDuration; s.now().Sub(s.start) < d {
		return fmt.Errorf("waiting for %v after being ready", d)
	}
	return nil
}

// apiHandler serves the HTTP API (port 3200).
func (s *server) apiHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, r *http.Request) {
		if err := s.readyErr(); err != nil {
			http.Error(w, "Ingester not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	services := []string{"server", "internal-server", "memberlist-kv", "ring", "overrides", "store", "distributor", "ingester", "querier", "query-frontend", "compactor", "metrics-generator", "usage-report"}
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "GET /status/version\nversion=%s, branch=HEAD, revision=standin\n\n", version)
		fmt.Fprint(w, "GET /status/services\n")
		for _, n := range services {
			fmt.Fprintf(w, "%s: Running\n", n)
		}
		fmt.Fprint(w, "\nGET /status/endpoints\n/ready\n/status\n/api/echo\n/api/search\n/api/traces/{traceID}\n/metrics\n")
	})
	mux.HandleFunc("GET /status/version", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"version": version, "revision": "standin", "branch": "HEAD", "buildUser": "monagent-rig", "buildDate": "", "goVersion": "go"})
	})
	mux.HandleFunc("GET /api/status/buildinfo", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"version": version, "revision": "standin", "branch": "HEAD", "buildUser": "monagent-rig", "buildDate": "", "goVersion": "go"})
	})
	mux.HandleFunc("GET /status/services", func(w http.ResponseWriter, r *http.Request) {
		for _, n := range services {
			fmt.Fprintf(w, "%s: Running\n", n)
		}
	})
	mux.HandleFunc("GET /status/endpoints", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "/ready\n/status\n/api/echo\n/api/search\n/api/traces/{traceID}\n/metrics\n")
	})
	mux.HandleFunc("GET /status/config", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write(s.cfg.raw)
	})
	mux.HandleFunc("GET /api/echo", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "echo")
	})
	mux.HandleFunc("GET /api/search", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"traces": []any{}, "metrics": map[string]any{"inspectedBytes": strconv.FormatInt(s.bytes.Load(), 10)}})
	})
	mux.HandleFunc("GET /api/search/tags", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"tagNames": []string{}})
	})
	mux.HandleFunc("GET /api/v2/search/tags", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"scopes": []any{}})
	})
	mux.HandleFunc("GET /api/traces/{id}", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "trace not found", http.StatusNotFound)
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		fmt.Fprintf(w, "# HELP tempo_build_info A metric with a constant '1' value labeled by version, revision, branch, and goversion from which tempo was built.\n# TYPE tempo_build_info gauge\ntempo_build_info{branch=\"HEAD\",revision=\"standin\",version=%q} 1\n", version)
		fmt.Fprintf(w, "# HELP tempo_distributor_push_requests_total OTLP export requests received (stand-in).\n# TYPE tempo_distributor_push_requests_total counter\ntempo_distributor_push_requests_total %d\n", s.exports.Load())
		fmt.Fprintf(w, "# HELP tempo_distributor_bytes_received_total The total number of proto bytes received per tenant\n# TYPE tempo_distributor_bytes_received_total counter\ntempo_distributor_bytes_received_total{tenant=\"single-tenant\"} %d\n", s.bytes.Load())
	})
	return mux
}

const maxBody = 16 << 20

// otlpHTTPHandler serves OTLP/HTTP (port 4318).
func (s *server) otlpHTTPHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := s.appendWAL("http", body); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		ct := r.Header.Get("Content-Type")
		w.Header().Set("Content-Type", ct)
		if ct == "application/json" {
			fmt.Fprint(w, "{}")
		} // an empty ExportTraceServiceResponse in protobuf is zero bytes
	})
	return mux
}

const grpcExport = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

// otlpGRPCHandler answers OTLP/gRPC exports over cleartext HTTP/2 (port 4317)
// with an empty ExportTraceServiceResponse and grpc-status 0.
func (s *server) otlpGRPCHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Trailer", "Grpc-Status, Grpc-Message")
		status, msg := "0", ""
		if r.Method != http.MethodPost || r.URL.Path != grpcExport {
			status, msg = "12", "unknown method "+r.URL.Path
		} else if body, err := io.ReadAll(io.LimitReader(r.Body, maxBody)); err != nil {
			status, msg = "13", err.Error()
		} else {
			// Strip the 5-byte gRPC message prefix of each message.
			var payload bytes.Buffer
			for len(body) >= 5 {
				n := int(binary.BigEndian.Uint32(body[1:5]))
				if 5+n > len(body) {
					break
				}
				payload.Write(body[5 : 5+n])
				body = body[5+n:]
			}
			if err := s.appendWAL("grpc", payload.Bytes()); err != nil {
				status, msg = "13", err.Error()
			}
		}
		w.WriteHeader(http.StatusOK)
		if status == "0" {
			w.Write([]byte{0, 0, 0, 0, 0}) // one empty message
		}
		w.Header().Set("Grpc-Status", status)
		w.Header().Set("Grpc-Message", msg)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "level=error ts=%s caller=main.go msg=\"error running Tempo\" err=%q\n", time.Now().UTC().Format(time.RFC3339Nano), err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, log io.Writer) error {
	fs := flag.NewFlagSet("tempo", flag.ContinueOnError)
	fs.SetOutput(log)
	cfgFile := fs.String("config.file", "", "configuration file to load")
	fs.Bool("config.expand-env", false, "ignored")
	fs.String("target", "all", "ignored: the stand-in is always single-binary")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		fmt.Printf("tempo, version %s (branch: HEAD, revision: standin)\n", version)
		return nil
	}
	cfg, err := loadConfig(*cfgFile)
	if err != nil {
		return err
	}
	s := newServer(cfg, time.Now)
	if err := s.prepareStorage(); err != nil {
		return err
	}
	grpcAddr, httpAddr := cfg.receivers()
	type srv struct {
		name, addr string
		h          http.Handler
		h2c        bool
	}
	servers := []srv{{"http API", net.JoinHostPort(cfg.Server.HTTPListenAddress, strconv.Itoa(cfg.Server.HTTPListenPort)), s.apiHandler(), false}}
	if grpcAddr != "" {
		servers = append(servers, srv{"OTLP gRPC receiver", grpcAddr, s.otlpGRPCHandler(), true})
	}
	if httpAddr != "" {
		servers = append(servers, srv{"OTLP HTTP receiver", httpAddr, s.otlpHTTPHandler(), false})
	}
	errc := make(chan error, len(servers))
	var started []*http.Server
	for _, sv := range servers {
		ln, err := net.Listen("tcp", sv.addr)
		if err != nil {
			return fmt.Errorf("%s: %w", sv.name, err)
		}
		hs := &http.Server{Handler: sv.h, ReadHeaderTimeout: 10 * time.Second}
		if sv.h2c {
			var p http.Protocols
			p.SetUnencryptedHTTP2(true)
			hs.Protocols = &p
		}
		started = append(started, hs)
		fmt.Fprintf(log, "level=info ts=%s caller=main.go msg=\"server listening\" component=%q addr=%s\n", time.Now().UTC().Format(time.RFC3339Nano), sv.name, ln.Addr())
		go func() { errc <- hs.Serve(ln) }()
	}
	fmt.Fprintf(log, "level=info ts=%s caller=main.go msg=\"Tempo started\"\n", time.Now().UTC().Format(time.RFC3339Nano))
	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, hs := range started {
		hs.Shutdown(sctx)
	}
	return nil
}
