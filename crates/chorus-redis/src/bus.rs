//! The bus on Redis pub/sub: one subscriber connection per node, fanned out
//! to the node's room tasks.
//!
//! Pub/sub is at-most-once and says nothing when it drops messages, so it is
//! a wake-up, not the truth: document ops carry versions and a room that
//! sees a gap fetches the missing ops from the log. When the subscriber
//! connection is lost, the bus reconnects, subscribes again to every room
//! and tells every subscription it lagged (so rooms refetch members and
//! catch their documents up), because whatever was published meanwhile is
//! gone.
//!
//! On a Cluster the bus uses sharded pub/sub: each room's channel lives on
//! the shard of the room's keys, so an event crosses only that shard. The
//! Cluster connection subscribes again by itself after losing a node; the
//! bus tells every subscription it lagged when the loss is reported and
//! again when the subscription is confirmed, since events in between are
//! gone.
//!
//! A new subscription must see only what is published after it starts. The
//! node's pub/sub stream is shared, so a message published just before may
//! still be on its way; the bus therefore publishes a marker of its own on
//! the room's channel and starts the subscription when the marker comes
//! back: everything ahead of it in the stream is older.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chorus_store::{Bus, RoomEvent, StoreError, StoreResult, Subscription};
use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use redis::cluster_async::ClusterConnection;
use redis::{PushInfo, PushKind};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::{channel, store_error, RedisStore, PREFIX, RESPONSE_TIMEOUT};

/// Events a slow room task may fall behind by before it must resync (as in
/// the embedded store).
const CAPACITY: usize = 1_024;

/// Marker payloads start with a byte no JSON event starts with.
const MARKER: &str = "\u{1}chorus-marker:";

type Sender = broadcast::Sender<Arc<RoomEvent>>;

/// Where a starting subscription is handed over when its marker comes back.
type MarkerReply = oneshot::Sender<broadcast::Receiver<Arc<RoomEvent>>>;

/// Where this node's room channels come from. Each is behind a lock that
/// serialises subscribing and unsubscribing.
enum Feed {
    /// A pub/sub connection to a standalone Redis; `None` while the bus
    /// reconnects it.
    Single(tokio::sync::Mutex<Option<PubSubSink>>),
    /// Sharded subscriptions on a Cluster connection of their own, whose
    /// messages arrive as RESP3 pushes.
    Cluster(tokio::sync::Mutex<ClusterConnection>),
}

struct State {
    /// Rooms this node is subscribed to, with their local fan-out.
    rooms: Mutex<HashMap<String, Sender>>,
    feed: Feed,
    markers: Mutex<HashMap<u64, (String, MarkerReply)>>,
    /// Rooms whose unsubscription is under way.
    leaving: Mutex<HashSet<String>>,
    resync: watch::Sender<u64>,
    node: String,
}

pub(crate) struct RedisBus {
    state: Arc<State>,
    next_marker: AtomicU64,
    dispatcher: JoinHandle<()>,
}

impl Drop for RedisBus {
    fn drop(&mut self) {
        self.dispatcher.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The room a channel name belongs to: `chorus:{room}:events`.
fn room_of(channel: &str) -> Option<&str> {
    channel.strip_prefix(PREFIX)?.strip_prefix(":{")?.strip_suffix("}:events")
}

impl RedisBus {
    /// This node's random id (for markers, and turns in commit races).
    pub(crate) fn node(&self) -> &str {
        &self.state.node
    }

    fn new(feed: Feed, dispatcher: impl FnOnce(Arc<State>) -> JoinHandle<()>) -> Self {
        let state = Arc::new(State {
            rooms: Mutex::new(HashMap::new()),
            feed,
            markers: Mutex::new(HashMap::new()),
            leaving: Mutex::new(HashSet::new()),
            resync: watch::channel(0).0,
            node: format!("{:016x}", rand::random::<u64>()),
        });
        let dispatcher = dispatcher(state.clone());
        Self { state, next_marker: AtomicU64::new(1), dispatcher }
    }

    pub(crate) async fn start_single(client: redis::Client) -> redis::RedisResult<Self> {
        let (sink, stream) = client.get_async_pubsub().await?.split();
        let feed = Feed::Single(tokio::sync::Mutex::new(Some(sink)));
        Ok(Self::new(feed, |state| tokio::spawn(dispatch_single(client, state, stream))))
    }

    /// `subscriber` must be a RESP3 connection whose pushes go to `pushes`.
    pub(crate) fn start_cluster(subscriber: ClusterConnection, pushes: mpsc::UnboundedReceiver<PushInfo>) -> Self {
        let feed = Feed::Cluster(tokio::sync::Mutex::new(subscriber));
        Self::new(feed, |state| tokio::spawn(dispatch_cluster(state, pushes)))
    }
}

/// Hands one message on a room channel to the room's local subscriptions.
fn deliver(state: &Arc<State>, channel: &str, payload: &[u8]) {
    let Some(room) = room_of(channel) else { return };
    if let Some(marker) = std::str::from_utf8(payload).ok().and_then(|p| p.strip_prefix(MARKER)) {
        deliver_marker(state, room, marker);
        return;
    }
    let event: RoomEvent = match serde_json::from_slice(payload) {
        Ok(e) => e,
        Err(e) => {
            warn!(%room, "undecodable bus event ignored: {e}");
            return;
        }
    };
    let unread = match lock(&state.rooms).get(room) {
        Some(tx) => tx.send(Arc::new(event)).is_err(),
        None => false,
    };
    if unread {
        leave_later(state, room);
    }
}

/// Delivers a Cluster connection's pushes. The connection re-subscribes by
/// itself; the bus only has to make rooms resync around a loss.
async fn dispatch_cluster(state: Arc<State>, mut pushes: mpsc::UnboundedReceiver<PushInfo>) {
    let mut lost = false;
    while let Some(push) = pushes.recv().await {
        match push.kind {
            PushKind::SMessage => {
                if let Some(msg) = redis::Msg::from_push_info(push) {
                    deliver(&state, msg.get_channel_name(), msg.get_payload_bytes());
                }
            }
            PushKind::Disconnection => {
                warn!("lost a Redis Cluster connection; its shard's subscriptions are being restored");
                lost = true;
                state.resync.send_modify(|n| *n += 1);
            }
            PushKind::SSubscribe if lost => {
                lost = false;
                state.resync.send_modify(|n| *n += 1);
                info!("Redis Cluster subscriptions restored; rooms resync");
            }
            _ => {}
        }
    }
}

/// Delivers the node's pub/sub stream to the local subscriptions, and
/// reconnects when the stream ends.
async fn dispatch_single(client: redis::Client, state: Arc<State>, mut stream: PubSubStream) {
    let Feed::Single(sink) = &state.feed else { unreachable!("a standalone feed") };
    loop {
        while let Some(msg) = stream.next().await {
            deliver(&state, msg.get_channel_name(), msg.get_payload_bytes());
        }
        warn!("lost the Redis pub/sub connection; reconnecting");
        *sink.lock().await = None;
        stream = reconnect(&client, &state).await;
        // Whatever was published while the connection was down is gone.
        state.resync.send_modify(|n| *n += 1);
        info!("Redis pub/sub connection restored; rooms resync");
    }
}

fn deliver_marker(state: &State, room: &str, marker: &str) {
    let Some((node, n)) = marker.split_once(':') else { return };
    if node != state.node {
        return; // Another node's subscription starting.
    }
    let Ok(n) = n.parse::<u64>() else { return };
    let Some((marked_room, reply)) = lock(&state.markers).remove(&n) else { return };
    if marked_room != room {
        return;
    }
    let rx = lock(&state.rooms).entry(room.to_owned()).or_insert_with(|| broadcast::channel(CAPACITY).0).subscribe();
    let _ = reply.send(rx);
}

/// Connects again (backing off up to a second between tries) and
/// subscribes to every room this node has subscribers in.
async fn reconnect(client: &redis::Client, state: &State) -> PubSubStream {
    let mut delay = Duration::from_millis(50);
    loop {
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(1));
        let Ok(Ok(pubsub)) = tokio::time::timeout(RESPONSE_TIMEOUT, client.get_async_pubsub()).await else { continue };
        let (mut sink, stream) = pubsub.split();
        let channels: Vec<String> = lock(&state.rooms).keys().map(|r| channel(r)).collect();
        if !channels.is_empty() && sink.subscribe(&channels).await.is_err() {
            continue;
        }
        if let Feed::Single(feed) = &state.feed {
            *feed.lock().await = Some(sink);
        }
        return stream;
    }
}

/// Unsubscribes from a room nobody on this node reads any more, unless a
/// subscription started meanwhile.
fn leave_later(state: &Arc<State>, room: &str) {
    if !lock(&state.leaving).insert(room.to_owned()) {
        return;
    }
    let (state, room) = (state.clone(), room.to_owned());
    tokio::spawn(async move {
        let unread = || {
            let mut rooms = lock(&state.rooms);
            let unread = rooms.get(&room).is_some_and(|tx| tx.receiver_count() == 0);
            if unread {
                rooms.remove(&room);
            }
            unread
        };
        let outcome = match &state.feed {
            Feed::Single(sink) => {
                let mut sink = sink.lock().await;
                match (unread(), sink.as_mut()) {
                    (true, Some(sink)) => sink.unsubscribe(channel(&room)).await,
                    _ => Ok(()),
                }
            }
            Feed::Cluster(conn) => {
                let mut conn = conn.lock().await;
                if unread() {
                    conn.sunsubscribe(channel(&room)).await
                } else {
                    Ok(())
                }
            }
        };
        if let Err(e) = outcome {
            warn!(%room, "could not unsubscribe: {e}");
        }
        lock(&state.leaving).remove(&room);
    });
}

#[async_trait]
impl Bus for RedisStore {
    async fn publish(&self, room: &str, event: RoomEvent) -> StoreResult<()> {
        let payload = serde_json::to_string(&event).map_err(|e| StoreError::Backend(e.to_string()))?;
        let _: i64 = redis::cmd(self.publish_command()).arg(channel(room)).arg(payload).query_async(&mut self.conn()).await.map_err(store_error)?;
        Ok(())
    }

    async fn subscribe(&self, room: &str) -> StoreResult<Subscription> {
        let state = &self.bus.state;
        let subscribed = || lock(&state.rooms).contains_key(room);
        let confirmed = |outcome: Result<redis::RedisResult<()>, _>| {
            outcome.map_err(|_| StoreError::Unavailable("Redis did not confirm a subscription".into()))?.map_err(store_error)?;
            lock(&state.rooms).entry(room.to_owned()).or_insert_with(|| broadcast::channel(CAPACITY).0);
            Ok::<_, StoreError>(())
        };
        // The feed stays locked until the subscription has started, so the
        // room cannot be unsubscribed meanwhile.
        match &state.feed {
            Feed::Single(sink) => {
                let mut sink = sink.lock().await;
                let Some(sink) = sink.as_mut() else {
                    return Err(StoreError::Unavailable("the Redis pub/sub connection is being restored".into()));
                };
                if !subscribed() {
                    confirmed(tokio::time::timeout(RESPONSE_TIMEOUT, sink.subscribe(channel(room))).await)?;
                }
                self.start_at_marker(room).await
            }
            Feed::Cluster(conn) => {
                let mut conn = conn.lock().await;
                if !subscribed() {
                    confirmed(tokio::time::timeout(RESPONSE_TIMEOUT, conn.ssubscribe(channel(room))).await)?;
                }
                self.start_at_marker(room).await
            }
        }
    }
}

impl RedisStore {
    /// Publishes a marker on the room's channel and starts the subscription
    /// where it comes back.
    async fn start_at_marker(&self, room: &str) -> StoreResult<Subscription> {
        let bus = &self.bus;
        let state = &bus.state;
        let n = bus.next_marker.fetch_add(1, Ordering::Relaxed);
        let (reply, started) = oneshot::channel();
        lock(&state.markers).insert(n, (room.to_owned(), reply));
        let marker = format!("{MARKER}{}:{n}", state.node);
        let published = redis::cmd(self.publish_command()).arg(channel(room)).arg(marker).query_async::<i64>(&mut self.conn()).await;
        let outcome = match published {
            Ok(_) => tokio::time::timeout(RESPONSE_TIMEOUT, started).await,
            Err(e) => {
                lock(&state.markers).remove(&n);
                return Err(store_error(e));
            }
        };
        match outcome {
            Ok(Ok(rx)) => Ok(Subscription::with_resync(rx, state.resync.subscribe())),
            _ => {
                lock(&state.markers).remove(&n);
                Err(StoreError::Unavailable("the subscription did not start (Redis pub/sub is not delivering)".into()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_name_their_rooms() {
        assert_eq!(room_of(&channel("team/plan")), Some("team/plan"));
        assert_eq!(room_of("other:{x}:events"), None);
        assert_eq!(room_of("chorus:{x}:members"), None);
    }
}
