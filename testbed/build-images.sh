#!/usr/bin/env bash
# Build the systemd test-host images the Molecule scenarios run on.
#
# No container registry is reachable here, so each image is made from Debian's
# packages: debootstrap a minimal root, add systemd and what Ansible needs,
# then `docker import`. The tag carries a hash of this script, so an unchanged
# recipe is never rebuilt (repeated local runs and CI reuse the cached image).
#
# Usage: testbed/build-images.sh [bookworm] [trixie]   (default: both)
set -euo pipefail

MIRROR="${MT5FARM_TESTBED_MIRROR:-http://deb.debian.org/debian}"
REPO="${MT5FARM_TESTBED_REPO:-mt5farm/testhost}"
RECIPE_HASH="$(sha256sum "$0" | cut -c1-12)"
# Packages beyond minbase: systemd as PID 1, sudo for `become`, python3-apt for Ansible's apt
# module, busybox-static to make a tiny image inside the host in the verifier.
INCLUDE="systemd,systemd-sysv,dbus,sudo,python3,python3-apt,ca-certificates,iproute2,procps,busybox-static,gpg"

declare -A VERSION_OF=([bookworm]=debian12 [trixie]=debian13)

build() {
    local suite="$1"
    local name="${VERSION_OF[$suite]:?unknown suite $suite (bookworm or trixie)}"
    local tag="${REPO}:${name}-${RECIPE_HASH}"
    if docker image inspect "$tag" >/dev/null 2>&1; then
        echo "testbed: $tag is cached"
    else
        local root
        root="$(mktemp -d /var/tmp/mt5farm-testbed.XXXXXX)"
        # shellcheck disable=SC2064 # expand now: the trap must remove this root
        trap "rm -rf '$root'" RETURN
        echo "testbed: debootstrap $suite into $root"
        debootstrap --variant=minbase --include="$INCLUDE" "$suite" "$root" "$MIRROR" >"$root.log" 2>&1 \
            || { tail -n 30 "$root.log"; exit 1; }
        rm -f "$root.log"
        # Current package lists inside the image: the roles use cache_valid_time.
        echo "deb $MIRROR $suite main" >"$root/etc/apt/sources.list"
        chroot "$root" apt-get -o APT::Sandbox::User=root update -qq
        # Units that make no sense in a container and only slow boot or fail.
        for unit in getty.target systemd-udevd.service systemd-udevd-control.socket \
                    systemd-udevd-kernel.socket sys-kernel-debug.mount \
                    systemd-remount-fs.service systemd-firstboot.service; do
            ln -sf /dev/null "$root/etc/systemd/system/$unit"
        done
        echo "$name-testhost" >"$root/etc/hostname"
        : >"$root/etc/machine-id"
        # (docker import takes no STOPSIGNAL: the scenarios set stop_signal.)
        tar -C "$root" -c . | docker import \
            --change 'CMD ["/sbin/init"]' \
            --change 'ENV container=docker' \
            - "$tag" >/dev/null
        echo "testbed: built $tag"
    fi
    # A stable alias the Molecule scenarios name.
    docker tag "$tag" "${REPO}:${name}"
}

suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(bookworm trixie)
for suite in "${suites[@]}"; do
    build "$suite"
done
