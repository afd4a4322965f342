//! The key layout a Redis holds, checked at start-up.
//!
//! Chorus names every key it writes after a layout. The earlier layout put
//! a document's keys at `doc:NAME` and `doc:NAME:log`, where one document's
//! name could reach another's keys; the current one (`d:LEN:NAME:…`) cannot.
//! The two must never share a store: the current Chorus would neither see
//! the documents written before nor be safe from them. So a store is
//! checked before first use: the marker `chorus:layout` says a store is in
//! the current layout; without it, every master is scanned for keys of the
//! earlier layout, and finding one refuses the start with a clear message.
//! Nothing is migrated silently. A store that forgot everything (a Redis
//! restarted without persistence) has no marker and nothing to find, and is
//! marked again.

use redis::aio::ConnectionLike;
use redis::ConnectionAddr;

use crate::{Conn, ConnectError, PREFIX};

/// The current layout's name, as the marker holds it.
const LAYOUT: &str = "2";

fn marker() -> String {
    format!("{PREFIX}:layout")
}

/// Refuses a store written in another layout; marks an empty or current one.
/// `masters` are clients of every server that holds keys (one for a
/// standalone Redis).
pub(crate) async fn check(conn: &mut Conn, masters: &[redis::Client], shown: &str) -> Result<(), ConnectError> {
    let unreachable = |e: redis::RedisError| ConnectError::Unreachable { url: shown.to_owned(), reason: e.to_string() };
    let marked: Option<String> = redis::cmd("GET").arg(marker()).query_async(conn).await.map_err(unreachable)?;
    match marked.as_deref() {
        Some(LAYOUT) => return Ok(()),
        Some(other) => {
            return Err(ConnectError::OldLayout { url: shown.to_owned(), found: format!("its {} key says layout {other:?}", marker()) });
        }
        None => {}
    }
    for master in masters {
        let mut c = master.get_multiplexed_async_connection().await.map_err(unreachable)?;
        if let Some(key) = find_old_key(&mut c).await.map_err(unreachable)? {
            return Err(ConnectError::OldLayout { url: shown.to_owned(), found: format!("for example the key {key:?}") });
        }
    }
    let _: () = redis::cmd("SET").arg(marker()).arg(LAYOUT).query_async(conn).await.map_err(unreachable)?;
    Ok(())
}

/// A key of the earlier layout on one server, if there is any.
async fn find_old_key(conn: &mut impl ConnectionLike) -> redis::RedisResult<Option<String>> {
    let pattern = format!("{PREFIX}:{{*}}:doc:*");
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(1_000).query_async(conn).await?;
        if let Some(key) = keys.into_iter().next() {
            return Ok(Some(key));
        }
        if next == 0 {
            return Ok(None);
        }
        cursor = next;
    }
}

/// Clients of every master of the Cluster, reached with the seed's settings
/// (credentials, database, TLS and its trusted CA) at each master's address.
pub(crate) async fn masters(conn: &mut redis::cluster_async::ClusterConnection, seed: &redis::ConnectionInfo) -> redis::RedisResult<Vec<redis::Client>> {
    let nodes: String = redis::cmd("CLUSTER").arg("NODES").query_async(conn).await?;
    let mut out = Vec::new();
    for line in nodes.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(addr), Some(flags)) = (fields.get(1), fields.get(2)) else { continue };
        if !flags.split(',').any(|f| f == "master") || flags.contains("fail") {
            continue;
        }
        // "host:port@bus-port"
        let Some((host, port)) = addr.split('@').next().and_then(|a| a.rsplit_once(':')) else { continue };
        let Ok(port) = port.parse::<u16>() else { continue };
        let host = host.to_owned();
        let at = match seed.addr() {
            ConnectionAddr::TcpTls { insecure, tls_params, .. } => ConnectionAddr::TcpTls { host, port, insecure: *insecure, tls_params: tls_params.clone() },
            _ => ConnectionAddr::Tcp(host, port),
        };
        out.push(redis::Client::open(seed.clone().set_addr(at))?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::testing::{RedisCluster, RedisServer};
    use crate::{ConnectError, RedisStore};

    #[tokio::test]
    async fn a_store_of_the_earlier_layout_is_refused_and_left_alone() {
        let server = RedisServer::start();
        server.cli(&["HSET", "chorus:{team}:doc:body", "epoch", "e", "head", "3"]);
        let err = RedisStore::connect(&server.url()).await.err().expect("refused");
        assert!(matches!(err, ConnectError::OldLayout { .. }), "{err}");
        assert!(err.to_string().contains("chorus:{team}:doc:body"), "{err}");
        assert_eq!(server.cli(&["HGET", "chorus:{team}:doc:body", "head"]), "3", "nothing was touched");
        assert_eq!(server.cli(&["EXISTS", "chorus:layout"]), "0");
    }

    #[tokio::test]
    async fn an_empty_store_is_marked_and_a_marked_one_is_not_scanned_again() {
        let server = RedisServer::start();
        server.cli(&["SET", "unrelated", "x"]);
        RedisStore::connect(&server.url()).await.expect("an empty store is fine");
        assert_eq!(server.cli(&["GET", "chorus:layout"]), "2");
        server.cli(&["SET", "chorus:layout", "9"]);
        let err = RedisStore::connect(&server.url()).await.err().expect("another layout is refused");
        assert!(err.to_string().contains("layout \"9\""), "{err}");
    }

    #[tokio::test]
    async fn every_master_of_a_cluster_is_checked() {
        let cluster = RedisCluster::start(3);
        // Put an old key on whichever master holds it, not the seed's.
        let key = "chorus:{elsewhere}:doc:notes:log";
        let mut cluster = cluster;
        let port = cluster.node_for(key).port;
        cluster.node_for(key).cli(&["RPUSH", key, "op"]);
        let seed = cluster.nodes.iter().find(|n| n.port != port).expect("another master").url();
        let err = RedisStore::connect(&seed).await.err().expect("refused");
        assert!(err.to_string().contains("older layout"), "{err}");
    }
}
