//! The lifecycle of documents: discarded when never edited, listed,
//! deleted (freed, announced, fenced) and imported.

use chorus_core::digest::Digest;

use super::{ins, next_event, Writer};
use crate::{Appended, Backend, DeletedDoc, DocHead, HistoryWrite, ImportedDoc, RoomEvent, Snapshot, StoreError, StoredHistory, TextAtError};

pub(super) async fn run<B, F, Fut>(make: &F)
where
    B: Backend,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = B>,
{
    an_untouched_document_is_discarded(make().await).await;
    an_op_past_version_zero_never_creates_a_document(make().await).await;
    a_creation_race_in_two_epochs_has_one_winner(make().await).await;
    rooms_list_their_documents(make().await).await;
    deleting_frees_everything_and_is_announced(make().await).await;
    a_deleted_incarnation_is_fenced_off(make().await).await;
    histories_are_saved_only_for_the_incarnation_named(make().await).await;
    imports_create_a_document_at_its_version(make().await).await;
    past_versions_are_read_from_the_snapshot_and_the_log(make().await).await;
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

async fn an_untouched_document_is_discarded<B: Backend>(b: B) {
    let check = "an_untouched_document_is_discarded";
    let d = b.load("r", "d").await.unwrap();
    assert!(b.save_history("r", "d", &d.epoch, "ann", 0, "t", "ann's").await.unwrap(), "{check}");
    assert_eq!(b.list_docs("r").await.unwrap(), vec![], "{check}: a document nobody edited is not listed");
    assert!(!b.discard_if_empty("r", "d", "another-epoch").await.unwrap(), "{check}: only the incarnation named");
    assert!(b.discard_if_empty("r", "d", &d.epoch).await.unwrap(), "{check}");
    assert_eq!(b.status("r", &["d"], 0).await.unwrap().docs, vec![None], "{check}: nothing left");
    assert_eq!(b.load_history("r", "d", "ann").await.unwrap(), None, "{check}: nor its histories");
    assert_eq!(b.ops_since("r", "d", &d.epoch, 0).await.unwrap(), Some(vec![]), "{check}: version 0 is the empty text");
    assert_eq!(b.ops_since("r", "d", &d.epoch, 1).await.unwrap(), None, "{check}");
    assert!(!b.discard_if_empty("r", "d", &d.epoch).await.unwrap(), "{check}: once");
    // A node that still has it open saves no history for it: the store
    // cannot tell a discarded document from a deleted one (the node keeps
    // its copy, written with the user's first undo).
    let saved = b.save_history("r", "d", &d.epoch, "bob", 0, "t", "bob's").await;
    assert!(matches!(saved, Err(StoreError::Stale(_))), "{check}: no history of a missing document: {saved:?}");
    assert!(!b.discard_if_empty("r", "d", &d.epoch).await.unwrap(), "{check}");
    assert_eq!(b.load_history("r", "d", "bob").await.unwrap(), None, "{check}");
    // A replica of it still open elsewhere writes its first op: the
    // document is back, in the epoch that replica's readers know.
    let mut w = Writer { b: &b, room: "r", doc: "d", epoch: d.epoch.clone(), head: 0, digest: Digest::EMPTY };
    assert!(matches!(w.append("a", 1, &ins(0, "x")).await, Appended::Committed { version: 1, .. }), "{check}");
    let head = DocHead { epoch: d.epoch.clone(), version: 1, digest: w.digest };
    assert_eq!(b.status("r", &["d"], 0).await.unwrap().docs, vec![Some(head)], "{check}");
    assert!(!b.discard_if_empty("r", "d", &d.epoch).await.unwrap(), "{check}: an edited document is never discarded");
    assert_eq!(b.load("r", "d").await.unwrap().head(), 1, "{check}");
}

async fn an_op_past_version_zero_never_creates_a_document<B: Backend>(b: B) {
    let check = "an_op_past_version_zero_never_creates_a_document";
    let mut w = Writer::open(&b, "r", "d").await;
    assert!(b.discard_if_empty("r", "d", &w.epoch).await.unwrap(), "{check}");
    // A replica of an incarnation the store no longer has.
    w.head = 3;
    w.digest = Digest::EMPTY.next(3, "a", 3, &ins(0, "x"));
    assert!(matches!(w.append("a", 4, &ins(0, "y")).await, Appended::EpochChanged { .. }), "{check}");
    assert_eq!(b.status("r", &["d"], 0).await.unwrap().docs, vec![None], "{check}: not created");
    let mut stranger = Writer { b: &b, room: "r", doc: "d", epoch: w.epoch.clone(), head: 0, digest: Digest::EMPTY };
    stranger.digest = Digest::EMPTY.next(1, "z", 1, &ins(0, "z"));
    assert_eq!(stranger.append("a", 1, &ins(0, "y")).await, Appended::Diverged, "{check}: version 0 of another history");
    assert_eq!(b.status("r", &["d"], 0).await.unwrap().docs, vec![None], "{check}: not created");
}

/// A node opened a document, which was discarded when another node's
/// readers left, and a third node opened it again (a new epoch): the first
/// op creates it in its writer's epoch, and the other writer learns it.
async fn a_creation_race_in_two_epochs_has_one_winner<B: Backend>(b: B) {
    let check = "a_creation_race_in_two_epochs_has_one_winner";
    let mut one = Writer::open(&b, "r", "d").await;
    assert!(b.discard_if_empty("r", "d", &one.epoch).await.unwrap(), "{check}");
    let mut two = Writer::open(&b, "r", "d").await;
    assert_ne!(one.epoch, two.epoch, "{check}: a discarded document comes back in a fresh epoch");
    assert!(b.discard_if_empty("r", "d", &two.epoch).await.unwrap(), "{check}");
    assert!(matches!(one.append("a", 1, &ins(0, "x")).await, Appended::Committed { version: 1, .. }), "{check}");
    assert_eq!(two.append("b", 1, &ins(0, "y")).await, Appended::EpochChanged { epoch: one.epoch.clone() }, "{check}");
    let again = Writer::open(&b, "r", "d").await;
    assert_eq!((again.epoch, again.head), (one.epoch.clone(), 1), "{check}");
}

async fn rooms_list_their_documents<B: Backend>(b: B) {
    let check = "rooms_list_their_documents";
    assert_eq!(b.list_docs("r").await.unwrap(), vec![], "{check}: an empty room");
    let before = now_ms();
    let mut epochs = Vec::new();
    for (room, doc, ops) in [("r", "b", 2), ("r", "a", 1), ("r", "x:log", 3), ("s", "a", 4)] {
        let mut w = Writer::open(&b, room, doc).await;
        for seq in 1..=ops {
            w.append("c", seq, &ins(0, "z")).await;
        }
        epochs.push(w.epoch.clone());
    }
    Writer::open(&b, "r", "untouched").await;
    let listed = b.list_docs("r").await.unwrap();
    let names: Vec<(&str, u64, &str)> = listed.iter().map(|d| (d.name.as_str(), d.version, d.epoch.as_str())).collect();
    assert_eq!(names, vec![("a", 1, epochs[1].as_str()), ("b", 2, epochs[0].as_str()), ("x:log", 3, epochs[2].as_str())], "{check}: by name");
    assert!(listed.iter().all(|d| d.changed_at >= before && d.changed_at < before + 60_000), "{check}: change times {listed:?}, from {before}");
    let other = b.list_docs("s").await.unwrap();
    assert_eq!(other.iter().map(|d| (d.name.as_str(), d.version)).collect::<Vec<_>>(), vec![("a", 4)], "{check}: rooms apart");
}

async fn deleting_frees_everything_and_is_announced<B: Backend>(b: B) {
    let check = "deleting_frees_everything_and_is_announced";
    let mut w = Writer::open(&b, "r", "d").await;
    let mut digests = vec![Digest::EMPTY];
    for seq in 1..=3 {
        w.append("a", seq, &ins(0, "x")).await;
        digests.push(w.digest);
    }
    b.snapshot("r", "d", Snapshot { epoch: &w.epoch, version: 2, text: "xx".into(), trim_to: 1, trim_digest: digests[1] }).await.unwrap();
    assert!(b.save_history("r", "d", &w.epoch, "ann", 0, "t1", "ann's").await.unwrap(), "{check}");
    let undo = ins(0, "u");
    let mut with_history = w.commit("h:bob", 1, &undo);
    with_history.history = Some(HistoryWrite { user: "bob", expected_rev: 0, token: "t2", saved: "bob's" });
    let digest = with_history.digest;
    assert!(matches!(b.append("r", "d", &with_history).await.unwrap(), Appended::Committed { version: 4, .. }), "{check}");
    w.head = 4;
    w.digest = digest;
    // A neighbour that must stay.
    let mut e = Writer::open(&b, "r", "e").await;
    e.append("a", 1, &ins(0, "e")).await;
    assert!(b.save_history("r", "e", &e.epoch, "ann", 0, "t3", "ann's e").await.unwrap(), "{check}");

    let mut sub = b.subscribe("r").await.unwrap();
    assert_eq!(b.delete_doc("r", "d").await.unwrap(), Some(DeletedDoc { epoch: w.epoch.clone(), version: 4 }), "{check}");
    assert_eq!(next_event(&mut sub, check).await, RoomEvent::DocDeleted { doc: "d".into(), epoch: w.epoch.clone() }, "{check}: announced");
    assert_eq!(b.status("r", &["d"], 0).await.unwrap().docs, vec![None], "{check}: gone");
    assert_eq!(b.list_docs("r").await.unwrap().iter().map(|d| d.name.as_str()).collect::<Vec<_>>(), vec!["e"], "{check}: only the neighbour listed");
    assert_eq!(b.ops_since("r", "d", &w.epoch, 2).await.unwrap(), None, "{check}: no ops of the old log");
    assert_eq!(b.last_committed("r", "d", "a").await.unwrap(), None, "{check}: no dedupe records");
    assert_eq!(b.load_history("r", "d", "ann").await.unwrap(), None, "{check}: no histories");
    assert_eq!(b.load_history("r", "d", "bob").await.unwrap(), None, "{check}: no histories written with undos");
    assert_eq!(b.load_history("r", "e", "ann").await.unwrap(), Some(StoredHistory { rev: 1, saved: "ann's e".into() }), "{check}: the neighbour's kept");
    assert_eq!(b.load("r", "e").await.unwrap().head(), 1, "{check}: the neighbour's log kept");
    assert_eq!(b.delete_doc("r", "d").await.unwrap(), None, "{check}: deleted once");
    b.publish("r", super::cursor_event("c1", 1)).await.unwrap();
    assert_eq!(next_event(&mut sub, check).await, super::cursor_event("c1", 1), "{check}: a second delete announces nothing");
    let fresh = b.load("r", "d").await.unwrap();
    assert_eq!((fresh.head(), fresh.snapshot.as_str(), fresh.ops.len()), (0, "", 0), "{check}: loads as a new document");
    assert_ne!(fresh.epoch, w.epoch, "{check}: in another epoch");
}

/// A node that still holds the deleted incarnation can neither extend it
/// nor bring it back; a new document of the same name starts afresh.
async fn a_deleted_incarnation_is_fenced_off<B: Backend>(b: B) {
    let check = "a_deleted_incarnation_is_fenced_off";
    let mut old = Writer::open(&b, "r", "d").await;
    old.append("a", 1, &ins(0, "old")).await;
    old.append("a", 2, &ins(0, "old")).await;
    b.delete_doc("r", "d").await.unwrap().expect("deleted");
    assert!(matches!(old.append("a", 3, &ins(0, "again")).await, Appended::EpochChanged { .. }), "{check}: no append to the deleted log");
    assert_eq!(b.status("r", &["d"], 0).await.unwrap().docs, vec![None], "{check}: not resurrected");
    let snapshot = Snapshot { epoch: &old.epoch, version: 2, text: "oldold".into(), trim_to: 2, trim_digest: old.digest };
    b.snapshot("r", "d", snapshot).await.unwrap();
    assert_eq!(b.status("r", &["d"], 0).await.unwrap().docs, vec![None], "{check}: a late snapshot does not resurrect it");
    let mut new = Writer::open(&b, "r", "d").await;
    assert!(matches!(new.append("b", 1, &ins(0, "new")).await, Appended::Committed { version: 1, .. }), "{check}");
    assert!(matches!(old.append("a", 3, &ins(0, "again")).await, Appended::EpochChanged { epoch } if epoch == new.epoch), "{check}: nor the new one");
    let d = b.load("r", "d").await.unwrap();
    assert_eq!((d.epoch.as_str(), d.head(), d.text_at(1).unwrap().as_str()), (new.epoch.as_str(), 1, "new"), "{check}");
}

/// An undo history is saved for the incarnation of the document it was
/// made on, and only while that is the one stored: a node that missed a
/// deletion (or a new incarnation) leaves no history behind for it.
async fn histories_are_saved_only_for_the_incarnation_named<B: Backend>(b: B) {
    let check = "histories_are_saved_only_for_the_incarnation_named";
    let mut w = Writer::open(&b, "r", "d").await;
    assert!(b.save_history("r", "d", &w.epoch, "ann", 0, "t1", "ann's").await.unwrap(), "{check}");
    let other = b.save_history("r", "d", "another-epoch", "ann", 1, "t2", "x").await;
    assert!(matches!(other, Err(StoreError::Stale(_))), "{check}: another incarnation: {other:?}");
    w.append("a", 1, &ins(0, "x")).await;
    b.delete_doc("r", "d").await.unwrap().expect("deleted");
    let orphan = b.save_history("r", "d", &w.epoch, "bob", 0, "t3", "bob's").await;
    assert!(matches!(orphan, Err(StoreError::Stale(_))), "{check}: a deleted document: {orphan:?}");
    assert_eq!(b.load_history("r", "d", "bob").await.unwrap(), None, "{check}: nothing left behind");
    let fresh = Writer::open(&b, "r", "d").await;
    assert!(matches!(b.save_history("r", "d", &w.epoch, "bob", 0, "t4", "old").await, Err(StoreError::Stale(_))), "{check}: nor in the new incarnation");
    assert!(b.save_history("r", "d", &fresh.epoch, "bob", 0, "t5", "new").await.unwrap(), "{check}");
    assert_eq!(b.load_history("r", "d", "bob").await.unwrap(), Some(StoredHistory { rev: 1, saved: "new".into() }), "{check}");
}

async fn imports_create_a_document_at_its_version<B: Backend>(b: B) {
    let check = "imports_create_a_document_at_its_version";
    let digest = Digest::EMPTY.next(7, "x", 7, &ins(0, "x"));
    let text = "héllo 😀 wörld";
    let imported = ImportedDoc { epoch: "imported-epoch", version: 7, digest, text, changed_at: 1_700_000_000_000 };
    // Someone has it open, never edited: the import takes its place.
    b.load("r", "d").await.unwrap();
    assert!(b.import_doc("r", "d", &imported).await.unwrap(), "{check}: created");
    let d = b.load("r", "d").await.unwrap();
    assert_eq!((d.epoch.as_str(), d.snapshot_version, d.snapshot.as_str(), d.ops.len(), d.head_digest()), ("imported-epoch", 7, text, 0, digest), "{check}");
    let head = DocHead { epoch: "imported-epoch".into(), version: 7, digest };
    assert_eq!(b.status("r", &["d"], 0).await.unwrap().docs, vec![Some(head)], "{check}");
    let listed = b.list_docs("r").await.unwrap();
    assert_eq!(listed.iter().map(|d| (d.name.as_str(), d.version, d.changed_at)).collect::<Vec<_>>(), vec![("d", 7, 1_700_000_000_000)], "{check}");
    assert_eq!(b.ops_since("r", "d", "imported-epoch", 7).await.unwrap(), Some(vec![]), "{check}: the log starts at the import");
    let mut w = Writer::open(&b, "r", "d").await;
    assert!(matches!(w.append("a", 1, &ins(0, ">")).await, Appended::Committed { version: 8, .. }), "{check}: and goes on from it");
    let again = ImportedDoc { text: "other", ..imported };
    assert!(!b.import_doc("r", "d", &again).await.unwrap(), "{check}: an existing document is not replaced");
    let d = b.load("r", "d").await.unwrap();
    assert_eq!((d.head(), d.text_at(8).unwrap()), (8, format!(">{text}")), "{check}: unchanged");
}

async fn past_versions_are_read_from_the_snapshot_and_the_log<B: Backend>(b: B) {
    let check = "past_versions_are_read_from_the_snapshot_and_the_log";
    let mut w = Writer::open(&b, "r", "d").await;
    let mut digests = vec![Digest::EMPTY];
    for v in 0..6u64 {
        w.append("a", v + 1, &ins(0, &v.to_string())).await;
        digests.push(w.digest);
    }
    let d = b.load("r", "d").await.unwrap();
    assert_eq!(d.text_at(0).unwrap(), "", "{check}: nothing trimmed yet");
    assert_eq!(d.text_at(3).unwrap(), "210", "{check}");
    // Text at version 4 is "3210"; keep the ops after version 2.
    b.snapshot("r", "d", Snapshot { epoch: &w.epoch, version: 4, text: "3210".into(), trim_to: 2, trim_digest: digests[2] }).await.unwrap();
    let d = b.load("r", "d").await.unwrap();
    for (version, text) in [(4, "3210"), (5, "43210"), (6, "543210")] {
        assert_eq!(d.text_at(version).unwrap(), text, "{check}: version {version}");
    }
    assert_eq!(d.text_at(3), Err(TextAtError::NotKept { earliest: 4, head: 6 }), "{check}: ops do not run backwards");
    assert_eq!(d.text_at(7), Err(TextAtError::Ahead { head: 6 }), "{check}");
}
