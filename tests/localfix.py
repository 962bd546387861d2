"""What the loopback tests (proxy, health, admin) share: the halo binary,
free ports, waiting for a listener, stopping a process, TOML strings, and
the part of an nginx.conf every test backend has (a foreground nginx whose
pid, logs and temp files all live in the test's own directory).
"""

import json
import os
import signal
import socket
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def halo_bin():
    """$HALO_BIN, else the built binary (release first), else a debug build."""
    b = os.environ.get("HALO_BIN")
    if b:
        return b
    for p in ("target/release/halo", "target/debug/halo"):
        full = os.path.join(ROOT, p)
        if os.path.exists(full):
            return full
    subprocess.run(["cargo", "build", "-q", "-p", "halo"], cwd=ROOT, check=True, timeout=1800)
    return os.path.join(ROOT, "target/debug/halo")


def free_port():
    """A loopback port for a server the test starts next, kept from
    everybody else until then.

    A port that is merely free now can be taken before the server binds it:
    by another test's free_port (bind to port 0) or by an outgoing
    connection's source port, and the server then fails to start or, with
    SO_REUSEPORT (halo's and the nginx backends' listeners), silently shares
    the port with a stranger. So the port is left with a TIME_WAIT
    connection on it (the accepting side closes first): for a minute the
    kernel gives it to no bind(0) and no connect(), and a socket without
    SO_REUSEADDR cannot bind it, while halo and nginx, which set
    SO_REUSEADDR on their listeners, can."""
    with socket.socket() as srv:
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port = srv.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=10) as cli:
            conn, _ = srv.accept()
            # The accepted end closes first, so it is the one in TIME_WAIT.
            conn.close()
            cli.recv(1)
    return port


def wait_port(port, proc=None, timeout=15.0, host="127.0.0.1"):
    """Until something accepts on host:port; an error if `proc` exits first."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {host}:{port} after {timeout}s")


def kill(proc, sig=signal.SIGTERM, grace=10):
    """Stop a process we started, by its pid: `sig`, then SIGKILL if it is
    still there after `grace` seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def toml_str(s):
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(str(s))


def nginx_conf(d, http, connections, processes="master_process off;"):
    """An nginx.conf in the foreground with everything under directory `d`;
    `http` is the rest of the http block (the servers and their settings).
    Braces in `http` are literal."""
    return f"""
daemon off;
{processes}
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections {connections}; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
{http}}}
"""
