# realtime: see README.md.
GO ?= go
BIN := bin/realtime

.PHONY: help run example test check build bench load floor pubfloor fuzz clean

## help: this list
help:
	@sed -n 's/^## //p' $(MAKEFILE_LIST)

## run: the service in dev mode (embedded log, generated key, prints a token) on ADDR (127.0.0.1:8080)
ADDR ?= 127.0.0.1:8080
run:
	$(GO) run ./cmd/realtime serve --dev --addr $(ADDR)

## example: the React example app (web/react/example) on http://127.0.0.1:5173, against `make run` (REALTIME_URL to point it elsewhere)
example:
	cd web/react && npm ci --no-audit --no-fund && npm run example

## test: every test, with the race detector (needs redis-server for the Redis half)
test:
	$(GO) test -race -count=1 ./...

## check: formatting, vet, then the tests
check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(MAKE) test

## build: the binary in bin/
build:
	$(GO) build -o $(BIN) ./cmd/realtime

## bench: Go benchmarks of the hot paths, then a short load run
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./stream/... ./handlers
	$(MAKE) load

## load: a short steady load run with realtime bench against a local dev server (embedded log)
load: build
	@./bench/load.sh

## floor: what this machine charges a do-nothing server for the (b) and long-poll shapes (README, Performance)
floor:
	$(GO) run ./bench/floor -mode write -n 10000 -w 100 -rate 100 -duration 20s
	$(GO) run ./bench/floor -mode write -n 1000 -w 10 -rate 200 -duration 20s
	$(GO) run ./bench/floor -mode longpoll -n 5000

## pubfloor: the same publish load as `realtime bench --mode publish`, single and in batches of 50, against a bare net/http handler (README, Performance)
pubfloor:
	$(GO) run ./bench/floor -mode publish -c 16 -w 100 -duration 10s
	$(GO) run ./bench/floor -mode publish -c 16 -w 100 -duration 10s -batch 50

## fuzz: a short run of each fuzz target (FUZZTIME each, 10s by default)
FUZZTIME ?= 10s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParseID$$' -fuzztime $(FUZZTIME) ./stream
	$(GO) test -run '^$$' -fuzz '^FuzzParseTypes$$' -fuzztime $(FUZZTIME) ./stream
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeEvent$$' -fuzztime $(FUZZTIME) ./stream
	$(GO) test -run '^$$' -fuzz '^FuzzEventBody$$' -fuzztime $(FUZZTIME) ./stream
	$(GO) test -run '^$$' -fuzz '^FuzzFastSchemaAgrees$$' -fuzztime $(FUZZTIME) .
	$(GO) test -run '^$$' -fuzz '^FuzzValidTicketID$$' -fuzztime $(FUZZTIME) ./stream
	$(GO) test -run '^$$' -fuzz '^FuzzParseQuery$$' -fuzztime $(FUZZTIME) ./poll
	$(GO) test -run '^$$' -fuzz '^FuzzRedactQuery$$' -fuzztime $(FUZZTIME) ./middleware
	$(GO) test -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(FUZZTIME) ./middleware
	$(GO) test -run '^$$' -fuzz '^FuzzParsePublicKeys$$' -fuzztime $(FUZZTIME) ./middleware
	$(GO) test -run '^$$' -fuzz '^FuzzRequestBodies$$' -fuzztime $(FUZZTIME) ./handlers
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeEventBody$$' -fuzztime $(FUZZTIME) ./handlers
	$(GO) test -run '^$$' -fuzz '^FuzzTranslate$$' -fuzztime $(FUZZTIME) ./stream/redisstream

clean:
	rm -rf bin
