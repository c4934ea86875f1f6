//! `capstand admin shards`: who owns which cluster in a sharded control plane, read from
//! etcd, beside what the ring assigns from the same inputs (the counterpart of Argo CD's
//! `argocd admin cluster shards`).
//!
//! Members come from their membership records, owners from the ownership keys, weights from
//! the Clusters and Applications in the store — exactly what the members themselves read.
//! A cluster whose owner differs from the ring's choice, or that nobody owns, is marked: a
//! moment after a membership change that is a handover in progress; if it stays, a member
//! cannot take or release a key (its log says why).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Context as _;
use capstan_controller::sharding::Epsilon;
use capstan_controller::sharding::membership::live_members;
use capstan_controller::sharding::shard::{owner_key, read_cluster_loads, ring_of};
use capstan_store::Store as _;

use super::Outcome;

pub const EXAMPLES: &str = "\
Examples:
  capstand admin shards --etcd-endpoints http://etcd:2379 --encryption-key-file encryption.key

Exit status: 0 when every cluster is owned by the member the ring assigns it to, 1 when some
cluster is unowned or owned by another member (a handover in progress, or stuck), 2 on
errors.";

/// Flags of `capstand admin shards`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    etcd: crate::etcd::EtcdArgs,
    #[command(flatten)]
    encryption: crate::sealing::EncryptionArgs,
    /// The load slack the members run with (`capstand controller --load-slack`).
    #[arg(long, value_name = "EPSILON", default_value_t = Epsilon::default())]
    load_slack: Epsilon,
}

/// Prints the members and the clusters with their owners.
pub fn run(args: &Args) -> anyhow::Result<Outcome> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting an async runtime")?;
    let (report, outcome) = runtime.block_on(report(args))?;
    super::write_out(&report)?;
    Ok(outcome)
}

async fn report(args: &Args) -> anyhow::Result<(String, Outcome)> {
    let keyring = args.encryption.required_keyring()?;
    let etcd = args.etcd.connect().await?;
    let store = crate::etcd::sealed(&etcd, keyring);
    let (members, _) = live_members(&etcd).await?;
    let loads = read_cluster_loads(&store).await?;
    let ring = ring_of(args.load_slack, &members);
    let assignment = if members.is_empty() {
        None
    } else {
        Some(ring.assign(&loads.loads)?)
    };
    let mut owners = BTreeMap::new();
    for load in &loads.loads {
        if let Some(kv) = etcd.get(owner_key(&load.id).as_bytes()).await? {
            owners.insert(
                load.id.clone(),
                String::from_utf8_lossy(&kv.value).into_owned(),
            );
        }
    }

    let mut out = String::new();
    let mut rows = vec![[
        "MEMBER".to_owned(),
        "CAPACITY".to_owned(),
        "CLUSTERS".to_owned(),
        "LOAD".to_owned(),
        "BOUND".to_owned(),
        "LIVE STATE".to_owned(),
    ]];
    for member in &members {
        let owned: Vec<&String> = owners
            .iter()
            .filter(|(_, owner)| **owner == member.name)
            .map(|(cluster, _)| cluster)
            .collect();
        let load: u64 = loads
            .loads
            .iter()
            .filter(|l| owned.contains(&&l.id))
            .map(|l| u64::from(l.weight))
            .sum();
        let bound = assignment
            .as_ref()
            .and_then(|a| a.bound_of(&member.name))
            .map_or_else(String::new, |b| format!("{b:.1}"));
        rows.push([
            member.name.clone(),
            member.capacity.to_string(),
            owned.len().to_string(),
            load.to_string(),
            bound,
            member.live_url.clone().unwrap_or_default(),
        ]);
    }
    table(&mut out, &rows);
    out.push('\n');

    let mut drift = 0;
    let mut rows = vec![[
        "CLUSTER".to_owned(),
        "WEIGHT".to_owned(),
        "OWNER".to_owned(),
        "RING".to_owned(),
        String::new(),
        String::new(),
    ]];
    for load in &loads.loads {
        let owner = owners.get(&load.id).cloned().unwrap_or_default();
        let expected = assignment
            .as_ref()
            .and_then(|a| a.owner(&load.id))
            .unwrap_or_default()
            .to_owned();
        let mark = if owner.is_empty() {
            "unowned"
        } else if owner != expected {
            "moving"
        } else {
            ""
        };
        if !mark.is_empty() {
            drift += 1;
        }
        rows.push([
            load.id.clone(),
            load.weight.to_string(),
            owner,
            expected,
            mark.to_owned(),
            String::new(),
        ]);
    }
    table(&mut out, &rows);
    let _ = writeln!(
        out,
        "\n{} members, {} clusters, {drift} not where the ring puts them",
        members.len(),
        loads.loads.len()
    );
    Ok((
        out,
        if drift == 0 {
            Outcome::Clean
        } else {
            Outcome::Findings
        },
    ))
}

/// Left-aligned columns, two spaces apart; empty trailing columns are dropped.
fn table<const N: usize>(out: &mut String, rows: &[[String; N]]) {
    let mut widths = [0usize; N];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let _ = write!(line, "{cell:<width$}  ", width = widths[i]);
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}
