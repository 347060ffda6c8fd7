#!/usr/bin/env bash
# Set up everything mfd needs on a fresh Debian/Ubuntu (apt) or Fedora/RHEL/openEuler (dnf)
# machine, as root: distro packages (BCC's Python bindings live only there), a kernel
# header tree for BCC, a venv from the system python3 with --system-site-packages
# (that is where BCC is), and mfd installed into it.
#   usage: scripts/setup.sh [--test]      (--test adds what the test suite needs)
set -euo pipefail
cd "$(dirname "$0")/.."
# Everything set-up says goes to stderr: `make run ARGS=--json | jq .` reads
# mfd's stdout alone, on a fresh machine too (apt's and pip's chatter).
exec 1>&2

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

if [ "$(id -u)" -ne 0 ]; then
    echo "setup: run as root (sudo make run / sudo make test)" >&2
    exit 1
fi

log() { echo "setup: $*" >&2; }
release=$(uname -r)

if command -v apt-get >/dev/null 2>&1; then
    pkgs="python3-bpfcc libbpf1 python3-venv python3-tabulate python3-prometheus-client python3-numpy bpftool"
    # the fleet tests: a real node_exporter beside mfd serve, the rules read with PyYAML
    [ $want_test = 1 ] && pkgs="$pkgs python3-pytest prometheus python3-matplotlib tmux"
    [ $want_test = 1 ] && pkgs="$pkgs prometheus-node-exporter python3-yaml"
    # Headers for the running kernel if the archive has them; otherwise the
    # distro's generic ones (mfd takes offsets from BTF, so another kernel's
    # headers are safe for it).
    missing=""
    for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
    have_headers=0
    { [ -e "/lib/modules/$release/build/include/linux/kconfig.h" ] ||
      ls -d /usr/src/linux-headers-* >/dev/null 2>&1; } && have_headers=1
    if [ -n "$missing" ] || [ $have_headers = 0 ]; then
        log "apt-get install$missing (and kernel headers)"
        apt-get update -qq
        export DEBIAN_FRONTEND=noninteractive
        # shellcheck disable=SC2086
        [ -n "$missing" ] && apt-get install -y -qq $missing >/dev/null
        if [ $have_headers = 0 ]; then
            apt-get install -y -qq "linux-headers-$release" >/dev/null 2>&1 ||
                apt-get install -y -qq "linux-headers-$(dpkg --print-architecture)" >/dev/null
        fi
    fi
elif command -v dnf >/dev/null 2>&1; then
    pkgs="python3-bcc libbpf python3-tabulate python3-prometheus_client python3-numpy bpftool"
    [ $want_test = 1 ] && pkgs="$pkgs python3-pytest python3-matplotlib tmux python3-pyyaml"
    log "dnf install $pkgs kernel-devel-$release"
    # shellcheck disable=SC2086
    dnf install -y -q $pkgs
    dnf install -y -q "kernel-devel-$release" || dnf install -y -q kernel-devel
else
    echo "setup: neither apt-get nor dnf found: install BCC's Python bindings and kernel headers by hand" >&2
    exit 1
fi

# The test suite's property tests (hypothesis) and its kernel matrix (tests/vm):
# QEMU, busybox for virtme-ng's initramfs, Debian's distro kernel (kprobes,
# KALLSYMS_ALL, BTF) and exactly that kernel's headers: the guest compiles
# against them and checks BTF offsets against them.  virtme-ng goes into .venv
# below.  Only Debian/Ubuntu on x86-64 get the matrix; elsewhere it skips.
if [ $want_test = 1 ]; then
    if command -v apt-get >/dev/null 2>&1; then
        export DEBIAN_FRONTEND=noninteractive
        # Packaging tests: the .deb (Debian's Python tooling, lintian), the RPM
        # spec (rpmbuild), and the man page and completions they generate.
        vm_pkgs="python3-hypothesis debhelper dh-python pybuild-plugin-pyproject lintian rpm"
        vm_pkgs="$vm_pkgs python3-argparse-manpage python3-shtab python3-setuptools bash-completion man-db"
        # a headless browser renders and hovers mfd map --html
        vm_pkgs="$vm_pkgs chromium"
        [ "$(dpkg --print-architecture)" = amd64 ] &&
            vm_pkgs="$vm_pkgs qemu-system-x86 busybox-static linux-image-amd64 make gcc"
        missing=""
        for p in $vm_pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
        if [ -n "$missing" ]; then
            log "apt-get install$missing (property tests, packaging, kernel matrix)"
            apt-get update -qq
            # shellcheck disable=SC2086
            apt-get install -y -qq --no-install-recommends $missing >/dev/null
        fi
        for img in /boot/vmlinuz-*; do
            [ -e "$img" ] || continue
            ver=${img#/boot/vmlinuz-}
            [ -e "/lib/modules/$ver/build/include/generated/utsrelease.h" ] && continue
            log "apt-get install linux-headers-$ver (the kernel matrix's guest kernel)"
            apt-get install -y -qq --no-install-recommends "linux-headers-$ver" >/dev/null ||
                log "no linux-headers-$ver in the archive: the matrix will skip $img"
        done
    elif command -v dnf >/dev/null 2>&1; then
        dnf install -y -q python3-hypothesis || log "no python3-hypothesis: property tests skip"
    fi
    # perf, for the test that other tracers see the same events with mfd running.
    # Debian calls it linux-perf; Ubuntu ships it per kernel in linux-tools-*.
    if ! command -v perf >/dev/null 2>&1; then
        if command -v apt-get >/dev/null 2>&1; then
            apt-get install -y -qq --no-install-recommends linux-perf >/dev/null 2>&1 ||
                apt-get install -y -qq --no-install-recommends "linux-tools-$release" >/dev/null 2>&1 ||
                log "no perf package in the archive: the perf half of tests/test_tracers.py skips"
        else
            dnf install -y -q perf || log "no perf package: the perf half of tests/test_tracers.py skips"
        fi
    fi
fi

# BCC reads tracepoint formats from tracefs; the tests read the kernel's own
# indices from debugfs.  mfd mounts tracefs itself when it must; do both here.
mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing || true
mountpoint -q /sys/kernel/debug || mount -t debugfs nodev /sys/kernel/debug || true

if [ ! -x .venv/bin/python ]; then
    log "creating .venv from /usr/bin/python3 (--system-site-packages, for BCC)"
    /usr/bin/python3 -m venv --system-site-packages .venv
fi
# An editable install: the checkout is what runs (mfd --version names its
# commit), and a re-run has nothing to reinstall unless pyproject.toml changed
# (entry points, package data): the stamp holds its hash.
stamp=.venv/.mfd-setup
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] ||
   ! .venv/bin/python -c "import mfd.cli" >/dev/null 2>&1; then
    log "installing mfd into .venv (editable: the checkout is what runs)"
    .venv/bin/python -m pip install -q --disable-pip-version-check -e . 2>&1 |
        grep -v "^$" >&2 || true
    echo "$want" > "$stamp"
fi
# setuptools' editable finder comes after the path search, so an installed
# mfd .deb (/usr/lib/python3/dist-packages, seen through
# --system-site-packages) would win: put the checkout's src first.
site=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
[ "$(cat "$site/mfd-checkout.pth" 2>/dev/null)" = "$(pwd -P)/src" ] ||
    echo "$(pwd -P)/src" > "$site/mfd-checkout.pth"
.venv/bin/python -c "import mfd.cli, bcc" || { echo "setup: mfd or bcc does not import" >&2; exit 1; }

# `sudo mfd` from anywhere: sudo resets PATH to its secure_path, which has
# /usr/local/bin on Debian, Ubuntu, Fedora and openEuler.  A launcher, not a
# symlink, so that a moved or deleted checkout says what to do.  A file there
# that is not ours (the .deb puts mfd in /usr/bin, never here) is left alone.
launcher=/usr/local/bin/mfd
marker="# mfd launcher (scripts/setup.sh)"
here=$(pwd -P)
if [ "${here#*\'}" != "$here" ]; then
    log "the checkout's path has a quote in it: no launcher in /usr/local/bin (run $here/.venv/bin/mfd)"
elif [ -e "$launcher" ] && ! grep -qF "$marker" "$launcher" 2>/dev/null; then
    log "$launcher exists and is not mfd's launcher: left alone (run $here/.venv/bin/mfd)"
else
    body="#!/bin/sh
$marker: runs the checkout at $here
[ -x '$here/.venv/bin/mfd' ] || { echo 'mfd: the checkout $here is gone: run scripts/setup.sh from a checkout' >&2; exit 1; }
exec '$here/.venv/bin/mfd' \"\$@\""
    if [ "$(cat "$launcher" 2>/dev/null)" != "$body" ]; then
        log "$launcher -> $here/.venv/bin/mfd"
        tmp=$(mktemp /usr/local/bin/.mfd.XXXXXX)
        printf '%s\n' "$body" > "$tmp"
        chmod 0755 "$tmp"
        mv -f "$tmp" "$launcher"
    fi
fi
if [ $want_test = 1 ] && [ ! -x .venv/bin/vng ] && [ "$(uname -m)" = x86_64 ]; then
    log "installing virtme-ng into .venv (vng: boots the kernel matrix's VMs)"
    .venv/bin/python -m pip install -q --disable-pip-version-check virtme-ng 2>&1 |
        grep -v "^$" >&2 || true
    [ -x .venv/bin/vng ] || log "virtme-ng did not install: the kernel matrix will skip"
fi
# The Grafana dashboard's generator and its test (contrib/grafana): Grafana's
# own typed builders, from PyPI; Python >= 3.11 (the dashboard tests skip without).
if [ $want_test = 1 ] && ! .venv/bin/python -c "import grafana_foundation_sdk" >/dev/null 2>&1 &&
   .venv/bin/python -c "import sys; sys.exit(sys.version_info < (3, 11))"; then
    log "installing grafana-foundation-sdk into .venv (the dashboard generator and its test)"
    .venv/bin/python -m pip install -q --disable-pip-version-check grafana-foundation-sdk 2>&1 |
        grep -v "^$" >&2 || true
fi
