package instance

import (
	"io"
	"os"
	"regexp"
	"strings"
)

// ansiEscape matches the colour and cursor sequences systemd writes to a
// terminal console.
var ansiEscape = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`)

// tailFile returns the last n lines of the file at path, without terminal
// escape sequences, or a note saying why it could not be read.
func tailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	defer f.Close()
	const max = 64 * 1024
	if st, err := f.Stat(); err == nil && st.Size() > max {
		if _, err := f.Seek(-max, io.SeekEnd); err != nil {
			return "(" + err.Error() + ")"
		}
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	return tailString(string(b), n)
}

// tailString returns the last n lines of s, cleaned of terminal escapes
// and carriage returns, each indented for a failure message.
func tailString(s string, n int) string {
	s = ansiEscape.ReplaceAllString(s, "")
	s = strings.ReplaceAll(s, "\r", "")
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	if len(lines) == 1 && lines[0] == "" {
		return "\t(empty)"
	}
	return "\t" + strings.Join(lines, "\n\t")
}
