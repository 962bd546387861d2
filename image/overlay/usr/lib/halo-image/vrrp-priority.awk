# vrrp-priority.awk: set `priority = PRIO` in every [vrrp.NAME] table of a
# halo.toml (added to a table without one). The cluster shares one halo.toml;
# each card's priority comes from its node.toml. Used by halo-firstboot on
# the card and by `halo-image node --cloud-init` on the laptop.
#   awk -v prio=150 -f vrrp-priority.awk halo.toml
function flush() { if (in_vrrp && !done) print "priority = " prio; }
/^[ \t]*\[/ {
	flush()
	in_vrrp = ($0 ~ /^[ \t]*\[vrrp\.[^].]+\][ \t]*(#.*)?$/); done = 0
	print; next
}
in_vrrp && /^[ \t]*priority[ \t]*=/ { print "priority = " prio; done = 1; next }
{ print }
END { flush() }
