"""pytest fixtures of the proxy tests; the helpers live in proxyfix.py so
that test modules import them by a name no other area uses."""

from proxyfix import backends, backends_alive, io, make_halo, recorder  # noqa: F401
