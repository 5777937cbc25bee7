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
# The interop tier (tests/interop): servers nobody on the project wrote. rclone serves SFTP
# ('rclone serve sftp'); ProFTPD's mod_sftp comes unpacked below, its shared libraries from here.
command -v rclone >/dev/null 2>&1 || need+=(rclone)
# clamd for the malware-scan tests. They need no signature download (freshclam, the internet):
# the fixture writes its own signature file (an MD5 signature of the EICAR test string).
[ -x /usr/sbin/clamd ] || need+=(clamav-daemon)
# age and zstd: an archive is restored by hand in the tests (age -d, tar --zstd, sha256sum -c).
command -v age >/dev/null 2>&1 || need+=(age)
command -v zstd >/dev/null 2>&1 || need+=(zstd)
# DejaVu Sans: the rights and contract PDF reports print any script with it (else Latin-1 only).
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
# promtool (Debian's prometheus package) lints the /metrics output in the metrics tests.
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
# Chromium for the web console's real-browser tests (Playwright drives it: its own browser
# download is not reachable, so tests/web points Playwright at /usr/bin/chromium).
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# lftp: the FTPS benchmark's peer for many small files (bench/transfer.py --protocol ftps).
command -v lftp >/dev/null 2>&1 || need+=(lftp)
PROFTPD_LIBS=(libhiredis0.14 libmemcached11 libmemcachedutil2 libsodium23 libidn2-0 libpcre2-posix3 libcap2 libacl1)
# vsftpd (the FTPS tests' strict real server) is unpacked like ProFTPD; these are its libraries.
VSFTPD_LIBS=(libwrap0 libpam0g libcap2 libssl3)
for lib in "${PROFTPD_LIBS[@]}" "${VSFTPD_LIBS[@]}"; do
  dpkg-query -W -f='${Status}' "$lib" 2>/dev/null | grep -q "ok installed" || need+=("$lib")
done

# ProFTPD is not installed as a package: Debian's FTP servers all 'Conflict: ftp-server', so
# one installed here would block another a machine may need (vsftpd). Its binary and modules are
# unpacked ('apt-get download' + 'dpkg -x') into a private folder the interop fixtures read.
INTEROP_DIR="${CONSONANCE_INTEROP_DIR:-$HOME/.cache/consonance-sftp/interop}"
PROFTPD_ROOT="$INTEROP_DIR/proftpd"
need_proftpd=0
[ -x "$PROFTPD_ROOT/usr/sbin/proftpd" ] && [ -f "$PROFTPD_ROOT/usr/lib/proftpd/mod_sftp.so" ] || need_proftpd=1
# vsftpd for the FTPS tests (explicit and implicit TLS, session reuse required): unpacked, never
# installed, so no system daemon starts on 0.0.0.0:21 and no other FTP server is blocked.
VSFTPD_ROOT="$INTEROP_DIR/vsftpd"
need_vsftpd=0
[ -x "$VSFTPD_ROOT/usr/sbin/vsftpd" ] || need_vsftpd=1

if [ ${#need[@]} -eq 0 ] && [ $need_proftpd -eq 0 ] && [ $need_vsftpd -eq 0 ]; then
  exit 0
fi

[ ${#need[@]} -gt 0 ] && echo "Installing missing system packages: ${need[*]}"
[ $need_proftpd -eq 1 ] && echo "Unpacking ProFTPD (mod_sftp) into $PROFTPD_ROOT"
[ $need_vsftpd -eq 1 ] && echo "Unpacking vsftpd into $VSFTPD_ROOT"
SUDO=""
if [ "$(id -u)" -ne 0 ] && [ ${#need[@]} -gt 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "error: need root or sudo to install: ${need[*]}" >&2
    echo "hint: run 'apt-get install ${need[*]}' as root, then re-run 'make test'" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
if [ ${#need[@]} -gt 0 ] || [ "$(id -u)" -eq 0 ]; then $SUDO apt-get update -qq; fi
if [ ${#need[@]} -gt 0 ]; then
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if [ $need_proftpd -eq 1 ]; then
  debs="$(mktemp -d)"
  # apt-get download writes into the current folder, as the _apt user when it can.
  chmod 0777 "$debs"
  (cd "$debs" && apt-get download -qq proftpd-core proftpd-mod-crypto 2>/dev/null)
  rm -rf "$PROFTPD_ROOT.new" && mkdir -p "$PROFTPD_ROOT.new"
  for deb in "$debs"/*.deb; do dpkg -x "$deb" "$PROFTPD_ROOT.new"; done
  rm -rf "$PROFTPD_ROOT" && mv "$PROFTPD_ROOT.new" "$PROFTPD_ROOT"
  rm -rf "$debs"
  "$PROFTPD_ROOT/usr/sbin/proftpd" --version
fi
if [ $need_vsftpd -eq 1 ]; then
  debs="$(mktemp -d)"
  chmod 0777 "$debs"
  (cd "$debs" && apt-get download -qq vsftpd 2>/dev/null)
  rm -rf "$VSFTPD_ROOT.new" && mkdir -p "$VSFTPD_ROOT.new"
  for deb in "$debs"/*.deb; do dpkg -x "$deb" "$VSFTPD_ROOT.new"; done
  rm -rf "$VSFTPD_ROOT" && mv "$VSFTPD_ROOT.new" "$VSFTPD_ROOT"
  rm -rf "$debs"
  [ -x "$VSFTPD_ROOT/usr/sbin/vsftpd" ] || { echo "error: vsftpd did not unpack" >&2; exit 1; }
fi
# The Debian packages start system services we do not use; tests start their own on 127.0.0.1.
$SUDO service ssh stop >/dev/null 2>&1 || true
$SUDO service postgresql stop >/dev/null 2>&1 || true
$SUDO service clamav-daemon stop >/dev/null 2>&1 || true
$SUDO service clamav-freshclam stop >/dev/null 2>&1 || true
$SUDO service prometheus stop >/dev/null 2>&1 || true
