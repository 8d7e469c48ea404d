#!/usr/bin/env bash
# Builds (once) a minimal Debian unstable chroot holding Asterisk 22 and sipp.
# Asterisk is not packaged for Debian 12, and unstable's .debs need a newer libc,
# so the local platform and the tests run Asterisk inside this chroot.
# The chroot is cached outside the clone (RINGWISE_CACHE) and reused by later runs.
set -euo pipefail

cache="${RINGWISE_CACHE:-/var/cache/ringwise}"
root="$cache/asterisk-chroot"
stamp="$root/.ringwise-ready-v1"
packages="asterisk asterisk-modules asterisk-core-sounds-en-wav sip-tester iproute2"

if [[ -f "$stamp" ]]; then
  exit 0
fi

if ! command -v debootstrap >/dev/null; then
  apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null
fi

# Take the mirror from the host's apt sources rather than naming a host here.
mirror="$(
  { grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}';
    grep -hE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '{print $2}'; } \
  | grep -E '/debian/?$' | head -n1
)" || true
if [[ -z "$mirror" ]]; then
  echo "build-chroot: no Debian mirror found in the host's apt sources" >&2
  exit 1
fi

rm -rf "$root.tmp"
mkdir -p "$cache"
echo "build-chroot: debootstrap unstable from $mirror into $root (about a minute, once)" >&2
debootstrap --variant=minbase unstable "$root.tmp" "$mirror" >"$cache/debootstrap.log" 2>&1 || {
  tail -n 30 "$cache/debootstrap.log" >&2; exit 1; }

# The unstable Release file can be past its Valid-Until date.
echo 'Acquire::Check-Valid-Until "false";' >"$root.tmp/etc/apt/apt.conf.d/99ringwise"
# Keep maintainer scripts from starting Asterisk inside the chroot.
printf '#!/bin/sh\nexit 101\n' >"$root.tmp/usr/sbin/policy-rc.d"
chmod +x "$root.tmp/usr/sbin/policy-rc.d"
cp /etc/hosts "$root.tmp/etc/hosts"
cp /etc/resolv.conf "$root.tmp/etc/resolv.conf" 2>/dev/null || true

chroot "$root.tmp" apt-get update -qq >/dev/null
chroot "$root.tmp" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq --no-install-recommends $packages >"$cache/chroot-apt.log" 2>&1 || {
  tail -n 30 "$cache/chroot-apt.log" >&2; exit 1; }
chroot "$root.tmp" apt-get clean
chroot "$root.tmp" asterisk -V >&2

rm -rf "$root"
mv "$root.tmp" "$root"
touch "$stamp"
echo "build-chroot: ready at $root" >&2
