# Tiny Analytics — the two commands of the README, and their parts.
SHELL := /bin/bash
.DEFAULT_GOAL := help
INFRA := deploy/local/infra
INSTALL := deploy/local/install
STACK := deploy/local/stack
CLUSTER := deploy/local/cluster

.PHONY: help demo test fresh-check deploy-test deploy-test-cluster disk-check lint deny bench-quick infra stack stop status fuzz fuzz-smoke fuzz-tools bench soak

help:
	@echo "make demo    install + start infrastructure, build, run the pipeline with demo traffic"
	@echo "make test    start infrastructure if needed, run lints, the whole test suite, the bench harness"
	@echo "             at toy sizes and a bounded fuzz run of both fuzz targets (what CI runs)"
	@echo "make stop    stop the services, the infrastructure and the local cluster (data kept in .data/)"
	@echo "make status  what is running"
	@echo "make fuzz    fuzz the edge's body parser and ta-query's parameters, FUZZ_SECS (120) each"
	@echo "make bench   every benchmark scenario beside its baselines -> bench/results/results.{md,json,svg}"
	@echo "make deploy-test  the compose files for real: central + two edge regions with podman, TLS/SCRAM Kafka, faults"
	@echo "make deploy-test-cluster  the cluster compose variant: 3 keepers, 2x2 ClickHouse, leased loaders, faults"
	@echo "make fresh-check  the README's two commands in a clean Debian 12 container, from a fresh clone of HEAD"
	@echo "make soak    the pipeline at a steady rate for SOAK_MINUTES (default 30): flat memory, nothing lost"

# The first run builds the broker (tansu) in the background while cargo builds the project;
# `infra up` then waits for the broker build, with progress, if it is still running.
demo:
	$(INSTALL) services-bg
	cargo build --release --bins
	$(INFRA) up
	$(STACK) up
	eval "$$($(INFRA) env)" && target/release/ta-bench demo
	@echo
	@echo "Services (still running):"
	@echo "  ta-edge     http://127.0.0.1:8080   POST /v1/collect, /healthz   (ops: http://127.0.0.1:9464/metrics)"
	@echo "  ta-query    http://127.0.0.1:8081   dashboard at /, stats API /v1/stats/*, /openapi.json"
	@echo "  ta-loader   http://127.0.0.1:9465   /metrics, /healthz"
	@echo "  Kafka API   127.0.0.1:9092 (tansu)   ClickHouse http://127.0.0.1:8123   Prometheus http://127.0.0.1:9090"
	@echo "  Try: curl -H 'Authorization: Bearer dev-read-site-1' 'http://127.0.0.1:8081/v1/stats/aggregate?site_id=site-1&period=today'"
	@echo "  Dashboard: http://127.0.0.1:8081/?share=dev-share-site-1"
	@echo "Stop everything with: make stop"

# As for the demo, the broker builds in the background (first run) beside lint and the test build.
# The suite also runs on a local ClickHouse cluster (2 shards x 2 replicas, ZooKeeper), started
# empty every run: its databases are throwaway, and four 18.16 servers started together over an
# earlier run's databases were seen to hang for good at "Loading metadata".
test: disk-check
	$(INSTALL) services-bg test-tools cluster
	$(MAKE) --no-print-directory lint deny
	cargo test --workspace --all-targets --no-run --quiet
	$(INFRA) up
	$(CLUSTER) down --purge
	$(CLUSTER) up
	eval "$$($(INFRA) env)" && eval "$$($(CLUSTER) env)" && cargo test --workspace --all-targets
	$(MAKE) --no-print-directory bench-quick
	$(MAKE) --no-print-directory fuzz-smoke

# A run that fills the disk halfway fails in confusing places; this fails first, with the numbers.
disk-check:
	@deploy/local/disk-check

# The benchmark harness at toy sizes with debug binaries: checks it still runs every scenario
# and produces sane figures (not that anything is fast).
bench-quick:
	cargo build --quiet --bins
	eval "$$($(INFRA) env)" && target/debug/ta-bench all --quick --bin-dir target/debug > target/bench-quick.log || { cat target/bench-quick.log; exit 1; }
	@echo "bench-quick: OK (target/bench-quick/results.md)"

# The JavaScript (dashboard, tracker, browser-test scripts) is served or run as written:
# `node --check` catches a syntax error here rather than as a blank page in a browser test.
lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --quiet -- -D warnings
	cargo clippy -p ta-tests --test deploy --test deploy-cluster --quiet -- -D warnings
	for f in central/src/query/dashboard/dashboard.js edge/tracker/t.js tests/browser/*.js; do node --check $$f || exit 1; done

# Licenses, bans and sources of the dependency graph against deny.toml (cargo-deny is installed
# by `install test-tools`; its advisories check needs GitHub, which these machines cannot reach).
# cargo-deny reads the crates of every target platform; `cargo build` fetched only this one's.
deny:
	cargo fetch --locked --quiet
	"$${TA_TOOLS_DIR:-$$HOME/.cache/tiny-analytics}/pyenv/bin/cargo-deny" --offline check bans licenses sources

infra:
	$(INFRA) up

# The compose deployment, run for real with podman (deploy/local/images/build makes the local
# stand-in images once, ~30 min; later runs ~10 min). Its figures go into the README.
deploy-test:
	cargo test -p ta-tests --test deploy

# The cluster variant of the central compose file (keepers + 2x2 ClickHouse) with podman, the
# loaders and ta-query from this checkout's release binaries (~5 min; images ~3 min once).
deploy-test-cluster:
	$(INSTALL) services
	cargo build --release --bins -p ta-central
	cargo test -p ta-tests --test deploy-cluster

# A new user's first run: `make demo` then `make test`, word for word from the README, in a
# container holding only what a new machine has (deploy/local/fresh-check; ~1 h the first time).
fresh-check:
	deploy/local/fresh-check

stop:
	$(STACK) down
	$(INFRA) down
	$(CLUSTER) down

status:
	-$(STACK) status
	-$(INFRA) status
	-$(CLUSTER) status

# Fuzzing needs libFuzzer and sanitizer flags that stable rustc accepts only with
# RUSTC_BOOTSTRAP=1. Two targets: the edge's collect/batch body parser and ta-query's parameter
# parsing. New inputs go to .data/fuzz/; the committed corpora (edge/fuzz/corpus,
# central/fuzz/corpus) seed the runs and are replayed by `cargo test`. The fuzz builds are
# cached outside the clone (FUZZ_TARGET_DIR). `make fuzz-smoke` (part of `make test`) runs each
# target for FUZZ_SMOKE_SECS.
FUZZ_SECS ?= 120
FUZZ_SMOKE_SECS ?= 20
FUZZ_TARGET_DIR ?= $(HOME)/.cache/tiny-analytics/fuzz-target
FUZZ_RUN = RUSTC_BOOTSTRAP=1 cargo fuzz run --target-dir $(FUZZ_TARGET_DIR)
FUZZ_OPTS = -rss_limit_mb=2048 -max_len=65536
fuzz: fuzz-tools
	mkdir -p .data/fuzz/collect_body .data/fuzz/query_params
	cd edge/fuzz && $(FUZZ_RUN) collect_body ../../.data/fuzz/collect_body corpus/collect_body -- \
		-max_total_time=$(FUZZ_SECS) $(FUZZ_OPTS)
	cd central/fuzz && $(FUZZ_RUN) query_params ../../.data/fuzz/query_params corpus/query_params -- \
		-max_total_time=$(FUZZ_SECS) $(FUZZ_OPTS)

fuzz-smoke:
	$(MAKE) --no-print-directory fuzz FUZZ_SECS=$(FUZZ_SMOKE_SECS)

fuzz-tools:
	command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked

# Every scenario of bench/README.md at a size that takes a few minutes here (10M-event query
# database generated once and reused). BENCH_ARGS passes options, e.g. BENCH_ARGS="--only edge".
bench: infra
	$(INSTALL) test-tools
	cargo build --release --bins
	eval "$$($(INFRA) env)" && target/release/ta-bench all $(BENCH_ARGS)

# A long steady run of the whole pipeline: RSS of each service over time, exact count at the end.
SOAK_MINUTES ?= 30
soak: infra
	cargo build --release --bins
	eval "$$($(INFRA) env)" && target/release/ta-bench soak --minutes $(SOAK_MINUTES) --json target/soak.json
