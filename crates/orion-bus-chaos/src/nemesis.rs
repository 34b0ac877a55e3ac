//! The nemesis: at random times (from the run's seed) it kills consumers,
//! restarts, crashes or freezes Redis, and deletes, trims, destroys or
//! drops data, recording each fault and exactly which entries it removed.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::admin::Admin;
use crate::context::Run;
use crate::error::ChaosError;
use crate::fleet::Fleet;
use crate::history::{Event, FaultKind};
use crate::ledger::{Removal, stream_id_key};
use crate::server::Server;

/// The nemesis of one run.
#[derive(Debug)]
pub struct Nemesis {
    run: Arc<Run>,
    server: Server,
    fleet: Arc<Fleet>,
    admin: Admin,
    rng: fastrand::Rng,
    faults: BTreeMap<FaultKind, u64>,
}

impl Nemesis {
    /// A nemesis seeded from the run's seed.
    #[must_use]
    pub fn new(run: Arc<Run>, server: Server, fleet: Arc<Fleet>, admin: Admin) -> Self {
        let rng = fastrand::Rng::with_seed(run.options.seed);
        Self {
            run,
            server,
            fleet,
            admin,
            rng,
            faults: BTreeMap::new(),
        }
    }

    /// Injects faults until `stop`; returns how many of each kind. A fault
    /// under way when `stop` comes is finished (a frozen Redis is resumed,
    /// a stopped one started).
    ///
    /// # Errors
    /// When Redis does not come back after a restart.
    pub async fn run(
        mut self,
        stop: CancellationToken,
    ) -> Result<BTreeMap<FaultKind, u64>, ChaosError> {
        let (min, max) = self.run.options.fault_gap;
        loop {
            let gap = self.rng.u64(millis(min)..=millis(max).max(millis(min)));
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(Duration::from_millis(gap)) => {}
            }
            let kind = self.pick();
            match self.inject(kind).await {
                Ok(Some(detail)) => {
                    *self.faults.entry(kind).or_insert(0) += 1;
                    self.run.history.record(Event::Fault { kind, detail });
                }
                Ok(None) => {}
                Err(e @ ChaosError::Harness(_)) => return Err(e),
                Err(e) => self.run.history.record(Event::FaultSkipped {
                    kind,
                    why: e.to_string(),
                }),
            }
        }
        Ok(self.faults)
    }

    fn pick(&mut self) -> FaultKind {
        let total: u32 = FaultKind::WEIGHTS.iter().map(|(_, w)| w).sum();
        let mut roll = self.rng.u32(0..total);
        for (kind, weight) in FaultKind::WEIGHTS {
            if roll < weight {
                return kind;
            }
            roll -= weight;
        }
        FaultKind::Xdel
    }

    fn skipped(&self, kind: FaultKind, why: &str) -> Option<String> {
        self.run.history.record(Event::FaultSkipped {
            kind,
            why: why.to_owned(),
        });
        None
    }

    /// Injects one fault; returns what was done, `None` if nothing could be.
    async fn inject(&mut self, kind: FaultKind) -> Result<Option<String>, ChaosError> {
        match kind {
            FaultKind::KillCli | FaultKind::AbortLibrary => Ok(self.crash_consumer(kind)),
            FaultKind::RestartRedis | FaultKind::CrashRedis => {
                self.restart_redis(kind).await.map(Some)
            }
            FaultKind::FreezeRedis => self.freeze().await.map(Some),
            FaultKind::Xdel => self.xdel().await,
            FaultKind::Trim => {
                let len = self.admin.len().await?;
                let maxlen = self.rng.u64(0..=len / 2);
                let removed = self.admin.trim(maxlen).await?;
                self.removed(Removal::Trim, &removed);
                Ok(Some(format!(
                    "XTRIM MAXLEN ~ {maxlen} of {len} entries removed {}",
                    described(&removed)
                )))
            }
            FaultKind::DestroyGroup => match self.admin.destroy_group().await? {
                Some(pending) => {
                    self.removed_unacked(Removal::PendingAtDestroy, &pending);
                    Ok(Some(format!(
                        "XGROUP DESTROY with {} entries pending{}",
                        pending.len(),
                        span(&pending)
                    )))
                }
                None => Ok(self.skipped(kind, "no group to destroy")),
            },
            FaultKind::DeleteStream => {
                let removed = self.admin.delete_stream().await?;
                self.removed(Removal::StreamDeleted, &removed);
                Ok(Some(format!("DEL stream with {}", described(&removed))))
            }
        }
    }

    fn removed(&self, how: Removal, ids: &[(String, bool)]) {
        self.run.ledger.removed(how, ids, self.run.history.now());
    }

    /// Entries removed while not acknowledged by the group (pending, or
    /// lost with Redis's memory).
    fn removed_unacked(&self, how: Removal, ids: &[String]) {
        let rows: Vec<(String, bool)> = ids.iter().map(|id| (id.clone(), false)).collect();
        self.removed(how, &rows);
    }

    fn crash_consumer(&mut self, kind: FaultKind) -> Option<String> {
        let cli = kind == FaultKind::KillCli;
        let up = self.fleet.up(cli);
        let Some(&idx) = self.rng.choice(up.iter()) else {
            return self.skipped(kind, "no such consumer running");
        };
        let restart_after = Duration::from_millis(self.rng.u64(0..=3000));
        let rename = self.rng.bool();
        if !self.fleet.crash(idx, restart_after, rename) {
            return self.skipped(kind, "slot gone");
        }
        Some(format!(
            "{} {}, restart after {} ms under {} name",
            if cli { "SIGKILL" } else { "abort" },
            self.fleet.label(idx),
            restart_after.as_millis(),
            if rename { "a new" } else { "the same" }
        ))
    }

    async fn restart_redis(&mut self, kind: FaultKind) -> Result<String, ChaosError> {
        let down_for = Duration::from_millis(self.rng.u64(0..=2000));
        let hard = kind == FaultKind::CrashRedis;
        let how = if hard { "SIGKILL" } else { "SHUTDOWN" };
        // What the stream held, to tell afterwards what a crash took.
        let before = if hard {
            Some(
                self.admin
                    .stream_entries()
                    .await
                    .map(|e| e.into_iter().map(|(id, _)| id).collect::<Vec<_>>()),
            )
        } else {
            None
        };
        let outage = self.run.ledger.outage_began(
            self.run.history.now(),
            if hard { "crashed" } else { "restarted" },
        );
        self.run.history.record(Event::Redis(format!(
            "{how} for {} ms",
            down_for.as_millis()
        )));
        let killed_at = self.run.history.now();
        if hard {
            self.server.kill().await?;
        } else {
            self.server.stop().await?;
        }
        tokio::time::sleep(down_for).await;
        self.server.start_again(&self.run).await?;
        self.run.ledger.outage_ended(outage, self.run.history.now());
        self.run.history.record(Event::Redis("up again".to_owned()));
        let mut detail = format!("{how} redis-server, down {} ms", down_for.as_millis());
        if let Some(before) = before {
            match self.lost_in_crash(before, killed_at).await {
                Ok(gone) if gone.is_empty() => {}
                Ok(gone) => {
                    self.removed_unacked(Removal::RedisCrash, &gone);
                    detail.push_str(&format!(
                        "; {} entries did not survive{}",
                        gone.len(),
                        span(&gone)
                    ));
                }
                Err(e) => detail.push_str(&format!("; could not tell what survived: {e}")),
            }
        }
        Ok(detail)
    }

    /// A process kill loses nothing Redis acknowledged (the AOF is written
    /// before the reply); anything that did go is recorded, not blamed on
    /// the bus, and reported apart: entries the stream held before the
    /// kill and not after, and acknowledged ones newer than all of those
    /// that are not there either.
    async fn lost_in_crash(
        &self,
        before: Result<Vec<String>, ChaosError>,
        killed_at: Duration,
    ) -> Result<Vec<String>, ChaosError> {
        let before = before?;
        let after: HashSet<String> = self
            .admin
            .stream_entries()
            .await?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let newest = before
            .iter()
            .filter_map(|id| stream_id_key(id))
            .max()
            .unwrap_or((0, 0));
        let mut gone: Vec<String> = before
            .iter()
            .filter(|id| !after.contains(*id))
            .cloned()
            .collect();
        gone.extend(
            self.run
                .ledger
                .acked_sent_before(killed_at)
                .into_iter()
                .filter(|id| stream_id_key(id).is_some_and(|k| k > newest) && !after.contains(id)),
        );
        Ok(gone)
    }

    async fn freeze(&mut self) -> Result<String, ChaosError> {
        let frozen_for = Duration::from_millis(self.rng.u64(1000..=8000));
        let outage = self
            .run
            .ledger
            .outage_began(self.run.history.now(), "frozen");
        self.run.history.record(Event::Redis(format!(
            "SIGSTOP for {} ms",
            frozen_for.as_millis()
        )));
        self.server.pause().await?;
        tokio::time::sleep(frozen_for).await;
        self.server.resume().await?;
        self.run.ledger.outage_ended(outage, self.run.history.now());
        self.run.history.record(Event::Redis("SIGCONT".to_owned()));
        Ok(format!(
            "froze redis-server for {} ms",
            frozen_for.as_millis()
        ))
    }

    async fn xdel(&mut self) -> Result<Option<String>, ChaosError> {
        let acked = self.run.ledger.acked_entries();
        if acked.is_empty() {
            return Ok(self.skipped(FaultKind::Xdel, "nothing published yet"));
        }
        let count = self.rng.usize(1..=5);
        let picked: Vec<String> = (0..count)
            .filter_map(|_| acked.get(self.rng.usize(..acked.len())).cloned())
            .collect();
        let removed = self.admin.xdel(&picked).await?;
        self.removed(Removal::Xdel, &removed);
        let ids: Vec<&str> = removed.iter().map(|(id, _)| id.as_str()).collect();
        Ok(Some(format!(
            "XDEL {} of {} picked, {} of them acknowledged by the group: {}",
            removed.len(),
            picked.len(),
            removed.iter().filter(|(_, acked)| *acked).count(),
            ids.join(" ")
        )))
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `N entries (M acknowledged by the group) (first .. last)`.
fn described(removed: &[(String, bool)]) -> String {
    let ids: Vec<String> = removed.iter().map(|(id, _)| id.clone()).collect();
    format!(
        "{} entries ({} acknowledged by the group){}",
        removed.len(),
        removed.iter().filter(|(_, acked)| *acked).count(),
        span(&ids)
    )
}

/// ` (first .. last)` of a list of ids, for the history.
fn span(ids: &[String]) -> String {
    match (ids.first(), ids.last()) {
        (Some(a), Some(b)) if a == b => format!(" ({a})"),
        (Some(a), Some(b)) => format!(" ({a} .. {b})"),
        _ => String::new(),
    }
}
