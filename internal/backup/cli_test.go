package backup

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// ageCLI is Debian's age, which scripts/setup.sh installs.
const ageCLI = "/usr/bin/age"

// TestAgeCLI shows that an operator opens an archive without monagent:
// age -d -i key.txt archive | tar -xz.
func TestAgeCLI(t *testing.T) {
	requireRoot(t)
	if _, err := os.Stat(ageCLI); err != nil {
		t.Fatalf("the age CLI is missing (%v): scripts/setup.sh installs it (apt-get install age)", err)
	}
	id := newIdentity(t)
	src := t.TempDir()
	parts := sampleTree(t, src)
	data, m := pack(t, id, parts)

	dir := t.TempDir()
	archive := filepath.Join(dir, ArchiveName("test", m.Created))
	keyFile := filepath.Join(dir, "key.txt")
	writeFile(t, archive, data, 0o600, 0)
	writeFile(t, keyFile, []byte("# public key: "+id.Recipient().String()+"\n"+id.String()+"\n"), 0o600, 0)

	list := pipeline(t, "", "age -d -i "+keyFile+" "+archive+" | tar -tz")
	var got []string
	for line := range strings.Lines(list) {
		got = append(got, strings.TrimSuffix(strings.TrimSpace(line), "/"))
	}
	want := []string{}
	for _, e := range m.Entries {
		want = append(want, e.Name)
	}
	want = append(want, ManifestName)
	if !slices.Equal(got, want) {
		t.Errorf("age -d | tar -tz lists\n%q\nwant\n%q", got, want)
	}

	// tar extracts the same tree as Unpack, owners, modes and mtimes
	// included.
	out := t.TempDir()
	pipeline(t, out, "age -d -i "+keyFile+" "+archive+" | tar -xzp --numeric-owner")
	tree := snapshot(t, out, "")
	if _, err := os.Stat(filepath.Join(out, ManifestName)); err != nil {
		t.Errorf("tar did not extract the manifest: %v", err)
	}
	delete(tree, ManifestName)
	for name, w := range wantTree(t, parts) {
		if tree[name] != w {
			t.Errorf("tar extracted %s as %+v, want %+v", name, tree[name], w)
		}
	}
}

// pipeline runs a shell pipeline in dir and returns its output.
func pipeline(t *testing.T, dir, script string) string {
	t.Helper()
	cmd := exec.Command("/bin/bash", "-o", "pipefail", "-c", script)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", script, err, stderr.Bytes())
	}
	return stdout.String()
}
