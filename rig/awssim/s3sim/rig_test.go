package s3sim_test

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/monagent/monagent/rig/awssim"
	"github.com/monagent/monagent/rig/awssim/s3sim"
	"github.com/monagent/monagent/rig/awssim/simapi"
)

var testID = simapi.Identity{Region: "eu-west-1", AccountID: "123456789012"}

// rig is an S3 simulator behind a loopback server, recording what arrived.
type rig struct {
	sim *awssim.Server
	url string
	dir string
	s3  *s3.Client // path-style, no retries

	mu   sync.Mutex
	seen []seenRequest
}

type seenRequest struct {
	method, host, path, contentEncoding, payloadHash string
}

func newRig(t *testing.T) *rig { return startRig(t, t.TempDir(), false) }

func startRig(t *testing.T, dir string, tls bool) *rig {
	t.Helper()
	svc, err := s3sim.New(testID, dir)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{sim: awssim.NewServer(svc), dir: dir}
	h := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.seen = append(r.seen, seenRequest{req.Method, req.Host, req.URL.Path,
			req.Header.Get("Content-Encoding"), req.Header.Get("X-Amz-Content-Sha256")})
		r.mu.Unlock()
		r.sim.ServeHTTP(w, req)
	})
	var ts *httptest.Server
	if tls {
		ts = httptest.NewTLSServer(h)
	} else {
		ts = httptest.NewServer(h)
	}
	t.Cleanup(func() {
		ts.Close()
		if err := r.sim.Close(); err != nil {
			t.Error(err)
		}
	})
	r.url = ts.URL
	r.s3 = newClient(ts.URL, ts.Client(), aws.NopRetryer{}, true)
	return r
}

func (r *rig) requests() []seenRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]seenRequest(nil), r.seen...)
}

// newClient makes an SDK client; a nil retryer is the standard one with a
// short backoff.
func newClient(url string, hc *http.Client, retryer aws.Retryer, pathStyle bool) *s3.Client {
	if retryer == nil {
		retryer = retry.NewStandard(func(o *retry.StandardOptions) {
			o.Backoff = retry.NewExponentialJitterBackoff(50 * time.Millisecond)
		})
	}
	o := s3.Options{
		Region:       "eu-west-1",
		BaseEndpoint: aws.String(url),
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "AKIDTEST", SecretAccessKey: "secret"}, nil
		}),
		Retryer:      retryer,
		UsePathStyle: pathStyle,
	}
	if hc != nil {
		o.HTTPClient = hc
	}
	return s3.New(o)
}

func (r *rig) mkBucket(t *testing.T, name string) {
	t.Helper()
	if _, err := r.s3.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("CreateBucket %s: %v", name, err)
	}
}

func (r *rig) put(t *testing.T, bucket, key, body string) {
	t.Helper()
	_, err := r.s3.PutObject(context.Background(), &s3.PutObjectInput{
		Bucket: aws.String(bucket), Key: aws.String(key), Body: stringsReader(body),
	})
	if err != nil {
		t.Fatalf("PutObject %s/%s: %v", bucket, key, err)
	}
}

func (r *rig) get(t *testing.T, bucket, key string) string {
	t.Helper()
	out, err := r.s3.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("GetObject %s/%s: %v", bucket, key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func md5hex(b []byte) string {
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}
