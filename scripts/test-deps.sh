#!/usr/bin/env bash
# What `make test` needs beyond the Python toolchain, on a fresh machine:
# - a running Docker engine (Molecule's test hosts run on it): when none
#   answers, this machine is converged with our own docker_host role, exactly
#   as an operator's farm host would be;
# - debootstrap (test-host images), busybox-static (tiny test images), redis-server,
#   postgresql and wrk (the account service's tests and benchmarks start private instances);
# - nginx (tests/nginx runs its own Nginx processes on free loopback ports; the Debian 12
#   package `nginx` has every module the role's config uses: ssl, map, limit_req, proxy,
#   stub_status; nginx-light there only adds the echo module). Its system service is never
#   needed: it is kept from starting at install and disabled, so it does not take port 80
#   from the platform's Nginx container.
# - chromium (tests/nginx/test_fleet_page.py opens the fleet page in headless Chromium).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

packages=(debootstrap redis-server postgresql wrk busybox-static nginx chromium)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "test-deps: installing ${missing[*]}"
    as_root apt-get update -qq
    policy=""
    if [[ " ${missing[*]} " == *" nginx "* && ! -e /usr/sbin/policy-rc.d ]]; then
        # invoke-rc.d/deb-systemd-invoke ask this: no start for nginx, any other service as usual.
        policy=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nfor arg; do [ "$arg" = nginx ] && exit 101; done\nexit 0\n' | as_root tee "$policy" >/dev/null
        as_root chmod 0755 "$policy"
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || {
        [ -z "$policy" ] || as_root rm -f "$policy"; exit 1; }
    [ -z "$policy" ] || as_root rm -f "$policy"
    if [[ " ${missing[*]} " == *" nginx "* ]]; then
        if [ -d /run/systemd/system ]; then as_root systemctl disable --now nginx >/dev/null 2>&1 || true
        else as_root update-rc.d nginx disable >/dev/null 2>&1 || true; fi
    fi
fi

if docker info >/dev/null 2>&1; then
    echo "test-deps: Docker engine answers"
else
    echo "test-deps: no Docker engine answers: converging this machine with the docker_host role"
    .venv/bin/ansible-playbook -i inventories/local playbooks/docker_hosts.yml
fi
