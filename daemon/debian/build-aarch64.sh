#!/usr/bin/env bash
# Build halo for the Raspberry Pi (aarch64-unknown-linux-gnu) without Docker,
# and optionally run its unit tests under qemu-user.
#
#   bash daemon/debian/build-aarch64.sh [build]   release binary ->
#        target/aarch64-unknown-linux-gnu/release/halo
#   bash daemon/debian/build-aarch64.sh test [-- FILTER...]   `cargo test --lib`
#        for aarch64, each test binary run by qemu-aarch64-static
#
# Toolchain: rustup's aarch64 std when it is installed (or `rustup target add`
# can download it); otherwise Debian's rustc-web with libstd-rust-web-dev:arm64,
# which works where rustup cannot download. Either way gcc-aarch64-linux-gnu
# links (.cargo/config.toml names it). As root the script installs the Debian
# packages it needs; otherwise it prints the apt-get command.
#
# Extra cargo flags come from $CARGO_FLAGS (default --locked).
#
# The release binary is linked by lld (rustup's rust-lld, else Debian's
# lld-16) with two size options that keep it within its 4 MiB budget
# (docs/benchmarks.md, "aarch64 binary size"):
# - `-z pack-relative-relocs`: the position-independent executable's
#   relative relocations packed as DT_RELR (245 KB of .rela.dyn -> 3 KB).
#   Still PIE (ASLR); needs glibc >= 2.36 (Debian 12 and 13), which
#   dpkg-shlibdeps writes into the package's Depends (GLIBC_ABI_DT_RELR).
#   Binutils 2.40's ld (Debian 12) cannot pack aarch64 relocations.
# - `--no-eh-frame-hdr` (131 KB): the lookup table of the unwind tables.
#   The release profile aborts on panic, so nothing unwinds; a panic still
#   prints its message and location, only RUST_BACKTRACE's backtrace is
#   lost. Test builds (panic = unwind) keep it: `test` below sets none of this.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
export PATH="$HOME/.cargo/bin:$PATH"
target=aarch64-unknown-linux-gnu
mode=${1:-build}
read -r -a cargo_flags <<<"${CARGO_FLAGS---locked}"

log() { echo "build-aarch64: $*" >&2; }

have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

# Install Debian packages (arm64 ones need the foreign architecture first).
apt_install() {
  local want=() p
  for p in "$@"; do have_pkg "$p" || want+=("$p"); done
  [ ${#want[@]} -gt 0 ] || return 0
  if [ "$(id -u)" -ne 0 ]; then
    log "missing packages: ${want[*]}"
    log "as root: dpkg --add-architecture arm64 && apt-get update && apt-get install ${want[*]}"
    exit 1
  fi
  if printf '%s\n' "${want[@]}" | grep -q ':arm64$' &&
    ! dpkg --print-foreign-architectures | grep -qx arm64; then
    dpkg --add-architecture arm64
  fi
  log "installing ${want[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${want[@]}" >/dev/null
}

rustup_has_target() {
  command -v rustup >/dev/null 2>&1 && rustup target list --installed 2>/dev/null | grep -qx "$target"
}

debian_rustc_ok() {
  [ -x /usr/bin/rustc ] && compgen -G "/usr/lib/rustlib/$target/lib/libstd-*.rlib" >/dev/null
}

# Pick the compiler. RUSTC is exported only for Debian's, so rustup users
# keep their own toolchain untouched.
choose_rustc() {
  if rustup_has_target; then
    log "using rustup's $target target"
    return
  fi
  if ! debian_rustc_ok && command -v rustup >/dev/null 2>&1; then
    # Bounded: on a machine without network access this fails quickly.
    if timeout 120 rustup target add "$target" >/dev/null 2>&1; then
      log "installed rustup's $target target"
      return
    fi
    log "rustup cannot add $target here; using Debian's rustc-web"
  fi
  debian_rustc_ok || apt_install rustc-web libstd-rust-web-dev:arm64
  export RUSTC=/usr/bin/rustc
  log "using Debian's $(/usr/bin/rustc -V)"
}

apt_install gcc-aarch64-linux-gnu libc6-dev-arm64-cross
choose_rustc

# The directory holding an lld named ld.lld, for gcc's -fuse-ld=lld -B.
lld_dir() {
  local d
  d="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/gcc-ld"
  if [ -x "$d/ld.lld" ]; then echo "$d"; return; fi
  # Debian's lld 14 (the default) lacks -z pack-relative-relocs; 16 has it.
  apt_install lld-16
  echo /usr/lib/llvm-16/bin
}

case "$mode" in
  build)
    lld=$(lld_dir)
    log "linking with $lld/ld.lld"
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C link-arg=-fuse-ld=lld -C link-arg=-B$lld -C link-arg=-Wl,-z,pack-relative-relocs -C link-arg=-Wl,--no-eh-frame-hdr"
    cargo build --release "${cargo_flags[@]}" --target "$target" -p halo
    bin="target/$target/release/halo"
    log "$bin: $(stat -c %s "$bin") bytes ($(file -b "$bin" | cut -d, -f1,2))"
    ;;
  test)
    # qemu-user runs the test binaries. No `-L /usr/aarch64-linux-gnu`: with
    # libc6:arm64 installed the loader is found in /lib, and mixing the cross
    # libc with the native loader hangs at thread creation. qemu-user has no
    # io_uring, so the proxy's epoll fallback is what these tests exercise.
    apt_install qemu-user-static libc6:arm64
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER=qemu-aarch64-static
    # --lib only: the integration tests need root and network namespaces,
    # which qemu-user does not emulate.
    #
    # Skipped under qemu only: missing_program_cannot_start expects spawning
    # a missing program to fail in the parent. glibc's posix_spawn reports
    # exec errors through memory shared with a CLONE_VFORK child; qemu-user
    # runs that clone as a plain fork, so the error is lost and the child
    # exits 127 instead. Natively (and on a Pi) the test runs and passes.
    skips=(--skip hooks::exec::tests::missing_program_cannot_start)
    extra=("${@:2}")
    [ "${extra[0]:-}" = "--" ] && extra=("${extra[@]:1}")
    cargo test "${cargo_flags[@]}" --target "$target" -p halo --lib -- "${skips[@]}" "${extra[@]}"
    ;;
  *)
    echo "usage: $0 [build|test]" >&2
    exit 2
    ;;
esac
