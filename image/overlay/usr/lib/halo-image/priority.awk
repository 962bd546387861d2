# priority.awk -- give this card its VRRP priorities in the cluster's shared
# halo.toml, from node.toml.
#
#   awk -v prio=N -v per="NAME=N NAME=N" -f priority.awk halo.toml
#
# The cluster shares one halo.toml; each card says its own priorities:
# `per` (node.toml's `priority.NAME = N`, one per instance: active-active,
# each LB master of a different VIP) sets instance [vrrp.NAME]'s; `prio`
# (node.toml's `priority = N`) sets every other instance's. Either may be
# empty; an instance neither names keeps halo.toml's. A priority line is
# replaced, or added to a table without one. Prints the new halo.toml; a
# NAME with no [vrrp.NAME] in the file is an error (on stderr, exit 2), so a
# typo does not leave a card with the wrong priority.

BEGIN {
	n = split(per, pairs, " ")
	for (i = 1; i <= n; i++) {
		eq = index(pairs[i], "=")
		want[substr(pairs[i], 1, eq - 1)] = substr(pairs[i], eq + 1)
	}
}

function target() { return (name in want) ? want[name] : prio }
function flush() { if (in_vrrp && !done && target() != "") print "priority = " target() }

/^[ \t]*\[/ {
	flush()
	in_vrrp = ($0 ~ /^[ \t]*\[vrrp\.[^].]+\][ \t]*(#.*)?$/); done = 0; name = ""
	if (in_vrrp) {
		name = $0
		sub(/^[ \t]*\[vrrp\./, "", name)
		sub(/\].*$/, "", name)
		found[name] = 1
	}
	print; next
}
in_vrrp && target() != "" && /^[ \t]*priority[ \t]*=/ { print "priority = " target(); done = 1; next }
{ print }
END {
	flush()
	for (k in want) if (!(k in found)) {
		printf "priority.%s: halo.toml has no [vrrp.%s]\n", k, k > "/dev/stderr"
		bad = 1
	}
	if (bad) exit 2
}
