//! The durable queue and dead-letter store on a real file: group commit, restart recovery,
//! duplicate memory, dead-letter limits, retention and replay.

use std::sync::atomic::Ordering;

use chrono::Utc;
use switchboard_worker::queue::{
    Completion, DeadLetter, Queue, QueueError, QueueSettings, QueuedEvent, StoredRequest,
};

fn event(id: &str, source_id: Option<&str>) -> QueuedEvent {
    QueuedEvent {
        id: id.into(),
        source_id: source_id.map(str::to_string),
        received_at: Utc::now(),
        route: "/hook".into(),
        pending_targets: vec!["a".into(), "b".into()],
        request: StoredRequest {
            method: "POST".into(),
            path: "/hook".into(),
            ..Default::default()
        },
        attempts: vec![],
        replays: vec![],
        body: format!("{{\"id\":\"{id}\"}}").into_bytes(),
    }
}

fn dead(event: QueuedEvent) -> DeadLetter {
    DeadLetter {
        id: event.id.clone(),
        dead_lettered_at: Utc::now(),
        reason: "retries_exhausted".into(),
        message: "status 503".into(),
        failed_targets: vec!["b".into()],
        state: "pending".into(),
        event,
    }
}

/// Senders that each wait for their answer before sending again, as HTTP connections do:
/// under that load the writer gathers for a moment, so one commit carries nearly every
/// sender's next event instead of whichever one was first back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn closed_loop_senders_are_gathered_into_shared_commits() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::open(dir.path(), QueueSettings::default()).unwrap();
    let (senders, rounds) = (16, 100);
    let tasks: Vec<_> = (0..senders)
        .map(|s| {
            let q = queue.clone();
            tokio::spawn(async move {
                for r in 0..rounds {
                    q.enqueue(event(&format!("e{s}-{r}"), None)).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let c = queue.counters();
    let (commits, ops) =
        (c.commits.load(Ordering::Relaxed), c.committed_ops.load(Ordering::Relaxed));
    assert_eq!(ops, senders * rounds);
    assert!(
        ops >= 12 * commits,
        "{ops} enqueues from {senders} closed-loop senders took {commits} commits"
    );
    queue.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_enqueues_share_commits_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::open(dir.path(), QueueSettings::default()).unwrap();
    let n = 1000;
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let q = queue.clone();
            tokio::spawn(
                async move { q.enqueue(event(&format!("e{i}"), Some(&format!("s{i}")))).await },
            )
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let c = queue.counters();
    let commits = c.commits.load(Ordering::Relaxed);
    assert!(commits < n as u64, "{n} enqueues took {commits} commits: no group commit");
    assert_eq!(c.accepted.load(Ordering::Relaxed), n as u64);
    assert!(queue.seen("s7").unwrap());
    assert!(!queue.seen("unknown").unwrap());
    let pending = queue.pending_after(0, 10_000).unwrap();
    assert_eq!(pending.len(), n);
    // Complete a few, then reopen: the rest is still there, and so are the counters.
    for (seq, _) in pending.iter().take(10) {
        queue.complete(*seq, Completion::Delivered, 1).unwrap();
    }
    queue.close().await.unwrap();
    drop(queue);
    let queue = Queue::open(dir.path(), QueueSettings::default()).unwrap();
    assert_eq!(queue.pending_after(0, 10_000).unwrap().len(), n - 10);
    let snap = queue.counters().snapshot();
    assert_eq!(
        (snap.accepted, snap.delivered, snap.retried, snap.queue_depth),
        (n as u64, 10, 10, n as u64 - 10)
    );
    assert!(queue.seen("s999").unwrap());
    // Counters the inbound side keeps (requests received, refused) ride on the next commit,
    // whatever it carries; a commit writes only the counters that changed.
    queue.counters().received.fetch_add(7, Ordering::Relaxed);
    queue.counters().rejected.fetch_add(2, Ordering::Relaxed);
    let (seq, _) = queue.pending_after(0, 1).unwrap().remove(0);
    queue.complete(seq, Completion::Filtered, 0).unwrap();
    queue.close().await.unwrap();
    drop(queue);
    let queue = Queue::open(dir.path(), QueueSettings::default()).unwrap();
    let snap = queue.counters().snapshot();
    assert_eq!(
        (snap.received, snap.rejected, snap.accepted, snap.delivered, snap.filtered),
        (7, 2, n as u64, 10, 1)
    );
    assert_eq!(snap.queue_depth, n as u64 - 11);
    // A closed queue refuses work instead of losing it silently.
    queue.close().await.unwrap();
    assert!(matches!(queue.enqueue(event("late", None)).await, Err(QueueError::Closed)));
}

/// What a process killed now would leave on disk: the files as they are (the page cache
/// survives the process), without the checkpoint a clean stop makes.
fn crash_copy(from: &std::path::Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for name in
        [switchboard_worker::queue::STORE_FILE, switchboard_worker::queue::journal::JOURNAL_FILE]
    {
        std::fs::copy(from.join(name), to.path().join(name)).unwrap();
    }
    to
}

/// Accepted events live in the journal (and memory) until they are delivered or a checkpoint
/// stores them: a crash in between loses none of them, forgets no sender id, and counts each
/// event once, also when the events cross a checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loses_no_accepted_event_and_counts_each_once() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::open(dir.path(), QueueSettings::default()).unwrap();
    // Large bodies: the journal passes its checkpoint size halfway through.
    let big = |i: usize| {
        let mut e = event(&format!("e{i}"), Some(&format!("s{i}")));
        e.body = vec![b'x'; 512 * 1024];
        e
    };
    let mut seqs = Vec::new();
    for i in 0..24 {
        seqs.push(queue.enqueue(big(i)).await.unwrap());
    }
    for seq in &seqs[..5] {
        queue.complete(*seq, Completion::Delivered, 1).unwrap();
    }
    queue.complete(seqs[5], Completion::Filtered, 0).unwrap();
    // The last two are still only in the journal when they are dead-lettered.
    for (i, seq) in seqs.iter().enumerate().skip(22) {
        queue.dead_letter(Some(*seq), dead(event(&format!("e{i}"), None)), 2).await.unwrap();
    }
    let mut progressed = big(21);
    progressed.pending_targets = vec!["b".into()];
    queue.update(seqs[21], progressed).unwrap();
    queue.counters().received.fetch_add(30, Ordering::Relaxed);
    queue.counters().rejected.fetch_add(6, Ordering::Relaxed);
    queue.flush().await.unwrap();
    let seen = queue.pending_after(0, 100).unwrap();
    assert_eq!(seen.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(), seqs[6..22]);

    let crashed = crash_copy(dir.path());
    queue.close().await.unwrap();
    let after = Queue::open(crashed.path(), QueueSettings::default()).unwrap();
    let pending = after.pending_after(0, 100).unwrap();
    assert_eq!(pending.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(), seqs[6..22]);
    assert_eq!(pending[1].1.body.len(), 512 * 1024);
    let snap = after.counters().snapshot();
    assert_eq!(
        (snap.accepted, snap.delivered, snap.filtered, snap.retried, snap.dead_lettered),
        (24, 5, 1, 9, 2)
    );
    assert_eq!((snap.received, snap.rejected, snap.queue_depth), (30, 6, 16));
    assert!(after.seen("s23").unwrap() && after.seen("s0").unwrap());
    assert_eq!(after.list_dead_letters(true, 10).unwrap().len(), 2);
    // New events take keys after every replayed one.
    let next = after.enqueue(event("later", None)).await.unwrap();
    assert!(next > *seqs.last().unwrap());
    // A second crash right after the replay finds the same (the replay started a new
    // journal epoch in the same transaction that stored the events).
    after.flush().await.unwrap();
    let again = crash_copy(crashed.path());
    after.close().await.unwrap();
    let twice = Queue::open(again.path(), QueueSettings::default()).unwrap();
    assert_eq!(twice.pending_after(0, 100).unwrap().len(), 17);
    assert_eq!(twice.counters().snapshot().accepted, 25);
    twice.close().await.unwrap();
}

#[tokio::test]
async fn dead_letters_are_listed_replayed_once_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let settings = QueueSettings { dead_letter_max_entries: 3, ..QueueSettings::default() };
    let queue = Queue::open(dir.path(), settings).unwrap();
    let mut seqs = Vec::new();
    for i in 0..5 {
        seqs.push(queue.enqueue(event(&format!("d{i}"), None)).await.unwrap());
    }
    for (i, seq) in seqs.iter().enumerate() {
        queue.dead_letter(Some(*seq), dead(event(&format!("d{i}"), None)), 2).await.unwrap();
    }
    let snap = queue.counters().snapshot();
    assert_eq!(snap.dead_lettered, 5);
    assert_eq!(snap.dead_letters_dropped, 2, "the oldest beyond the limit are dropped and counted");
    assert_eq!(snap.dead_letters_pending, 3);
    assert_eq!(snap.queue_depth, 0);
    let list = queue.list_dead_letters(true, 10).unwrap();
    assert_eq!(list.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["d4", "d3", "d2"]);
    assert!(matches!(queue.get_dead_letter("d0"), Err(QueueError::NotFound(_))));

    let new_id = queue.replay("d3", "alice").await.unwrap();
    assert!(matches!(queue.replay("d3", "bob").await, Err(QueueError::AlreadyReplayed(_))));
    assert!(matches!(queue.replay("nope", "bob").await, Err(QueueError::NotFound(_))));
    let replayed = queue.get_dead_letter("d3").unwrap();
    assert_eq!(replayed.state, "replayed");
    assert_eq!(replayed.event.replays[0].by, "alice");
    let queued = queue.pending_after(0, 10).unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].1.id, new_id);
    assert_eq!(
        queued[0].1.pending_targets,
        vec!["b".to_string()],
        "only the failed targets are retried"
    );
    assert_eq!(queued[0].1.body, br#"{"id":"d3"}"#);
    assert_eq!(queue.list_dead_letters(true, 10).unwrap().len(), 2);
    assert_eq!(queue.list_dead_letters(false, 10).unwrap().len(), 3);
    let snap = queue.counters().snapshot();
    assert_eq!((snap.replayed, snap.dead_letters_pending, snap.queue_depth), (1, 2, 1));
}

#[tokio::test]
async fn expired_ids_and_old_dead_letters_are_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let settings =
        QueueSettings { dedup_ttl_ms: 0, dead_letter_retention_ms: 0, ..QueueSettings::default() };
    let queue = Queue::open(dir.path(), settings).unwrap();
    let seq = queue.enqueue(event("p1", Some("sender-1"))).await.unwrap();
    let mut old = dead(event("p1", None));
    old.dead_lettered_at = Utc::now() - chrono::Duration::days(30);
    queue.dead_letter(Some(seq), old, 0).await.unwrap();
    queue.prune().await.unwrap();
    assert!(!queue.seen("sender-1").unwrap());
    assert!(queue.list_dead_letters(false, 10).unwrap().is_empty());
    let snap = queue.counters().snapshot();
    assert_eq!((snap.dead_letters_dropped, snap.dead_letters_pending), (1, 0));
}

#[tokio::test]
async fn a_corrupt_store_is_an_error_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(switchboard_worker::queue::STORE_FILE),
        b"not a redb file at all",
    )
    .unwrap();
    let err = Queue::open(dir.path(), QueueSettings::default()).err().expect("refused");
    assert_eq!(err.category(), "storage");
}

/// Whether the dispatcher's wake-up is pending (a permit stored by `notify_one`).
async fn woken(queue: &Queue) -> bool {
    tokio::time::timeout(std::time::Duration::from_millis(50), queue.notify().notified())
        .await
        .is_ok()
}

#[tokio::test]
async fn events_handed_over_in_memory_do_not_send_the_dispatcher_to_the_store() {
    use switchboard_worker::inbound::{AcceptedEvent, EventSink, SinkOutcome};
    use switchboard_worker::runtime::delivery::QueueSink;

    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::open(dir.path(), QueueSettings::default()).unwrap();
    // A plain enqueue wakes the dispatcher; an unannounced one does not.
    queue.enqueue(event("e0", None)).await.unwrap();
    assert!(woken(&queue).await, "an enqueue must wake the dispatcher");
    queue.enqueue_unannounced(&event("e1", None)).await.unwrap();
    assert!(!woken(&queue).await, "an unannounced enqueue woke the dispatcher");

    // The sink hands the stored event over in memory, without a wake-up...
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let sink = QueueSink { queue: queue.clone(), fast: Some(tx) };
    let accepted = |id: &str| AcceptedEvent { event: event(id, None), body: serde_json::json!({}) };
    assert_eq!(sink.accept(accepted("e2")).await, SinkOutcome::Queued);
    assert!(!woken(&queue).await, "an event handed over in memory woke the dispatcher");
    // ...and when the inlet is full, the event is stored and the dispatcher woken to scan.
    assert_eq!(sink.accept(accepted("e3")).await, SinkOutcome::Queued);
    assert!(woken(&queue).await, "an event the inlet refused must wake the dispatcher");
    let (seq, handed, _) = rx.recv().await.unwrap();
    assert_eq!(handed.id, "e2");
    let stored: Vec<String> =
        queue.pending_after(0, 10).unwrap().into_iter().map(|(_, e)| e.id).collect();
    assert_eq!(stored, ["e0", "e1", "e2", "e3"]);
    assert_eq!(queue.pending_after(seq - 1, 1).unwrap()[0].1.id, "e2");
}

/// Delivers every event at once and records its id.
struct Recorder(std::sync::Mutex<Vec<String>>);

impl switchboard_worker::runtime::delivery::Deliverer for Recorder {
    fn deliver<'a>(
        &'a self,
        _target: &'a switchboard_worker::config::TargetConfig,
        _vars: &'a switchboard_worker::transform::Variables,
        delivery_id: &'a str,
    ) -> switchboard_worker::runtime::delivery::DeliveryFuture<'a> {
        self.0.lock().unwrap().push(delivery_id.to_string());
        Box::pin(async {
            switchboard_worker::runtime::delivery::TargetOutcome {
                delivered: true,
                attempts: vec![],
                retries: 0,
                reason: String::new(),
                message: String::new(),
            }
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_wake_up_is_found_while_traffic_goes_on() {
    use std::sync::Arc;
    use switchboard_worker::runtime::delivery::{Dispatcher, Pipeline};

    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::open(dir.path(), QueueSettings::default()).unwrap();
    let target: switchboard_worker::config::TargetConfig = yaml_serde::from_str(
        "name: a\ntype: outboundMessage\n\
         endpoint: {name: sink, url: 'http://127.0.0.1:9', protocol: rest, timeoutMs: 1000,\n\
           retry: {maxAttempts: 1, initialBackoffMs: 10, maxBackoffMs: 10},\n\
           circuitBreaker: {failureThreshold: 5, openForMs: 1000}}\n\
         method: {name: post, httpMethod: POST, path: /sink}\n",
    )
    .unwrap();
    let recorder = Arc::new(Recorder(std::sync::Mutex::new(Vec::new())));
    let metrics = Arc::new(switchboard_worker::runtime::metrics::Metrics::new("a", "b", "c"));
    let pipeline = Arc::new(Pipeline::new(
        switchboard_worker::transform::Transform::default(),
        vec![target],
        recorder.clone(),
        metrics.clone(),
    ));
    let (fast, rx) = tokio::sync::mpsc::channel(16);
    let dispatcher = Dispatcher {
        queue: queue.clone(),
        pipeline,
        health: Arc::default(),
        metrics,
        concurrency: 4,
        fast: Some(rx),
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(dispatcher.run(stopped, std::time::Duration::from_secs(5)));
    let delivered = |id: &str| recorder.0.lock().unwrap().iter().any(|d| d == id);

    // Once a first event is through, the dispatcher's start-up scan is behind it.
    let seq = queue.enqueue_unannounced(&event("first", None)).await.unwrap();
    fast.send((seq, event("first", None), serde_json::json!({}))).await.unwrap();
    while !delivered("first") {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // (The test events name targets `a` and `b`; `a` is the one configured.)
    // Stored without a hand-over and without a wake-up: a wake-up that got lost.
    queue.enqueue_unannounced(&event("missed", None)).await.unwrap();
    // Meanwhile events keep arriving in memory, a few every second, as under steady load.
    let mut sent = 0;
    while !delivered("missed") && sent < 100 {
        let id = format!("e{sent}");
        let seq = queue.enqueue_unannounced(&event(&id, None)).await.unwrap();
        fast.send((seq, event(&id, None), serde_json::json!({}))).await.unwrap();
        sent += 1;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        delivered("missed"),
        "an event whose wake-up was lost waited for the traffic to stop ({sent} events later)"
    );
    stop.send(true).unwrap();
    running.await.unwrap();
}
