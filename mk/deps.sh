#!/bin/sh
# Installs the Debian packages named on the command line that are missing.
# Used by the Makefile's first step and by tests that need real peers
# (mosquitto clients, paho, erlang, go). Says what it does; where it cannot
# install (not root and no password-less sudo, or no apt-get) it stops with a
# message that names the packages.
set -u
missing=""
for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "hermes: installing missing Debian packages:$missing" >&2
if ! command -v apt-get >/dev/null 2>&1; then
    echo "hermes: apt-get not found; install these packages by hand:$missing" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "hermes: not root and no password-less sudo; run as root:" >&2
        echo "    apt-get install -y$missing" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
# A lock held by another apt run (unattended upgrades) is waited for.
opts="-y -q -o DPkg::Lock::Timeout=300"
# shellcheck disable=SC2086
$SUDO apt-get install $opts $missing >/tmp/hermes-apt.log 2>&1 || {
    $SUDO apt-get update -q >>/tmp/hermes-apt.log 2>&1
    $SUDO apt-get install $opts $missing >>/tmp/hermes-apt.log 2>&1
} || {
    echo "hermes: apt-get install failed (see /tmp/hermes-apt.log):$missing" >&2
    tail -n 20 /tmp/hermes-apt.log >&2
    exit 1
}
echo "hermes: installed$missing" >&2
