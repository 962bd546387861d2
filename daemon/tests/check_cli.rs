//! `halo check` through the real binary: exit status and output format.

use std::path::PathBuf;
use std::process::Command;

fn halo_check(config: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_halo"))
        .arg("check")
        .arg("--config")
        .arg(config)
        .output()
        .expect("run halo");
    (
        out.status.code().expect("halo exited by signal"),
        String::from_utf8(out.stdout).expect("utf-8 stdout"),
        String::from_utf8(out.stderr).expect("utf-8 stderr"),
    )
}

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/examples/halo.toml")
}

/// A file under the test's own temporary directory, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> TempFile {
        let dir = std::env::temp_dir().join(format!("halo-check-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write temp file");
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let _ = std::fs::remove_dir(self.0.parent().expect("has a parent"));
    }
}

#[test]
fn example_is_ok_with_a_summary() {
    let (code, stdout, stderr) = halo_check(&example());
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.starts_with(&format!("{}: OK\n", example().display())),
        "{stdout}"
    );
    assert!(
        stdout.contains("vrrp VI_1: interface eth0, vrid 51"),
        "{stdout}"
    );
    assert!(stdout.contains("proxy web: bind 0.0.0.0:80"), "{stdout}");
    // The example's [admin] is on loopback without basic auth: still a
    // warning (issue 12), and the file is still OK.
    assert!(
        stdout.contains("warning: [admin] listens on 127.0.0.1:8404 without basic auth"),
        "{stdout}"
    );
}

#[test]
fn bad_file_exits_1_with_located_errors() {
    let bad = TempFile::new(
        "bad.toml",
        "[vrrp.VI_1]\ninterface = \"eth0\"\nvrid = 300\npriorty = 100\nvirtual_ips = [\"192.0.2.1\"]\n",
    );
    let (code, stdout, stderr) = halo_check(&bad.0);
    assert_eq!(code, 1, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let file = bad.0.display().to_string();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines,
        vec![
            format!("{file}:3:8: `vrid` must be 1..=255, got 300"),
            format!("{file}:4:1: unknown key `priorty` in [vrrp.VI_1]; did you mean `priority`?"),
        ]
    );
}

#[test]
fn missing_file_exits_1() {
    let (code, _, stderr) = halo_check(std::path::Path::new("/nonexistent/halo.toml"));
    assert_eq!(code, 1);
    assert!(stderr.starts_with("/nonexistent/halo.toml:"), "{stderr}");
    assert!(stderr.contains("cannot read"), "{stderr}");
}
