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
# The typed Python: the farm's package, the modules and their module_utils, the filter shims,
# the account service (the image runtime is mt5farm/runtime). Ruff also lints and format-checks
# the tests.
TYPED := mt5farm module_utils library filter_plugins account_service/src
# The Molecule scenarios `make test` runs, in order (a scenario joins this list once it is green in CI).
SCENARIOS ?= docker_host fleet

.PHONY: help deploy test venv test-deps lint unit molecule testbed lock clean status stop start restart logs backup restore prune canary

help:
	@echo "make deploy   converge the inventory (default: the local demo) with site.yml"
	@echo "make test     lint, unit tests and every Molecule scenario"
	@echo "make status   every account's state; exits non-zero when an enabled account is not healthy"
	@echo "make stop|start|restart|logs LOGINS=5001001[,...]   act on named accounts (the inventory unchanged)"
	@echo "make backup|restore LOGINS=5001001[,...|all|host:<name>] [ARCHIVE=<file>]   archive or restore account data volumes"
	@echo "make prune [KEEP=2]   remove unused images of ours on every host, keeping KEEP previous ones"
	@echo "make canary   check the accounts marked canary: true and print the broker compatibility report"
	@echo "make lint | unit | molecule | testbed | lock | clean"

venv:
	@bash scripts/bootstrap.sh

deploy: venv
	ansible-playbook site.yml $(ARGS)

# Everyday commands on named accounts (playbooks/account.yml) and image pruning
# (playbooks/prune.yml); README "Operating a farm". ARGS as for deploy (-i, --check).
LOGINS ?=
LINES ?= 200
KEEP ?= 2
ARCHIVE ?=

status: venv
	ansible-playbook playbooks/status.yml $(ARGS)

# LOGINS, LINES and KEEP reach the recipes through the environment, never as shell text: a
# value is data (a backquote or $(...) in it runs nothing); the playbooks check it.
stop start restart logs backup restore prune: export MT5FARM_LOGINS = $(LOGINS)
stop start restart logs backup restore prune: export MT5FARM_LINES = $(LINES)
stop start restart logs backup restore prune: export MT5FARM_KEEP = $(KEEP)
stop start restart logs backup restore prune: export MT5FARM_ARCHIVE = $(ARCHIVE)

stop start restart logs backup restore: venv
	@test -n "$$MT5FARM_LOGINS" || { echo "usage: make $@ LOGINS=5001001[,5001002...] [ARGS=...]"; exit 2; }
	ansible-playbook playbooks/account.yml -e mt5_action=$@ -e "mt5_logins='$$MT5FARM_LOGINS'" -e "mt5_log_lines='$$MT5FARM_LINES'" \
		-e "mt5_archive='$$MT5FARM_ARCHIVE'" $(ARGS)

canary: venv
	ansible-playbook playbooks/canary.yml $(ARGS)

prune: venv
	ansible-playbook playbooks/prune.yml -e "mt5_prune_keep='$$MT5FARM_KEEP'" $(ARGS)

# Lint first: it needs only the virtualenv, and a style fault should not wait for Docker.
test: lint test-deps unit molecule

# System packages and a running Docker engine for the tests (root or sudo).
test-deps: venv
	@bash scripts/test-deps.sh

lint: venv
	ruff check .
	ruff format --check .
	mypy $(TYPED)
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

# Re-pin: constraints.txt becomes the full pin set of a fresh virtualenv made from
# requirements.txt and the two editable projects (the farm's package, the account service).
lock:
	rm -rf .lock-venv
	python3 -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt -e . -e './account_service[test]'
	{ sed -n '/^#/p' constraints.txt; .lock-venv/bin/pip freeze --exclude-editable | LC_ALL=C sort -f; } >constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf .lock-venv

clean:
	-@for scenario in $(SCENARIOS); do molecule destroy -s "$$scenario"; done
	rm -rf $(VENV) .pytest_cache .hypothesis
