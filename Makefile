# MT5 Farm: the two commands an operator needs are `make deploy` and `make test`.
# Both set up everything they need on a fresh machine.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export ANSIBLE_FORCE_COLOR := false
export NO_COLOR := 1
# Extra ansible-playbook arguments, e.g. make deploy ARGS="-i inventories/prod --limit host1"
ARGS ?=
PLAYBOOKS := site.yml $(wildcard playbooks/*.yml)
# The Molecule scenarios `make test` runs, in order (a scenario joins this list once it is green in CI).
SCENARIOS ?= docker_host default platform

.PHONY: help deploy test venv test-deps lint unit molecule testbed clean

help:
	@echo "make deploy   converge the inventory (default: the local demo) with site.yml"
	@echo "make test     lint, unit tests and every Molecule scenario"
	@echo "make lint | unit | molecule | testbed | clean"

venv:
	@bash scripts/bootstrap.sh

deploy: venv
	ansible-playbook site.yml $(ARGS)

test: test-deps lint unit molecule

# System packages and a running Docker engine for the tests (root or sudo).
test-deps: venv
	@bash scripts/test-deps.sh

lint: venv
	yamllint --strict .
	ansible-lint
	@for playbook in $(PLAYBOOKS); do \
		ansible-playbook --syntax-check "$$playbook" >/dev/null || exit 1; \
		echo "syntax ok: $$playbook"; \
	done

unit: venv
	pytest tests
	@if [ -d account_service/tests ]; then cd account_service && pytest; fi

testbed:
	@bash testbed/build-images.sh

molecule: venv testbed
	@for scenario in $(SCENARIOS); do \
		echo "== molecule test -s $$scenario"; \
		start=$$(date +%s); \
		molecule test -s "$$scenario" || exit 1; \
		echo "== $$scenario passed in $$(( $$(date +%s) - start )) s"; \
	done

clean:
	-@for scenario in $(SCENARIOS); do molecule destroy -s "$$scenario"; done
	rm -rf $(VENV) .pytest_cache .hypothesis
