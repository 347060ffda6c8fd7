# The two commands for a fresh machine (as root):
#   sudo make run     set everything up, then run mfd (ARGS="-n" etc. to pass flags)
#   sudo make test    set everything up, then run the test suite
#   sudo make test-vm the kernel matrix only: mfd's root tests in VMs (tests/vm)
.PHONY: run test test-vm setup setup-test bench

# Recipes are not echoed and setup says everything on stderr, so that
# `make run ARGS="--json --count 1" | jq .` gets mfd's output alone.
MAKEFLAGS += --no-print-directory

run: setup
	@.venv/bin/mfd $(ARGS)

test: setup-test
	.venv/bin/python -m pytest -ra $(PYTEST_ARGS) tests

test-vm: setup-test
	.venv/bin/python -m pytest -rA -m vm $(PYTEST_ARGS) tests

setup:
	@scripts/setup.sh

setup-test:
	@scripts/setup.sh --test

bench: setup
	.venv/bin/python bench/snapshot.py
	.venv/bin/python bench/startup.py
	.venv/bin/python bench/alloc_overhead.py
	.venv/bin/python bench/events_cpu.py
	.venv/bin/python bench/record.py
