package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestListenAddrs(t *testing.T) {
	for _, tc := range []struct {
		listen string
		want   []string
	}{
		{"local", []string{"127.0.0.1:9193", "[::1]:9193"}},
		{"network", []string{":9193"}},
		{"10.0.0.1, 127.0.0.1", []string{"10.0.0.1:9193", "127.0.0.1:9193"}},
	} {
		got, err := listenAddrs(tc.listen, 9193)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("listenAddrs(%q) = %v, %v; want %v", tc.listen, got, err, tc.want)
		}
	}
	if _, err := listenAddrs("local", 0); err == nil {
		t.Error("port 0 accepted")
	}
	if _, err := listenAddrs(" , ", 9193); err == nil {
		t.Error("empty address list accepted")
	}
}

func TestServeAnswersSSLRequest(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var log bytes.Buffer
	go func() { done <- serve(ctx, []string{addr}, &log) }()
	var c net.Conn
	for deadline := time.Now().Add(5 * time.Second); ; {
		if c, err = net.Dial("tcp", addr); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f})
	b := make([]byte, 1)
	if _, err := c.Read(b); err != nil || b[0] != 'N' {
		t.Fatalf("SSLRequest answer %q, %v; want N", b, err)
	}
	c.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "Steampipe service is running") {
		t.Errorf("log: %s", log.String())
	}
}

func TestRunRejects(t *testing.T) {
	for _, args := range [][]string{
		nil,
		{"query", "select 1"},
		{"service", "start", "--database-port", "9193"}, // not --foreground
		{"service", "start", "--foreground", "--bogus"},
	} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 1 {
			t.Errorf("run(%q) = %d, want 1", args, code)
		}
	}
	var out bytes.Buffer
	if code := run([]string{"--version"}, &out, &out); code != 0 || !strings.HasPrefix(out.String(), "Steampipe v") {
		t.Errorf("--version: %d %q", code, out.String())
	}
}

func TestConfigConnections(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "aws.spc"), []byte(`
# comment
connection "aws_all" {
  plugin      = "aws"
  type        = "aggregator"
}
connection "aws_monitoring" {
  plugin  = "aws"
  regions = ["eu-west-1"]
}
`), 0o644)
	os.WriteFile(filepath.Join(dir, "default.spc"), []byte("options \"general\" {\n update_check = false\n}\n"), 0o644)
	got := configConnections(dir)
	want := []connection{{"aws_all", "aws"}, {"aws_monitoring", "aws"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}
