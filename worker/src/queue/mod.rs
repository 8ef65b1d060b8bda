//! The durable local queue and the dead-letter store: a journal in front of one [redb] file,
//! both on the pod's volume.
//!
//! ```text
//!  inbound handlers ──Enqueue──┐                 ┌──▶ journal     accepted events, completions
//!  delivery loop ──Complete────┤   writer thread │    (in memory: the journal's events still queued)
//!               ──DeadLetter───┼──▶ (one batch   ├──▶ EVENTS      seq → event (header + raw body)
//!  admin API ────Replay────────┤    at a time)   │    DEDUP, DEDUP_TTL  sender id → expiry
//!  maintenance ──Prune─────────┘                 └──▶ DEAD, DEAD_INDEX, COUNTERS, META
//!                                     │
//!                                     └── one fdatasync per batch, then every waiter is answered
//! ```
//!
//! **Group commit (D1).** Every write goes through one writer thread. It takes the first
//! operation, then everything else already waiting (up to [`MAX_BATCH`]), and applies them
//! together: accepted events are appended to the [`journal`] and kept in memory, and so are
//! the completions of those events; everything else (dead letters, replays, sender ids,
//! pruning, events that were checkpointed) is one redb transaction. The journal is synced
//! once per batch that accepted an event; only then are the callers answered, so an HTTP 2xx
//! is sent only for events that are on disk. While one sync runs, the next batch gathers;
//! under load (the last batch carried more than one operation) the writer also waits up
//! to [`GATHER`] before committing, so that callers answered by the last one can join.
//! Batches holding only completions are not synced: losing one to a crash means a duplicate
//! delivery, which receivers tolerate, never a lost event.
//!
//! **Checkpoints.** Once [`journal::CHECKPOINT_BYTES`] have been written (and when the writer
//! stops), the events still queued move into redb and the journal starts a new epoch, in one
//! durable transaction. Most events are delivered long before, so they never touch redb: a
//! redb commit copies a dozen B-tree pages and syncs them, where the journal writes the event
//! once. After a crash, [`Queue::open`] replays the journal's records of the current epoch.
//!
//! **Why redb.** A pure-Rust, single-file, ACID store with MVCC reads (the delivery loop and
//! the admin API read while the writer writes), explicit per-transaction durability, a small
//! memory footprint with a bounded cache, and an active maintainer; no C build, no
//! background compaction threads (unlike an LSM store such as fjall, whose write
//! amplification buys nothing for a queue that is emptied as it fills).
//!
//! Counters live in the same transactions (or journal records) as what they count, so after a
//! crash the status document still says exactly how many events were accepted, delivered,
//! filtered and dead-lettered.

mod bytes;
pub mod event;
pub mod journal;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, oneshot};

use journal::{CHECKPOINT_BYTES, Journal, Outcome, Record};

pub use event::{
    Attempt, DeadLetter, QueuedEvent, ReplayRecord, StoredRequest, decode_dead_letter,
    decode_event, encode_dead_letter, encode_event, sanitize_message,
};

const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const DEDUP: TableDefinition<&str, u64> = TableDefinition::new("dedup");
const DEDUP_TTL: TableDefinition<(u64, &str), ()> = TableDefinition::new("dedup_ttl");
const DEAD: TableDefinition<u64, &[u8]> = TableDefinition::new("dead_letters");
const DEAD_INDEX: TableDefinition<&str, u64> = TableDefinition::new("dead_letter_index");
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Most operations committed in one transaction.
pub const MAX_BATCH: usize = 4096;
/// How long the writer gathers operations for one commit while the previous commit carried
/// more than one (a sign of concurrent callers); a commit after an idle spell starts at
/// once. Under benchmark load (64 connections) the callers answered by one commit are back
/// within a few hundred microseconds; waiting longer only adds latency (1 ms did, in eleven
/// alternating pairs: 4.5% fewer requests per second than 400 µs).
pub const GATHER: Duration = Duration::from_micros(400);
/// File name of the store inside the data directory.
pub const STORE_FILE: &str = "queue.redb";

/// Why a queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The store could not be opened or written.
    #[error("queue store {path}: {message}")]
    Storage {
        /// File.
        path: String,
        /// What failed.
        message: String,
    },
    /// A stored record does not decode.
    #[error("queue record {0} is corrupt: {1}")]
    Corrupt(String, String),
    /// No such dead letter.
    #[error("no dead letter with id {0:?}")]
    NotFound(String),
    /// The dead letter was replayed already.
    #[error("dead letter {0:?} was already replayed")]
    AlreadyReplayed(String),
    /// The writer has stopped (shutdown).
    #[error("queue is shut down")]
    Closed,
}

impl QueueError {
    /// Short category for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            QueueError::Storage { .. } => "storage",
            QueueError::Corrupt(..) => "corrupt",
            QueueError::NotFound(_) => "not_found",
            QueueError::AlreadyReplayed(_) => "already_replayed",
            QueueError::Closed => "closed",
        }
    }
}

/// Limits of the store.
#[derive(Clone, Debug)]
pub struct QueueSettings {
    /// How long sender ids are remembered for duplicate detection, in milliseconds.
    pub dedup_ttl_ms: u64,
    /// Most sender ids remembered.
    pub dedup_max_entries: u64,
    /// Most dead letters kept; the oldest are dropped (and counted) beyond it.
    pub dead_letter_max_entries: u64,
    /// How long dead letters are kept, in milliseconds.
    pub dead_letter_retention_ms: u64,
    /// Page cache of the store, in bytes (bounds the worker's memory).
    pub cache_bytes: usize,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            dedup_ttl_ms: 3_600_000,
            dedup_max_entries: 1_000_000,
            dead_letter_max_entries: 100_000,
            dead_letter_retention_ms: 14 * 24 * 3_600_000,
            cache_bytes: 8 * 1024 * 1024,
        }
    }
}

/// Counters kept with the records (totals over the life of the store).
#[derive(Debug, Default)]
pub struct StoreCounters {
    /// Requests received.
    pub received: AtomicU64,
    /// Requests refused.
    pub rejected: AtomicU64,
    /// Duplicates acknowledged without processing.
    pub duplicates: AtomicU64,
    /// Events accepted (stored, or delivered synchronously).
    pub accepted: AtomicU64,
    /// Events dropped by the filter.
    pub filtered: AtomicU64,
    /// Events delivered to every target.
    pub delivered: AtomicU64,
    /// Retries made.
    pub retried: AtomicU64,
    /// Events moved to the dead-letter store.
    pub dead_lettered: AtomicU64,
    /// Dead letters dropped by the size or age limit.
    pub dead_letters_dropped: AtomicU64,
    /// Dead letters replayed.
    pub replayed: AtomicU64,
    /// Events waiting in the queue.
    pub queue_depth: AtomicU64,
    /// Dead letters not yet replayed.
    pub dead_letters_pending: AtomicU64,
    /// Batches the writer applied in this process (each one journal sync and one redb
    /// transaction at most): with group commit, far fewer than the operations they carry.
    pub commits: AtomicU64,
    /// Operations carried by those transactions.
    pub committed_ops: AtomicU64,
}

/// A copy of [`StoreCounters`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CounterSnapshot {
    /// Requests received.
    pub received: u64,
    /// Requests refused.
    pub rejected: u64,
    /// Duplicates acknowledged without processing.
    pub duplicates: u64,
    /// Events accepted.
    pub accepted: u64,
    /// Events dropped by the filter.
    pub filtered: u64,
    /// Events delivered to every target.
    pub delivered: u64,
    /// Retries made.
    pub retried: u64,
    /// Events moved to the dead-letter store.
    pub dead_lettered: u64,
    /// Dead letters dropped by the size or age limit.
    pub dead_letters_dropped: u64,
    /// Dead letters replayed.
    pub replayed: u64,
    /// Events waiting in the queue.
    pub queue_depth: u64,
    /// Dead letters not yet replayed.
    pub dead_letters_pending: u64,
}

macro_rules! counter_fields {
    ($m:ident) => {
        $m!(
            received,
            rejected,
            duplicates,
            accepted,
            filtered,
            delivered,
            retried,
            dead_lettered,
            dead_letters_dropped,
            replayed
        )
    };
}

impl StoreCounters {
    /// Read all counters.
    pub fn snapshot(&self) -> CounterSnapshot {
        macro_rules! snap {
            ($($f:ident),*) => {
                CounterSnapshot {
                    $($f: self.$f.load(Ordering::Relaxed),)*
                    queue_depth: self.queue_depth.load(Ordering::Relaxed),
                    dead_letters_pending: self.dead_letters_pending.load(Ordering::Relaxed),
                }
            };
        }
        counter_fields!(snap)
    }

    /// The persisted counters by their keys in the store.
    fn values(&self) -> PersistedCounters {
        macro_rules! values {
            ($($f:ident),*) => {
                [$( (stringify!($f), self.$f.load(Ordering::Relaxed)), )*]
            };
        }
        counter_fields!(values)
    }

    fn restore(
        &self,
        table: &impl ReadableTable<&'static str, u64>,
    ) -> Result<(), redb::StorageError> {
        macro_rules! load {
            ($($f:ident),*) => {
                $( if let Some(v) = table.get(stringify!($f))? { self.$f.store(v.value(), Ordering::Relaxed); } )*
            };
        }
        counter_fields!(load);
        Ok(())
    }
}

/// [`StoreCounters`] as stored: key and value of each.
type PersistedCounters = [(&'static str, u64); 10];

/// How a delivery ended, for [`Queue::complete`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completion {
    /// Every target has it.
    Delivered,
    /// The filter dropped it.
    Filtered,
}

/// A dead letter as listed (without its body).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterSummary {
    /// Id.
    pub id: String,
    /// When it was dead-lettered.
    pub dead_lettered_at: DateTime<Utc>,
    /// When the event was received.
    pub received_at: DateTime<Utc>,
    /// Route that received it.
    pub route: String,
    /// Short reason.
    pub reason: String,
    /// Sanitized message.
    pub message: String,
    /// Targets that did not receive it.
    pub failed_targets: Vec<String>,
    /// Attempts made.
    pub attempts: usize,
    /// `pending` or `replayed`.
    pub state: String,
}

impl From<&DeadLetter> for DeadLetterSummary {
    fn from(d: &DeadLetter) -> Self {
        DeadLetterSummary {
            id: d.id.clone(),
            dead_lettered_at: d.dead_lettered_at,
            received_at: d.event.received_at,
            route: d.event.route.clone(),
            reason: d.reason.clone(),
            message: d.message.clone(),
            failed_targets: d.failed_targets.clone(),
            attempts: d.event.attempts.len(),
            state: d.state.clone(),
        }
    }
}

type Reply<T> = oneshot::Sender<Result<T, QueueError>>;

enum Op {
    Enqueue {
        record: Vec<u8>,
        source_id: Option<String>,
        dedup_until: Option<u64>,
        announce: bool,
        reply: Reply<u64>,
    },
    Remember {
        source_id: String,
        until: u64,
    },
    Update {
        seq: u64,
        event: Box<QueuedEvent>,
    },
    Complete {
        seq: u64,
        how: Completion,
        retries: u64,
        reply: Option<Reply<()>>,
    },
    DeadLetter {
        seq: Option<u64>,
        dead: Box<DeadLetter>,
        retries: u64,
        reply: Reply<()>,
    },
    Replay {
        id: String,
        by: String,
        now: DateTime<Utc>,
        reply: Reply<String>,
    },
    Prune {
        now_ms: u64,
        reply: Option<Reply<()>>,
    },
    Flush {
        reply: Reply<()>,
    },
}

impl Op {
    /// The queued event the operation is about, if any.
    fn queued_seq(&self) -> Option<u64> {
        match self {
            Op::Complete { seq, .. } | Op::Update { seq, .. } if *seq != 0 => Some(*seq),
            Op::DeadLetter { seq, .. } => *seq,
            _ => None,
        }
    }

    fn needs_fsync(&self) -> bool {
        !matches!(
            self,
            Op::Complete { .. } | Op::Update { .. } | Op::Remember { .. } | Op::Prune { .. }
        )
    }
}

/// The events the journal made durable that are still queued (not delivered, not moved into
/// the store), by key: where each is in the journal file, so that memory holds no copy.
struct Resident {
    file: Arc<std::fs::File>,
    events: BTreeMap<u64, Held>,
}

/// Where a resident event's bytes are.
enum Held {
    /// In the journal file, at this offset and length.
    Journal(u64, usize),
    /// In memory: its progress was updated since it was journaled (see [`Queue::update`]).
    Updated(Vec<u8>),
}

impl Resident {
    /// The event's stored bytes. Called with the lock held: the journal is only started
    /// over (and its bytes overwritten) by a checkpoint, which takes the lock first.
    fn read<'a>(&self, held: &'a Held) -> std::io::Result<std::borrow::Cow<'a, [u8]>> {
        use std::os::unix::fs::FileExt;
        match held {
            Held::Journal(at, len) => {
                let mut bytes = vec![0; *len];
                self.file.read_exact_at(&mut bytes, *at)?;
                Ok(bytes.into())
            }
            Held::Updated(bytes) => Ok(bytes.as_slice().into()),
        }
    }
}

/// Handle on the store; cheap to clone.
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<Database>,
    path: PathBuf,
    /// Events made durable by the journal and not yet delivered nor moved into the store.
    resident: Arc<Mutex<Resident>>,
    ops: std::sync::Mutex<Option<std_mpsc::Sender<Op>>>,
    writer: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
    counters: Arc<StoreCounters>,
    notify: Arc<Notify>,
    settings: QueueSettings,
}

fn storage(path: &Path, e: impl std::fmt::Display) -> QueueError {
    QueueError::Storage { path: path.display().to_string(), message: e.to_string() }
}

impl Queue {
    /// Open (or create) the store in `dir` and start its writer thread.
    pub fn open(dir: &Path, settings: QueueSettings) -> Result<Queue, QueueError> {
        std::fs::create_dir_all(dir).map_err(|e| storage(dir, e))?;
        let path = dir.join(STORE_FILE);
        let db = Database::builder()
            .set_cache_size(settings.cache_bytes)
            .create(&path)
            .map_err(|e| storage(&path, e))?;
        let counters = Arc::new(StoreCounters::default());
        let (epoch, next_seq) = {
            let txn = db.begin_write().map_err(|e| storage(&path, e))?;
            let keys;
            {
                // Create every table so readers never meet a missing one.
                let events = txn.open_table(EVENTS).map_err(|e| storage(&path, e))?;
                txn.open_table(DEDUP).map_err(|e| storage(&path, e))?;
                txn.open_table(DEDUP_TTL).map_err(|e| storage(&path, e))?;
                let dead = txn.open_table(DEAD).map_err(|e| storage(&path, e))?;
                txn.open_table(DEAD_INDEX).map_err(|e| storage(&path, e))?;
                let meta = txn.open_table(META).map_err(|e| storage(&path, e))?;
                let read = |key| -> Result<Option<u64>, QueueError> {
                    Ok(meta.get(key).map_err(|e| storage(&path, e))?.map(|v| v.value()))
                };
                keys = (read("journal_epoch")?.unwrap_or(0), read("next_seq")?.unwrap_or(1));
                let table = txn.open_table(COUNTERS).map_err(|e| storage(&path, e))?;
                counters.restore(&table).map_err(|e| storage(&path, e))?;
                counters
                    .queue_depth
                    .store(events.len().map_err(|e| storage(&path, e))?, Ordering::Relaxed);
                let mut pending = 0;
                for row in dead.iter().map_err(|e| storage(&path, e))? {
                    let (_, v) = row.map_err(|e| storage(&path, e))?;
                    let d = decode_dead_letter(v.value())
                        .map_err(|m| QueueError::Corrupt("dead letter".into(), m))?;
                    if d.state == "pending" {
                        pending += 1;
                    }
                }
                counters.dead_letters_pending.store(pending, Ordering::Relaxed);
            }
            txn.commit().map_err(|e| storage(&path, e))?;
            keys
        };
        let (journal, next_seq) = recover(&db, dir, &counters, epoch, next_seq)?;
        let db = Arc::new(db);
        let notify = Arc::new(Notify::new());
        let resident = Arc::new(Mutex::new(Resident {
            file: journal.file().clone(),
            events: BTreeMap::new(),
        }));
        let (tx, rx) = std_mpsc::channel();
        let writer = Writer {
            db: db.clone(),
            path: path.clone(),
            counters: counters.clone(),
            notify: notify.clone(),
            settings: settings.clone(),
            persisted: Cell::new(counters.values()),
            journal: RefCell::new(journal),
            resident: resident.clone(),
            next_seq: Cell::new(next_seq),
            journaled: Cell::new(Journaled::default()),
        };
        let writer = std::thread::Builder::new()
            .name("queue-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| storage(&path, e))?;
        Ok(Queue {
            inner: Arc::new(Inner {
                db,
                path,
                resident,
                ops: std::sync::Mutex::new(Some(tx)),
                writer: std::sync::Mutex::new(Some(writer)),
                counters,
                notify,
                settings,
            }),
        })
    }

    fn send(&self, op: Op) -> Result<(), QueueError> {
        let guard = self.inner.ops.lock().expect("queue sender lock");
        match guard.as_ref() {
            Some(tx) => tx.send(op).map_err(|_| QueueError::Closed),
            None => Err(QueueError::Closed),
        }
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Op) -> Result<T, QueueError> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx))?;
        rx.await.map_err(|_| QueueError::Closed)?
    }

    /// The counters kept with the store.
    pub fn counters(&self) -> &Arc<StoreCounters> {
        &self.inner.counters
    }

    /// Woken whenever events are added.
    pub fn notify(&self) -> &Arc<Notify> {
        &self.inner.notify
    }

    /// Path of the store file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Store an accepted event; returns once it is on disk, with its sequence number. The
    /// sender id, if any, is remembered in the same transaction.
    pub async fn enqueue(&self, event: QueuedEvent) -> Result<u64, QueueError> {
        self.store(&event, true).await
    }

    /// Like [`Queue::enqueue`], but the commit does not wake [`Queue::notify`]'s waiter: for a
    /// caller that hands the event to the dispatcher in memory, and wakes it itself when it
    /// cannot. Otherwise every commit would send the dispatcher to re-read, from the store,
    /// the events already on their way to it. The caller keeps the event.
    pub async fn enqueue_unannounced(&self, event: &QueuedEvent) -> Result<u64, QueueError> {
        self.store(event, false).await
    }

    async fn store(&self, event: &QueuedEvent, announce: bool) -> Result<u64, QueueError> {
        let dedup_until =
            event.source_id.as_ref().map(|_| now_ms() + self.inner.settings.dedup_ttl_ms);
        // Encoded here, on the caller's thread: the single writer thread only writes.
        let record = encode_event(event);
        let source_id = event.source_id.clone();
        self.call(|reply| Op::Enqueue { record, source_id, dedup_until, announce, reply }).await
    }

    /// Remember a sender id of an event delivered synchronously.
    pub fn remember(&self, source_id: String) -> Result<(), QueueError> {
        let until = now_ms() + self.inner.settings.dedup_ttl_ms;
        self.send(Op::Remember { source_id, until })
    }

    /// Whether a sender id was seen within the dedup window.
    pub fn seen(&self, source_id: &str) -> Result<bool, QueueError> {
        let path = &self.inner.path;
        let txn = self.inner.db.begin_read().map_err(|e| storage(path, e))?;
        let table = txn.open_table(DEDUP).map_err(|e| storage(path, e))?;
        Ok(match table.get(source_id).map_err(|e| storage(path, e))? {
            Some(until) => until.value() > now_ms(),
            None => false,
        })
    }

    /// Up to `limit` queued events with a sequence number above `after`, in order.
    pub fn pending_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, QueuedEvent)>, QueueError> {
        Ok(self
            .scan_after(after, limit, |_| false)?
            .into_iter()
            .filter_map(|(seq, event)| event.map(|e| (seq, e)))
            .collect())
    }

    /// Like [`Queue::pending_after`], but events for which `skip(seq)` holds are listed
    /// without being read (`None`): the dispatcher already has them in memory.
    pub fn scan_after(
        &self,
        after: u64,
        limit: usize,
        skip: impl Fn(u64) -> bool,
    ) -> Result<Vec<(u64, Option<QueuedEvent>)>, QueueError> {
        let read = |seq: u64, bytes: &[u8]| -> Result<_, QueueError> {
            if skip(seq) {
                return Ok((seq, None));
            }
            let event = decode_event(bytes).map_err(|m| QueueError::Corrupt(seq.to_string(), m))?;
            Ok((seq, Some(event)))
        };
        let from = after.saturating_add(1);
        // The events in memory first, then the store: a checkpoint moving the first into the
        // second commits before it clears them, so an event is seen twice (and listed once)
        // rather than not at all.
        let mut out = Vec::new();
        let resident = self.inner.resident.lock().expect("resident lock");
        for (seq, held) in resident.events.range(from..).take(limit) {
            let bytes = resident.read(held).map_err(|e| storage(&self.inner.path, e))?;
            out.push(read(*seq, &bytes)?);
        }
        drop(resident);
        let path = &self.inner.path;
        let txn = self.inner.db.begin_read().map_err(|e| storage(path, e))?;
        let table = txn.open_table(EVENTS).map_err(|e| storage(path, e))?;
        for row in table.range(from..).map_err(|e| storage(path, e))?.take(limit) {
            let (k, v) = row.map_err(|e| storage(path, e))?;
            out.push(read(k.value(), v.value())?);
        }
        out.sort_by_key(|(seq, _)| *seq);
        out.dedup_by_key(|(seq, _)| *seq);
        out.truncate(limit);
        Ok(out)
    }

    /// Record progress of an event (attempts, targets still pending). Not fsynced: after a
    /// crash the event is retried from its previous state.
    pub fn update(&self, seq: u64, event: QueuedEvent) -> Result<(), QueueError> {
        self.send(Op::Update { seq, event: Box::new(event) })
    }

    /// Remove a finished event and count it; `retries` are the retries its delivery took.
    pub fn complete(&self, seq: u64, how: Completion, retries: u64) -> Result<(), QueueError> {
        self.send(Op::Complete { seq, how, retries, reply: None })
    }

    /// Count an event finished without being queued (synchronous mode).
    pub async fn complete_unqueued(&self, how: Completion, retries: u64) -> Result<(), QueueError> {
        self.call(|reply| Op::Complete { seq: 0, how, retries, reply: Some(reply) }).await
    }

    /// Move an event to the dead-letter store (removing it from the queue when `seq` is
    /// given); returns once it is on disk.
    pub async fn dead_letter(
        &self,
        seq: Option<u64>,
        dead: DeadLetter,
        retries: u64,
    ) -> Result<(), QueueError> {
        self.call(|reply| Op::DeadLetter { seq, dead: Box::new(dead), retries, reply }).await
    }

    /// Put a dead letter back into the queue as a new event, recording who and when; returns
    /// the new event's id.
    pub async fn replay(&self, id: &str, by: &str) -> Result<String, QueueError> {
        let (id, by, now) = (id.to_string(), by.to_string(), Utc::now());
        self.call(|reply| Op::Replay { id, by, now, reply }).await
    }

    /// Drop expired sender ids and dead letters past their retention.
    pub async fn prune(&self) -> Result<(), QueueError> {
        let now_ms = now_ms();
        self.call(|reply| Op::Prune { now_ms, reply: Some(reply) }).await
    }

    /// Commit everything sent so far with fsync.
    pub async fn flush(&self) -> Result<(), QueueError> {
        self.call(|reply| Op::Flush { reply }).await
    }

    /// Stop the writer after it has committed what was sent, and wait for it to let go of
    /// the file.
    pub async fn close(&self) -> Result<(), QueueError> {
        let result = match self.flush().await {
            Err(QueueError::Closed) => Ok(()),
            other => other,
        };
        self.inner.ops.lock().expect("queue sender lock").take();
        let writer = self.inner.writer.lock().expect("queue writer lock").take();
        if let Some(writer) = writer {
            let _ = tokio::task::spawn_blocking(move || writer.join()).await;
        }
        result
    }

    /// Dead letters, newest first; `pending_only` hides replayed ones.
    pub fn list_dead_letters(
        &self,
        pending_only: bool,
        limit: usize,
    ) -> Result<Vec<DeadLetterSummary>, QueueError> {
        let path = &self.inner.path;
        let txn = self.inner.db.begin_read().map_err(|e| storage(path, e))?;
        let table = txn.open_table(DEAD).map_err(|e| storage(path, e))?;
        let mut out = Vec::new();
        for row in table.iter().map_err(|e| storage(path, e))?.rev() {
            let (k, v) = row.map_err(|e| storage(path, e))?;
            let d = decode_dead_letter(v.value())
                .map_err(|m| QueueError::Corrupt(k.value().to_string(), m))?;
            if pending_only && d.state != "pending" {
                continue;
            }
            out.push(DeadLetterSummary::from(&d));
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    /// One dead letter with its event and attempt history.
    pub fn get_dead_letter(&self, id: &str) -> Result<DeadLetter, QueueError> {
        let path = &self.inner.path;
        let txn = self.inner.db.begin_read().map_err(|e| storage(path, e))?;
        let index = txn.open_table(DEAD_INDEX).map_err(|e| storage(path, e))?;
        let seq = index
            .get(id)
            .map_err(|e| storage(path, e))?
            .ok_or_else(|| QueueError::NotFound(id.to_string()))?
            .value();
        let table = txn.open_table(DEAD).map_err(|e| storage(path, e))?;
        let row = table
            .get(seq)
            .map_err(|e| storage(path, e))?
            .ok_or_else(|| QueueError::NotFound(id.to_string()))?;
        decode_dead_letter(row.value()).map_err(|m| QueueError::Corrupt(id.to_string(), m))
    }
}

/// Replay the journal into the store after a crash: the events it accepted and that did not
/// leave the queue are stored (with their sender ids), its counts are added to the counters,
/// and the journal starts a new epoch, all in one durable transaction. `epoch` and
/// `next_seq` are the store's; returns the journal and the next event key.
fn recover(
    db: &Database,
    dir: &Path,
    counters: &StoreCounters,
    epoch: u64,
    mut next_seq: u64,
) -> Result<(Journal, u64), QueueError> {
    let path = dir.join(journal::JOURNAL_FILE);
    let fail = |e: &dyn std::fmt::Display| storage(&path, e);
    let (mut journal, records) = Journal::open(dir, epoch).map_err(|e| fail(&e))?;
    if records.is_empty() {
        return Ok((journal, next_seq));
    }
    // Accepted events not yet done, by key.
    let mut pending = BTreeMap::new();
    let mut d = Deltas::default();
    let (mut received, mut rejected) = (0, 0);
    for record in records {
        match record {
            Record::Enqueue { seq, source, event } => {
                next_seq = next_seq.max(seq + 1);
                pending.insert(seq, (event, source));
                d.accepted += 1;
            }
            Record::Done { seq, outcome } => {
                if pending.remove(&seq).is_some() {
                    match outcome {
                        Outcome::Delivered(retries) => d.done(Completion::Delivered, retries),
                        Outcome::Filtered => d.done(Completion::Filtered, 0),
                        Outcome::DeadLettered => {}
                    }
                }
            }
            Record::Inbound { received: r, rejected: x } => (received, rejected) = (r, x),
        }
    }
    let restored = (|| -> Result<u64, redb::Error> {
        let txn = db.begin_write()?;
        let mut restored = 0;
        {
            let mut t = Tables::new(&txn, next_seq);
            for (seq, (event, source)) in pending {
                // Dead-lettered just before the crash: the dead letter is durable, the
                // journal's record of the move was not yet.
                if let Ok(e) = decode_event(&event)
                    && t.dead_index()?.get(e.id.as_str())?.is_some()
                {
                    continue;
                }
                t.events()?.insert(seq, event.as_slice())?;
                if let Some((id, until)) = source {
                    remember(&mut t, &id, until)?;
                }
                restored += 1;
            }
            // The queue's depth was counted from the store when it was opened.
            Deltas { depth_add: restored, depth_sub: 0, ..d }.apply(counters);
            counters.received.fetch_max(received, Ordering::Relaxed);
            counters.rejected.fetch_max(rejected, Ordering::Relaxed);
            start_epoch(&txn, epoch + 1, next_seq, &counters.values())?;
        }
        txn.commit()?;
        Ok(restored)
    })()
    .map_err(|e| fail(&e))?;
    journal.restart(epoch + 1);
    tracing::info!(events = restored, journal = %path.display(), "queue journal replayed");
    Ok((journal, next_seq))
}

/// What a checkpoint stores beside the events it moves: the journal's new epoch (records of
/// older ones are not replayed), the next event key, and every counter, journal's share
/// included.
fn start_epoch(
    txn: &redb::WriteTransaction,
    epoch: u64,
    next_seq: u64,
    counters: &PersistedCounters,
) -> Result<(), redb::Error> {
    let mut meta = txn.open_table(META)?;
    meta.insert("journal_epoch", epoch)?;
    meta.insert("next_seq", next_seq)?;
    let mut table = txn.open_table(COUNTERS)?;
    for (key, value) in counters {
        table.insert(*key, *value)?;
    }
    Ok(())
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    u64::try_from(Utc::now().timestamp_millis()).unwrap_or(0)
}

struct Writer {
    db: Arc<Database>,
    path: PathBuf,
    counters: Arc<StoreCounters>,
    notify: Arc<Notify>,
    settings: QueueSettings,
    /// The counters as the last commit left them in the store: a commit writes only those
    /// that changed since.
    persisted: Cell<PersistedCounters>,
    /// Where accepted events go first (see [`journal`]).
    journal: RefCell<Journal>,
    /// The journal's events still queued; shared with readers.
    resident: Arc<Mutex<Resident>>,
    /// The next event key.
    next_seq: Cell<u64>,
    /// What the journal's records since the last checkpoint add to the counters: the store
    /// holds the counters without it until the next checkpoint, so that replaying the
    /// journal after a crash counts each event once.
    journaled: Cell<Journaled>,
}

/// Counts carried by journal records (see [`Writer::journaled`]).
#[derive(Clone, Copy, Default)]
struct Journaled {
    /// What the records add to the counters.
    counts: Deltas,
    /// The inbound side's counters as last written to the journal.
    received: u64,
    rejected: u64,
}

/// The part of a batch that goes to the journal.
#[derive(Default)]
struct Logged {
    /// Accepted events: key, where they are, caller.
    enqueued: Vec<(u64, Held, Reply<u64>)>,
    /// Their sender ids, remembered once the events are durable.
    remember: Vec<Op>,
    /// Events that left the queue: key, how, retries.
    done: Vec<(u64, Completion, u64)>,
    /// Events moved to the dead-letter store by this batch.
    moved: Vec<u64>,
    announce: bool,
}

/// What to tell each caller once the batch is committed.
enum Answer {
    Unit(Reply<()>, Result<(), QueueError>),
    Text(Reply<String>, Result<String, QueueError>),
}

impl Answer {
    fn fail(self, path: &Path, message: &str) {
        let err = || storage(path, message);
        match self {
            Answer::Unit(r, _) => drop(r.send(Err(err()))),
            Answer::Text(r, _) => drop(r.send(Err(err()))),
        }
    }
    fn send(self) {
        match self {
            Answer::Unit(r, v) => drop(r.send(v)),
            Answer::Text(r, v) => drop(r.send(v)),
        }
    }
}

/// Deltas a batch makes to the counters; applied to the shared counters only once the batch
/// is committed, so a failed commit never counts.
#[derive(Clone, Copy, Default)]
struct Deltas {
    accepted: u64,
    filtered: u64,
    delivered: u64,
    retried: u64,
    dead_lettered: u64,
    dead_letters_dropped: u64,
    replayed: u64,
    depth_add: u64,
    depth_sub: u64,
    pending_add: u64,
    pending_sub: u64,
}

impl Deltas {
    /// Count an event that left the queue.
    fn done(&mut self, how: Completion, retries: u64) {
        match how {
            Completion::Delivered => self.delivered += 1,
            Completion::Filtered => self.filtered += 1,
        }
        self.retried += retries;
        self.depth_sub += 1;
    }

    /// Add what the journal's records count (see [`Writer::stored_values`]).
    fn add(&mut self, other: &Deltas) {
        self.accepted += other.accepted;
        self.delivered += other.delivered;
        self.filtered += other.filtered;
        self.retried += other.retried;
    }

    /// Each counter with what the deltas add to it and take from it.
    fn per_counter<'c>(&self, c: &'c StoreCounters) -> [(&'c AtomicU64, u64, u64); 9] {
        [
            (&c.accepted, self.accepted, 0),
            (&c.filtered, self.filtered, 0),
            (&c.delivered, self.delivered, 0),
            (&c.retried, self.retried, 0),
            (&c.dead_lettered, self.dead_lettered, 0),
            (&c.dead_letters_dropped, self.dead_letters_dropped, 0),
            (&c.replayed, self.replayed, 0),
            (&c.queue_depth, self.depth_add, self.depth_sub),
            (&c.dead_letters_pending, self.pending_add, self.pending_sub),
        ]
    }

    /// Add the deltas to the counters (a counter never goes below zero).
    fn apply(&self, c: &StoreCounters) {
        for (counter, add, sub) in self.per_counter(c) {
            counter.fetch_add(add, Ordering::Relaxed);
            counter.fetch_sub(sub.min(counter.load(Ordering::Relaxed)), Ordering::Relaxed);
        }
    }

    /// Take back what [`Deltas::apply`] added.
    fn revert(&self, c: &StoreCounters) {
        for (counter, add, sub) in self.per_counter(c) {
            counter.fetch_sub(add.min(counter.load(Ordering::Relaxed)), Ordering::Relaxed);
            counter.fetch_add(sub, Ordering::Relaxed);
        }
    }
}

/// Whether the writer waits up to [`GATHER`] before a commit: only under load, that is when
/// the last commit carried more than one operation and the first of this one came without an
/// idle spell (the writer waited less than [`GATHER`] for it). A request after a quiet
/// moment is committed at once.
fn gathers(last_batch: usize, waited: Duration) -> bool {
    last_batch > 1 && waited < GATHER
}

impl Writer {
    fn run(self, rx: std_mpsc::Receiver<Op>) {
        let mut last_batch = 1;
        loop {
            let idle_since = Instant::now();
            let Ok(first) = rx.recv() else { break };
            let started = Instant::now();
            let mut ops = vec![first];
            let drain = |ops: &mut Vec<Op>| {
                while ops.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(op) => ops.push(op),
                        Err(_) => break,
                    }
                }
            };
            drain(&mut ops);
            // Under load, wait a little for company: one commit (pages written, fsync)
            // then carries many more operations.
            if gathers(last_batch, started - idle_since) && ops.len() < MAX_BATCH {
                std::thread::sleep(GATHER.saturating_sub(started.elapsed()));
                drain(&mut ops);
            }
            last_batch = ops.len();
            self.commit_batch(ops);
        }
        // A clean stop leaves every event in the store and nothing to replay.
        if let Err(e) = self.checkpoint() {
            tracing::error!(store = %self.path.display(), error = %e, "queue checkpoint failed");
        }
    }

    /// Apply one batch: accepted events and the completions of events still in memory are
    /// appended to the journal, everything else is one store transaction (committed first,
    /// so that an event moved to the dead-letter store is never dropped from the journal
    /// before the dead letter is durable). The journal is synced when the batch accepted an
    /// event or asked for durability; only then are the callers answered.
    fn commit_batch(&self, ops: Vec<Op>) {
        if self.journal.borrow().written() >= CHECKPOINT_BYTES
            && let Err(e) = self.checkpoint()
        {
            // The journal grows past its preallocated size until a checkpoint succeeds.
            tracing::error!(store = %self.path.display(), error = %e, "queue checkpoint failed");
        }
        // Counted before any caller is answered, so that an answered caller sees its batch.
        self.counters.commits.fetch_add(1, Ordering::Relaxed);
        self.counters.committed_ops.fetch_add(ops.len() as u64, Ordering::Relaxed);
        let mut logged = Logged::default();
        let mut stored = Vec::new();
        {
            let mut journal = self.journal.borrow_mut();
            let mut resident = self.resident.lock().expect("resident lock");
            for op in ops {
                let in_memory = op.queued_seq().filter(|seq| resident.events.contains_key(seq));
                match (op, in_memory) {
                    (Op::Enqueue { record, source_id, dedup_until, announce, reply }, _) => {
                        let seq = self.next_seq.get();
                        self.next_seq.set(seq + 1);
                        let source = source_id.zip(dedup_until);
                        let id = source.as_ref().map(|(id, until)| (id.as_str(), *until));
                        let at = journal.enqueue(seq, id, &record);
                        if let Some((source_id, until)) = source {
                            logged.remember.push(Op::Remember { source_id, until });
                        }
                        logged.announce |= announce;
                        logged.enqueued.push((seq, Held::Journal(at, record.len()), reply));
                    }
                    (Op::Complete { seq, how, retries, .. }, Some(_)) => {
                        journal.done(
                            seq,
                            match how {
                                Completion::Delivered => Outcome::Delivered(retries),
                                Completion::Filtered => Outcome::Filtered,
                            },
                        );
                        logged.done.push((seq, how, retries));
                    }
                    (Op::Update { seq, event }, Some(_)) => {
                        // Progress is not made durable (see `Queue::update`); a checkpoint
                        // stores the latest.
                        resident.events.insert(seq, Held::Updated(encode_event(&event)));
                    }
                    (op @ Op::DeadLetter { .. }, Some(seq)) => {
                        logged.moved.push(seq);
                        stored.push(op);
                    }
                    (op, _) => stored.push(op),
                }
            }
        }
        let durable = stored.iter().any(Op::needs_fsync);
        if !stored.is_empty() {
            self.commit_store(stored, &logged.moved);
        }
        self.commit_journal(logged, durable);
    }

    /// Write (and when needed sync) the batch's journal records, then apply them and answer.
    fn commit_journal(&self, logged: Logged, durable: bool) {
        let Logged { enqueued, remember, done, announce, .. } = logged;
        let mut journaled = self.journaled.get();
        let written = {
            let mut journal = self.journal.borrow_mut();
            if journal.has_pending() {
                let received = self.counters.received.load(Ordering::Relaxed);
                let rejected = self.counters.rejected.load(Ordering::Relaxed);
                if (received, rejected) != (journaled.received, journaled.rejected) {
                    journal.inbound(received, rejected);
                    (journaled.received, journaled.rejected) = (received, rejected);
                }
            }
            journal.write(durable || !enqueued.is_empty())
        };
        // Completions are applied whatever the write did: the deliveries happened, and a
        // completion lost to a crash only means a duplicate delivery.
        let mut d = Deltas::default();
        let mut resident = self.resident.lock().expect("resident lock");
        for (seq, how, retries) in done {
            resident.events.remove(&seq);
            d.done(how, retries);
        }
        let answers = match written {
            Ok(()) => {
                d.accepted += enqueued.len() as u64;
                d.depth_add += enqueued.len() as u64;
                let mut answers = Vec::with_capacity(enqueued.len());
                for (seq, held, reply) in enqueued {
                    resident.events.insert(seq, held);
                    answers.push((reply, Ok(seq)));
                }
                answers
            }
            Err(e) => {
                let message = e.to_string();
                let path = self.journal.borrow().path().to_path_buf();
                tracing::error!(journal = %path.display(), error = %message, "queue journal write failed");
                enqueued
                    .into_iter()
                    .map(|(_, _, reply)| (reply, Err(storage(&path, &message))))
                    .collect()
            }
        };
        drop(resident);
        d.apply(&self.counters);
        journaled.counts.add(&d);
        self.journaled.set(journaled);
        let accepted = answers.iter().any(|(_, r)| r.is_ok());
        // Sender ids are remembered once their events are durable: an id remembered for an
        // event that was then refused would drop the sender's retry as a duplicate.
        if accepted && !remember.is_empty() {
            self.commit_store(remember, &[]);
        }
        for (reply, result) in answers {
            let _ = reply.send(result);
        }
        if accepted && announce {
            self.notify.notify_one();
        }
    }

    /// Move the events still in memory into the store and start the journal over, in one
    /// durable transaction that also records the journal's new epoch and the counters.
    fn checkpoint(&self) -> Result<(), redb::Error> {
        let mut journal = self.journal.borrow_mut();
        let mut resident = self.resident.lock().expect("resident lock");
        let epoch = journal.epoch() + 1;
        let counters = self.counters.values();
        let txn = self.db.begin_write()?;
        {
            let mut events = txn.open_table(EVENTS)?;
            for (seq, held) in &resident.events {
                let bytes = resident.read(held).map_err(redb::StorageError::Io)?;
                events.insert(*seq, &*bytes)?;
            }
            start_epoch(&txn, epoch, self.next_seq.get(), &counters)?;
        }
        txn.commit()?;
        journal.restart(epoch);
        resident.events.clear();
        let Journaled { received, rejected, .. } = self.journaled.get();
        self.journaled.set(Journaled { received, rejected, ..Journaled::default() });
        self.persisted.set(counters);
        Ok(())
    }

    /// The counters as the store should hold them: without what the journal carries.
    fn stored_values(&self) -> PersistedCounters {
        let j = self.journaled.get();
        let mut values = self.counters.values();
        for (key, value) in values.iter_mut() {
            let journaled = match *key {
                "accepted" => j.counts.accepted,
                "delivered" => j.counts.delivered,
                "filtered" => j.counts.filtered,
                "retried" => j.counts.retried,
                _ => 0,
            };
            *value = value.saturating_sub(journaled);
        }
        values
    }

    /// Apply operations to the store in one transaction, fsynced when one of them needs it;
    /// answer their callers. `moved` are the events in memory that the operations move to
    /// the dead-letter store: once the move is committed they leave memory and the journal
    /// records it.
    fn commit_store(&self, ops: Vec<Op>, moved: &[u64]) {
        let durable = ops.iter().any(Op::needs_fsync);
        let mut answers = Vec::with_capacity(ops.len());
        let mut deltas = Deltas::default();
        let mut announce = false;
        let mut persisted = None;
        let mut next_seq = self.next_seq.get();
        let result = (|| -> Result<(), redb::Error> {
            let mut txn = self.db.begin_write()?;
            txn.set_durability(if durable { Durability::Immediate } else { Durability::None })?;
            {
                let mut tables = Tables::new(&txn, next_seq);
                deltas.depth_sub += moved.len() as u64;
                for op in ops {
                    if let Op::Replay { .. } = op {
                        announce = true;
                    }
                    if let Some(answer) = self.apply(op, &mut tables, &mut deltas)? {
                        answers.push(answer);
                    }
                }
                self.enforce_dead_letter_limit(&mut tables, &mut deltas)?;
                next_seq = tables.save_seqs()?;
                // Persist the counters as they will be after this batch.
                deltas.apply(&self.counters);
                let counters = self.stored_values();
                let saved = self.save_counters(&txn, &counters);
                if let Err(e) = saved {
                    deltas.revert(&self.counters);
                    return Err(e);
                }
                persisted = Some(counters);
            }
            txn.commit().map_err(|e| {
                deltas.revert(&self.counters);
                e.into()
            })
        })();
        match result {
            Ok(()) => {
                if let Some(counters) = persisted {
                    self.persisted.set(counters);
                }
                self.next_seq.set(next_seq);
                if !moved.is_empty() {
                    let mut resident = self.resident.lock().expect("resident lock");
                    let mut journal = self.journal.borrow_mut();
                    for seq in moved {
                        resident.events.remove(seq);
                        journal.done(*seq, Outcome::DeadLettered);
                    }
                }
                for a in answers {
                    a.send();
                }
                if announce {
                    self.notify.notify_one();
                }
            }
            Err(e) => {
                let message = e.to_string();
                tracing::error!(store = %self.path.display(), error = %message, "queue commit failed");
                for a in answers {
                    a.fail(&self.path, &message);
                }
            }
        }
    }

    /// Write the counters that differ from what the store holds (most batches change two or
    /// three of them); the counters table is not even opened when none does.
    fn save_counters(
        &self,
        txn: &redb::WriteTransaction,
        counters: &PersistedCounters,
    ) -> Result<(), redb::Error> {
        let before = self.persisted.get();
        let mut changed = counters.iter().zip(before.iter()).filter(|(now, then)| now != then);
        let Some(first) = changed.next() else { return Ok(()) };
        let mut table = txn.open_table(COUNTERS)?;
        for ((key, value), _) in std::iter::once(first).chain(changed) {
            table.insert(*key, *value)?;
        }
        Ok(())
    }

    fn apply(
        &self,
        op: Op,
        t: &mut Tables<'_>,
        d: &mut Deltas,
    ) -> Result<Option<Answer>, redb::Error> {
        Ok(match op {
            Op::Enqueue { .. } => {
                unreachable!("accepted events are journaled by Writer::commit_batch")
            }
            Op::Remember { source_id, until } => {
                remember(t, &source_id, until)?;
                None
            }
            Op::Update { seq, event } => {
                if t.events()?.get(seq)?.is_some() {
                    t.events()?.insert(seq, encode_event(&event).as_slice())?;
                }
                None
            }
            Op::Complete { seq, how, retries, reply } => {
                let removed = seq == 0 || t.events()?.remove(seq)?.is_some();
                if removed {
                    match how {
                        Completion::Delivered => d.delivered += 1,
                        Completion::Filtered => d.filtered += 1,
                    }
                    d.retried += retries;
                    if seq != 0 {
                        d.depth_sub += 1;
                    } else {
                        d.accepted += 1;
                    }
                }
                reply.map(|r| Answer::Unit(r, Ok(())))
            }
            Op::DeadLetter { seq, dead, retries, reply } => {
                if let Some(seq) = seq
                    && t.events()?.remove(seq)?.is_some()
                {
                    d.depth_sub += 1;
                } else if seq.is_none() {
                    d.accepted += 1;
                }
                let key = t.next_dead()?;
                let old = t.dead_index()?.insert(dead.id.as_str(), key)?.map(|old| old.value());
                if let Some(old) = old {
                    // The same event dead-lettered again (after a replay): keep the newest.
                    if let Some(prev) = t.dead()?.remove(old)?
                        && decode_dead_letter(prev.value())
                            .map(|p| p.state == "pending")
                            .unwrap_or(false)
                    {
                        d.pending_sub += 1;
                    }
                }
                t.dead()?.insert(key, encode_dead_letter(&dead).as_slice())?;
                d.dead_lettered += 1;
                d.pending_add += 1;
                d.retried += retries;
                Some(Answer::Unit(reply, Ok(())))
            }
            Op::Replay { id, by, now, reply } => {
                let Some(key) = t.dead_index()?.get(id.as_str())?.map(|v| v.value()) else {
                    return Ok(Some(Answer::Text(reply, Err(QueueError::NotFound(id)))));
                };
                let Some(bytes) = t.dead()?.get(key)?.map(|v| v.value().to_vec()) else {
                    return Ok(Some(Answer::Text(reply, Err(QueueError::NotFound(id)))));
                };
                let mut dead = match decode_dead_letter(&bytes) {
                    Ok(dead) => dead,
                    Err(m) => {
                        return Ok(Some(Answer::Text(reply, Err(QueueError::Corrupt(id, m)))));
                    }
                };
                if dead.state != "pending" {
                    return Ok(Some(Answer::Text(reply, Err(QueueError::AlreadyReplayed(id)))));
                }
                let new_id = uuid::Uuid::new_v4().to_string();
                let record = ReplayRecord { by, at: now, event_id: new_id.clone() };
                let mut event = dead.event.clone();
                event.id = new_id.clone();
                event.pending_targets = dead.failed_targets.clone();
                event.replays.push(record.clone());
                dead.state = "replayed".into();
                dead.event.replays.push(record);
                t.dead()?.insert(key, encode_dead_letter(&dead).as_slice())?;
                let seq = t.next_seq();
                t.events()?.insert(seq, encode_event(&event).as_slice())?;
                d.depth_add += 1;
                d.pending_sub += 1;
                d.replayed += 1;
                Some(Answer::Text(reply, Ok(new_id)))
            }
            Op::Prune { now_ms, reply } => {
                self.prune(t, now_ms, d)?;
                reply.map(|r| Answer::Unit(r, Ok(())))
            }
            Op::Flush { reply } => Some(Answer::Unit(reply, Ok(()))),
        })
    }

    fn prune(&self, t: &mut Tables<'_>, now_ms: u64, d: &mut Deltas) -> Result<(), redb::Error> {
        let expired: Vec<(u64, String)> = t
            .dedup_ttl()?
            .range(..(now_ms, ""))?
            .map(|row| row.map(|(k, _)| (k.value().0, k.value().1.to_string())))
            .collect::<Result<_, _>>()?;
        for (until, id) in expired {
            t.dedup_ttl()?.remove((until, id.as_str()))?;
            if t.dedup()?.get(id.as_str())?.map(|v| v.value()) == Some(until) {
                t.dedup()?.remove(id.as_str())?;
            }
        }
        // Bound the number of remembered ids: drop the soonest to expire.
        let len = t.dedup_ttl()?.len()?;
        if len > self.settings.dedup_max_entries {
            let excess = (len - self.settings.dedup_max_entries) as usize;
            let oldest: Vec<(u64, String)> = t
                .dedup_ttl()?
                .iter()?
                .take(excess)
                .map(|row| row.map(|(k, _)| (k.value().0, k.value().1.to_string())))
                .collect::<Result<_, _>>()?;
            for (until, id) in oldest {
                t.dedup_ttl()?.remove((until, id.as_str()))?;
                t.dedup()?.remove(id.as_str())?;
            }
        }
        let cutoff = now_ms.saturating_sub(self.settings.dead_letter_retention_ms);
        let mut old = Vec::new();
        for row in t.dead()?.iter()? {
            let (k, v) = row?;
            match decode_dead_letter(v.value()) {
                Ok(dead)
                    if u64::try_from(dead.dead_lettered_at.timestamp_millis()).unwrap_or(0)
                        < cutoff =>
                {
                    old.push((k.value(), dead.id, dead.state == "pending"))
                }
                Ok(_) => break,
                Err(_) => old.push((k.value(), String::new(), false)),
            }
        }
        for (key, id, pending) in old {
            t.dead()?.remove(key)?;
            if !id.is_empty() {
                t.dead_index()?.remove(id.as_str())?;
            }
            if pending {
                d.pending_sub += 1;
            }
            d.dead_letters_dropped += 1;
        }
        Ok(())
    }

    fn enforce_dead_letter_limit(
        &self,
        t: &mut Tables<'_>,
        d: &mut Deltas,
    ) -> Result<(), redb::Error> {
        // Only a batch that wrote dead letters (or pruned them) has the table open.
        if t.dead.is_none() {
            return Ok(());
        }
        let len = t.dead()?.len()?;
        if len <= self.settings.dead_letter_max_entries {
            return Ok(());
        }
        let excess = (len - self.settings.dead_letter_max_entries) as usize;
        let oldest: Vec<(u64, Option<DeadLetter>)> = t
            .dead()?
            .iter()?
            .take(excess)
            .map(|row| row.map(|(k, v)| (k.value(), decode_dead_letter(v.value()).ok())))
            .collect::<Result<_, _>>()?;
        for (key, dead) in oldest {
            t.dead()?.remove(key)?;
            if let Some(dead) = dead {
                t.dead_index()?.remove(dead.id.as_str())?;
                if dead.state == "pending" {
                    d.pending_sub += 1;
                }
                tracing::warn!(dead_letter = %dead.id, "dead-letter store full: oldest entry dropped");
            }
            d.dead_letters_dropped += 1;
        }
        Ok(())
    }
}

/// The store's tables in one write transaction, each opened the first time an operation of
/// the batch needs it. Opening a table is a lookup in redb's table tree, and every table
/// opened is looked up again at commit; a batch of enqueues and completions needs only the
/// events, the sequence numbers and the counters.
struct Tables<'t> {
    txn: &'t redb::WriteTransaction,
    events: Option<redb::Table<'t, u64, &'static [u8]>>,
    dedup: Option<redb::Table<'t, &'static str, u64>>,
    dedup_ttl: Option<redb::Table<'t, (u64, &'static str), ()>>,
    dead: Option<redb::Table<'t, u64, &'static [u8]>>,
    dead_index: Option<redb::Table<'t, &'static str, u64>>,
    /// The next event key (the writer keeps it: the journal takes keys too) and whether the
    /// batch took one.
    next_seq: u64,
    took_seq: bool,
    /// The next dead-letter key, read from META when first needed.
    next_dead: Option<u64>,
}

macro_rules! lazy_table {
    ($name:ident, $definition:expr, $k:ty, $v:ty) => {
        fn $name(&mut self) -> Result<&mut redb::Table<'t, $k, $v>, redb::Error> {
            if self.$name.is_none() {
                self.$name = Some(self.txn.open_table($definition)?);
            }
            Ok(self.$name.as_mut().expect("opened above"))
        }
    };
}

impl<'t> Tables<'t> {
    fn new(txn: &'t redb::WriteTransaction, next_seq: u64) -> Self {
        Tables {
            txn,
            events: None,
            dedup: None,
            dedup_ttl: None,
            dead: None,
            dead_index: None,
            next_seq,
            took_seq: false,
            next_dead: None,
        }
    }

    lazy_table!(events, EVENTS, u64, &'static [u8]);
    lazy_table!(dedup, DEDUP, &'static str, u64);
    lazy_table!(dedup_ttl, DEDUP_TTL, (u64, &'static str), ());
    lazy_table!(dead, DEAD, u64, &'static [u8]);
    lazy_table!(dead_index, DEAD_INDEX, &'static str, u64);

    /// Take the next event key.
    fn next_seq(&mut self) -> u64 {
        self.took_seq = true;
        self.next_seq += 1;
        self.next_seq - 1
    }

    /// Take the next dead-letter key.
    fn next_dead(&mut self) -> Result<u64, redb::Error> {
        let next = match self.next_dead {
            Some(next) => next,
            None => self.txn.open_table(META)?.get("next_dead")?.map(|v| v.value()).unwrap_or(1),
        };
        self.next_dead = Some(next + 1);
        Ok(next)
    }

    /// Store the next keys if the batch took any; returns the next event key.
    fn save_seqs(&mut self) -> Result<u64, redb::Error> {
        if self.took_seq || self.next_dead.is_some() {
            let mut meta = self.txn.open_table(META)?;
            if self.took_seq {
                meta.insert("next_seq", self.next_seq)?;
            }
            if let Some(next_dead) = self.next_dead {
                meta.insert("next_dead", next_dead)?;
            }
        }
        Ok(self.next_seq)
    }
}

fn remember(t: &mut Tables<'_>, id: &str, until: u64) -> Result<(), redb::Error> {
    let prev = t.dedup()?.insert(id, until)?.map(|prev| prev.value());
    if let Some(prev) = prev {
        t.dedup_ttl()?.remove((prev, id))?;
    }
    t.dedup_ttl()?.insert((until, id), ())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_busy_writer_gathers() {
        let moment = Duration::from_micros(50);
        assert!(gathers(8, moment), "callers answered by the last commit are coming back");
        assert!(!gathers(1, moment), "a lone caller is not kept waiting");
        assert!(!gathers(8, Duration::from_secs(5)), "nor one after an idle spell");
    }
}
