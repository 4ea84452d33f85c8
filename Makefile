# mlship: the two set-up commands are 'make demo' (the main job) and 'make test' (the whole suite).
GO ?= go

.PHONY: build demo test unit deps vet

build:
	$(GO) build -o bin/mlship ./cmd/mlship

demo: build
	bash scripts/demo.sh

deps:
	bash scripts/deps.sh

test:
	bash scripts/test.sh

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
