//! A ClickHouse cluster: the nodes `system.clusters` lists under the configured name, a connection to each,
//! the replica of each shard that per-shard statements run on, and killing a query on the node it runs on.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::clickhouse::ClickHouse;
use crate::{Error, Result};

/// How long a replica may take to answer before the next replica of its shard is asked.
const NODE_ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// One server of the cluster.
#[derive(Clone)]
pub struct ClusterNode {
    pub shard: u32,
    pub replica: u32,
    /// `host:port`, the TCP address `system.clusters` lists: how records and the page name the node.
    pub address: String,
    pub clickhouse: ClickHouse,
}

/// The nodes of the configured cluster, in shard then replica order.
#[derive(Clone)]
pub struct Cluster {
    name: String,
    nodes: Vec<ClusterNode>,
}

/// One row of `system.clusters`.
#[derive(clickhouse::Row, serde::Deserialize)]
struct ClusterRow {
    shard_num: u32,
    replica_num: u32,
    host_name: String,
    port: u16,
}

impl Cluster {
    /// Reads the nodes of cluster `name` from the `system.clusters` of `entry` (the server amigo connects to).
    /// A node's HTTP interface is at the host `system.clusters` names, on the entry URL's port, or, when
    /// `http_port_offset` is given (nodes sharing one host on different ports), on its TCP port plus the offset.
    pub async fn discover(entry: &ClickHouse, name: &str, http_port_offset: Option<i32>) -> Result<Cluster> {
        let rows: Vec<ClusterRow> = entry
            .client()
            .query(
                "SELECT toUInt32(shard_num) AS shard_num, toUInt32(replica_num) AS replica_num, host_name, toUInt16(port) AS port
                 FROM system.clusters WHERE cluster = ? ORDER BY shard_num, replica_num",
            )
            .bind(name)
            .fetch_all()
            .await?;
        if rows.is_empty() {
            return Err(Error::UnknownCluster { url: entry.url().to_string(), cluster: name.to_string() });
        }
        let entry_url = url::Url::parse(entry.url())
            .map_err(|error| Error::ClickHouseUnreachable { url: entry.url().to_string(), message: format!("not a URL: {error}") })?;
        let entry_port = entry_url.port_or_known_default().unwrap_or(8123);
        let mut nodes = Vec::with_capacity(rows.len());
        for row in rows {
            let http_port = http_port_offset.map_or(i32::from(entry_port), |offset| i32::from(row.port) + offset);
            let mut node_url = entry_url.clone();
            let port = u16::try_from(http_port).ok();
            if node_url.set_host(Some(&row.host_name)).is_err() || port.is_none() || node_url.set_port(port).is_err() {
                return Err(Error::NodeWithoutHttpAddress {
                    cluster: name.to_string(),
                    node: format!("{}:{}", row.host_name, row.port),
                    port: http_port,
                });
            }
            let url = node_url.as_str().trim_end_matches('/').to_string();
            nodes.push(ClusterNode {
                shard: row.shard_num,
                replica: row.replica_num,
                address: format!("{}:{}", row.host_name, row.port),
                clickhouse: entry.on_node(&url),
            });
        }
        Ok(Cluster { name: name.to_string(), nodes })
    }

    pub fn nodes(&self) -> &[ClusterNode] {
        &self.nodes
    }

    /// For each shard in order, its first replica that answers now with writable replicated tables (not read-only
    /// for want of ZooKeeper, as a node is for a moment after a restart): per-shard statements run there and
    /// replication brings their result to the other replicas. Fails naming a shard none of whose replicas does.
    pub async fn answering_replicas(&self) -> Result<Vec<ClusterNode>> {
        let mut shards: BTreeMap<u32, Vec<&ClusterNode>> = BTreeMap::new();
        for node in &self.nodes {
            shards.entry(node.shard).or_default().push(node);
        }
        let mut chosen = Vec::with_capacity(shards.len());
        for (shard, replicas) in shards {
            let mut answering = None;
            for node in &replicas {
                if let Ok(Ok(0)) = tokio::time::timeout(NODE_ANSWER_TIMEOUT, read_only_tables(&node.clickhouse)).await {
                    answering = Some((*node).clone());
                    break;
                }
            }
            let Some(node) = answering else {
                let replicas = replicas.iter().map(|node| node.address.as_str()).collect::<Vec<_>>().join(", ");
                return Err(Error::ShardUnreachable { cluster: self.name.clone(), shard, replicas });
            };
            chosen.push(node);
        }
        Ok(chosen)
    }
}

/// How many replicated tables of the engine's database cannot be written on this node now.
async fn read_only_tables(clickhouse: &ClickHouse) -> Result<u64> {
    Ok(clickhouse
        .client()
        .query("SELECT count() FROM system.replicas WHERE database = ? AND (is_readonly OR is_session_expired)")
        .bind(clickhouse.database())
        .fetch_one()
        .await?)
}
