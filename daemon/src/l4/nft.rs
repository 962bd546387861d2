//! Talking to nftables: the `nft` binary's JSON interface (`nft -j -f -`
//! applies a JSON transaction atomically; `nft -j list table` reads one).
//! No rule text is ever built: `table` builds JSON objects.
//!
//! Only halo's own table (`halo_l4`, families `inet` and `netdev`) is ever
//! listed, changed or deleted.

use std::process::Stdio;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::table::{self, Counter, Current};

/// `nft` from PATH, else where Debian puts it (PATH under systemd or sudo
/// may lack /usr/sbin).
fn nft() -> &'static str {
    if std::path::Path::new("/usr/sbin/nft").exists() {
        "/usr/sbin/nft"
    } else {
        "nft"
    }
}

/// Apply one transaction; on error nothing changed (nft applies a file as
/// one netlink batch).
pub async fn apply(tx: &Value) -> Result<()> {
    if tx["nftables"].as_array().is_some_and(|a| a.is_empty()) {
        return Ok(());
    }
    let text = serde_json::to_vec(tx).context("encoding the nftables transaction")?;
    let mut child = Command::new(nft())
        .args(["-j", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("running nft (is the nftables package installed?)")?;
    let mut stdin = child.stdin.take().context("nft stdin")?;
    stdin.write_all(&text).await.context("writing to nft")?;
    drop(stdin);
    let out = child.wait_with_output().await.context("waiting for nft")?;
    if !out.status.success() {
        bail!(
            "nft -j -f - failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// `nft -j list table FAMILY halo_l4`, or `None` when there is no such
/// table.
async fn list(family: &str) -> Result<Option<Value>> {
    let out = Command::new(nft())
        .args(["-j", "list", "table", family, table::TABLE])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .context("running nft (is the nftables package installed?)")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("No such file or directory") {
            return Ok(None);
        }
        bail!("nft list table {family} {}: {}", table::TABLE, err.trim());
    }
    let v = serde_json::from_slice(&out.stdout).context("reading nft's JSON")?;
    Ok(Some(v))
}

/// The objects of halo's tables now.
pub async fn current() -> Result<Current> {
    Ok(Current {
        inet: list("inet").await?.map(|v| table::parse_listing(&v).0),
        netdev: list("netdev").await?.map(|v| table::parse_listing(&v).0),
    })
}

/// The named counters of halo's tables in these families; `None` when
/// one of the tables is missing (someone deleted it).
pub async fn counters(families: &[&str]) -> Result<Option<Vec<(String, Counter)>>> {
    let mut out = Vec::new();
    for &fam in families {
        match list(fam).await? {
            Some(v) => out.extend(table::parse_listing(&v).1),
            None => return Ok(None),
        }
    }
    Ok(Some(out))
}
