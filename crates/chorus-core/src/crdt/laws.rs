//! The laws every value type must keep, checked on random states, random ops
//! and random replicated histories.
//!
//! States for the merge laws are built from arbitrary ops, causal or not, with
//! stamps drawn from a tiny range so that ties (including reused stamps) are
//! common. The history test runs several replicas that act locally with their
//! own clocks and now and then merge each other's state, which is how rooms on
//! several nodes behave; the ops they produce must then give one state in any
//! order of application.

use proptest::prelude::*;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use super::*;

const WRITERS: &[&str] = &["a", "b", "c"];
const ELEMENTS: &[&str] = &["x", "y", "z"];

fn json_pool() -> Vec<Json> {
    vec![
        json!(null),
        json!(true),
        json!(1),
        json!(1.0),
        json!(-2),
        json!("x"),
        json!(""),
        json!([1, "x"]),
        json!({"a": 1}),
        json!({"a": 2, "b": null}),
    ]
}

fn hlc() -> impl Strategy<Value = Hlc> {
    (0u64..4, 0u32..3, prop::sample::select(WRITERS)).prop_map(|(w, c, n)| Hlc::new(w, c, n))
}

fn json_value() -> impl Strategy<Value = Json> {
    prop::sample::select(json_pool())
}

fn element() -> impl Strategy<Value = String> {
    prop::sample::select(ELEMENTS).prop_map(str::to_owned)
}

fn kind() -> impl Strategy<Value = ValueKind> {
    prop::sample::select(ValueKind::ALL.to_vec())
}

/// Any op that applies to `kind`, not necessarily one a real replica would make.
fn op_for(kind: ValueKind) -> BoxedStrategy<ValueOp> {
    let writer = || prop::sample::select(WRITERS).prop_map(str::to_owned);
    match kind {
        ValueKind::Register => (json_value(), hlc())
            .prop_map(|(value, stamp)| ValueOp::Set { value, stamp })
            .boxed(),
        ValueKind::GCounter => (writer(), 0i64..1_000)
            .prop_map(|(writer, amount)| ValueOp::Increment { writer, amount })
            .boxed(),
        ValueKind::PnCounter => (writer(), -1_000i64..1_000)
            .prop_map(|(writer, amount)| ValueOp::Increment { writer, amount })
            .boxed(),
        ValueKind::OrSet => prop_oneof![
            (element(), hlc()).prop_map(|(element, tag)| ValueOp::Add { element, tag }),
            (element(), prop::collection::btree_set(hlc(), 0..3))
                .prop_map(|(element, tags)| ValueOp::Remove { element, tags }),
        ]
        .boxed(),
        ValueKind::LwwMap => prop_oneof![
            (element(), json_value(), hlc()).prop_map(|(key, value, stamp)| ValueOp::MapSet {
                key,
                value,
                stamp
            }),
            (element(), hlc()).prop_map(|(key, stamp)| ValueOp::MapDelete { key, stamp }),
        ]
        .boxed(),
    }
}

fn ops_for(kind: ValueKind) -> impl Strategy<Value = Vec<ValueOp>> {
    prop::collection::vec(op_for(kind), 0..10)
}

fn applied(kind: ValueKind, ops: &[ValueOp]) -> Value {
    let mut v = Value::new(kind);
    for op in ops {
        v.apply(op)
            .unwrap_or_else(|e| panic!("{op:?} on {kind}: {e}"));
    }
    v
}

fn state(kind: ValueKind) -> impl Strategy<Value = Value> {
    ops_for(kind).prop_map(move |ops| applied(kind, &ops))
}

fn three_states() -> impl Strategy<Value = (Value, Value, Value)> {
    kind().prop_flat_map(|k| (state(k), state(k), state(k)))
}

fn merged(a: &Value, b: &Value) -> Value {
    let mut m = a.clone();
    m.merge(b).expect("same kind");
    m
}

fn shuffled<T: Clone>(items: &[T], seed: u64) -> Vec<T> {
    let mut v = items.to_vec();
    v.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn merge_is_commutative((a, b, _) in three_states()) {
        prop_assert_eq!(merged(&a, &b), merged(&b, &a));
    }

    #[test]
    fn merge_is_associative((a, b, c) in three_states()) {
        prop_assert_eq!(merged(&merged(&a, &b), &c), merged(&a, &merged(&b, &c)));
    }

    #[test]
    fn merge_is_idempotent((a, b, _) in three_states()) {
        prop_assert_eq!(merged(&a, &a), a.clone());
        let ab = merged(&a, &b);
        prop_assert_eq!(merged(&ab, &b), ab.clone());
        prop_assert_eq!(merged(&ab, &a), ab);
        prop_assert_eq!(merged(&a, &Value::new(a.kind())), a.clone(), "the empty value is neutral");
    }

    /// Every op of every kind commutes with every other, so the order they
    /// arrive in does not matter.
    #[test]
    fn ops_give_one_state_in_any_order((k, ops) in kind().prop_flat_map(|k| (Just(k), ops_for(k))), seed in any::<u64>()) {
        prop_assert_eq!(applied(k, &shuffled(&ops, seed)), applied(k, &ops));
    }

    /// Applying an idempotent op again changes nothing.
    #[test]
    fn idempotent_ops_apply_once((k, ops) in kind().prop_flat_map(|k| (Just(k), ops_for(k))), seed in any::<u64>()) {
        let once = applied(k, &ops);
        let repeats: Vec<_> = ops.iter().filter(|op| op.is_idempotent()).cloned().collect();
        let mut twice = once.clone();
        for op in shuffled(&repeats, seed) {
            twice.apply(&op).unwrap();
        }
        prop_assert_eq!(twice, once);
    }

    #[test]
    fn states_survive_json((k, ops) in kind().prop_flat_map(|k| (Just(k), ops_for(k)))) {
        let v = applied(k, &ops);
        let back: Value = serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
        prop_assert_eq!(back, v);
    }

    #[test]
    fn replicas_converge_and_their_ops_commute(
        k in kind(),
        skews in prop::collection::vec(0u64..200, REPLICAS),
        steps in prop::collection::vec(step(), 0..40),
        seed in any::<u64>(),
    ) {
        let (replicas, ops) = run_replicas(k, &skews, &steps);
        let all = replicas.iter().fold(Value::new(k), |m, r| merged(&m, r));
        for r in &replicas {
            prop_assert_eq!(merged(r, &all), all.clone(), "a replica converges once it has seen every state");
        }
        prop_assert_eq!(applied(k, &shuffled(&ops, seed)), all.clone(), "the ops in any order give the merged state");
        if ops.iter().all(ValueOp::is_idempotent) {
            let mut doubled = ops.clone();
            doubled.extend(shuffled(&ops, seed ^ 1));
            prop_assert_eq!(applied(k, &shuffled(&doubled, seed)), all);
        }
    }

    #[test]
    fn clock_stamps_only_go_up(events in prop::collection::vec(clock_event(), 1..60)) {
        let mut clock = HlcClock::with_max_drift("me", 5_000);
        let mut last: Option<Hlc> = None;
        let mut must_beat: Option<Hlc> = None;
        for event in events {
            match event {
                ClockEvent::Issue(now) => {
                    let stamp = clock.issue(now).unwrap();
                    prop_assert!(stamp.wall_ms >= now, "never behind the wall clock");
                    if let Some(prev) = &last {
                        prop_assert!(&stamp > prev, "{} after {}", stamp, prev);
                    }
                    if let Some(remote) = must_beat.take() {
                        prop_assert!(stamp > remote, "{} after observing {}", stamp, remote);
                    }
                    last = Some(stamp);
                }
                ClockEvent::Observe { remote, now } => {
                    let before = clock.clone();
                    match clock.observe(&remote, now) {
                        Ok(()) => must_beat = must_beat.max(Some(remote)),
                        Err(ClockError::TooFarAhead { .. }) => {
                            prop_assert!(remote.wall_ms > now + 5_000);
                            prop_assert_eq!(&clock, &before, "a refused stamp changes nothing");
                        }
                        Err(e) => prop_assert!(false, "unexpected {}", e),
                    }
                }
            }
        }
    }
}

const REPLICAS: usize = 3;

#[derive(Debug, Clone)]
enum Step {
    /// Replica `replica` makes a local op; `pick` and `amount` choose it.
    Local {
        replica: usize,
        pick: usize,
        amount: i64,
        advance_ms: u64,
    },
    /// Replica `to` merges replica `from`'s state and observes its clock.
    Sync { from: usize, to: usize },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0..REPLICAS, any::<usize>(), -50i64..50, 0u64..30)
            .prop_map(|(replica, pick, amount, advance_ms)| Step::Local { replica, pick, amount, advance_ms }),
        1 => (0..REPLICAS, 0..REPLICAS).prop_map(|(from, to)| Step::Sync { from, to }),
    ]
}

/// Plays `steps` on replicas whose wall clocks are `skews` apart; returns
/// their states and every op they made.
fn run_replicas(kind: ValueKind, skews: &[u64], steps: &[Step]) -> (Vec<Value>, Vec<ValueOp>) {
    let names: Vec<String> = (0..REPLICAS).map(|i| format!("r{i}")).collect();
    let mut clocks: Vec<HlcClock> = names.iter().map(HlcClock::new).collect();
    let mut last_stamp: Vec<Option<Hlc>> = vec![None; REPLICAS];
    let mut replicas = vec![Value::new(kind); REPLICAS];
    let mut ops = Vec::new();
    let mut base_ms = 1_000;
    for step in steps {
        match *step {
            Step::Local {
                replica: r,
                pick,
                amount,
                advance_ms,
            } => {
                base_ms += advance_ms;
                let mut stamp = || {
                    let s = clocks[r].issue(base_ms + skews[r]).unwrap();
                    last_stamp[r] = Some(s.clone());
                    s
                };
                let element = ELEMENTS[pick % ELEMENTS.len()].to_owned();
                let value = json_pool()[pick % json_pool().len()].clone();
                let op = match (&replicas[r], pick % 2 == 0) {
                    (Value::Register(_), _) => ValueOp::Set {
                        value,
                        stamp: stamp(),
                    },
                    (Value::GCounter(_), _) => ValueOp::Increment {
                        writer: names[r].clone(),
                        amount: amount.abs(),
                    },
                    (Value::PnCounter(_), _) => ValueOp::Increment {
                        writer: names[r].clone(),
                        amount,
                    },
                    (Value::OrSet(_), true) => ValueOp::Add {
                        element,
                        tag: stamp(),
                    },
                    (Value::OrSet(s), false) => {
                        let tags = s.tags(&element).cloned().collect();
                        ValueOp::Remove { element, tags }
                    }
                    (Value::LwwMap(_), true) => ValueOp::MapSet {
                        key: element,
                        value,
                        stamp: stamp(),
                    },
                    (Value::LwwMap(_), false) => ValueOp::MapDelete {
                        key: element,
                        stamp: stamp(),
                    },
                };
                replicas[r].apply(&op).unwrap();
                ops.push(op);
            }
            Step::Sync { from, to } => {
                let theirs = replicas[from].clone();
                replicas[to].merge(&theirs).unwrap();
                if let Some(s) = &last_stamp[from] {
                    clocks[to].observe(s, base_ms + skews[to]).unwrap();
                }
            }
        }
    }
    (replicas, ops)
}

#[derive(Debug, Clone)]
enum ClockEvent {
    Issue(u64),
    Observe { remote: Hlc, now: u64 },
}

fn clock_event() -> impl Strategy<Value = ClockEvent> {
    let counter = prop_oneof![0u32..4, (u32::MAX - 2)..=u32::MAX];
    prop_oneof![
        (0u64..10_000).prop_map(ClockEvent::Issue),
        (
            0u64..20_000,
            counter,
            prop::sample::select(WRITERS),
            0u64..10_000
        )
            .prop_map(|(wall, counter, writer, now)| {
                ClockEvent::Observe {
                    remote: Hlc::new(wall, counter, writer),
                    now,
                }
            }),
    ]
}

/// A write made after seeing another replica's write wins over it, whatever
/// their wall clocks say: the clock observed the earlier stamp.
#[test]
fn a_write_after_a_sync_wins_even_with_a_slow_clock() {
    let mut fast = HlcClock::new("fast");
    let mut slow = HlcClock::new("slow");
    let mut a = LwwRegister::new();
    let first = fast.issue(10_000).unwrap();
    a.set(json!("from fast"), first.clone());
    slow.observe(&first, 9_000).unwrap();
    let mut b = a.clone();
    b.set(json!("from slow, later"), slow.issue(9_000).unwrap());
    a.merge(&b);
    assert_eq!(a.value(), &json!("from slow, later"));
}
