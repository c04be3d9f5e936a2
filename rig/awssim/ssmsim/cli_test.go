package ssmsim_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"github.com/monagent/monagent/rig/awssim/simtest"
)

// cli runs the AWS CLI against the rig and returns its stdout.
func (r *rig) cli(t *testing.T, args ...string) []byte {
	t.Helper()
	out, err := simtest.AWSCLI(t, r.url, append([]string{"--output", "json"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// trickyValue holds what shells and dotenv parsers trip on.
const trickyValue = `it's a "quoted" $HOME \back\slash\n  spaced ` + "\n" + `second line\` + "\n"

func TestCLIPutThenSDKGet(t *testing.T) {
	r := newRig(t)
	// The value travels in a file, never in argv.
	input, _ := json.Marshal(map[string]any{
		"Name": "/cli/secret", "Value": trickyValue, "Type": "SecureString", "Overwrite": true,
	})
	file := filepath.Join(t.TempDir(), "put.json")
	if err := os.WriteFile(file, input, 0o600); err != nil {
		t.Fatal(err)
	}
	var put struct {
		Version int64
		Tier    string
	}
	if err := json.Unmarshal(r.cli(t, "ssm", "put-parameter", "--cli-input-json", "file://"+file), &put); err != nil {
		t.Fatal(err)
	}
	if put.Version != 1 || put.Tier != "Standard" {
		t.Errorf("put-parameter = %+v, want version 1 Standard", put)
	}
	got, err := r.ssm.GetParameter(context.Background(), &ssm.GetParameterInput{Name: aws.String("/cli/secret"), WithDecryption: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	if v := aws.ToString(got.Parameter.Value); v != trickyValue {
		t.Errorf("SDK reads %q, want %q", v, trickyValue)
	}
}

func TestSDKPutThenCLIGet(t *testing.T) {
	r := newRig(t)
	r.put(t, "/cli/a/secret", trickyValue, ssmtypes.ParameterTypeSecureString)
	r.put(t, "/cli/a/b/deep", "deep", ssmtypes.ParameterTypeString)
	r.put(t, "/cli/other", "o", ssmtypes.ParameterTypeString)

	var got struct {
		Parameter struct{ Name, Value, Type, ARN string }
	}
	if err := json.Unmarshal(r.cli(t, "ssm", "get-parameter", "--name", "/cli/a/secret", "--with-decryption"), &got); err != nil {
		t.Fatal(err)
	}
	if got.Parameter.Value != trickyValue || got.Parameter.Type != "SecureString" {
		t.Errorf("CLI reads %+v, want value %q", got.Parameter, trickyValue)
	}

	var byPath struct {
		Parameters []struct{ Name, Value string }
	}
	if err := json.Unmarshal(r.cli(t, "ssm", "get-parameters-by-path", "--path", "/cli/a", "--recursive", "--with-decryption"), &byPath); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range byPath.Parameters {
		names = append(names, p.Name)
	}
	if strings.Join(names, " ") != "/cli/a/b/deep /cli/a/secret" {
		t.Errorf("get-parameters-by-path --recursive = %v", names)
	}
}
