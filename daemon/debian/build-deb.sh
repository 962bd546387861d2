#!/usr/bin/env bash
# Build halo's Debian package from daemon/debian/ with dpkg-deb.
#
#   bash daemon/debian/build-deb.sh [amd64|arm64]   (default: this machine's)
#        -> target/debian/halo_VERSION_ARCH.deb
#
# VERSION is the workspace version from Cargo.toml (a semver pre-release
# "-rc.1" becomes "~rc.1" so it sorts before the release), followed by
# $HALO_DEB_VERSION_SUFFIX when set (the packaging tests build "+test1" to
# upgrade over the plain version). The binary is built first: natively for
# this machine's architecture, with daemon/debian/build-aarch64.sh for arm64
# on another host. $CARGO_FLAGS is passed on to cargo (default --locked).
# $HALO_DEB_BIN packages an already built binary instead of building one.
#
# Layout: /usr/bin/halo, /lib/systemd/system/halo.service, /etc/halo/halo.toml
# (conffile; the commented example docs/examples/halo.toml), the man page,
# copyright and changelog; maintainer scripts
# postinst/prerm/postrm and lintian overrides from daemon/debian/.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
export PATH="$HOME/.cargo/bin:$PATH"
deb=daemon/debian
log() { echo "build-deb: $*" >&2; }
die() { log "$*"; exit 1; }

for tool in dpkg-deb dpkg-gencontrol dpkg-shlibdeps dpkg-parsechangelog python3; do
  command -v "$tool" >/dev/null || die "$tool missing (apt-get install dpkg-dev python3)"
done

host_arch=$(dpkg --print-architecture)
arch=${1:-$host_arch}
case "$arch" in
  amd64) triple=x86_64-unknown-linux-gnu ;;
  arm64) triple=aarch64-unknown-linux-gnu ;;
  *) die "unsupported architecture '$arch' (amd64 or arm64)" ;;
esac

cargo_version=$(python3 -c '
import sys, tomllib
with open("Cargo.toml", "rb") as f:
    print(tomllib.load(f)["workspace"]["package"]["version"])')
version="${cargo_version/-/\~}${HALO_DEB_VERSION_SUFFIX:-}"
[[ "$version" =~ ^[0-9][A-Za-z0-9.+~]*$ ]] || die "bad package version '$version'"

# --- the binary -------------------------------------------------------------
read -r -a cargo_flags <<<"${CARGO_FLAGS---locked}"
if [ -n "${HALO_DEB_BIN:-}" ]; then
  # A binary built elsewhere (CI artefact, the packaging tests' own build).
  bin=$HALO_DEB_BIN
  file -b "$bin" | grep -q "$(case $arch in amd64) echo x86-64 ;; arm64) echo aarch64 ;; esac)" ||
    die "$bin is not an $arch binary"
elif [ "$arch" = "$host_arch" ]; then
  cargo build --release "${cargo_flags[@]}" -p halo
  bin=target/release/halo
elif [ "$arch" = arm64 ]; then
  bash "$deb/build-aarch64.sh" build
  bin=target/$triple/release/halo
else
  die "cannot build $arch on $host_arch"
fi
[ -x "$bin" ] || die "$bin was not built"

# --- the tree ---------------------------------------------------------------
umask 022
out=target/debian
mkdir -p "$out"
# A scratch source tree: dpkg-shlibdeps and dpkg-gencontrol want
# debian/control in the working directory and the package under debian/halo.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/debian"
cp "$deb/control" "$work/debian/control"
stage=$work/debian/halo
mkdir -p "$stage/DEBIAN"

install -D -m 0755 "$bin" "$stage/usr/bin/halo"
# The release profile strips symbols; this also drops the .comment and .note
# sections dh_strip would (lintian: binary-has-unneeded-section) and any debug
# info a local non-stripping profile left in.
if [ "$arch" = arm64 ] && [ "$host_arch" != arm64 ]; then strip=aarch64-linux-gnu-strip; else strip=strip; fi
"$strip" --strip-unneeded --remove-section=.comment --remove-section=.note "$stage/usr/bin/halo"

install -D -m 0644 "$deb/halo.service" "$stage/lib/systemd/system/halo.service"

# The commented example the config docs maintain; `halo check` accepts it
# (tests/packaging/test_chroot.py checks the installed copy).
example=docs/examples/halo.toml
[ -f "$example" ] || die "$example missing: it becomes /etc/halo/halo.toml"
install -D -m 0644 "$example" "$stage/etc/halo/halo.toml"

doc=$stage/usr/share/doc/halo
install -D -m 0644 "$deb/copyright" "$doc/copyright"

# The installed changelog's top entry must carry the package's version; when
# Cargo.toml or a suffix moved it past daemon/debian/changelog, say so in a
# generated entry rather than leave the versions disagreeing.
changelog=$work/debian/changelog
top=$(dpkg-parsechangelog -l "$deb/changelog" -S Version)
if [ "$top" != "$version" ]; then
  maint=$(dpkg-parsechangelog -l "$deb/changelog" -S Maintainer)
  # Dated now (or $SOURCE_DATE_EPOCH), and always after the entry below it
  # (lintian: latest-changelog-entry-without-new-date).
  ts=${SOURCE_DATE_EPOCH:-$(date +%s)}
  top_ts=$(dpkg-parsechangelog -l "$deb/changelog" -S Timestamp)
  [ "$ts" -gt "$top_ts" ] || ts=$((top_ts + 1))
  date=$(date -u -R -d "@$ts")
  printf 'halo (%s) bookworm; urgency=medium\n\n  * Build of halo %s from the source tree (not released).\n\n -- %s  %s\n\n' \
    "$version" "$cargo_version" "$maint" "$date" >"$changelog"
fi
cat "$deb/changelog" >>"$changelog"
mkdir -p "$doc"
gzip -9n <"$changelog" >"$doc/changelog.gz"
chmod 0644 "$doc/changelog.gz"

mkdir -p "$stage/usr/share/man/man1"
gzip -9n <"$deb/halo.1" >"$stage/usr/share/man/man1/halo.1.gz"
chmod 0644 "$stage/usr/share/man/man1/halo.1.gz"

if [ -f "$deb/halo.lintian-overrides" ]; then
  install -D -m 0644 "$deb/halo.lintian-overrides" "$stage/usr/share/lintian/overrides/halo"
fi

# --- DEBIAN/ ----------------------------------------------------------------
for script in postinst prerm postrm; do
  install -m 0755 "$deb/$script" "$stage/DEBIAN/$script"
done
install -m 0644 "$deb/conffiles" "$stage/DEBIAN/conffiles"

# md5sums of everything but conffiles (dpkg tracks those itself), as dh_md5sums.
(cd "$stage" && find . -type f ! -path './DEBIAN/*' -printf '%P\n' | LC_ALL=C sort |
  grep -vxF -f <(sed 's|^/||' DEBIAN/conffiles) | xargs -r -d '\n' md5sum >DEBIAN/md5sums)
chmod 0644 "$stage/DEBIAN/md5sums"

# Library dependencies of the binary (libc6, libgcc-s1) with the versions the
# symbols it uses need, read from the arm64 or amd64 libc6 package's data.
(cd "$work" && DEB_HOST_ARCH=$arch dpkg-shlibdeps -Tdebian/substvars -e debian/halo/usr/bin/halo)
grep -q '^shlibs:Depends=' "$work/debian/substvars" || die "dpkg-shlibdeps found no library dependencies"
echo "misc:Depends=" >>"$work/debian/substvars"
(cd "$work" && DEB_HOST_ARCH=$arch dpkg-gencontrol -Tdebian/substvars -fdebian/files \
  -Pdebian/halo -phalo -v"$version" -DArchitecture="$arch")

# Reproducible: every file dated from the changelog entry.
epoch=$(dpkg-parsechangelog -l "$changelog" -S Timestamp)
find "$stage" -exec touch -h -d "@$epoch" {} +
pkg=$out/halo_${version}_$arch.deb
# Built aside and renamed into place: other scripts (tests, the image and
# ansible builds) may build or read the same package at the same time.
SOURCE_DATE_EPOCH=$epoch dpkg-deb --root-owner-group -Zxz --build "$stage" "$work/halo.deb" >/dev/null
mv -f "$work/halo.deb" "$pkg.$$.tmp"
mv -f "$pkg.$$.tmp" "$pkg"
log "$pkg ($(stat -c %s "$pkg") bytes)"
echo "$pkg"
