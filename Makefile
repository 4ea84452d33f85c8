# mlship: the two set-up commands are 'make demo' (the main job) and 'make test' (the whole suite).
GO ?= go

.PHONY: build static demo test deps vet testbed testbed-smoke

build:
	$(GO) build -o bin/mlship ./cmd/mlship

# A static binary for the images of Kubernetes targets (mlship server --image-binary bin/mlship-static).
# cmd/mlship needs cgo (ONNX Runtime), so it is linked statically rather than built with CGO_ENABLED=0.
static:
	CGO_ENABLED=1 $(GO) build -tags netgo,osusergo -ldflags '-linkmode external -extldflags -static -s -w' -o bin/mlship-static ./cmd/mlship

demo: build
	bash scripts/demo.sh

deps:
	bash scripts/deps.sh

test:
	bash scripts/test.sh

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }

# The Kubernetes testbed (docs/testbed.md); 'make test' builds it, starts it and runs the cluster tests on it.
testbed:
	bash test/testbed/scripts/build.sh

testbed-smoke: testbed
	bash test/testbed/scripts/smoke.sh
