#!/bin/bash
# Architecture-independent work of the arm64 install, run natively.
#
#   native-tools.sh install ROOT TOOLS   (essential hook: before the packages)
#   native-tools.sh remove ROOT          (customize hook: before the initramfs)
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
# suite's python3.13, kmod, dash, coreutils, sed, findutils, grep and openssl
# (mmdebstrap --variant=extract, made by build_base_root). `install` copies
# it to ROOT/.halo-native and diverts four commands to wrappers that run
# the native programs inside the chroot, where they see the card's paths:
# - /usr/bin/python3.13: only the byte-compilations -- the stdlib postinsts'
#   `python3.13 -E -S /usr/lib/python3.13/py_compile.py FILES`, py3compile
#   itself and what it runs (`-m py_compile -` and its two `-c` queries for
#   the magic number and cache tag). The card's py3compile chooses the
#   files, as it would have; every other python3 call runs the card's
#   python3.13.
# - /usr/sbin/depmod: the same kmod version's depmod (the kernel's
#   postinst runs it).
# - /usr/sbin/update-ca-certificates: the card's script, run by the build
#   machine's shell tools and openssl (emulated: a few processes per
#   certificate, a minute).
# - /usr/bin/grep (amd64 build machines): the same grep version, for the
#   locales postinst's grep per supported locale (minutes emulated).
# - /usr/bin/systemd-hwdb: the same systemd version's, for udev's postinst
#   (`systemd-hwdb --usr update`: 13.5 MB of hwdb.bin from the text files
#   in /usr/lib/udev/hwdb.d, 45 s of CPU emulated, 1 s native). The
#   database is the same on every architecture (compared byte for byte,
#   docs/benchmarks.md); run in the chroot, so it reads and writes the
#   card's paths, as the emulated one did.
# - /usr/bin/ckbcomp: the card's script run by the same perl version
#   (perl-base; it uses strict and warnings only): console-setup's and
#   keyboard-configuration's postinsts run setupcon, which turns the XKB
#   layout into the console keymap with it (25 s of a minute of emulated
#   setupcon, each time).
# python3.13, depmod and systemd-hwdb run through the native dynamic loader
# (ld.so --library-path), so nothing of the arm64 tree changes meaning.
# `remove` takes the wrappers and the copy away again and puts the packages'
# files back, so the card is the plain Debian system, and checks that the
# card's python3 takes the compiled files as valid. The outputs are the
# emulated programs' byte for byte (docs/benchmarks.md, "Where the
# configure time goes").
set -euo pipefail
n=/.halo-native

in_root() { chroot "$r" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }

divert() {
	in_root dpkg-divert --local --rename --divert "$1.halo-image" "--$2" "$1" >/dev/null
}

case "${1:-}" in
install)
	r=$2 tools=$3
	for t in python3.13 kmod dash openssl grep systemd-hwdb perl; do
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

	divert /usr/bin/systemd-hwdb add
	cat >"$r/usr/bin/systemd-hwdb" <<-WRAP
		#!/bin/sh
		# halo image build (image/base/native-tools.sh): the build machine's systemd-hwdb.
		exec $run:$n/$libs/systemd $n/usr/bin/systemd-hwdb "\$@"
	WRAP
	chmod 0755 "$r/usr/bin/systemd-hwdb"

	# ckbcomp's perl finds its modules (strict, warnings) in perl-base's
	# directory for the build machine's architecture: on amd64 the native
	# tree's through /usr/lib/x86_64-linux-gnu (below), on arm64 the card's.
	divert /usr/bin/ckbcomp add
	cat >"$r/usr/bin/ckbcomp" <<-WRAP
		#!/bin/sh
		# halo image build (image/base/native-tools.sh): the card's script, the build machine's perl.
		exec $run $n/usr/bin/perl /usr/bin/ckbcomp.halo-image "\$@"
	WRAP
	chmod 0755 "$r/usr/bin/ckbcomp"

	# On an amd64 build machine the tree also gets the native loader and
	# libraries where amd64 programs look for them (/lib64 -> usr/lib64,
	# as on amd64; systemd's preinst accepts a /lib64 that leads into /usr,
	# /usr/lib/x86_64-linux-gnu), so that native programs run as they are
	# and exec each other: grep (diverted to the native one: the locales
	# postinst runs one per supported locale, about 490) and the shell
	# tools below. An arm64 machine runs its own programs anyway.
	case $ld in
	*/x86_64-linux-gnu/*)
		for p in /lib64 /usr/lib64 /usr/lib/x86_64-linux-gnu; do
			[ ! -e "$r$p" ] && [ ! -L "$r$p" ] || { echo "native-tools: $r$p exists" >&2; exit 1; }
		done
		mkdir "$r/usr/lib64"
		ln -s "../..$n/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" "$r/usr/lib64/ld-linux-x86-64.so.2"
		ln -s usr/lib64 "$r/lib64"
		ln -s "../..$n/usr/lib/x86_64-linux-gnu" "$r/usr/lib/x86_64-linux-gnu"
		divert /usr/bin/grep add
		ln -s "../..$n/usr/bin/grep" "$r/usr/bin/grep"
		;;
	esac

	# The card's own update-ca-certificates (a shell script: sed, ln and
	# readlink per certificate, then openssl rehash) run by the build
	# machine's dash, coreutils, sed, findutils and openssl (run-parts for
	# hooks is the card's).
	divert /usr/sbin/update-ca-certificates add
	cat >"$r/usr/sbin/update-ca-certificates" <<-WRAP
		#!/bin/sh
		# halo image build (image/base/native-tools.sh): the card's script, the
		# build machine's programs.
		PATH=$n/usr/bin:/usr/sbin:/usr/bin:/sbin:/bin LD_LIBRARY_PATH=$n/$libs exec $n/usr/bin/dash -e /usr/sbin/update-ca-certificates.halo-image "\$@"
	WRAP
	chmod 0755 "$r/usr/sbin/update-ca-certificates"
	;;
remove)
	r=$2
	rm -f "$r/usr/bin/python3.13" "$r/usr/sbin/depmod" "$r/usr/sbin/update-ca-certificates" "$r/usr/bin/systemd-hwdb" \
		"$r/usr/bin/ckbcomp"
	divert /usr/bin/python3.13 remove
	divert /usr/bin/systemd-hwdb remove
	divert /usr/bin/ckbcomp remove
	divert /usr/sbin/depmod remove
	divert /usr/sbin/update-ca-certificates remove
	if [ "$(readlink "$r/usr/bin/grep" || true)" = "../..$n/usr/bin/grep" ]; then
		rm "$r/usr/bin/grep"
		divert /usr/bin/grep remove
	fi
	if [ "$(readlink "$r/lib64" || true)" = usr/lib64 ] && [ -L "$r/usr/lib/x86_64-linux-gnu" ]; then
		rm "$r/lib64" "$r/usr/lib64/ld-linux-x86-64.so.2" "$r/usr/lib/x86_64-linux-gnu"
		rmdir "$r/usr/lib64"
	fi
	rm -rf "${r:?}$n"
	for p in /usr/bin/python3.13 /usr/bin/grep /usr/sbin/update-ca-certificates /usr/bin/systemd-hwdb /usr/bin/ckbcomp; do
		[ -f "$r$p" ] && [ ! -L "$r$p" ] || { echo "native-tools: $p did not come back" >&2; exit 1; }
	done
	[ "$(readlink "$r/usr/sbin/depmod")" = ../bin/kmod ] || { echo "native-tools: depmod did not come back" >&2; exit 1; }
	# The dynamic linker's cache as if the native libraries had never been
	# there (libc-bin's trigger ran ldconfig while they were).
	in_root ldconfig
	! in_root dpkg-divert --list | grep -F .halo-image | grep -v update-initramfs ||
		{ echo "native-tools: diversions left" >&2; exit 1; }
	# The compiled files are valid for the card's python3.13: importing
	# cloud-init's entry point (most of what it loads at boot) and a piece
	# of the standard library writes no new .pyc.
	stamp=$(mktemp "$r/tmp/halo-native.XXXXXX")
	in_root python3 -c 'import cloudinit.cmd.main, json, email.parser, yaml, jinja2, requests'
	new=$(find "$r/usr/lib/python3.13" "$r/usr/lib/python3" -name "*.pyc" -newer "$stamp" | sed -n 1,5p)
	rm -f "$stamp"
	[ -z "$new" ] || { echo "native-tools: python3 on the card recompiled: $new" >&2; exit 1; }
	;;
*)
	echo "usage: native-tools.sh install ROOT TOOLS | remove ROOT" >&2
	exit 2
	;;
esac
