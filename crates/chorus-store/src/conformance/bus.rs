//! The bus: in order, rooms apart, lag reported, and nothing left behind.

use chorus_protocol::LeaveReason;

use super::{cursor_event, next_event};
use crate::{Backend, BusError, RoomEvent, Stamp};

pub(super) async fn run<B, F, Fut>(make: &F)
where
    B: Backend,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = B>,
{
    bus_delivers_in_order_to_every_subscriber(make().await).await;
    bus_keeps_rooms_apart(make().await).await;
    dropped_subscriptions_receive_nothing(make().await).await;
    dropping_the_last_subscription_unsubscribes(make().await).await;
    live_subscriptions_are_confirmed(make().await).await;
    bus_reports_lag(make().await).await;
}

async fn bus_delivers_in_order_to_every_subscriber<B: Backend>(b: B) {
    let check = "bus_delivers_in_order_to_every_subscriber";
    let mut s1 = b.subscribe("r").await.unwrap();
    let mut s2 = b.subscribe("r").await.unwrap();
    for x in 0..100 {
        b.publish("r", cursor_event("c1", x)).await.unwrap();
    }
    for s in [&mut s1, &mut s2] {
        for x in 0..100 {
            assert_eq!(next_event(s, check).await, cursor_event("c1", x), "{check}");
        }
    }
    let stamp = Stamp { epoch: "e".into(), seq: 3 };
    let left = RoomEvent::MemberLeft { connection: "c1".into(), user: "ann".into(), reason: LeaveReason::Expired, count: 0, stamp };
    b.publish("r", left.clone()).await.unwrap();
    assert_eq!(next_event(&mut s1, check).await, left, "{check}: events keep their fields");
}

async fn bus_keeps_rooms_apart<B: Backend>(b: B) {
    let check = "bus_keeps_rooms_apart";
    let mut r = b.subscribe("r").await.unwrap();
    b.publish("other", cursor_event("c9", 9)).await.unwrap();
    b.publish("r", cursor_event("c1", 1)).await.unwrap();
    assert_eq!(next_event(&mut r, check).await, cursor_event("c1", 1), "{check}");
}

async fn dropped_subscriptions_receive_nothing<B: Backend>(b: B) {
    let check = "dropped_subscriptions_receive_nothing";
    let s = b.subscribe("r").await.unwrap();
    drop(s);
    b.publish("r", cursor_event("c1", 1)).await.expect(check);
    let mut late = b.subscribe("r").await.unwrap();
    b.publish("r", cursor_event("c1", 2)).await.unwrap();
    assert_eq!(next_event(&mut late, check).await, cursor_event("c1", 2), "{check}: a new subscriber sees only what follows");
}

/// A room visited once must not stay subscribed: a node that served
/// thousands of rooms would hold thousands of channels.
async fn dropping_the_last_subscription_unsubscribes<B: Backend>(b: B) {
    let check = "dropping_the_last_subscription_unsubscribes";
    let baseline = b.subscribed_rooms();
    let mut subs = Vec::new();
    for i in 0..20 {
        subs.push(b.subscribe(&format!("room-{i}")).await.unwrap());
    }
    let second = b.subscribe("room-0").await.unwrap();
    assert_eq!(b.subscribed_rooms(), baseline + 20, "{check}: one subscription per room, however many subscribers");
    drop(subs);
    // Unsubscribing may be carried out in the background.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while b.subscribed_rooms() != baseline + 1 {
        assert!(tokio::time::Instant::now() < deadline, "{check}: {} rooms still subscribed, expected {}", b.subscribed_rooms(), baseline + 1);
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let mut second = second;
    b.publish("room-0", cursor_event("c1", 7)).await.unwrap();
    assert_eq!(next_event(&mut second, check).await, cursor_event("c1", 7), "{check}: the room still subscribed keeps delivering");
    drop(second);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while b.subscribed_rooms() != baseline {
        assert!(tokio::time::Instant::now() < deadline, "{check}: {} rooms still subscribed", b.subscribed_rooms());
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

async fn live_subscriptions_are_confirmed<B: Backend>(b: B) {
    let check = "live_subscriptions_are_confirmed";
    let mut s = b.subscribe("r").await.unwrap();
    b.confirm("r").await.unwrap_or_else(|e| panic!("{check}: {e}"));
    b.publish("r", cursor_event("c1", 1)).await.unwrap();
    assert_eq!(next_event(&mut s, check).await, cursor_event("c1", 1), "{check}: confirming delivers nothing to the room");
}

async fn bus_reports_lag<B: Backend>(b: B) {
    let check = "bus_reports_lag";
    let mut s = b.subscribe("r").await.unwrap();
    for x in 0..20_000 {
        b.publish("r", cursor_event("c1", x)).await.unwrap();
    }
    match s.recv().await {
        Err(BusError::Lagged { missed }) => assert!(missed > 0, "{check}"),
        other => panic!("{check}: a subscriber 20,000 events behind must be told it lagged, got {other:?}"),
    }
}
