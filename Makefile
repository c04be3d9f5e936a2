VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
GO      ?= $(shell command -v go || echo /usr/local/go/bin/go)

.PHONY: build test lint demo bench clean

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/monagent ./cmd/monagent
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/awssim ./cmd/awssim

test:
	./scripts/test.sh

lint:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)

demo:
	./scripts/demo.sh

# Boot and no-op figures against their bounds (docs/bench.md); the last
# line is the summary.
bench:
	./scripts/bench.sh

clean:
	rm -rf bin

# The test rig's Docker engine, Compose plugin and seed-stack images (rig/README.md).
.PHONY: images
images:
	./rig/images/build.sh

# .deb and .rpm, with the static binary, in dist/ (DIST=dir to change it):
# packaging/build.sh, packaging/README.md.
.PHONY: package
package:
	VERSION='$(VERSION)' COMMIT='$(COMMIT)' GO='$(GO)' DIST='$(DIST)' ./packaging/build.sh
