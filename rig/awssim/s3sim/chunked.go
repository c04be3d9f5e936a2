package s3sim

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// isAWSChunked reports a body in the aws-chunked encoding: SigV4 streaming
// (signed chunks) or the SDK's unsigned payload with trailing checksums.
func isAWSChunked(r *http.Request) bool {
	return hasToken(r.Header.Get("Content-Encoding"), "aws-chunked") ||
		strings.HasPrefix(r.Header.Get("X-Amz-Content-Sha256"), "STREAMING-")
}

func hasToken(list, token string) bool {
	for _, t := range strings.Split(list, ",") {
		if strings.EqualFold(strings.TrimSpace(t), token) {
			return true
		}
	}
	return false
}

// storedEncoding is the Content-Encoding to keep: the request's without
// aws-chunked, which describes the transfer, not the object.
func storedEncoding(list string) string {
	var keep []string
	for _, t := range strings.Split(list, ",") {
		if t = strings.TrimSpace(t); t != "" && !strings.EqualFold(t, "aws-chunked") {
			keep = append(keep, t)
		}
	}
	return strings.Join(keep, ",")
}

// errChunk is a body that breaks the aws-chunked framing.
var errChunk = errors.New("malformed aws-chunked body")

// maxLine bounds a chunk header or trailer line.
const maxLine = 4096

// chunkedReader decodes an aws-chunked body: chunks of
// "<hex size>[;chunk-signature=<sig>]\r\n<data>\r\n", a zero-size chunk,
// then optional "name:value\r\n" trailers and a blank line. Signatures
// are not checked: awssim verifies no signature.
type chunkedReader struct {
	br       *bufio.Reader
	left     int64 // bytes left in the current chunk
	done     bool
	trailers map[string]string
}

func newChunkedReader(r io.Reader) *chunkedReader {
	return &chunkedReader{br: bufio.NewReaderSize(r, 64<<10), trailers: map[string]string{}}
}

func (c *chunkedReader) Read(p []byte) (int, error) {
	for c.left == 0 {
		if c.done {
			return 0, io.EOF
		}
		if err := c.next(); err != nil {
			return 0, err
		}
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.br.Read(p)
	c.left -= int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if c.left == 0 && err == nil {
		err = c.endChunk()
	}
	return n, err
}

// next reads a chunk header, or at the last chunk the trailers.
func (c *chunkedReader) next() error {
	line, err := c.line()
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF // the body ended without its last chunk
	}
	if err != nil {
		return err
	}
	sizeHex, _, _ := strings.Cut(line, ";")
	size, err := strconv.ParseInt(strings.TrimSpace(sizeHex), 16, 64)
	if err != nil || size < 0 {
		return fmt.Errorf("%w: chunk size %q", errChunk, sizeHex)
	}
	if size == 0 {
		c.done = true
		return c.readTrailers()
	}
	c.left = size
	return nil
}

func (c *chunkedReader) endChunk() error {
	line, err := c.line()
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	if err != nil {
		return err
	}
	if line != "" {
		return fmt.Errorf("%w: chunk data longer than its size", errChunk)
	}
	return nil
}

func (c *chunkedReader) readTrailers() error {
	for {
		line, err := c.line()
		if errors.Is(err, io.EOF) {
			return nil // the final blank line is optional in practice
		}
		if err != nil {
			return err
		}
		if line == "" {
			return nil
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			return fmt.Errorf("%w: trailer %q", errChunk, line)
		}
		c.trailers[strings.ToLower(strings.TrimSpace(name))] = strings.TrimSpace(value)
	}
}

// line reads one CRLF-terminated line without its terminator. A clean end
// of input is io.EOF; one inside a line is io.ErrUnexpectedEOF.
func (c *chunkedReader) line() (string, error) {
	b, err := c.br.ReadSlice('\n')
	switch {
	case errors.Is(err, bufio.ErrBufferFull) || len(b) > maxLine:
		return "", fmt.Errorf("%w: line too long", errChunk)
	case errors.Is(err, io.EOF) && len(b) == 0:
		return "", io.EOF
	case errors.Is(err, io.EOF):
		return "", io.ErrUnexpectedEOF
	case err != nil:
		return "", err
	}
	return strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r"), nil
}
