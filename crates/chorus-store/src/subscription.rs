//! A node's subscription to one room's events, as every backend hands it out.
//!
//! Events come through a broadcast channel that the backend fills (so one
//! copy of each event is shared by the subscribers of a node). A backend
//! whose link to the bus can fail without the channel noticing (a lost
//! connection, a subscription the server ended) bumps the room's lag
//! counter, which the subscription reports as [`BusError::Lagged`]: the
//! room resyncs from the store. Dropping the subscription tells the backend,
//! which unsubscribes once no subscription of the room is left; without
//! that, every room ever visited would stay subscribed.

use std::sync::Arc;

use tokio::sync::{broadcast, watch};

use crate::{BusError, RoomEvent};

type OnDrop = Box<dyn FnOnce() + Send + Sync>;
type Keep = Box<dyn FnMut(&RoomEvent) -> bool + Send + Sync>;

pub struct Subscription {
    /// `None` only while dropping, so the receiver goes before `on_drop`
    /// runs and the backend counts the receivers that remain.
    rx: Option<broadcast::Receiver<Arc<RoomEvent>>>,
    lag: Option<watch::Receiver<u64>>,
    on_drop: Option<OnDrop>,
    /// Events failing this are passed over (see [`crate::faults`]).
    keep: Option<Keep>,
}

impl Subscription {
    pub fn new(rx: broadcast::Receiver<Arc<RoomEvent>>) -> Self {
        Self { rx: Some(rx), lag: None, on_drop: None, keep: None }
    }

    /// Also reports lag whenever `lag` changes from now on.
    pub fn with_lag(mut self, mut lag: watch::Receiver<u64>) -> Self {
        lag.mark_unchanged();
        self.lag = Some(lag);
        self
    }

    /// Runs `f` once the subscription is dropped (its receiver gone).
    pub fn on_drop(mut self, f: impl FnOnce() + Send + Sync + 'static) -> Self {
        self.on_drop = Some(Box::new(f));
        self
    }

    /// Passes over the events `keep` refuses, as if they were never sent.
    pub fn filtered(mut self, keep: impl FnMut(&RoomEvent) -> bool + Send + Sync + 'static) -> Self {
        self.keep = Some(Box::new(keep));
        self
    }

    /// The next event, or why events were missed.
    pub async fn recv(&mut self) -> Result<Arc<RoomEvent>, BusError> {
        loop {
            let event = self.next().await?;
            if self.keep.as_mut().is_none_or(|keep| keep(&event)) {
                return Ok(event);
            }
        }
    }

    async fn next(&mut self) -> Result<Arc<RoomEvent>, BusError> {
        let lagged = async {
            let reported = match &mut self.lag {
                Some(w) => w.changed().await.is_ok(),
                None => false,
            };
            if !reported {
                // No lag signal (or its sender is gone): never lagged this way.
                std::future::pending::<()>().await;
            }
        };
        let rx = self.rx.as_mut().expect("a live subscription has its receiver");
        tokio::select! {
            biased;
            _ = lagged => Err(BusError::Lagged { missed: 0 }),
            event = rx.recv() => event.map_err(|e| match e {
                broadcast::error::RecvError::Lagged(missed) => BusError::Lagged { missed },
                broadcast::error::RecvError::Closed => BusError::Closed,
            }),
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.rx.take();
        if let Some(f) = self.on_drop.take() {
            f();
        }
    }
}
