package backup

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/monagent/monagent/internal/retry"
)

// S3API is the part of *s3.Client an S3Store uses.
type S3API interface {
	PutObject(ctx context.Context, in *s3.PutObjectInput, optFns ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, optFns ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
	DeleteObject(ctx context.Context, in *s3.DeleteObjectInput, optFns ...func(*s3.Options)) (*s3.DeleteObjectOutput, error)
}

// maxPutObject is the largest object one PutObject stores.
const maxPutObject = 5 << 30

// S3Store keeps archives as objects under a prefix of a bucket.
//
// Put stages the archive in a temporary file and uploads it with one
// PutObject of known length: the SDK can then sign it, checksum it and
// resend it on a retry (a stream cannot be rewound), and a Pack that fails
// half way never reaches the bucket. The cost is the archive's size on the
// local disk for the upload's time, and PutObject's 5 GiB limit. A
// multipart upload would lift both, but it needs four more S3 operations
// and an abort on every path.
//
// The client's per-call timeout (awsclient's CallTimeout) bounds a whole
// upload or download, body included: give the store a client whose
// timeout fits an archive's transfer.
type S3Store struct {
	Client S3API
	Bucket string
	// Prefix is the "folder" of the archives: "" or a prefix that a "/"
	// ends (one is added if missing).
	Prefix string
	// TempDir is where Put stages an archive: a disk with room for one
	// (/tmp may be a tmpfs, in memory); "" is os.TempDir(). The file is
	// unlinked at once, so a crash leaves nothing behind.
	TempDir string
}

func (s S3Store) String() string { return "s3://" + s.Bucket + "/" + s.prefix() }

func (s S3Store) prefix() string {
	if s.Prefix == "" || strings.HasSuffix(s.Prefix, "/") {
		return s.Prefix
	}
	return s.Prefix + "/"
}

func (s S3Store) key(name string) string { return s.prefix() + name }

func (s S3Store) uri(name string) string { return "s3://" + s.Bucket + "/" + s.key(name) }

func (s S3Store) Put(ctx context.Context, name string, r io.Reader) error {
	if err := checkArchiveName(name); err != nil {
		return fmt.Errorf("put: %w", err)
	}
	f, err := os.CreateTemp(s.TempDir, ".monagent-backup-upload-*")
	if err != nil {
		return fmt.Errorf("put %s: stage the archive: %w", s.uri(name), err)
	}
	defer f.Close()
	if err := os.Remove(f.Name()); err != nil {
		return fmt.Errorf("put %s: stage the archive: %w", s.uri(name), err)
	}
	n, err := io.Copy(f, ctxReader{ctx, r})
	if err != nil {
		return fmt.Errorf("put %s: %w", s.uri(name), err)
	}
	if n > maxPutObject {
		return fmt.Errorf("put %s: the archive is %d bytes, more than the %d one PutObject stores: keep backups in a local directory, or leave large parts out", s.uri(name), n, int64(maxPutObject))
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("put %s: %w", s.uri(name), err)
	}
	_, err = s.Client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(s.Bucket), Key: aws.String(s.key(name)),
		Body: f, ContentLength: aws.Int64(n), ContentType: aws.String("application/octet-stream"),
	})
	if err != nil {
		return s3Error("put", s.uri(name), err)
	}
	return nil
}

func (s S3Store) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	if err := checkBase(name); err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	out, err := s.Client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String(s.key(name))})
	if err != nil {
		if retry.Code(err) == "NoSuchKey" {
			return nil, fmt.Errorf("open %s: %w (%v)", s.uri(name), fs.ErrNotExist, err)
		}
		return nil, s3Error("open", s.uri(name), err)
	}
	return out.Body, nil
}

// List reads every page of the prefix's listing, and keeps the archives
// directly under it.
func (s S3Store) List(ctx context.Context) ([]string, error) {
	var names []string
	p := s3.NewListObjectsV2Paginator(s.Client, &s3.ListObjectsV2Input{Bucket: aws.String(s.Bucket), Prefix: aws.String(s.prefix())})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, s3Error("list", s.String(), err)
		}
		for _, o := range page.Contents {
			names = append(names, strings.TrimPrefix(aws.ToString(o.Key), s.prefix()))
		}
	}
	return sortArchives(names), nil
}

func (s S3Store) Delete(ctx context.Context, name string) error {
	if err := checkArchiveName(name); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	if _, err := s.Client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String(s.key(name))}); err != nil {
		return s3Error("delete", s.uri(name), err)
	}
	return nil
}

// s3Error adds the likely fix to the errors an operator can fix.
func s3Error(op, uri string, err error) error {
	switch retry.Code(err) {
	case "NoSuchBucket":
		return fmt.Errorf("%s %s: %w (check the bucket's name)", op, uri, err)
	case "AccessDenied":
		return fmt.Errorf("%s %s: %w (the instance role needs s3:ListBucket on the bucket and s3:GetObject, s3:PutObject and s3:DeleteObject on the prefix)", op, uri, err)
	}
	return fmt.Errorf("%s %s: %w", op, uri, err)
}
