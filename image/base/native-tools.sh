#!/bin/bash
# Architecture-independent work of the arm64 install, run natively.
#
#   native-tools.sh install ROOT TOOLS   (essential hook: before the packages)
#   native-tools.sh remove ROOT          (customize hook: after the initramfs)
#
# Under qemu-user every emulated program pays for its translation: a bare
# `python3 -c pass` takes 2 s with bookworm's qemu 7.2. The packages'
# postinsts byte-compile python3.13's standard library and every python3-*
# package (py3compile), 8 minutes emulated on a quiet machine, and the
# kernel's postinst and mkinitramfs run `depmod` over 3000 compressed
# modules, over a minute each (docs/benchmarks.md#image-build). None of
# that output depends on the CPU: .pyc files are the same on every
# architecture for one Python version (magic number), modules.*.bin are
# big-endian on every architecture.
#
# TOOLS is a tree of the build machine's own architecture with the same
# suite's python3.13, kmod, dash, coreutils, sed, findutils and openssl (mmdebstrap --variant=extract, made by
# build_base_root). `install` copies it to ROOT/.halo-native and diverts two
# commands to wrappers that run the native programs inside the chroot
# (through the native dynamic loader, so that no file of the arm64 tree
# changes meaning), where they see the card's paths:
# - /usr/bin/python3.13: only the byte-compilations -- the stdlib postinsts'
#   `python3.13 -E -S /usr/lib/python3.13/py_compile.py FILES`, py3compile
#   itself and what it runs (`-m py_compile -` and its two `-c` queries for
#   the magic number and cache tag). The same py3compile chooses the same
#   files; everything else runs the arm64 python3.13.
# - /usr/sbin/depmod: the same kmod version's depmod.
# - /usr/sbin/update-ca-certificates: the card's script with the build
#   machine's shell tools and openssl (one emulated process per certificate
#   and step otherwise: a minute).
# `remove` takes the wrappers and the copy away again and puts the packages'
# files back, so the card is the plain Debian system, and checks that
# python3 on the card takes the compiled files as valid.
set -euo pipefail
n=/.halo-native

in_root() { chroot "$r" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }

divert() {
	in_root dpkg-divert --local --rename --divert "$1.halo-image" "--$2" "$1" >/dev/null
}

case "${1:-}" in
install)
	r=$2 tools=$3
	for t in python3.13 kmod dash openssl; do
		[ -x "$tools/usr/bin/$t" ] || { echo "native-tools: $tools has no $t" >&2; exit 1; }
	done
	ld=$(cd "$tools" && ls usr/lib/*-linux-gnu*/ld-linux*.so.* | head -n1)
	libs=$(dirname "$ld")
	rm -rf "${r:?}$n"
	mkdir "$r$n"
	cp -a "$tools/usr" "$r$n/usr"
	run="$n/$ld --library-path $n/$libs"

	divert /usr/bin/python3.13 add
	cat >"$r/usr/bin/python3.13" <<-WRAP
		#!/bin/sh
		# halo image build (image/base/native-tools.sh): byte-compilation runs
		# the build machine's python3.13; anything else the card's.
		if [ -x $n/usr/bin/python3.13 ]; then
		    case "\$*" in
		    "-E -S /usr/lib/python3.13/py_compile.py "* | "-m py_compile -" | \\
		    "-c import importlib.util; print(importlib.util.MAGIC_NUMBER)" | \\
		    "-c import sys; print(sys.implementation.cache_tag)")
		        exec $run $n/usr/bin/python3.13 "\$@" ;;
		    esac
		    case "\$1" in
		    /usr/bin/py3compile) exec $run $n/usr/bin/python3.13 "\$@" ;;
		    esac
		fi
		exec /usr/bin/python3.13.halo-image "\$@"
	WRAP
	chmod 0755 "$r/usr/bin/python3.13"

	divert /usr/sbin/depmod add
	cat >"$r/usr/sbin/depmod" <<-WRAP
		#!/bin/sh
		# halo image build (image/base/native-tools.sh): the build machine's depmod.
		exec $run --argv0 depmod $n/usr/bin/kmod "\$@"
	WRAP
	chmod 0755 "$r/usr/sbin/depmod"

	# The card's own update-ca-certificates (a shell script: sed, ln and
	# readlink per certificate, then openssl rehash) run by the build
	# machine's dash, coreutils, sed, findutils and openssl. They exec each
	# other, so their dynamic loader must be where they look for it: on an
	# amd64 build machine /lib64, which an arm64 tree does not have. The
	# link is there only while the script runs: systemd's preinst refuses a
	# /lib64 outside /usr (merged-/usr check), and mkinitramfs would copy it.
	lib64_add=: lib64_del=:
	case $ld in
	*/x86_64-linux-gnu/*) lib64_add="ln -sfn .halo-native/usr/lib64 /lib64" lib64_del="rm -f /lib64" ;;
	esac
	divert /usr/sbin/update-ca-certificates add
	cat >"$r/usr/sbin/update-ca-certificates" <<-WRAP
		#!/bin/sh
		# halo image build (image/base/native-tools.sh): the card's script, the
		# build machine's programs (the card's after them: run-parts for hooks).
		$lib64_add
		rc=0
		PATH=$n/usr/bin:/usr/sbin:/usr/bin:/sbin:/bin LD_LIBRARY_PATH=$n/$libs \
		    $n/usr/bin/dash -e /usr/sbin/update-ca-certificates.halo-image "\$@" || rc=\$?
		$lib64_del
		exit \$rc
	WRAP
	chmod 0755 "$r/usr/sbin/update-ca-certificates"
	;;
remove)
	r=$2
	rm -f "$r/usr/bin/python3.13" "$r/usr/sbin/depmod" "$r/usr/sbin/update-ca-certificates"
	divert /usr/bin/python3.13 remove
	divert /usr/sbin/depmod remove
	divert /usr/sbin/update-ca-certificates remove
	[ "$(readlink "$r/lib64" || true)" != .halo-native/usr/lib64 ] || rm "$r/lib64"
	rm -rf "${r:?}$n"
	[ -x "$r/usr/bin/python3.13" ] && [ -L "$r/usr/sbin/depmod" ] && [ -f "$r/usr/sbin/update-ca-certificates" ] ||
		{ echo "native-tools: python3.13, depmod or update-ca-certificates did not come back" >&2; exit 1; }
	! in_root dpkg-divert --list | grep -F .halo-image | grep -v update-initramfs ||
		{ echo "native-tools: diversions left" >&2; exit 1; }
	# The compiled files are valid for the card's python3.13: importing
	# cloud-init's entry point (most of what it loads at boot) and a piece
	# of the standard library writes no new .pyc.
	stamp=$(mktemp "$r/tmp/halo-native.XXXXXX")
	in_root python3 -c 'import cloudinit.cmd.main, json, email.parser, yaml, jinja2, requests'
	new=$(find "$r/usr/lib/python3.13" "$r/usr/lib/python3" -name '*.pyc' -newer "$stamp" | head -n5)
	rm -f "$stamp"
	[ -z "$new" ] || { echo "native-tools: python3 on the card recompiled: $new" >&2; exit 1; }
	;;
*)
	echo "usage: native-tools.sh install ROOT TOOLS | remove ROOT" >&2
	exit 2
	;;
esac
