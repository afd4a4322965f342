//! A schedule of faults drawn from a seed, and playing it.

use std::fmt;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::fleet::Fleet;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL of a node, restarted on the same port after `down_ms`.
    KillNode { node: usize, down_ms: u64 },
    /// SIGKILL of the Redis server holding the room, restarted on its AOF.
    RestartRedis,
    /// A backup of that server (for a later restore).
    Backup,
    /// The last backup restored: the store goes back in time.
    RestoreBackup,
    /// Every pub/sub connection cut (`CLIENT KILL TYPE pubsub`).
    KillPubsub,
    /// The room's slot moved to another master (Cluster only).
    MigrateSlot,
    /// Redis hung (SIGSTOP) for longer than the store timeout.
    PauseRedis { ms: u64 },
    /// Redis refuses a node's user for a while.
    RefuseNode { node: usize, ms: u64 },
}

#[derive(Debug, Clone)]
pub struct Step {
    pub at_ms: u64,
    pub fault: Fault,
}

pub struct Schedule {
    pub steps: Vec<Step>,
}

/// What the play did that the checks must know.
#[derive(Debug, Default)]
pub struct Happened {
    /// The store went back in time: acknowledged ops may be lost (their
    /// clients are told), and entries of departed members may come back
    /// (and leave again).
    pub store_went_back: bool,
}

impl Schedule {
    pub fn draw(seed: u64, faults_for: Duration, cluster: bool) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let end = faults_for.as_millis() as u64;
        let mut steps = Vec::new();
        let mut at = 2_000;
        let mut backed_up = false;
        let restore_once = rng.random_bool(0.3);
        let mut restored = false;
        while at < end {
            let fault = loop {
                let f = match rng.random_range(0..9) {
                    0 | 1 => Fault::KillNode { node: rng.random_range(0..3), down_ms: rng.random_range(300..1_500) },
                    2 => Fault::RestartRedis,
                    3 if !backed_up => Fault::Backup,
                    3 if restore_once && !restored => Fault::RestoreBackup,
                    4 => Fault::KillPubsub,
                    5 if cluster => Fault::MigrateSlot,
                    6 => Fault::PauseRedis { ms: rng.random_range(2_200..3_200) },
                    7 => Fault::RefuseNode { node: rng.random_range(0..3), ms: rng.random_range(500..2_500) },
                    _ => continue,
                };
                break f;
            };
            match fault {
                Fault::Backup => backed_up = true,
                Fault::RestoreBackup => restored = true,
                _ => {}
            }
            steps.push(Step { at_ms: at, fault });
            at += rng.random_range(1_500..4_000);
        }
        Self { steps }
    }

    /// Plays the schedule against the fleet, from now.
    pub async fn play(&self, fleet: &mut Fleet) -> Happened {
        let start = tokio::time::Instant::now();
        let mut happened = Happened::default();
        for step in &self.steps {
            tokio::time::sleep_until(start + Duration::from_millis(step.at_ms)).await;
            println!("chaos: {:>6} ms {:?}", start.elapsed().as_millis(), step.fault);
            match step.fault {
                Fault::KillNode { node, down_ms } => {
                    fleet.kill_node(node);
                    tokio::time::sleep(Duration::from_millis(down_ms)).await;
                    fleet.restart_node(node).await;
                }
                Fault::RestartRedis => blocking(fleet, Fleet::restart_redis).await,
                Fault::Backup => blocking(fleet, Fleet::take_backup).await,
                Fault::RestoreBackup => {
                    let mut restored = false;
                    blocking(fleet, |f| restored = f.restore_backup()).await;
                    happened.store_went_back |= restored;
                }
                Fault::KillPubsub => fleet.kill_pubsub(),
                Fault::MigrateSlot => blocking(fleet, |f| {
                    f.migrate_slot();
                })
                .await,
                Fault::PauseRedis { ms } => {
                    fleet.pause_redis();
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    fleet.resume_redis();
                }
                Fault::RefuseNode { node, ms } => {
                    fleet.refuse_node(node);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    fleet.admit_nodes();
                }
            }
        }
        happened
    }
}

/// Runs a fault that waits on processes (redis-cli, a restart) without
/// holding up the runtime's other tasks for long: the campaign's runtime
/// has two workers, and the clients run on the other.
async fn blocking(fleet: &mut Fleet, fault: impl FnOnce(&mut Fleet)) {
    tokio::task::block_in_place(|| fault(fleet));
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let steps: Vec<String> = self.steps.iter().map(|s| format!("{}ms {:?}", s.at_ms, s.fault)).collect();
        write!(f, "[{}]", steps.join(", "))
    }
}
