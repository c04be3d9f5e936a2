package s3sim

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/monagent/monagent/rig/awssim/simapi"
	"gopkg.in/yaml.v3"
)

// seedSection is the scenario's "s3:" section.
type seedSection struct {
	Buckets []struct {
		Name    string `yaml:"name"`
		Objects []struct {
			Key         string `yaml:"key"`
			Body        string `yaml:"body"`
			ContentType string `yaml:"content_type"`
		} `yaml:"objects"`
		Dirs []struct {
			Path   string `yaml:"path"`
			Prefix string `yaml:"prefix"`
		} `yaml:"dirs"`
	} `yaml:"buckets"`
}

// Seed creates the buckets of a scenario's "s3:" section (those that exist
// are kept) and stores their objects, overwriting:
//
//	buckets:
//	  - name: scripts
//	    objects: [{key: a.txt, body: hello}]
//	    dirs: [{path: /work/shared/fixtures/seed-stack, prefix: scripts/}]
//
// dirs uploads every regular file under path, keyed prefix + its path
// relative to path with "/" separators.
func (s *Service) Seed(section *yaml.Node) error {
	var sec seedSection
	if err := simapi.DecodeStrict(section, &sec); err != nil {
		return fmt.Errorf("s3: %w", err)
	}
	for _, b := range sec.Buckets {
		if aerr := validBucketName(b.Name); aerr != nil {
			return fmt.Errorf("s3: bucket %q: %w", b.Name, aerr)
		}
		if aerr := s.addBucket(b.Name); aerr != nil && aerr.Code != "BucketAlreadyOwnedByYou" {
			return fmt.Errorf("s3: bucket %s: %w", b.Name, aerr)
		}
		for _, o := range b.Objects {
			ct := o.ContentType
			if ct == "" {
				ct = typeByName(o.Key)
			}
			if err := s.seedObject(b.Name, o.Key, ct, strings.NewReader(o.Body)); err != nil {
				return fmt.Errorf("s3: s3://%s/%s: %w", b.Name, o.Key, err)
			}
		}
		for _, d := range b.Dirs {
			if err := s.seedDir(b.Name, d.Path, d.Prefix); err != nil {
				return fmt.Errorf("s3: bucket %s: dir %s: %w", b.Name, d.Path, err)
			}
		}
	}
	return nil
}

func (s *Service) seedDir(bucketName, dir, prefix string) error {
	if dir == "" {
		return errors.New("empty path")
	}
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := os.Stat(p) // follows a symlink to its file
		if err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		key := prefix + filepath.ToSlash(rel)
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		return s.seedObject(bucketName, key, typeByName(key), f)
	})
}

func (s *Service) seedObject(bucketName, key, contentType string, body io.Reader) error {
	if key == "" {
		return errors.New("empty key")
	}
	if aerr := validKey(key); aerr != nil {
		return aerr
	}
	sp, err := s.spool(body)
	if err != nil {
		return err
	}
	o := &object{
		Key: key, Size: sp.size, ETag: etagOf(sp.md5), ContentType: contentType,
		LastModified: now(),
	}
	if aerr := s.commit(bucketName, o, sp); aerr != nil {
		return aerr
	}
	return nil
}

func typeByName(key string) string {
	if t := mime.TypeByExtension(path.Ext(key)); t != "" {
		return t
	}
	return "binary/octet-stream"
}
