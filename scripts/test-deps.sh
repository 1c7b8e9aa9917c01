#!/usr/bin/env bash
# What `make test` needs beyond the Python toolchain, on a fresh machine:
# - a running Docker engine (Molecule's test hosts run on it): when none
#   answers, this machine is converged with our own docker_host role, exactly
#   as an operator's farm host would be;
# - debootstrap (test-host images), busybox-static (tiny test images), redis-server,
#   postgresql and wrk (the account service's tests and benchmarks start private instances).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

packages=(debootstrap redis-server postgresql wrk busybox-static)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "test-deps: installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if docker info >/dev/null 2>&1; then
    echo "test-deps: Docker engine answers"
else
    echo "test-deps: no Docker engine answers: converging this machine with the docker_host role"
    .venv/bin/ansible-playbook -i inventories/local playbooks/docker_hosts.yml
fi
