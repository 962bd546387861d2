//! The `halo import` command line: reads the files, runs [`super::import`],
//! prints halo.toml on stdout and every directive not carried over on
//! stderr. Exit 0 when a config was written, 1 when the input could not be
//! read or parsed, or nothing in it could be carried over.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use super::{import, Options, Source};

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("input").required(true).multiple(true).args(["keepalived", "haproxy"])))]
pub struct ImportArgs {
    /// keepalived.conf to convert ([vrrp.*] instances).
    #[arg(long, value_name = "FILE")]
    pub keepalived: Option<PathBuf>,
    /// haproxy.cfg to convert ([proxy.*] services).
    #[arg(long, value_name = "FILE")]
    pub haproxy: Option<PathBuf>,
    /// Value for a `{{ NAME }}` template placeholder (Ansible/Jinja configs).
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = pair)]
    pub set: Vec<(String, String)>,
    /// Address for a host name in a server or bind line (halo does no DNS).
    #[arg(long, value_name = "HOST=ADDRESS", value_parser = resolve)]
    pub resolve: Vec<(String, IpAddr)>,
    /// Add a virtual IP to an instance (e.g. one that has no virtual_ipaddress).
    #[arg(long, value_name = "INSTANCE=ADDRESS[/PREFIX]", value_parser = pair)]
    pub vip: Vec<(String, String)>,
    /// keepalived's config id (its `-i ID`, by default the host name): the
    /// `@ID` lines to import; without it every `@` line is reported.
    #[arg(long, value_name = "ID")]
    pub keepalived_id: Option<String>,
}

fn pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("\"{s}\" is not NAME=VALUE")),
    }
}

fn resolve(s: &str) -> Result<(String, IpAddr), String> {
    let (host, addr) = pair(s)?;
    let ip = addr
        .parse()
        .map_err(|_| format!("\"{addr}\" is not an IP address"))?;
    Ok((host, ip))
}

/// Read a file as text; bytes that are not UTF-8 (a Latin-1 comment) are
/// replaced rather than refused.
fn src(f: &Option<(String, String)>) -> Option<Source<'_>> {
    f.as_ref().map(|(path, text)| Source {
        path: path.as_str(),
        text: text.as_str(),
    })
}

fn read(path: &PathBuf) -> Result<String, String> {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))
}

pub fn run(args: ImportArgs) -> ExitCode {
    let load = |p: &Option<PathBuf>| -> Result<Option<(String, String)>, String> {
        p.as_ref()
            .map(|p| read(p).map(|t| (p.display().to_string(), t)))
            .transpose()
    };
    let (k, h) = match (load(&args.keepalived), load(&args.haproxy)) {
        (Ok(k), Ok(h)) => (k, h),
        (k, h) => {
            for e in [k.err(), h.err()].into_iter().flatten() {
                eprintln!("{e}");
            }
            return ExitCode::from(1);
        }
    };
    let opts = Options {
        set: args.set.into_iter().collect(),
        resolve: args.resolve.into_iter().collect(),
        vips: args.vip,
        keepalived_id: args.keepalived_id,
        // keepalived's ${_PWD}: it changes to the file's directory to read it.
        keepalived_dir: args
            .keepalived
            .as_ref()
            .and_then(|p| std::fs::canonicalize(p).ok())
            .and_then(|p| p.parent().map(|d| d.display().to_string())),
    };
    match import(src(&k), src(&h), &opts) {
        Ok(out) => {
            print!("{}", out.toml);
            // One write for thousands of report lines, not one each.
            let mut err = std::io::BufWriter::new(std::io::stderr().lock());
            for d in &out.dropped {
                let _ = writeln!(err, "{d}");
            }
            let _ = err.flush();
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}
