#!/usr/bin/env bash
# Set up a Debian 12 machine (CI or dev) for maild's tests, demo and benchmarks:
#   1. Debian packages dovecot-imapd, dovecot-lmtpd, openssl (only if missing),
#   2. a system Dovecot that THIS run installed kept stopped (one that was already
#      there is never touched; devstack runs private instances on
#      free 127.0.0.1 ports, so it never needs the standard ones),
#   3. .venv in the repo root (python3 >= 3.11) with `pip install -e '.[test]'`,
#   4. flufl.bounce's real-bounce corpus (its sdist's tests/data, ~117 messages) unpacked
#      to .cache/corpora/flufl_bounce/ for tests/test_classify.py (once; never committed),
#   5. with MAILD_WITH_BROWSER=1 (scripts/test.sh sets it), Debian's chromium, which
#      the digest screenshot test uses to render the HTML (~350 MB, ~40 s).
# Idempotent, non-interactive (CI=true, no stdin); run it as root from any cwd.
# It does not touch /etc/dovecot, start any service, or install anything else
# (except python3/python3-venv when the venv must be created and they are missing).
set -euo pipefail

cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."

export DEBIAN_FRONTEND=noninteractive
export PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1
PYTHON="${PYTHON:-python3}"
APT_PACKAGES=(dovecot-imapd dovecot-lmtpd openssl)
if [ "${MAILD_WITH_BROWSER:-0}" = 1 ]; then APT_PACKAGES+=(chromium); fi
POLICY_RC_D=/usr/sbin/policy-rc.d
SYSTEM_DOVECOT_PID=/run/dovecot/master.pid

step() { printf '==> %s\n' "$*"; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"
  else die "need root (or password-less sudo) to run: $*"
  fi
}

missing_packages() {
  local pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -q 'ok installed$' || echo "$pkg"
  done
}

venv_packages() {
  # Only needed when .venv must be created with the system python3.
  [ -x .venv/bin/python ] && return 0
  command -v "$PYTHON" >/dev/null 2>&1 || { echo python3 python3-venv; return 0; }
  "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1 || echo python3-venv
}

# Keep maintainer scripts from starting services while we install (removed again after).
block_service_starts() {
  [ -e "$POLICY_RC_D" ] && return 0
  printf '#!/bin/sh\n# temporary, from maild scripts/install.sh\nexit 101\n' | as_root tee "$POLICY_RC_D" >/dev/null
  as_root chmod 755 "$POLICY_RC_D"
  trap 'as_root rm -f "$POLICY_RC_D"' EXIT
}

apt_install() {
  local log
  log="$(mktemp)"
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install $* by hand"
  block_service_starts
  as_root apt-get update -qq >"$log" 2>&1 || { cat "$log" >&2; die "apt-get update failed"; }
  if ! as_root apt-get install -y -qq --no-install-recommends \
      -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
      "$@" >>"$log" 2>&1 </dev/null; then
    # Typically dovecot-core's postinst failing to start the system service
    # (no init system in a container); the files are unpacked, so carry on.
    echo "    apt-get reported an error; finishing configuration and checking binaries"
    as_root dpkg --configure -a >>"$log" 2>&1 </dev/null || true
  fi
  check_binaries || { tail -n 30 "$log" >&2; die "packages $* did not install"; }
  rm -f "$log"
}

check_binaries() {
  command -v openssl >/dev/null 2>&1 &&
    { command -v dovecot >/dev/null 2>&1 || [ -x /usr/sbin/dovecot ]; } &&
    [ -x /usr/lib/dovecot/imap ] && [ -x /usr/lib/dovecot/lmtp ]
}

install_packages() {
  local missing
  # shellcheck disable=SC2207
  missing=($(missing_packages "${APT_PACKAGES[@]}") $(venv_packages))
  if [ "${#missing[@]}" -eq 0 ]; then
    step "Debian packages already installed (${APT_PACKAGES[*]})"
    return 0
  fi
  step "installing Debian packages: ${missing[*]}"
  apt_install "${missing[@]}"
  case " ${missing[*]} " in *" dovecot-"*) INSTALLED_DOVECOT=1 ;; esac
}

system_dovecot_running() {
  [ -s "$SYSTEM_DOVECOT_PID" ] && kill -0 "$(cat "$SYSTEM_DOVECOT_PID")" 2>/dev/null
}

stop_system_dovecot() {
  step "making sure the system Dovecot service is not running"
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    # dovecot.socket would start it again on the first connection to 143/993.
    as_root systemctl disable --now dovecot.socket dovecot.service >/dev/null 2>&1 || true
  fi
  system_dovecot_running || return 0
  echo "    stopping the system Dovecot (pid $(cat "$SYSTEM_DOVECOT_PID"))"
  as_root service dovecot stop >/dev/null 2>&1 || true
  if system_dovecot_running; then
    as_root kill -TERM "$(cat "$SYSTEM_DOVECOT_PID")" 2>/dev/null || true
  fi
  for _ in $(seq 50); do system_dovecot_running || return 0; sleep 0.2; done
  die "the system Dovecot (pid $(cat "$SYSTEM_DOVECOT_PID")) did not stop"
}

ensure_venv() {
  if [ -x .venv/bin/python ]; then
    step "using existing .venv ($(.venv/bin/python -V 2>&1))"
    return 0
  fi
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    die "$PYTHON is $("$PYTHON" -V 2>&1); maild needs Python >= 3.11 (set PYTHON=...)"
  step "creating .venv with $("$PYTHON" -V 2>&1)"
  "$PYTHON" -m venv .venv
}

install_project() {
  step "installing maild and its test dependencies into .venv (pip install -e '.[test]')"
  .venv/bin/python -m pip install --quiet --progress-bar off -e '.[test]' </dev/null
  # An editable install leaves maild's own modules uncompiled; with
  # PYTHONDONTWRITEBYTECODE set (as on some CI machines) every `maild` start then
  # compiles ~80 modules again (~0.15 s of each start, hundreds of starts per test run).
  .venv/bin/python -m compileall -q maild devstack tests bench >/dev/null
}

FLUFL_VERSION=6.0.0
CORPORA=.cache/corpora

fetch_corpora() {
  local dest="$CORPORA/flufl_bounce" tmp
  if compgen -G "$dest/*.txt" >/dev/null; then
    step "flufl.bounce bounce corpus already in $dest"
    return 0
  fi
  step "fetching flufl.bounce $FLUFL_VERSION's bounce corpus into $dest"
  mkdir -p "$CORPORA"
  if ! .venv/bin/python -m pip download --quiet --progress-bar off --no-deps \
      --no-binary :all: "flufl.bounce==$FLUFL_VERSION" -d "$CORPORA" </dev/null; then
    echo "    could not download it: tests/test_classify.py skips its corpus test (fails with CI=true)"
    return 0
  fi
  tmp="$(mktemp -d)"
  tar -xzf "$CORPORA/flufl_bounce-$FLUFL_VERSION.tar.gz" -C "$tmp"
  rm -rf "$dest.part" && mkdir -p "$dest.part"
  cp "$tmp/flufl_bounce-$FLUFL_VERSION"/tests/data/*.txt "$dest.part/"
  rm -rf "$tmp" "$dest" && mv "$dest.part" "$dest"
  echo "    $(find "$dest" -name '*.txt' | wc -l) messages"
}

INSTALLED_DOVECOT=0
install_packages
# maild's tests and demo run private Dovecots on free ports, so a system Dovecot
# that was already there (a real mail server!) is left alone. Only one this run
# installed is kept from running.
if [ "$INSTALLED_DOVECOT" = 1 ]; then stop_system_dovecot; fi
ensure_venv
install_project
fetch_corpora
step "done: run the tests with .venv/bin/python -m pytest"
