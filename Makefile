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

# make deb: dist/mfd_<version>_all.deb, built by Debian's own tooling (debian/:
# debhelper, pybuild's pyproject plugin) from a copy of the tree in a
# temporary directory, so the checkout gets no build/, .pybuild/ or debian/mfd/,
# and dpkg-buildpackage's files in ".." land in that directory, which is removed.
# PATH is the system's: pybuild runs "python3.X" from PATH, and a pyenv or
# virtualenv python found first would build without Debian's modules.
.PHONY: deb
deb:
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; mkdir "$$tmp/mfd"; \
	tar -cf - --exclude=./.venv --exclude=./.git --exclude=./dist --exclude=./build \
	    --exclude=__pycache__ --exclude=.pytest_cache --exclude=.hypothesis \
	    --exclude='*.egg-info' . | tar -C "$$tmp/mfd" -xf -; \
	(cd "$$tmp/mfd" && PATH=/usr/sbin:/usr/bin:/sbin:/bin dpkg-buildpackage -us -uc -b >&2); \
	mkdir -p dist; cp "$$tmp"/mfd_*_all.deb dist/; ls dist/mfd_*_all.deb

# make rpm: build/rpm/RPMS/noarch/mfd-<version>.noarch.rpm from contrib/mfd.spec
# (--nodeps where rpm cannot see the build dependencies: on Debian, dpkg has them).
.PHONY: rpm
rpm:
	@set -e; v=$$(sed -n 's/^__version__ = "\(.*\)"/\1/p' src/mfd/__init__.py); \
	mkdir -p build/rpm/SOURCES; \
	git ls-files -co --exclude-standard -z | tar --null -T - --transform "s,^,mfd-$$v/," \
	    -czf build/rpm/SOURCES/mfd-$$v.tar.gz; \
	rpmbuild -bb $$(command -v dpkg >/dev/null && echo --nodeps) \
	    --define "_topdir $(CURDIR)/build/rpm" contrib/mfd.spec >&2; \
	ls build/rpm/RPMS/noarch/mfd-*.rpm
