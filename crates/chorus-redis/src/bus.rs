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
use tokio::sync::{broadcast, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::{channel, store_error, RedisStore, PREFIX, RESPONSE_TIMEOUT};

/// Events a slow room task may fall behind by before it must resync (as in
/// the embedded store).
const CAPACITY: usize = 1_024;

/// Marker payloads start with a byte no JSON event starts with.
const MARKER: &str = "\u{1}chorus-marker:";

type Sender = broadcast::Sender<Arc<RoomEvent>>;

struct State {
    /// Rooms this node is subscribed to, with their local fan-out.
    rooms: Mutex<HashMap<String, Sender>>,
    /// Serialises subscribing and unsubscribing; `None` while reconnecting.
    sink: tokio::sync::Mutex<Option<PubSubSink>>,
    markers: Mutex<HashMap<u64, (String, oneshot::Sender<broadcast::Receiver<Arc<RoomEvent>>>)>>,
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

    pub(crate) async fn start(client: redis::Client) -> redis::RedisResult<Self> {
        let (sink, stream) = client.get_async_pubsub().await?.split();
        let state = Arc::new(State {
            rooms: Mutex::new(HashMap::new()),
            sink: tokio::sync::Mutex::new(Some(sink)),
            markers: Mutex::new(HashMap::new()),
            leaving: Mutex::new(HashSet::new()),
            resync: watch::channel(0).0,
            node: format!("{:016x}", rand::random::<u64>()),
        });
        let dispatcher = tokio::spawn(dispatch(client, state.clone(), stream));
        Ok(Self { state, next_marker: AtomicU64::new(1), dispatcher })
    }
}

/// Delivers the node's pub/sub stream to the local subscriptions, and
/// reconnects when the stream ends.
async fn dispatch(client: redis::Client, state: Arc<State>, mut stream: PubSubStream) {
    loop {
        while let Some(msg) = stream.next().await {
            let Some(room) = room_of(msg.get_channel_name()) else { continue };
            let payload = msg.get_payload_bytes();
            if let Some(marker) = std::str::from_utf8(payload).ok().and_then(|p| p.strip_prefix(MARKER)) {
                deliver_marker(&state, room, marker);
                continue;
            }
            let event: RoomEvent = match serde_json::from_slice(payload) {
                Ok(e) => e,
                Err(e) => {
                    warn!(%room, "undecodable bus event ignored: {e}");
                    continue;
                }
            };
            let unread = match lock(&state.rooms).get(room) {
                Some(tx) => tx.send(Arc::new(event)).is_err(),
                None => false,
            };
            if unread {
                leave_later(&state, room);
            }
        }
        warn!("lost the Redis pub/sub connection; reconnecting");
        *state.sink.lock().await = None;
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
        *state.sink.lock().await = Some(sink);
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
        let mut sink = state.sink.lock().await;
        let unread = {
            let mut rooms = lock(&state.rooms);
            let unread = rooms.get(&room).is_some_and(|tx| tx.receiver_count() == 0);
            if unread {
                rooms.remove(&room);
            }
            unread
        };
        if let (true, Some(sink)) = (unread, sink.as_mut()) {
            if let Err(e) = sink.unsubscribe(channel(&room)).await {
                warn!(%room, "could not unsubscribe: {e}");
            }
        }
        lock(&state.leaving).remove(&room);
    });
}

#[async_trait]
impl Bus for RedisStore {
    async fn publish(&self, room: &str, event: RoomEvent) -> StoreResult<()> {
        let payload = serde_json::to_string(&event).map_err(|e| StoreError::Backend(e.to_string()))?;
        let _: i64 = redis::cmd("PUBLISH").arg(channel(room)).arg(payload).query_async(&mut self.conn()).await.map_err(store_error)?;
        Ok(())
    }

    async fn subscribe(&self, room: &str) -> StoreResult<Subscription> {
        let bus = &self.bus;
        let state = &bus.state;
        let mut sink = state.sink.lock().await;
        let Some(sink) = sink.as_mut() else {
            return Err(StoreError::Unavailable("the Redis pub/sub connection is being restored".into()));
        };
        if !lock(&state.rooms).contains_key(room) {
            tokio::time::timeout(RESPONSE_TIMEOUT, sink.subscribe(channel(room)))
                .await
                .map_err(|_| StoreError::Unavailable("Redis did not confirm a subscription".into()))?
                .map_err(store_error)?;
            lock(&state.rooms).entry(room.to_owned()).or_insert_with(|| broadcast::channel(CAPACITY).0);
        }
        let n = bus.next_marker.fetch_add(1, Ordering::Relaxed);
        let (reply, started) = oneshot::channel();
        lock(&state.markers).insert(n, (room.to_owned(), reply));
        let marker = format!("{MARKER}{}:{n}", state.node);
        let published = redis::cmd("PUBLISH").arg(channel(room)).arg(marker).query_async::<i64>(&mut self.conn()).await;
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
