# Lectern — the front door. `make help` lists every entry point.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV        := .venv
UV_VENV     := .cache/uv-venv
UV          := $(UV_VENV)/bin/uv
UV_VERSION  := 0.13.8
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

HOST      ?= pi
ENGINE    ?= pyinfra
INVENTORY ?= inventories/lab
CHECK     ?=
TAG       ?=

.PHONY: help
help: ## List every entry point
	@awk 'BEGIN {FS = ":.*## "; printf "Lectern make targets:\n"} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[1m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@printf "\nVariables: HOST=%s ENGINE=%s (pyinfra|ansible) INVENTORY=%s CHECK=1 (dry run) TAG=\n" "$(HOST)" "$(ENGINE)" "$(INVENTORY)"

# ---------------------------------------------------------------- setup
$(UV):
	@python3 -m venv $(UV_VENV)
	@$(UV_VENV)/bin/pip install -q "uv==$(UV_VERSION)"

$(VENV)/.synced: uv.lock pyproject.toml app/pyproject.toml | $(UV)
	@$(UV) sync --frozen --quiet
	@touch $@

.PHONY: venv
venv: $(VENV)/.synced ## Create/refresh the virtualenv from the lock file (uv.lock)

.PHONY: lock
lock: | $(UV) ## Re-resolve dependencies into uv.lock after editing a pyproject.toml
	@$(UV) lock

.PHONY: engine
engine: ## Make sure a Docker engine answers (installs Debian's docker.io and starts dockerd if needed)
	@scripts/ensure-docker.sh

.PHONY: host-packages
host-packages: ## Install the Debian packages the control machine needs (calibre, debootstrap, qemu, ...)
	@scripts/ensure-host-packages.sh

# ---------------------------------------------------------------- images
.PHONY: base-images
base-images: engine host-packages ## Build air-gapped Debian bookworm base images (amd64, arm64) with debootstrap
	@images/base/build.sh amd64 arm64

.PHONY: lab-image
lab-image: base-images ## Build the lab images: host (Debian 12, systemd, sshd; no Docker), pc (Samba), registry
	@images/lab-images.sh

.PHONY: image
image: venv base-images ## Build the app image (amd64+arm64), push ONE manifest list to REGISTRY (default: the lab's); digests in .cache/image/last-build.json
	@if [ -z "$${REGISTRY:-}" ]; then $(MAKE) --no-print-directory lab; fi
	@images/build.sh

# ---------------------------------------------------------------- lab
.PHONY: lab
lab: venv lab-image ## Start the lab: pi, server, nas, pc (Samba + Calibre library), registry
	@$(VENV)/bin/appliance lab up

.PHONY: lab-release
lab-release: lab ## Build the app image for this machine's arch and push it to the lab registry (what lab hosts run)
	@PLATFORMS=linux/$$(dpkg --print-architecture) images/build.sh >/dev/null
	@echo "lab registry: 127.0.0.1:5000/lectern/app:edge ($$(jq -r .digest .cache/image/last-build.json))"

.PHONY: lab-down
lab-down: venv ## Remove everything the lab made (containers, network, volumes, inventory)
	@$(VENV)/bin/appliance lab down

.PHONY: lab-status
lab-status: venv ## Print a table of the lab
	@$(VENV)/bin/appliance lab status

# ---------------------------------------------------------------- operations
.PHONY: provision
provision: venv ## Provision HOST (host or group) with ENGINE=pyinfra|ansible; CHECK=1 dry run; ONLY=proxy,... some concerns
	@if [ "$(INVENTORY)" = "inventories/lab" ]; then $(MAKE) --no-print-directory lab-release; fi
	@$(VENV)/bin/appliance provision $(HOST) --engine $(ENGINE) --inventory $(INVENTORY) $(if $(CHECK),--check,) $(if $(ONLY),--only $(ONLY),)

.PHONY: rollout
rollout: venv ## Gated rollout of TAG (tag or sha256:digest) to LIMIT (default all): CANARY=1 BATCH=25% MAX_FAIL=0
	@$(VENV)/bin/appliance rollout --tag "$(TAG)" --limit "$(or $(LIMIT),all)" --canary $(or $(CANARY),1) \
		--batch "$(or $(BATCH),25%)" --max-fail $(or $(MAX_FAIL),0) --inventory $(INVENTORY)

.PHONY: rollback
rollback: venv ## Roll HOST (host, group or all) back to its previous release, or TO=TAG; needs no registry
	@$(VENV)/bin/appliance rollback "$(or $(HOST),all)" $(if $(TO),--to "$(TO)") --inventory $(INVENTORY)

.PHONY: status
status: venv ## Fleet table: release tag + digest, health, books, last backup, library source, disk free
	@$(VENV)/bin/appliance status --inventory $(INVENTORY)

.PHONY: backup
backup: venv ## Take a backup snapshot of /data on HOST (host or group) now; prints each snapshot id
	@$(VENV)/bin/appliance backup $(HOST) --inventory $(INVENTORY)

.PHONY: restore
restore: venv ## Restore HOST's /data from SNAPSHOT=<id|latest> (stops the app, pre-restore snapshot, restarts)
	@$(VENV)/bin/appliance restore $(HOST) --snapshot "$(SNAPSHOT)" --inventory $(INVENTORY)

.PHONY: run
run: venv host-packages ## Serve a generated demo library with the app on http://127.0.0.1:8000
	@$(VENV)/bin/python -m lectern_app

# ---------------------------------------------------------------- quality
.PHONY: lint-fast
lint-fast: venv ## ruff, mypy, yamllint (seconds; the lint of make check)
	@echo "== tier: lint (fast)"
	@ruff check .
	@ruff format --check .
	@mypy appliance app/lectern_app rollback tests/unit tests/release
	@yamllint -s .

.PHONY: lint
lint: lint-fast ## lint-fast + ansible-lint (about a minute on its own; make test runs it)
	@ansible-lint -q roles/ playbooks/

.PHONY: unit
unit: venv host-packages ## Unit tests (app against calibredb-made libraries, control plane)
	@echo "== tier: unit"
	@pytest -q tests/unit tests/app $(wildcard roles/*/tests)

.PHONY: check
check: lint-fast unit ## Fast tier for the dev loop (< 3 min): ruff, mypy, yamllint, unit (make lint adds ansible-lint)

.PHONY: molecule
molecule: venv engine lab-release ## molecule test for every role (lab host image, idempotence, testinfra)
	@echo "== tier: molecule"
	@scripts/molecule-all.sh

.PHONY: molecule-full
molecule-full: venv engine lab-release ## Every molecule scenario of every role (rclone, nginx, s3, ... too)
	@MOLECULE_SCENARIOS=all scripts/molecule-all.sh

.PHONY: image-test
image-test: venv base-images host-packages ## Image proof: both arches, arm64 under qemu, read-only non-root, /data survives, manifest list, SIGTERM, compose
	@echo "== tier: image"
	@pytest -q tests/image

.PHONY: release-test
release-test: venv engine lab-image ## On-host release tool on real Docker: gated swap, bad release, offline rollback, schema restore, kill -9
	@echo "== tier: release tool"
	@pytest -q tests/release

.PHONY: infra
infra: venv lab-release ## Provision lab hosts by pyinfra AND Ansible, verify both with one testinfra suite
	@echo "== tier: infra (pyinfra + ansible, one testinfra suite)"
	@pytest -q --durations=12 tests/infra/test_lab.py tests/infra/test_provision.py tests/infra/test_appliance_e2e.py \
		tests/infra/test_rollout.py tests/infra/test_backup_cli.py tests/infra/test_client_address.py

.PHONY: test
test: lint unit image-test release-test molecule infra ## Everything CI runs: lint, unit, image, molecule, lab provisioning by both engines
	@echo "== make test: all tiers passed"

.PHONY: bench
bench: venv ## Run the benchmarks in bench/ (numbers go into BENCHMARKS.md)
	@bench/run.sh

.PHONY: clean
clean: ## Remove the virtualenv and caches (not the lab; see lab-down)
	rm -rf $(VENV) $(UV_VENV) .mypy_cache .ruff_cache .pytest_cache
