# shellcheck shell=bash
# apt_install PKG...: installs Debian packages that are missing, without letting their
# maintainer scripts start the distribution's own services (nginx on :80, prometheus on :9090,
# …): the scripts here start what they need themselves, on their own ports, and stop it by PID.
# Sourced by scripts/stack.sh and scripts/alerts-test.sh.

apt_as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  printf '[apt] installing %s\n' "${missing[*]}" >&2
  # A policy-rc.d that exits 101 tells invoke-rc.d not to start services. Use the machine's
  # own if it has one; otherwise put one in place for the duration of the install only.
  local policy=/usr/sbin/policy-rc.d placed=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | apt_as_root tee "$policy" >/dev/null
    apt_as_root chmod 755 "$policy"
    placed=1
  fi
  local rc=0
  apt_as_root apt-get update -qq >/dev/null || rc=$?
  if [ $rc -eq 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt_as_root apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null || rc=$?
  fi
  if [ $placed -eq 1 ]; then apt_as_root rm -f "$policy"; fi
  return $rc
}
