#!/usr/bin/env bash
# Installs the Debian packages the real-server tests need, only when they are missing.
# Idempotent; needs root (or sudo) only when something is actually missing.
set -euo pipefail

need=()
command -v /usr/sbin/sshd >/dev/null 2>&1 || need+=(openssh-server)
command -v sftp >/dev/null 2>&1 || need+=(openssh-client)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
# EPUBCheck (a Java jar) for the EPUB preflight tests.
command -v epubcheck >/dev/null 2>&1 || need+=(epubcheck)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi

echo "Installing missing system packages: ${need[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "error: need root or sudo to install: ${need[*]}" >&2
    echo "hint: run 'apt-get install ${need[*]}' as root, then re-run 'make test'" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The Debian packages start system services we do not use; tests start their own on 127.0.0.1.
$SUDO service ssh stop >/dev/null 2>&1 || true
$SUDO service postgresql stop >/dev/null 2>&1 || true
