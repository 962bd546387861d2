//! The health-check runtime against real nginx (Debian's `nginx-light`).
//!
//! Each test starts its own single-process nginx on a loopback port, with
//! its own prefix in a temporary directory, builds `ProxyService` values
//! directly, runs `health::spawn` and polls the `HealthBoard`. Waits are
//! bounded (a deadline per condition) and never asserted as timings. The
//! log lines the board writes through `tracing` are captured and checked.
//!
//! Skipped, with a message, when nginx is not installed, except where
//! `HALO_REQUIRE_NGINX=1` (tests/run.sh, the README's test command, which
//! installs nginx-light): there a missing nginx fails every test instead
//! of letting them pass without testing anything.

// Waits on real nginx are bounded by deadlines on the real clock (the
// clock rule in clippy.toml is for the library's pure modules).
#![allow(clippy::disallowed_methods)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use halo::config::*;
use halo::health::{self, HealthBoard, PassiveEvent};

const NGINX: &str = "/usr/sbin/nginx";
/// Upper bound for any awaited condition; the checks below settle in well
/// under a second, this only keeps a broken build from hanging (generous:
/// a loaded two-core CI machine must not turn a slow pass into a failure).
const WAIT: Duration = Duration::from_secs(60);

const PAGE: &str = "<html><body>halo health test page\n</body></html>\n";

fn nginx_missing() -> bool {
    nginx_missing_at(Path::new(NGINX), required())
}

/// `HALO_REQUIRE_NGINX=1`: nginx is a declared dependency here.
fn required() -> bool {
    std::env::var("HALO_REQUIRE_NGINX").is_ok_and(|v| v == "1")
}

/// True (skip) when `nginx` is absent and not `required`; panics (fails
/// the test) when it is absent and required.
fn nginx_missing_at(nginx: &Path, required: bool) -> bool {
    if nginx.exists() {
        return false;
    }
    assert!(
        !required,
        "{} not found, and HALO_REQUIRE_NGINX=1: install nginx-light (tests/apt-packages.txt)",
        nginx.display()
    );
    eprintln!(
        "SKIP: {} not found; install nginx-light (tests/apt-packages.txt) to run this test",
        nginx.display()
    );
    true
}

#[test]
fn a_missing_nginx_fails_where_it_is_required() {
    // Regression (issue 12): every test here returned early and passed
    // without nginx, also in the README's test command.
    let absent = Path::new("/nonexistent/sbin/nginx");
    assert!(nginx_missing_at(absent, false), "skips where not required");
    let r = std::panic::catch_unwind(|| nginx_missing_at(absent, true));
    let msg = r.expect_err("must fail where required");
    let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("HALO_REQUIRE_NGINX=1"), "{msg}");
    // The real nginx: present wherever the suite requires it.
    if required() {
        assert!(!nginx_missing());
    }
}

// === captured logs ===

#[derive(Clone)]
struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs() -> &'static LogBuf {
    static LOGS: OnceLock<LogBuf> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = LogBuf(Arc::new(Mutex::new(Vec::new())));
        let w = buf.clone();
        tracing_subscriber::fmt()
            .with_writer(move || w.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .init();
        buf
    })
}

/// The captured lines containing `needle`, once there are at least `n`.
/// (A transition is visible on the board a moment before its log line is
/// written, so tests wait for the line too.)
fn wait_log(needle: &str, n: usize) -> Vec<String> {
    let until = Instant::now() + WAIT;
    loop {
        let lines = log_lines_with(needle);
        if lines.len() >= n {
            return lines;
        }
        assert!(
            Instant::now() < until,
            "timed out waiting for {n} log line(s) with {needle:?}: {lines:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn log_lines_with(needle: &str) -> Vec<String> {
    let text = String::from_utf8_lossy(&logs().0.lock().unwrap()).into_owned();
    text.lines()
        .filter(|l| l.contains(needle))
        .map(String::from)
        .collect()
}

// === nginx ===

/// A single-process nginx serving `/health` (200), `/sick` (503),
/// `/page.html` (a static file, Content-Length) and `/chunked/page.html`
/// (the same file through `sub_filter`, which makes nginx send it chunked).
struct Nginx {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Nginx {
    fn start() -> Nginx {
        let dir = std::env::temp_dir().join(format!(
            "halo-health-nginx-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(dir.join("html/chunked")).unwrap();
        std::fs::write(dir.join("html/page.html"), PAGE).unwrap();
        std::fs::write(dir.join("html/chunked/page.html"), PAGE).unwrap();
        let port = free_port();
        let d = dir.display();
        let conf = format!(
            r#"daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp_body;
    proxy_temp_path {d}/tmp_proxy;
    fastcgi_temp_path {d}/tmp_fastcgi;
    uwsgi_temp_path {d}/tmp_uwsgi;
    scgi_temp_path {d}/tmp_scgi;
    default_type text/html;
    server {{
        listen 127.0.0.1:{port};
        root {d}/html;
        location = /health {{ return 200 "ok\n"; }}
        location = /sick {{ return 503; }}
        location /chunked/ {{ sub_filter 'never-present-in-the-page' 'x'; }}
    }}
}}
"#
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let mut n = Nginx {
            dir,
            port,
            child: None,
        };
        n.run();
        n
    }

    fn run(&mut self) {
        let child = Command::new(NGINX)
            .arg("-p")
            .arg(&self.dir)
            .arg("-e")
            .arg(self.dir.join("error.log"))
            .arg("-c")
            .arg(self.dir.join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting nginx");
        self.child = Some(child);
        // Ready when it accepts.
        let until = Instant::now() + WAIT;
        while TcpStream::connect(self.addr()).is_err() {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                let log = std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default();
                panic!("nginx exited with {st}: {log}");
            }
            assert!(Instant::now() < until, "nginx did not start listening");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A loopback port nobody listens on, kept from everybody else for a
/// minute: the tests run in parallel threads, and a port that is merely
/// free now can go to another test's `bind(0)` or to an outgoing
/// connection's source port before nginx binds it. The port is left with
/// a TIME_WAIT connection on it (the accepting side closes first): the
/// kernel then gives it to no `bind(0)` and no `connect()`, while nginx,
/// which sets SO_REUSEADDR on its listeners, can bind it. A connection to
/// it is refused until then.
fn free_port() -> u16 {
    let srv = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = srv.local_addr().unwrap();
    let mut cli = TcpStream::connect(addr).unwrap();
    let (conn, _) = srv.accept().unwrap();
    // The accepted end closes first, so it is the one in TIME_WAIT.
    drop(conn);
    cli.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = cli.read(&mut [0u8; 1]);
    addr.port()
}

// === config values ===

fn http_kind(path: &str, digest: Option<(DigestAlg, String)>) -> CheckKind {
    CheckKind::Http {
        method: "GET".into(),
        path: path.into(),
        host: None,
        expect_status: ExpectStatus::Codes(vec![200]),
        expect_body_digest: digest,
    }
}

fn check(kind: CheckKind, initial_up: bool) -> HealthCheck {
    HealthCheck {
        kind,
        interval: Duration::from_millis(200),
        fast_interval: Duration::from_millis(100),
        timeout: Duration::from_secs(2),
        rise: 2,
        fall: 3,
        initial_up,
        observe_connect_errors: true,
        observe_5xx: false,
        tls: Default::default(),
    }
}

fn service(name: &str, servers: &[(&str, SocketAddr)], health: HealthCheck) -> ProxyService {
    ProxyService {
        name: name.into(),
        mode: ProxyMode::Http,
        bind: vec!["127.0.0.1:0".parse().unwrap()],
        bind_opts: vec![Default::default()],
        hsts: None,
        balance: Balance::RoundRobin,
        servers: servers
            .iter()
            .map(|(n, a)| Server {
                name: n.to_string(),
                address: *a,
                weight: 1,
                maxconn: 0,
                send_proxy: None,
                tls: None,
            })
            .collect(),
        health: Some(health),
        timeouts: Timeouts {
            connect: Duration::from_secs(5),
            client: Duration::from_secs(50),
            server: Duration::from_secs(50),
            http_request: Duration::from_secs(10),
            keep_alive: Duration::from_secs(10),
            queue: Duration::from_secs(5),
        },
        limits: Limits {
            max_head_bytes: 16384,
            max_headers: 100,
        },
        retries: 3,
        maxconn: 0,
        queue_len: 100,
        forwardfor: ForwardFor {
            enabled: true,
            except: vec![],
        },
        io: IoDriver::Epoll,
        workers: 1,
        dontlognull: true,
    }
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn digest_of(tool: &str, path: &Path) -> String {
    let out = Command::new(tool).arg(path).output().expect(tool);
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()[..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

// === tests ===

#[test]
fn http_check_follows_nginx_going_down_and_up() {
    if nginx_missing() {
        return;
    }
    logs();
    let mut ng = Nginx::start();
    let svcs = [service(
        "follow",
        &[("web1", ng.addr())],
        check(http_kind("/health", None), false),
    )];
    let board = HealthBoard::new(&svcs);
    let mut changes = board.subscribe();
    changes.borrow_and_update();
    assert!(!board.is_up(0, 0), "initial = down");
    let rt = health::spawn(&svcs, board.clone()).unwrap();

    wait_for("web1 up", || board.is_up(0, 0));
    // The server's state is stored first, then the service's, then the
    // change is published (with log lines in between): wait for the
    // publication, after which both must hold.
    wait_for("service change published", || {
        changes.has_changed().unwrap()
    });
    assert!(board.service_up(0));
    changes.borrow_and_update();
    let up0 = wait_log("follow/web1 UP", 1);
    assert_eq!(up0.len(), 1, "{up0:?}");
    assert!(
        up0[0].contains("follow/web1 UP: 1 success at startup (200 OK)"),
        "{up0:?}"
    );

    ng.stop();
    wait_for("web1 down", || !board.is_up(0, 0));
    wait_for("service change published", || {
        changes.has_changed().unwrap()
    });
    assert!(!board.service_up(0));
    let down = wait_log("follow/web1 DOWN", 1);
    assert_eq!(down.len(), 1, "{down:?}");
    assert!(
        down[0].contains("follow/web1 DOWN: 3 consecutive failures (connection refused)"),
        "{down:?}"
    );
    assert!(down[0].contains("WARN"), "{down:?}");
    let snap = board.snapshot();
    assert_eq!(
        snap[0].servers[0].last_result.as_deref(),
        Some("connection refused")
    );
    wait_log("follow DOWN: no usable server", 1);

    ng.run();
    wait_for("web1 up again", || board.is_up(0, 0));
    let up = wait_log("follow/web1 UP", 2);
    assert_eq!(up.len(), 2, "{up:?}");
    assert!(
        up[1].contains("follow/web1 UP: 2 consecutive successes (200 OK)"),
        "{up:?}"
    );
    // The service follows its server just after the server's log line.
    wait_for("service up again", || board.service_up(0));
    rt.shutdown();
}

#[test]
fn unexpected_status_is_down() {
    if nginx_missing() {
        return;
    }
    logs();
    let ng = Nginx::start();
    let svcs = [
        service(
            "status",
            &[("ok", ng.addr())],
            check(http_kind("/health", None), true),
        ),
        // Same nginx, checked on /sick, which answers 503.
        service(
            "status503",
            &[("ok", ng.addr())],
            check(http_kind("/sick", None), true),
        ),
    ];
    let board = HealthBoard::new(&svcs);
    let rt = health::spawn(&svcs, board.clone()).unwrap();
    wait_for("503 server down", || !board.is_up(1, 0));
    let down = wait_log("status503/ok DOWN", 1);
    assert_eq!(down.len(), 1, "{down:?}");
    assert!(
        down[0].contains(
            "status503/ok DOWN: 1 failure at startup (status 503 Service Temporarily Unavailable, expected 200)"
        ),
        "{down:?}"
    );
    // The service follows its only server just after the server's line.
    wait_for("503 service down", || !board.service_up(1));
    // The /health one was confirmed and stays up.
    wait_for("200 server checked", || {
        board.snapshot()[0].servers[0].last_result.is_some()
    });
    assert!(board.is_up(0, 0));
    assert_eq!(
        board.snapshot()[0].servers[0].last_result.as_deref(),
        Some("200 OK")
    );
    rt.shutdown();
}

#[test]
fn body_digest_matches_md5sum_and_sha256sum_plain_and_chunked() {
    if nginx_missing() {
        return;
    }
    logs();
    let ng = Nginx::start();
    // The test is only meaningful if nginx really sends these two framings.
    let plain = raw_get(ng.addr(), "/page.html");
    assert!(plain.contains("Content-Length: "), "{plain}");
    let chunked = raw_get(ng.addr(), "/chunked/page.html");
    assert!(chunked.contains("Transfer-Encoding: chunked"), "{chunked}");

    let file = ng.dir.join("html/page.html");
    let md5 = digest_of("md5sum", &file);
    let sha = digest_of("sha256sum", &file);
    let wrong = "0".repeat(32);
    let svcs: Vec<ProxyService> = [
        ("md5plain", "/page.html", DigestAlg::Md5, md5.clone()),
        (
            "md5chunked",
            "/chunked/page.html",
            DigestAlg::Md5,
            md5.clone(),
        ),
        ("sha", "/chunked/page.html", DigestAlg::Sha256, sha.clone()),
        ("wrong", "/page.html", DigestAlg::Md5, wrong.clone()),
    ]
    .into_iter()
    .map(|(name, path, alg, hex)| {
        service(
            name,
            &[("web1", ng.addr())],
            check(http_kind(path, Some((alg, hex))), false),
        )
    })
    .collect();
    let board = HealthBoard::new(&svcs);
    let rt = health::spawn(&svcs, board.clone()).unwrap();
    for (i, svc) in svcs.iter().enumerate().take(3) {
        wait_for(&svc.name, || board.is_up(i, 0));
    }
    let up = wait_log("md5chunked/web1 UP", 1);
    assert!(up[0].contains("(200 OK, body md5 matches)"), "{up:?}");
    let up = wait_log("sha/web1 UP", 1);
    assert!(up[0].contains("(200 OK, body sha256 matches)"), "{up:?}");
    // The wrong digest never comes up, and says why.
    wait_for("wrong digest checked", || {
        board.snapshot()[3].servers[0].last_result.is_some()
    });
    assert!(!board.is_up(3, 0));
    let last = board.snapshot()[3].servers[0].last_result.clone().unwrap();
    assert_eq!(
        last,
        format!("200 OK but body md5 {md5} is not the expected {wrong}")
    );
    rt.shutdown();
}

#[test]
fn tcp_check_on_closed_port_is_down_and_on_nginx_is_up() {
    if nginx_missing() {
        return;
    }
    logs();
    let ng = Nginx::start();
    let closed = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let svcs = [service(
        "tcp",
        &[("open", ng.addr()), ("closed", closed)],
        check(CheckKind::Tcp, true),
    )];
    let board = HealthBoard::new(&svcs);
    let rt = health::spawn(&svcs, board.clone()).unwrap();
    wait_for("closed port down", || !board.is_up(0, 1));
    let down = wait_log("tcp/closed DOWN", 1);
    assert!(
        down[0].contains("tcp/closed DOWN: 1 failure at startup (connection refused)"),
        "{down:?}"
    );
    wait_for("open port checked", || {
        board.snapshot()[0].servers[0].last_result.as_deref() == Some("connected")
    });
    assert!(board.is_up(0, 0));
    assert!(board.service_up(0));
    rt.shutdown();
}

#[test]
fn passive_failures_take_a_server_down_and_checks_bring_it_back() {
    if nginx_missing() {
        return;
    }
    logs();
    let ng = Nginx::start();
    let mut hc = check(http_kind("/health", None), true);
    // Slow active checks, so that it is the passive reports that decide:
    // the next check comes `fast_interval` after the first report at the
    // earliest, and `rise` needs two, so a success can neither break the
    // three reports' streak nor bring the server back before the
    // assertions below, however slowly this thread runs (up to seconds).
    hc.interval = Duration::from_secs(10);
    hc.fast_interval = Duration::from_secs(2);
    let svcs = [service("passive", &[("web1", ng.addr())], hc)];
    let board = HealthBoard::new(&svcs);
    let rt = health::spawn(&svcs, board.clone()).unwrap();
    wait_for("first check", || {
        board.snapshot()[0].servers[0].last_result.is_some()
    });
    assert!(board.is_up(0, 0));
    for _ in 0..3 {
        board.report(0, 0, PassiveEvent::ConnectFailed);
    }
    let down = wait_log("passive/web1 DOWN", 1);
    assert_eq!(down.len(), 1, "{down:?}");
    assert!(
        down[0].contains(
            "passive/web1 DOWN: 3 consecutive failures (connect failed on client traffic)"
        ),
        "{down:?}"
    );
    assert!(!board.is_up(0, 0));
    // nginx is fine: the active checks bring it back after `rise`.
    wait_for("web1 back up", || board.is_up(0, 0));
    let up = wait_log("passive/web1 UP", 1);
    assert!(
        up[0].contains("passive/web1 UP: 2 consecutive successes (200 OK)"),
        "{up:?}"
    );
    rt.shutdown();
}

#[test]
fn shutdown_stops_probing() {
    if nginx_missing() {
        return;
    }
    let ng = Nginx::start();
    let svcs = [service(
        "stop",
        &[("web1", ng.addr())],
        check(http_kind("/health", None), true),
    )];
    let board = HealthBoard::new(&svcs);
    let rt = health::spawn(&svcs, board.clone()).unwrap();
    wait_for("first check", || {
        board.snapshot()[0].servers[0].last_at.is_some()
    });
    rt.shutdown();
    let last = board.snapshot()[0].servers[0].last_at;
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(board.snapshot()[0].servers[0].last_at, last);
}

#[test]
fn spawn_refuses_a_board_of_other_services() {
    let a = service(
        "a",
        &[("web1", "127.0.0.1:9".parse().unwrap())],
        check(CheckKind::Tcp, true),
    );
    let board = HealthBoard::new(&[a.clone(), a.clone()]);
    let err = health::spawn(&[a], board).unwrap_err();
    assert!(err.to_string().contains("2 services but 1"), "{err}");
}

/// A plain HTTP/1.1 GET, for checking what nginx sends.
fn raw_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}
