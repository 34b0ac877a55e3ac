//! The consumers of the group: one slot per consumer, each run by a task
//! that starts an instance, restarts it after a crash (under the same
//! name or a new one, as the nemesis says) or after it exited by itself,
//! and stops it at the end. Every instance is `name#generation`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::task::AbortOnDropHandle;

use crate::cli_consumer::CliInstance;
use crate::context::Run;
use crate::history::Event;
use crate::ledger::{ConsumerKind, InstanceEnd};
use crate::lib_consumer::LibraryInstance;
use crate::options::LibraryProfile;

/// Wait before restarting an instance that exited by itself.
const RESTART_AFTER_EXIT: Duration = Duration::from_millis(500);

enum Command {
    /// Kill the instance; start a new one after `restart_after`.
    Crash {
        restart_after: Duration,
        rename: bool,
    },
    /// Stop gracefully and end the slot.
    Stop(oneshot::Sender<()>),
}

#[derive(Debug, Clone)]
enum Kind {
    Library(LibraryProfile),
    Cli,
}

enum Running {
    Library(LibraryInstance),
    Cli(Box<CliInstance>),
}

impl Running {
    async fn exited(&mut self) -> String {
        match self {
            Self::Library(i) => i.exited().await,
            Self::Cli(i) => i.exited().await,
        }
    }

    async fn crash(self) {
        match self {
            Self::Library(i) => i.crash().await,
            Self::Cli(i) => i.crash().await,
        }
    }

    async fn stop(self) -> String {
        match self {
            Self::Library(i) => i.stop().await,
            Self::Cli(i) => i.stop().await,
        }
    }
}

/// One consumer slot.
#[derive(Debug)]
struct Slot {
    label: String,
    cli: bool,
    up: Arc<AtomicBool>,
    tx: mpsc::UnboundedSender<Command>,
    task: AbortOnDropHandle<()>,
}

/// All consumer slots.
#[derive(Debug)]
pub struct Fleet {
    slots: Vec<Slot>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Crash {
                restart_after,
                rename,
            } => write!(f, "Crash({restart_after:?}, {rename})"),
            Self::Stop(_) => f.write_str("Stop"),
        }
    }
}

impl Fleet {
    /// Starts the library consumers of the options, then the CLI ones.
    #[must_use]
    pub fn start(run: &Arc<Run>) -> Self {
        let mut kinds: Vec<(String, Kind)> = run
            .options
            .library
            .iter()
            .enumerate()
            .map(|(i, p)| (format!("lib-{i}"), Kind::Library(p.clone())))
            .collect();
        kinds.extend((0..run.options.cli_count()).map(|i| (format!("cli-{i}"), Kind::Cli)));
        let slots = kinds
            .into_iter()
            .map(|(label, kind)| {
                let (tx, rx) = mpsc::unbounded_channel();
                let up = Arc::new(AtomicBool::new(false));
                let cli = matches!(kind, Kind::Cli);
                let task = tokio::spawn(slot(run.clone(), label.clone(), kind, up.clone(), rx));
                Slot {
                    label,
                    cli,
                    up,
                    tx,
                    task: AbortOnDropHandle::new(task),
                }
            })
            .collect();
        Self { slots }
    }

    /// Indexes of the slots of one kind whose instance is running.
    #[must_use]
    pub fn up(&self, cli: bool) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&i| self.slots[i].cli == cli && self.slots[i].up.load(Ordering::Acquire))
            .collect()
    }

    /// The label of slot `idx`.
    #[must_use]
    pub fn label(&self, idx: usize) -> &str {
        &self.slots[idx].label
    }

    /// Kills slot `idx`'s instance; a new one starts after `restart_after`,
    /// under a new name if `rename`. False if the slot is gone.
    pub fn crash(&self, idx: usize, restart_after: Duration, rename: bool) -> bool {
        let slot = &self.slots[idx];
        slot.up.store(false, Ordering::Release);
        slot.tx
            .send(Command::Crash {
                restart_after,
                rename,
            })
            .is_ok()
    }

    /// Waits until every slot has a running instance, up to `limit`.
    pub async fn wait_all_up(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if self.slots.iter().all(|s| s.up.load(Ordering::Acquire)) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops every instance gracefully, all at once, and ends the slots.
    pub async fn stop(self) {
        let mut waits = Vec::new();
        for s in &self.slots {
            let (done, wait) = oneshot::channel();
            if s.tx.send(Command::Stop(done)).is_ok() {
                waits.push(wait);
            }
        }
        for w in waits {
            let _ = w.await;
        }
        for s in self.slots {
            let _ = s.task.await;
        }
    }
}

async fn slot(
    run: Arc<Run>,
    label: String,
    kind: Kind,
    up: Arc<AtomicBool>,
    mut rx: mpsc::UnboundedReceiver<Command>,
) {
    let mut name = label.clone();
    let mut generation = 0u32;
    loop {
        generation += 1;
        let id: Arc<str> = Arc::from(format!("{name}#{generation}"));
        let consumer_kind = match kind {
            Kind::Library(_) => ConsumerKind::Library,
            Kind::Cli => ConsumerKind::Cli,
        };
        run.ledger
            .instance_started(&id, &name, consumer_kind, run.history.now());
        run.history.record(Event::Consumer {
            instance: id.to_string(),
            what: "started".to_owned(),
        });
        let mut running = match &kind {
            Kind::Library(profile) => Running::Library(LibraryInstance::spawn(
                &run,
                id.clone(),
                name.clone(),
                profile.clone(),
            )),
            Kind::Cli => match CliInstance::spawn(&run, id.clone(), &name) {
                Ok(i) => Running::Cli(Box::new(i)),
                Err(e) => {
                    let what = format!("could not start: {e}");
                    end(&run, &id, InstanceEnd::Exited(what.clone()), what);
                    tokio::time::sleep(RESTART_AFTER_EXIT).await;
                    match rx.try_recv() {
                        Ok(Command::Stop(done)) => {
                            let _ = done.send(());
                            return;
                        }
                        Err(mpsc::error::TryRecvError::Disconnected) => return,
                        Ok(Command::Crash { .. }) | Err(mpsc::error::TryRecvError::Empty) => {
                            continue;
                        }
                    }
                }
            },
        };
        up.store(true, Ordering::Release);
        tokio::select! {
            command = rx.recv() => {
                up.store(false, Ordering::Release);
                match command {
                    Some(Command::Crash { restart_after, rename }) => {
                        let at = run.history.now();
                        running.crash().await;
                        run.ledger.instance_ended(&id, InstanceEnd::Killed, at);
                        run.history.record(Event::Consumer {
                            instance: id.to_string(),
                            what: format!(
                                "killed; restarts in {} ms under {} name",
                                restart_after.as_millis(),
                                if rename { "a new" } else { "the same" }
                            ),
                        });
                        tokio::time::sleep(restart_after).await;
                        if rename {
                            name = format!("{label}-n{generation}");
                        }
                    }
                    Some(Command::Stop(done)) => {
                        let how = running.stop().await;
                        end(&run, &id, InstanceEnd::Stopped, how);
                        let _ = done.send(());
                        return;
                    }
                    None => {
                        running.crash().await;
                        return;
                    }
                }
            }
            how = running.exited() => {
                up.store(false, Ordering::Release);
                end(&run, &id, InstanceEnd::Exited(how.clone()), how);
                tokio::time::sleep(RESTART_AFTER_EXIT).await;
            }
        }
    }
}

fn end(run: &Run, id: &Arc<str>, how: InstanceEnd, what: String) {
    run.ledger.instance_ended(id, how, run.history.now());
    run.history.record(Event::Consumer {
        instance: id.to_string(),
        what,
    });
}
