# Tiny Analytics — the two commands of the README, and their parts.
SHELL := /bin/bash
.DEFAULT_GOAL := help
INFRA := deploy/local/infra
STACK := deploy/local/stack

.PHONY: help demo test lint infra stack stop status

help:
	@echo "make demo    install + start infrastructure, build, run the pipeline with demo traffic"
	@echo "make test    start infrastructure if needed, run lints and the whole test suite"
	@echo "make stop    stop the services and the infrastructure (data kept in .data/)"
	@echo "make status  what is running"

demo: infra
	cargo build --release --bins
	$(STACK) up
	eval "$$($(INFRA) env)" && target/release/ta-loadgen demo
	@echo
	@echo "Services (still running):"
	@echo "  ta-edge     http://127.0.0.1:8080   POST /v1/collect, /metrics, /healthz"
	@echo "  ta-query    http://127.0.0.1:8081   GET /v1/metrics/{pageviews,unique-users,top-pages}"
	@echo "  ta-loader   http://127.0.0.1:9465   /metrics, /healthz"
	@echo "  Kafka API   127.0.0.1:9092 (tansu)   ClickHouse http://127.0.0.1:8123   Prometheus http://127.0.0.1:9090"
	@echo "  Try: curl 'http://127.0.0.1:8081/v1/metrics/top-pages?site_id=site-1'"
	@echo "Stop everything with: make stop"

test: infra lint
	eval "$$($(INFRA) env)" && cargo test --workspace --all-targets

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --quiet -- -D warnings

infra:
	$(INFRA) up

stop:
	$(STACK) down
	$(INFRA) down

status:
	-$(STACK) status
	-$(INFRA) status
