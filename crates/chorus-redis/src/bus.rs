//! The bus on Redis pub/sub: one subscriber connection per node, fanned out
//! to the node's room tasks.
//!
//! Pub/sub is at-most-once and says nothing when it drops messages, so it is
//! a wake-up, not the truth: every event carries the version or stamp it
//! follows from, and a room that sees a gap reads the store. What the bus
//! must do is notice when a room's subscription stops delivering and say
//! so, by bumping the room's lag counter (its subscriptions then report
//! [`BusError::Lagged`](chorus_store::BusError) and the room resyncs):
//!
//! - the pub/sub connection is lost: the bus reconnects, subscribes again
//!   to every room, and reports lag for all of them;
//! - on a Cluster, a shard connection is lost (a disconnection push): every
//!   room lags, and lags again when its subscription is confirmed anew;
//! - on a Cluster, a slot moves: Redis ends the subscriptions of its
//!   channels with an unsubscribe push that nobody asked for, and the client
//!   library forgets them. The bus subscribes such a room again, retrying
//!   until it succeeds, and reports lag;
//! - anything else that ends a subscription silently is caught by
//!   [`Bus::confirm`](chorus_store::Bus::confirm), which the rooms call
//!   periodically: a marker published on the room's channel must come back.
//!
//! Subscribing and unsubscribing a room are serialised by a lock of that
//! room only: no network wait of one room ever holds up another.
//!
//! A new subscription must see only what is published after it starts. The
//! node's pub/sub stream is shared, so a message published just before may
//! still be on its way; the bus therefore publishes a marker of its own on
//! the room's channel and starts the subscription when the marker comes
//! back: everything ahead of it in the stream is older. Dropping the last
//! subscription of a room unsubscribes from its channel.
//!
//! On a Cluster the bus uses sharded pub/sub: each room's channel lives on
//! the shard of the room's keys, so an event crosses only that shard.
//!
//! A group of commits travels as one message, which the bus hands to the
//! room as one event per op, in order. The message names the node that
//! committed it: a subscription made without this node's own groups (a
//! room's, which applies them from the script's answer) is not handed
//! those, so they do not wake the room a second time per op; the bus does
//! not even decode them unless some other subscription of the room wants
//! them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use chorus_core::oplog::LogEntry;
use chorus_store::{Bus, RoomEvent, StoreError, StoreResult, Subscription};
use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use redis::cluster_async::ClusterConnection;
use redis::{PushInfo, PushKind};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::{channel, store_error, RedisStore, PREFIX, RESPONSE_TIMEOUT};

/// Events a slow room task may fall behind by before it must resync (as in
/// the embedded store).
const CAPACITY: usize = 1_024;

/// Marker payloads start with a byte no JSON event starts with.
const MARKER: &str = "\u{1}chorus-marker:";

/// Longest pause between attempts to subscribe a room again.
const RESUBSCRIBE_MAX_DELAY: Duration = Duration::from_secs(2);

/// What a marker coming back does.
enum MarkerReply {
    /// Starts a subscription: the receiver is made when the marker arrives.
    Start(oneshot::Sender<broadcast::Receiver<Arc<RoomEvent>>>, Wants),
    /// Confirms that the room's subscription delivers.
    Confirm(oneshot::Sender<()>),
}

/// Whether Redis is delivering a room's channel to this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// Subscribed by us; the server's confirmation has not come yet.
    Subscribing,
    Live,
    /// The subscription ended or its connection went; being restored.
    Lost,
}

/// Which of a room's events a subscription is handed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wants {
    Everything,
    /// All but the ops of this node's own groups.
    AllButOwnGroups,
}

/// One room this node is subscribed to.
struct RoomFeed {
    /// A channel for each kind of subscription, made when the first of its
    /// kind starts (each holds a buffer of [`CAPACITY`] events).
    everything: Option<broadcast::Sender<Arc<RoomEvent>>>,
    all_but_own_groups: Option<broadcast::Sender<Arc<RoomEvent>>>,
    lag: watch::Sender<u64>,
    link: Link,
}

impl RoomFeed {
    fn new(link: Link) -> Self {
        Self { everything: None, all_but_own_groups: None, lag: watch::channel(0).0, link }
    }

    fn lagged(&self) {
        self.lag.send_modify(|n| *n += 1);
    }

    /// A receiver of what `wants` asks for, from now on.
    fn receiver(&mut self, wants: Wants) -> broadcast::Receiver<Arc<RoomEvent>> {
        let tx = match wants {
            Wants::Everything => &mut self.everything,
            Wants::AllButOwnGroups => &mut self.all_but_own_groups,
        };
        tx.get_or_insert_with(|| broadcast::channel(CAPACITY).0).subscribe()
    }

    fn receivers(&self) -> usize {
        [&self.everything, &self.all_but_own_groups].into_iter().flatten().map(broadcast::Sender::receiver_count).sum()
    }

    /// Whether a subscription wants this node's own groups.
    fn wants_own_groups(&self) -> bool {
        self.everything.as_ref().is_some_and(|tx| tx.receiver_count() > 0)
    }

    /// Hands an event to the subscriptions that want it.
    fn send(&self, event: RoomEvent, own_group: bool) {
        let event = Arc::new(event);
        if let Some(tx) = &self.everything {
            let _ = tx.send(event.clone());
        }
        if let Some(tx) = self.all_but_own_groups.as_ref().filter(|_| !own_group) {
            let _ = tx.send(event);
        }
    }
}

/// Where this node's room channels come from.
enum Feed {
    /// A pub/sub connection to a standalone Redis; `None` while the bus
    /// reconnects it.
    Single(Mutex<Option<PubSubSink>>),
    /// Sharded subscriptions on a Cluster connection of their own, whose
    /// messages arrive as RESP3 pushes.
    Cluster(ClusterConnection),
}

struct State {
    rooms: Mutex<HashMap<String, RoomFeed>>,
    /// One lock per room with a subscription being made or ended.
    room_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    feed: Feed,
    markers: Mutex<HashMap<u64, (String, MarkerReply)>>,
    next_marker: AtomicU64,
    node: String,
    /// How a group message of this node's own starts.
    own_group: Vec<u8>,
}

pub(crate) struct RedisBus {
    state: Arc<State>,
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
        let node = chorus_store::random_id();
        let state = Arc::new(State {
            rooms: Mutex::new(HashMap::new()),
            room_locks: Mutex::new(HashMap::new()),
            feed,
            markers: Mutex::new(HashMap::new()),
            next_marker: AtomicU64::new(1),
            own_group: group_start(&node).into_bytes(),
            node,
        });
        let dispatcher = dispatcher(state.clone());
        Self { state, dispatcher }
    }

    pub(crate) async fn start_single(client: redis::Client) -> redis::RedisResult<Self> {
        let (sink, stream) = client.get_async_pubsub().await?.split();
        let feed = Feed::Single(Mutex::new(Some(sink)));
        Ok(Self::new(feed, |state| tokio::spawn(dispatch_single(client, state, stream))))
    }

    /// `subscriber` must be a RESP3 connection whose pushes go to `pushes`.
    pub(crate) fn start_cluster(subscriber: ClusterConnection, pushes: mpsc::UnboundedReceiver<PushInfo>) -> Self {
        Self::new(Feed::Cluster(subscriber), |state| tokio::spawn(dispatch_cluster(state, pushes)))
    }
}

impl State {
    fn room_lock(&self, room: &str) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.room_locks).entry(room.to_owned()).or_default().clone()
    }

    /// Drops the room's lock once nobody holds or waits for it.
    fn release_room_lock(&self, room: &str, held: Arc<tokio::sync::Mutex<()>>) {
        let mut locks = lock(&self.room_locks);
        // The map's copy and `held`: nobody else has one.
        if Arc::strong_count(&held) <= 2 {
            locks.remove(room);
        }
    }

    /// Sends (S)SUBSCRIBE for a room's channel.
    async fn send_subscribe(&self, room: &str) -> StoreResult<()> {
        let outcome = match &self.feed {
            Feed::Single(sink) => {
                // While the connection is being restored, wait for it a while.
                let deadline = tokio::time::Instant::now() + RESPONSE_TIMEOUT;
                let mut sink = loop {
                    if let Some(sink) = lock(sink).clone() {
                        break sink;
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return Err(StoreError::Unavailable("the Redis pub/sub connection is being restored".into()));
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                };
                tokio::time::timeout(RESPONSE_TIMEOUT, sink.subscribe(channel(room))).await
            }
            Feed::Cluster(conn) => tokio::time::timeout(RESPONSE_TIMEOUT, conn.clone().ssubscribe(channel(room))).await,
        };
        outcome.map_err(|_| StoreError::Unavailable("Redis did not confirm a subscription in time".into()))?.map_err(store_error)
    }

    async fn send_unsubscribe(&self, room: &str) -> redis::RedisResult<()> {
        match &self.feed {
            Feed::Single(sink) => {
                let sink = lock(sink).clone();
                match sink {
                    Some(mut sink) => sink.unsubscribe(channel(room)).await,
                    None => Ok(()),
                }
            }
            Feed::Cluster(conn) => conn.clone().sunsubscribe(channel(room)).await,
        }
    }

    /// Tells every room it missed events.
    fn all_lagged(&self, link: Link) {
        for feed in lock(&self.rooms).values_mut() {
            feed.link = link;
            feed.lagged();
        }
    }
}

/// A group of commits to one document, published as one message by
/// doc_append_group.lua:
/// `{"kind":"doc_ops","node":…,"doc":…,"entries":[…]}`.
#[derive(serde::Deserialize)]
struct GroupOps {
    doc: String,
    entries: Vec<LogEntry>,
}

/// How a group message starts (the script writes it so).
const GROUP_KIND: &str = r#"{"kind":"doc_ops","#;

/// How a group message committed by `node` starts (the script writes the
/// node's id, which is hexadecimal, as it is).
fn group_start(node: &str) -> String {
    format!(r#"{GROUP_KIND}"node":"{node}","#)
}

/// Hands one message on a room channel to the room's local subscriptions.
fn deliver(state: &State, channel: &str, payload: &[u8]) {
    let Some(room) = room_of(channel) else { return };
    if let Some(marker) = std::str::from_utf8(payload).ok().and_then(|p| p.strip_prefix(MARKER)) {
        deliver_marker(state, room, marker);
        return;
    }
    if payload.starts_with(GROUP_KIND.as_bytes()) {
        deliver_group(state, room, payload, payload.starts_with(&state.own_group));
        return;
    }
    let event: RoomEvent = match serde_json::from_slice(payload) {
        Ok(e) => e,
        Err(e) => {
            warn!(%room, "undecodable bus event ignored: {e}");
            return;
        }
    };
    if let Some(feed) = lock(&state.rooms).get(room) {
        feed.send(event, false);
    }
}

/// Hands a group's ops to the room's subscriptions one by one, in order;
/// this node's `own` group only to those that want it.
fn deliver_group(state: &State, room: &str, payload: &[u8], own: bool) {
    if own && !lock(&state.rooms).get(room).is_some_and(RoomFeed::wants_own_groups) {
        return; // Nobody here wants it: not even decoded.
    }
    let group: GroupOps = match serde_json::from_slice(payload) {
        Ok(g) => g,
        Err(e) => {
            warn!(%room, "undecodable bus group ignored: {e}");
            return;
        }
    };
    if let Some(feed) = lock(&state.rooms).get(room) {
        for entry in group.entries {
            feed.send(RoomEvent::DocOp { doc: group.doc.clone(), entry: Arc::new(entry) }, own);
        }
    }
}

fn deliver_marker(state: &State, room: &str, marker: &str) {
    let Some((node, n)) = marker.split_once(':') else { return };
    if node != state.node {
        return; // Another node's marker.
    }
    let Ok(n) = n.parse::<u64>() else { return };
    let Some((marked_room, reply)) = lock(&state.markers).remove(&n) else { return };
    if marked_room != room {
        return;
    }
    let mut rooms = lock(&state.rooms);
    let Some(feed) = rooms.get_mut(room) else { return };
    // A marker that came back proves the channel delivers.
    feed.link = Link::Live;
    match reply {
        MarkerReply::Start(reply, wants) => {
            let _ = reply.send(feed.receiver(wants));
        }
        MarkerReply::Confirm(reply) => {
            let _ = reply.send(());
        }
    }
}

/// Delivers a Cluster connection's pushes, and keeps the subscriptions the
/// server or a lost connection ended.
async fn dispatch_cluster(state: Arc<State>, mut pushes: mpsc::UnboundedReceiver<PushInfo>) {
    while let Some(push) = pushes.recv().await {
        if push.kind == PushKind::SMessage {
            if let Some(msg) = redis::Msg::from_push_info(push) {
                deliver(&state, msg.get_channel_name(), msg.get_payload_bytes());
            }
            continue;
        }
        let resubscribe = on_subscription_push(&mut lock(&state.rooms), &push);
        if let Some(room) = resubscribe {
            resubscribe_later(&state, &room);
        }
    }
}

/// What a push about subscriptions means for the rooms: each room keeps its
/// own link state, so one shard's confirmation never hides another's loss.
/// Returns a room to subscribe again (the server ended its subscription).
fn on_subscription_push(rooms: &mut HashMap<String, RoomFeed>, push: &PushInfo) -> Option<String> {
    match push.kind {
        PushKind::Disconnection => {
            warn!("lost a Redis Cluster connection; its shard's subscriptions are being restored and every room resyncs");
            for feed in rooms.values_mut() {
                feed.link = Link::Lost;
                feed.lagged();
            }
            None
        }
        PushKind::SSubscribe => {
            let room = push_room(push)?;
            let feed = rooms.get_mut(&room)?;
            if feed.link == Link::Lost {
                info!(%room, "Redis Cluster subscription restored; the room resyncs");
                feed.lagged();
            }
            feed.link = Link::Live;
            None
        }
        PushKind::SUnsubscribe => {
            let room = push_room(push)?;
            let feed = rooms.get_mut(&room)?;
            // Nobody here asked (a room being left is no longer listed):
            // the server ended it, its slot moved.
            warn!(%room, "Redis ended the room's subscription (its slot moved?); subscribing again");
            feed.link = Link::Lost;
            feed.lagged();
            Some(room)
        }
        _ => None,
    }
}

/// The room named by a subscribe or unsubscribe push.
fn push_room(push: &PushInfo) -> Option<String> {
    match push.data.first()? {
        redis::Value::BulkString(b) => room_of(std::str::from_utf8(b).ok()?).map(str::to_owned),
        _ => None,
    }
}

/// Subscribes a room again in the background, retrying with growing pauses
/// until Redis confirms, or until nobody on this node wants the room.
fn resubscribe_later(state: &Arc<State>, room: &str) {
    let (weak, room) = (Arc::downgrade(state), room.to_owned());
    tokio::spawn(async move {
        let mut delay = Duration::from_millis(50);
        loop {
            let Some(state) = weak.upgrade() else { return };
            let room_lock = state.room_lock(&room);
            let outcome = {
                let _held = room_lock.lock().await;
                if !lock(&state.rooms).get(&room).is_some_and(|f| f.link == Link::Lost) {
                    Ok(()) // Restored meanwhile, or left.
                } else {
                    state.send_subscribe(&room).await
                }
            };
            state.release_room_lock(&room, room_lock);
            match outcome {
                Ok(()) => {
                    debug!(%room, "subscribed again");
                    return;
                }
                Err(e) => warn!(%room, "could not subscribe again, retrying in {delay:?}: {e}"),
            }
            drop(state);
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(RESUBSCRIBE_MAX_DELAY);
        }
    });
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
        *lock(sink) = None;
        state.all_lagged(Link::Lost);
        stream = reconnect(&client, &state).await;
        // Whatever was published while the connection was down is gone.
        state.all_lagged(Link::Live);
        info!("Redis pub/sub connection restored; rooms resync");
    }
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
        if !channels.is_empty() && !matches!(tokio::time::timeout(RESPONSE_TIMEOUT, sink.subscribe(&channels)).await, Ok(Ok(()))) {
            continue;
        }
        if let Feed::Single(feed) = &state.feed {
            *lock(feed) = Some(sink);
        }
        return stream;
    }
}

/// Unsubscribes from a room once no subscription of it is left on this node.
fn unsubscribe_if_unread(state: Weak<State>, room: String) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    runtime.spawn(async move {
        let Some(state) = state.upgrade() else { return };
        let room_lock = state.room_lock(&room);
        {
            let _held = room_lock.lock().await;
            let unread = {
                let mut rooms = lock(&state.rooms);
                let unread = rooms.get(&room).is_some_and(|f| f.receivers() == 0);
                if unread {
                    rooms.remove(&room);
                }
                unread
            };
            if unread {
                if let Err(e) = state.send_unsubscribe(&room).await {
                    // Its messages are dropped on arrival; a reconnect does
                    // not subscribe it again.
                    warn!(%room, "could not unsubscribe: {e}");
                }
            }
        }
        state.release_room_lock(&room, room_lock);
    });
}

#[async_trait]
impl Bus for RedisStore {
    async fn publish(&self, room: &str, event: RoomEvent) -> StoreResult<()> {
        let payload = serde_json::to_string(&event).map_err(|e| StoreError::Backend(e.to_string()))?;
        let _: i64 = self.query(redis::cmd(self.publish_command()).arg(channel(room)).arg(payload)).await?;
        Ok(())
    }

    async fn subscribe(&self, room: &str) -> StoreResult<Subscription> {
        self.subscribe_to(room, Wants::Everything).await
    }

    async fn subscribe_without_own_groups(&self, room: &str) -> StoreResult<Subscription> {
        self.subscribe_to(room, Wants::AllButOwnGroups).await
    }

    async fn confirm(&self, room: &str) -> StoreResult<()> {
        let state = &self.bus.state;
        let (reply, confirmed) = oneshot::channel();
        let outcome = self.publish_marker(room, MarkerReply::Confirm(reply), confirmed).await;
        if outcome.is_err() {
            let lost = lock(&state.rooms).get_mut(room).map(|feed| {
                feed.link = Link::Lost;
                feed.lagged();
            });
            if lost.is_some() {
                warn!(%room, "the room's subscription did not deliver a marker; subscribing again");
                resubscribe_later(state, room);
            }
        }
        outcome.map(|_| ())
    }

    fn subscribed_rooms(&self) -> usize {
        lock(&self.bus.state.rooms).len()
    }
}

impl RedisStore {
    async fn subscribe_to(&self, room: &str, wants: Wants) -> StoreResult<Subscription> {
        let state = &self.bus.state;
        let room_lock = state.room_lock(room);
        let outcome = {
            let _held = room_lock.lock().await;
            self.subscribe_locked(room, wants).await
        };
        state.release_room_lock(room, room_lock);
        let (rx, lag) = outcome?;
        let weak = Arc::downgrade(state);
        let room = room.to_owned();
        Ok(Subscription::new(rx).with_lag(lag).on_drop(move || unsubscribe_if_unread(weak, room)))
    }

    /// Subscribes the room's channel unless this node already is, then
    /// starts a receiver at a marker. Called under the room's lock.
    async fn subscribe_locked(&self, room: &str, wants: Wants) -> StoreResult<(broadcast::Receiver<Arc<RoomEvent>>, watch::Receiver<u64>)> {
        let state = &self.bus.state;
        let fresh = {
            let mut rooms = lock(&state.rooms);
            match rooms.get(room) {
                Some(_) => false,
                None => {
                    rooms.insert(room.to_owned(), RoomFeed::new(Link::Subscribing));
                    true
                }
            }
        };
        if fresh {
            if let Err(e) = state.send_subscribe(room).await {
                lock(&state.rooms).remove(room);
                return Err(e);
            }
        }
        let lag = lock(&state.rooms).get(room).map(|f| f.lag.subscribe());
        let (reply, started) = oneshot::channel();
        let outcome = self.publish_marker(room, MarkerReply::Start(reply, wants), started).await;
        match (outcome, lag) {
            (Ok(rx), Some(lag)) => Ok((rx, lag)),
            (outcome, _) => {
                if fresh && lock(&state.rooms).get(room).is_some_and(|f| f.receivers() == 0) {
                    lock(&state.rooms).remove(room);
                    let _ = state.send_unsubscribe(room).await;
                }
                Err(outcome.err().unwrap_or_else(|| StoreError::Unavailable("the subscription ended while starting".into())))
            }
        }
    }

    /// Publishes a marker on the room's channel and waits for this node to
    /// receive it.
    async fn publish_marker<T>(&self, room: &str, reply: MarkerReply, arrived: oneshot::Receiver<T>) -> StoreResult<T> {
        let state = &self.bus.state;
        let n = state.next_marker.fetch_add(1, Ordering::Relaxed);
        lock(&state.markers).insert(n, (room.to_owned(), reply));
        let marker = format!("{MARKER}{}:{n}", state.node);
        let published: StoreResult<i64> = self.query(redis::cmd(self.publish_command()).arg(channel(room)).arg(marker)).await;
        let outcome = match published {
            Ok(_) => tokio::time::timeout(RESPONSE_TIMEOUT, arrived).await.ok().and_then(Result::ok),
            Err(e) => {
                lock(&state.markers).remove(&n);
                return Err(e);
            }
        };
        outcome.ok_or_else(|| {
            lock(&state.markers).remove(&n);
            StoreError::Unavailable(format!("the subscription to room {room} did not deliver (Redis pub/sub is not delivering to this node)"))
        })
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

    fn feed() -> RoomFeed {
        RoomFeed::new(Link::Live)
    }

    fn push(kind: PushKind, room: Option<&str>) -> PushInfo {
        let data = room.map(|r| vec![redis::Value::BulkString(channel(r).into_bytes()), redis::Value::Int(1)]).unwrap_or_default();
        PushInfo { kind, data }
    }

    fn lags(rooms: &HashMap<String, RoomFeed>) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = rooms.iter().map(|(r, f)| (r.clone(), *f.lag.borrow())).collect();
        v.sort();
        v
    }

    #[test]
    fn one_shards_confirmation_never_hides_anothers_loss() {
        let mut rooms: HashMap<String, RoomFeed> = ["a", "b"].map(|r| (r.to_owned(), feed())).into_iter().collect();
        on_subscription_push(&mut rooms, &push(PushKind::Disconnection, None));
        assert_eq!(lags(&rooms), [("a".into(), 1), ("b".into(), 1)], "every room resyncs at once");
        // b's shard comes back first; a's has not.
        on_subscription_push(&mut rooms, &push(PushKind::SSubscribe, Some("b")));
        assert_eq!(lags(&rooms), [("a".into(), 1), ("b".into(), 2)]);
        assert_eq!(rooms["a"].link, Link::Lost, "a is still lost");
        on_subscription_push(&mut rooms, &push(PushKind::SSubscribe, Some("a")));
        assert_eq!(lags(&rooms), [("a".into(), 2), ("b".into(), 2)], "a resyncs again once its own subscription is back");
        // A confirmation of a live room changes nothing.
        on_subscription_push(&mut rooms, &push(PushKind::SSubscribe, Some("a")));
        assert_eq!(lags(&rooms), [("a".into(), 2), ("b".into(), 2)]);
    }

    /// A room whose master hangs while the room subscribes holds up no
    /// other room: each room's subscription is made under a lock of its
    /// own, and the other room's master answers meanwhile.
    #[tokio::test]
    async fn a_room_stuck_subscribing_holds_up_no_other_room() {
        let mut cluster = crate::testing::RedisCluster::start(3);
        let store = Arc::new(RedisStore::connect(&cluster.urls().join(",")).await.unwrap());
        let hung = cluster.node_for(&channel("stuck")).port;
        let other = (0..).map(|i| format!("other{i}")).find(|r| cluster.node_for(&channel(r)).port != hung).unwrap();
        cluster.nodes.iter().find(|n| n.port == hung).unwrap().pause();
        let waiting = store.clone();
        let stuck = tokio::spawn(async move { waiting.subscribe("stuck").await.map(drop) });
        // The stuck room has sent its SSUBSCRIBE and waits for the answer.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!stuck.is_finished(), "a subscription on a hung master is still waiting");
        let sub = store.subscribe(&other).await.expect("another room subscribes while the first one waits");
        assert!(!stuck.is_finished(), "the other room did not wait for the stuck one to give up");
        drop(sub);
        cluster.nodes.iter().find(|n| n.port == hung).unwrap().resume();
        // Answered once the master is back, or refused after the timeout.
        let _ = stuck.await.unwrap();
    }

    /// Two nodes commit groups to one document in turn. A subscription
    /// without this node's own groups hears the other node's ops, in order,
    /// and everything else (an event this node published itself); one
    /// with them hears every op.
    async fn own_groups_are_left_out_where_asked(urls: &str) {
        use chorus_core::digest::Digest;
        use chorus_core::text::TextOp;
        use chorus_store::{Appended, DocStore, Group, GroupOp};
        let here = RedisStore::connect(urls).await.unwrap();
        let there = RedisStore::connect(urls).await.unwrap();
        let mut others = here.subscribe_without_own_groups("r").await.unwrap();
        let mut everything = here.subscribe("r").await.unwrap();
        let epoch = here.load("r", "d").await.unwrap().epoch;
        let (mut head, mut digest) = (0, Digest::EMPTY);
        for node in [&there, &here, &here, &there, &here, &there] {
            let (seq, op) = (head + 1, TextOp::insert(0, "x"));
            let next = digest.next(head + 1, "c", seq, &op);
            let ops = [GroupOp { client: "c", seq, op: &op, digest: next }];
            let group = Group { epoch: &epoch, expected: head, expected_digest: digest, ops: &ops };
            assert!(matches!(node.append_group("r", "d", &group).await.unwrap()[..], [Appended::Committed { .. }]));
            (head, digest) = (head + 1, next);
        }
        let deleted = RoomEvent::DocDeleted { doc: "other".into(), epoch: "e".into() };
        here.publish("r", deleted.clone()).await.unwrap();
        // The versions of the ops heard before that event.
        async fn heard(sub: &mut Subscription, last: &RoomEvent) -> Vec<u64> {
            let mut versions = Vec::new();
            loop {
                let event = tokio::time::timeout(Duration::from_secs(5), sub.recv()).await.expect("delivered").unwrap();
                match &*event {
                    RoomEvent::DocOp { entry, .. } => versions.push(entry.version),
                    other => {
                        assert_eq!(other, last);
                        return versions;
                    }
                }
            }
        }
        assert_eq!(heard(&mut others, &deleted).await, [1, 4, 6], "the other node's ops, in order, and none of this node's");
        assert_eq!(heard(&mut everything, &deleted).await, [1, 2, 3, 4, 5, 6]);
    }

    #[tokio::test]
    async fn own_groups_are_left_out_where_asked_on_redis() {
        let server = crate::testing::RedisServer::start();
        own_groups_are_left_out_where_asked(&server.url()).await;
    }

    #[tokio::test]
    async fn own_groups_are_left_out_where_asked_on_a_cluster() {
        let cluster = crate::testing::RedisCluster::start(3);
        own_groups_are_left_out_where_asked(&cluster.urls().join(",")).await;
    }

    #[test]
    fn a_subscription_the_server_ended_is_made_again() {
        let mut rooms: HashMap<String, RoomFeed> = [("a".to_owned(), feed())].into_iter().collect();
        assert_eq!(on_subscription_push(&mut rooms, &push(PushKind::SUnsubscribe, Some("a"))), Some("a".into()));
        assert_eq!((rooms["a"].link, *rooms["a"].lag.borrow()), (Link::Lost, 1));
        assert_eq!(on_subscription_push(&mut rooms, &push(PushKind::SUnsubscribe, Some("gone"))), None, "a room not wanted here is let go");
    }
}
