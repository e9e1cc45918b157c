# The one entry point: CI calls these same targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
PROTOS  := $(shell find proto -name '*.proto' | sort)
PACKAGES := ledger exchange clients

.PHONY: help run test demo lint reformat protos check-protos migrate bench soak clean

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP) ## Create the virtual environment and install the project.

run: $(STAMP) ## Set up and run a node on 127.0.0.1:50051 (var/kaifang.db; the sample loaded into an empty log).
	$(VENV)/bin/kaifang node --sample

test: $(STAMP) ## Set up and run every test (SQLite and PostgreSQL legs).
	$(PY) -m pytest $(PYTEST_ARGS)

demo: $(STAMP) ## A tour: three exchanges in var/demo, used through the kaifang command.
	$(PY) -m clients.demo

lint: $(STAMP) ## ruff format check, ruff lint, mypy strict on the packages.
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --config-file tests/mypy.ini tests bench

reformat: $(STAMP) ## Apply ruff's formatting and safe fixes.
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# protoc runs from proto/ so that generated imports are kaifang.<api>.v1.
define GENERATE
	$(PY) -m grpc_tools.protoc -Iproto \
	  --python_out=$(1) --grpc_python_out=$(1) \
	  --plugin=protoc-gen-mypy=$(VENV)/bin/protoc-gen-mypy --mypy_out=$(1) \
	  --plugin=protoc-gen-mypy_grpc=$(VENV)/bin/protoc-gen-mypy_grpc --mypy_grpc_out=$(1) \
	  $(PROTOS)
endef

protos: $(STAMP) ## Regenerate the committed protobuf and gRPC code.
	$(call GENERATE,proto)

check-protos: $(STAMP) ## Fail if the committed generated code is not current.
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(call GENERATE,$$tmp) && \
	status=0 && \
	for f in $$(cd "$$tmp" && find . -type f \( -name '*_pb2*.py' -o -name '*_pb2*.pyi' \) | sort); do \
	  cmp -s "$$tmp/$$f" "proto/$$f" || { echo "stale generated file: proto/$${f#./}"; status=1; }; \
	done && \
	for f in $$(cd proto && find . -type f \( -name '*_pb2*.py' -o -name '*_pb2*.pyi' \) | sort); do \
	  test -f "$$tmp/$$f" || { echo "generated file without a .proto: proto/$${f#./}"; status=1; }; \
	done && \
	{ [ $$status -ne 0 ] || echo "generated code is current"; exit $$status; }

migrate: $(STAMP) ## Migrate the node's database (DB=url to choose another).
	$(VENV)/bin/kaifang migrate $(if $(DB),--db $(DB))

bench: $(STAMP) ## Run the benchmarks (about 25 min); prints a table, writes bench/report.json and, run whole, bench/results.md.
	$(PY) -m bench $(BENCH_ARGS)

soak: $(STAMP) ## Run the ten-minute soak of a 3-node network alone (SOAK_ARGS="--seconds 60" for a short one).
	$(PY) -m bench.soak $(SOAK_ARGS)

clean: ## Remove the virtual environment, caches and var/.
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis
