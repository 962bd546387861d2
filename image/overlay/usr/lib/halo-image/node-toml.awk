# node-toml.awk -- read halo/node.toml, the per-card settings file.
#
# Accepts the small part of TOML that node.toml needs and nothing more:
# `key = "string"`, `key = 123`, `key = ["a", "b"]` (an array may span lines),
# comments and blank lines. No tables, no escapes other than \" and \\.
# A key may be dotted once (`priority.VI_1 = 150`, TOML's dotted key: the
# table `priority` with the key `VI_1`); it prints as `priority.VI_1`. As in
# TOML, `priority = 1` and `priority.VI_1 = 2` in one file is an error.
# Prints one `key<TAB>value` line per value in file order: an array gives one
# line per element, an empty array one line with an empty value. Anything else
# is an error naming FILE:LINE and the exit status is 1; the caller then
# ignores the output and changes nothing on the system.
# Keys are not checked here: firstboot knows which ones it takes.

function fail(msg) {
	printf "%s:%d: %s\n", FILENAME, NR, msg > "/dev/stderr"
	failed = 1
	exit 1
}

# Skip blanks from position p of s; return the new position.
function skip_ws(s, p) {
	while (p <= length(s) && substr(s, p, 1) ~ /[ \t]/) p++
	return p
}

# Read a basic string starting at the opening quote at position p of s.
# Sets STR to its value and returns the position after the closing quote.
function read_string(s, p,    c, out) {
	out = ""
	p++
	while (p <= length(s)) {
		c = substr(s, p, 1)
		if (c == "\"") { STR = out; return p + 1 }
		if (c == "\\") {
			c = substr(s, p + 1, 1)
			if (c != "\"" && c != "\\") fail("only \\\" and \\\\ escapes are supported in node.toml strings")
			out = out c
			p += 2
			continue
		}
		if (c == "\t" || c ~ /[[:cntrl:]]/) fail("control character in a string")
		out = out c
		p++
	}
	fail("unterminated string")
}

# After a value: only blanks and a comment may follow.
function expect_end(s, p) {
	p = skip_ws(s, p)
	if (p <= length(s) && substr(s, p, 1) != "#")
		fail("unexpected text after the value: " substr(s, p))
}

# Elements of an array from position p of s until `]` or the end of the
# line; returns 1 when the array closed on this line.
function read_elements(s, p,    c) {
	for (;;) {
		p = skip_ws(s, p)
		if (p > length(s) || substr(s, p, 1) == "#") return 0
		c = substr(s, p, 1)
		if (c == "]") { expect_end(s, p + 1); return 1 }
		if (c == ",") {
			if (!after_value) fail("unexpected ',' in an array")
			after_value = 0
			p++
			continue
		}
		if (c != "\"") fail("array elements must be strings in double quotes")
		if (after_value) fail("missing ',' between array elements")
		p = read_string(s, p)
		printf "%s\t%s\n", array_key, STR
		after_value = 1
		count++
	}
}

BEGIN { in_array = 0; failed = 0 }

{
	line = $0
	sub(/\r$/, "", line)
	if (in_array) {
		if (read_elements(line, 1)) {
			in_array = 0
			if (count == 0) printf "%s\t\n", array_key
		}
		next
	}
	p = skip_ws(line, 1)
	if (p > length(line) || substr(line, p, 1) == "#") next
	if (substr(line, p, 1) == "[") fail("tables are not used in node.toml; put every key at the top level")
	rest = substr(line, p)
	if (!match(rest, /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)?/)) fail("expected `key = value`")
	key = substr(rest, 1, RLENGTH)
	if (key in seen) fail("duplicate key '" key "'")
	seen[key] = 1
	# A value and a table of the same name cannot both exist (TOML).
	dot = index(key, ".")
	top = dot ? substr(key, 1, dot - 1) : key
	if (dot ? (top in plain) : (top in dotted))
		fail("'" top "' is both a value and a table of values (" top " = ... and " top ".NAME = ...): use one")
	if (dot) dotted[top] = 1
	else plain[top] = 1
	p = skip_ws(line, p + RLENGTH)
	if (substr(line, p, 1) != "=") fail("expected '=' after '" key "'")
	p = skip_ws(line, p + 1)
	c = substr(line, p, 1)
	if (c == "\"") {
		p = read_string(line, p)
		expect_end(line, p)
		printf "%s\t%s\n", key, STR
	} else if (c == "[") {
		array_key = key; after_value = 0; count = 0
		if (read_elements(line, p + 1)) {
			if (count == 0) printf "%s\t\n", key
		} else {
			in_array = 1
		}
	} else if (match(substr(line, p), /^[0-9]+/)) {
		v = substr(line, p, RLENGTH)
		expect_end(line, p + RLENGTH)
		printf "%s\t%s\n", key, v
	} else if (c == "") {
		fail("missing value for '" key "'")
	} else {
		fail("unsupported value for '" key "' (use \"a string\", a number or [\"a\", \"list\"])")
	}
}

END {
	if (failed) exit 1
	if (in_array) { printf "%s: unterminated array '%s'\n", FILENAME, array_key > "/dev/stderr"; exit 1 }
}
