package ebs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/monagent/monagent/internal/retry"
)

func TestRenderFstab(t *testing.T) {
	e := FstabEntry{UUID: "1111-aaaa", MountPoint: "/data", FSType: "xfs", Options: "defaults,nofail"}
	line := "UUID=1111-aaaa /data xfs defaults,nofail 0 2"
	tests := []struct {
		name string
		old  string
		want string // "" means unchanged
	}{
		{name: "empty", old: "", want: line + "\n"},
		{
			name: "keeps unrelated lines byte for byte, no trailing newline",
			old:  "# /etc/fstab\n\n  # indented comment\nUUID=root-uuid   /\txfs  defaults,noatime 1 1\n/dev/xvdg /srv ext4 defaults 0 0",
			want: "# /etc/fstab\n\n  # indented comment\nUUID=root-uuid   /\txfs  defaults,noatime 1 1\n/dev/xvdg /srv ext4 defaults 0 0\n" + line + "\n",
		},
		{
			name: "replaces a device path line in place",
			old:  "# c\n/dev/xvdf /data xfs defaults 0 0\nLABEL=x /srv ext4 defaults 0 0\n",
			want: "# c\n" + line + "\nLABEL=x /srv ext4 defaults 0 0\n",
		},
		{
			name: "replaces LABEL and old UUID lines, drops duplicates",
			old:  "LABEL=data /data xfs defaults 0 0\nUUID=old /data/ xfs defaults 0 0\nUUID=1111-aaaa /mnt/other xfs defaults 0 0\n",
			want: line + "\n",
		},
		{
			name: "quoted and by-uuid spellings of the same filesystem",
			old:  "UUID=\"1111-AAAA\" /old xfs defaults 0 0\n/dev/disk/by-uuid/1111-aaaa /old2 xfs defaults 0 0\n/dev/sda1 / ext4 defaults 0 1\n",
			want: line + "\n/dev/sda1 / ext4 defaults 0 1\n",
		},
		{name: "already right", old: "# c\n" + line + "\n"},
		{name: "already right, other whitespace, no newline", old: "UUID=1111-aaaa\t/data  xfs defaults,nofail\t0 2"},
		{
			name: "missing nofail",
			old:  "UUID=1111-aaaa /data xfs defaults 0 2\n",
			want: line + "\n",
		},
		{
			name: "commented out line for the mount point is kept",
			old:  "#/dev/xvdf /data xfs defaults 0 0\n",
			want: "#/dev/xvdf /data xfs defaults 0 0\n" + line + "\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(RenderFstab([]byte(tt.old), e))
			want := tt.want
			if want == "" {
				want = tt.old
			}
			if got != want {
				t.Errorf("RenderFstab:\n got %q\nwant %q", got, want)
			}
			n := 0
			for _, l := range strings.Split(got, "\n") {
				if e.owns(l) {
					n++
				}
			}
			if n != 1 {
				t.Errorf("%d lines for /data in %q", n, got)
			}
		})
	}
}

func TestFstabEntryEscapes(t *testing.T) {
	e := FstabEntry{UUID: "u", MountPoint: "/my data", FSType: "ext4", Options: "defaults,nofail"}
	if got, want := e.Line(), `UUID=u /my\040data ext4 defaults,nofail 0 2`; got != want {
		t.Fatalf("Line() = %q, want %q", got, want)
	}
	if !e.owns(`/dev/xvdf /my\040data ext4 defaults 0 0`) {
		t.Fatal("escaped mount point not recognised")
	}
}

func TestUpdateFstab(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "fstab")
	e := FstabEntry{UUID: "1111-aaaa", MountPoint: "/data", FSType: "xfs", Options: "defaults,nofail"}
	old := "# keep\t me \nproc /proc proc defaults 0 0"
	if err := os.WriteFile(path, []byte(old), 0o640); err != nil {
		t.Fatal(err)
	}
	changed, err := UpdateFstab(path, e)
	if err != nil || !changed {
		t.Fatalf("UpdateFstab = %v, %v; want a change", changed, err)
	}
	got, _ := os.ReadFile(path)
	if want := old + "\n" + e.Line() + "\n"; string(got) != want {
		t.Fatalf("fstab = %q, want %q", got, want)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("mode = %v, want 0640 kept", fi.Mode().Perm())
	}
	if ok, err := FstabConverged(path, e); !ok || err != nil {
		t.Errorf("FstabConverged = %v, %v after update", ok, err)
	}
	before, _ := os.Stat(path)
	if changed, err := UpdateFstab(path, e); changed || err != nil {
		t.Fatalf("second UpdateFstab = %v, %v; want no change", changed, err)
	}
	after, _ := os.Stat(path)
	if !os.SameFile(before, after) {
		t.Error("an unchanged fstab was rewritten")
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("temp files left behind: %v", ents)
	}

	newPath := filepath.Join(dir, "new", "fstab")
	if ok, err := FstabConverged(newPath, e); ok || err != nil {
		t.Errorf("FstabConverged on a missing file = %v, %v", ok, err)
	}
	if _, err := UpdateFstab(newPath, e); err != nil {
		t.Fatal(err)
	}
	fi, _ = os.Stat(newPath)
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("new fstab mode = %v, want 0644", fi.Mode().Perm())
	}
}

// TestUpdateFstabKeepsOwner: the rewritten fstab keeps the owner and mode
// of the file it replaces, not those of the process.
func TestUpdateFstabKeepsOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown to another user needs root")
	}
	path := filepath.Join(t.TempDir(), "fstab")
	if err := os.WriteFile(path, []byte("proc /proc proc defaults 0 0\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, 1234, 2345); err != nil {
		t.Fatal(err)
	}
	e := FstabEntry{UUID: "1111-aaaa", MountPoint: "/data", FSType: "xfs", Options: "defaults,nofail"}
	if changed, err := UpdateFstab(path, e); err != nil || !changed {
		t.Fatalf("UpdateFstab = %v, %v; want a change", changed, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != 1234 || st.Gid != 2345 || fi.Mode().Perm() != 0o640 {
		t.Errorf("fstab owner %d:%d mode %v, want 1234:2345 0640 kept", st.Uid, st.Gid, fi.Mode().Perm())
	}
}

func TestMountAndFstabOptions(t *testing.T) {
	tests := []struct{ in, mount, fstab string }{
		{"", "defaults", "defaults,nofail"},
		{"defaults,nofail", "defaults", "defaults,nofail"},
		{"nofail", "defaults", "nofail"},
		{"noatime, nofail ,inode64", "noatime,inode64", "noatime,nofail,inode64"},
		{"noatime", "noatime", "noatime,nofail"},
	}
	for _, tt := range tests {
		if got := MountOptions(tt.in); got != tt.mount {
			t.Errorf("MountOptions(%q) = %q, want %q", tt.in, got, tt.mount)
		}
		if got := FstabOptions(tt.in); got != tt.fstab {
			t.Errorf("FstabOptions(%q) = %q, want %q", tt.in, got, tt.fstab)
		}
	}
}

func TestParseMountInfo(t *testing.T) {
	m, ok := parseMountInfo(`42 27 259:3 / /srv/my\040data rw,relatime shared:1 master:2 - xfs /dev/nvme1n1 rw,inode64`)
	if !ok {
		t.Fatal("not parsed")
	}
	want := Mount{Major: 259, Minor: 3, MountPoint: "/srv/my data", FSType: "xfs", Source: "/dev/nvme1n1"}
	if m != want {
		t.Fatalf("got %+v, want %+v", m, want)
	}
	for _, bad := range []string{"", "1 2 3", "42 27 x:3 / /data rw - xfs /dev/x rw"} {
		if _, ok := parseMountInfo(bad); ok {
			t.Errorf("parsed %q", bad)
		}
	}
}

func TestLookupOwner(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "etc", "passwd"), "root:x:0:0:root:/root:/bin/sh\n# comment\nec2-user:x:1000:1001::/home/ec2-user:/bin/bash\n")
	writeFile(t, filepath.Join(root, "etc", "group"), "root:x:0:\nec2-user:x:1001:\ndocker:x:990:ec2-user\n")
	tests := []struct {
		spec    string
		want    Owner
		wantErr string
	}{
		{spec: "ec2-user", want: Owner{1000, 1001}},
		{spec: "ec2-user:docker", want: Owner{1000, 990}},
		{spec: "ec2-user:42", want: Owner{1000, 42}},
		{spec: "65534:65534", want: Owner{65534, 65534}},
		{spec: "1000", want: Owner{1000, 1001}},
		{spec: "grafana", wantErr: "grafana"},
		{spec: "ec2-user:nogroup", wantErr: "nogroup"},
		{spec: "4242", wantErr: "uid:gid"},
		{spec: "ec2-user:", wantErr: "want user"},
	}
	for _, tt := range tests {
		got, err := LookupOwner(root, tt.spec)
		switch {
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("LookupOwner(%q) = %v, %v; want error naming %q", tt.spec, got, err, tt.wantErr)
		case tt.wantErr == "" && (err != nil || got != tt.want):
			t.Errorf("LookupOwner(%q) = %v, %v; want %v", tt.spec, got, err, tt.want)
		}
	}
}

func TestFindDevice(t *testing.T) {
	const serial = "vol0123456789abcdef0"
	tests := []struct {
		name    string
		files   map[string]string // path under root -> content; "->x" makes a symlink to x
		want    string            // under root
		proof   Proof
		wantErr error
	}{
		{
			name: "by-id link",
			files: map[string]string{
				"dev/nvme1n1": "",
				"dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_" + serial: "->../../nvme1n1",
				"dev/xvdf": "->nvme2n1", // a stale name must not win
			},
			want: "dev/nvme1n1",
		},
		{
			name: "NVMe serial in sysfs",
			files: map[string]string{
				"sys/class/block/nvme0n1/device/serial": "vol0aaaaaaaaaaaaaaaa\n",
				"sys/class/block/nvme3n1/device/serial": serial + "    \n",
				"dev/nvme0n1":                           "",
				"dev/nvme3n1":                           "",
			},
			want: "dev/nvme3n1",
		},
		{
			name: "namespace other than n1",
			files: map[string]string{
				"sys/class/block/nvme3n1/device/serial": "vol0aaaaaaaaaaaaaaaa\n",
				"sys/class/block/nvme4n2/device/serial": serial + "\n",
				"dev/nvme3n1":                           "",
				"dev/nvme4n2":                           "",
			},
			want: "dev/nvme4n2",
		},
		{
			name: "native multipath: the head, not a path device or a partition",
			files: map[string]string{
				"sys/class/block/nvme0c0n1/device/serial": serial + "\n",
				"sys/class/block/nvme0n1p1/device/serial": serial + "\n",
				"sys/class/block/nvme0n1p1/partition":     "1\n",
				"sys/class/block/nvme0n1/device/serial":   serial + "\n",
				"dev/nvme0c0n1":                           "",
				"dev/nvme0n1p1":                           "",
				"dev/nvme0n1":                             "",
			},
			want: "dev/nvme0n1",
		},
		{
			name:  "configured name",
			files: map[string]string{"dev/xvdf": ""},
			want:  "dev/xvdf",
			proof: byName,
		},
		{
			name:  "twin name",
			files: map[string]string{"dev/sdf": ""},
			want:  "dev/sdf",
			proof: byName,
		},
		{
			name: "configured name is another volume",
			files: map[string]string{
				"dev/xvdf":                              "->nvme2n1",
				"dev/nvme2n1":                           "",
				"sys/class/block/nvme2n1/device/serial": "vol0bbbbbbbbbbbbbbbb\n",
			},
			wantErr: &retry.Permanent{},
		},
		{
			name: "serial matches",
			files: map[string]string{
				"dev/xvdf":                              "->nvme2n1",
				"dev/nvme2n1":                           "",
				"sys/class/block/nvme2n1/device/serial": serial + "\n",
			},
			want: "dev/nvme2n1",
		},
		{name: "nothing yet", files: map[string]string{"dev/xvdg": ""}, wantErr: ErrDeviceNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			for p, c := range tt.files {
				full := filepath.Join(root, p)
				if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
					t.Fatal(err)
				}
				if target, ok := strings.CutPrefix(c, "->"); ok {
					if err := os.Symlink(target, full); err != nil {
						t.Fatal(err)
					}
					continue
				}
				writeFile(t, full, c)
			}
			got, proof, err := FindDevice(root, testVolID, "/dev/xvdf")
			if tt.wantErr != nil {
				var p *retry.Permanent
				if errors.As(tt.wantErr, &p) && !errors.As(err, &p) || !errors.As(tt.wantErr, &p) && !errors.Is(err, tt.wantErr) {
					t.Fatalf("FindDevice = %q, %v; want %v", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want, _ := filepath.EvalSymlinks(filepath.Join(root, tt.want))
			if got != want || proof != tt.proof {
				t.Fatalf("FindDevice = %q (proof %d), want %q (proof %d)", got, proof, want, tt.proof)
			}
		})
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
