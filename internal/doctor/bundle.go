package doctor

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/monagent/monagent/internal/retry"
)

// S3 is the part of *s3.Client the bundle check uses.
type S3 interface {
	ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, optFns ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
	HeadObject(ctx context.Context, in *s3.HeadObjectInput, optFns ...func(*s3.Options)) (*s3.HeadObjectOutput, error)
}

// Bundle asks what the bundle step needs of S3 (seed section 10, "S3
// scripts not accessible"): the prefix lists, and its first object can be
// read. HeadObject needs s3:GetObject and downloads nothing.
func Bundle(ctx context.Context, api S3, bucket, prefix string) Check {
	const name = "s3 bundle"
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	where := fmt.Sprintf("s3://%s/%s", bucket, prefix)
	out, err := api.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix), MaxKeys: aws.Int32(1)})
	if err != nil {
		return Failed(name, s3Failure(where, "list", "s3:ListBucket on arn:aws:s3:::"+bucket, err))
	}
	if len(out.Contents) == 0 {
		return Failed(name, fmt.Sprintf("%s holds no objects: upload the stack bundle there (aws s3 sync <stack dir> %s), or fix bundle.key_prefix", where, where))
	}
	key := aws.ToString(out.Contents[0].Key)
	if _, err := api.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)}); err != nil {
		return Failed(name, s3Failure("s3://"+bucket+"/"+key, "read", "s3:GetObject on arn:aws:s3:::"+bucket+"/"+prefix+"*", err))
	}
	return Pass(name, fmt.Sprintf("%s lists and its objects read (s3:ListBucket, s3:GetObject)", where))
}

func s3Failure(where, verb, permission string, err error) string {
	code := retry.Code(err)
	switch {
	case code == "NoSuchBucket":
		return fmt.Sprintf("cannot %s %s: the bucket does not exist (bundle.bucket, or the parameter bundle.bucket_parameter names)", verb, where)
	case slices.Contains(deniedCodes, code) || code == "Forbidden":
		return fmt.Sprintf("cannot %s %s (%s): the instance role needs %s (`monagent iam-policy`)", verb, where, code, permission)
	case retry.Unreachable(err):
		return fmt.Sprintf("cannot %s %s: %v; check the network path to S3 (NAT, gateway endpoint) and AWS_ENDPOINT_URL", verb, where, err)
	}
	return fmt.Sprintf("cannot %s %s: %v", verb, where, err)
}
