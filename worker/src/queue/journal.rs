//! The queue's journal: the file that makes an accepted event durable.
//!
//! An accepted event is appended here and the file is `fdatasync`ed once per group; the
//! event then lives in memory until it is delivered (a small record says so) or until a
//! checkpoint moves it into the redb store. The file is preallocated and reused from its
//! start after every checkpoint, so appending changes no file-system metadata and each sync
//! writes only the new records (a sync that also has to grow the file, as redb's commit of a
//! dozen copy-on-write pages or an append to a growing log does, costs the device twice).
//!
//! ```text
//!  record:  crc32 (u32, of what follows the length) | length (u32) | epoch (u64) | kind (u8) | seq (u64) | payload
//!  Enqueue  payload: dedup expiry (u64, 0 = no sender id) | sender id length (u32) | sender id | stored event
//!  Done     payload: outcome (u8: delivered, filtered, dead-lettered) | retries (u64)
//!  Inbound  payload: requests received (u64) | requests refused (u64)
//! ```
//!
//! Every checkpoint starts a new epoch, stored in the same redb transaction as the events it
//! moved. Reading stops at the first record that is not whole (its checksum fails: a write
//! torn by a crash), at zeros (never written) or at a record of an older epoch (left from
//! before the last checkpoint), so only what was written since the last checkpoint is
//! replayed.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::bytes::{Reader, put_str};

/// File name of the journal inside the data directory.
pub const JOURNAL_FILE: &str = "queue.journal";
/// Size the journal file is preallocated to.
pub const JOURNAL_BYTES: u64 = 16 << 20;
/// Once this much is written, the next batch first moves the events still pending into the
/// store and starts the journal over: the events kept in memory stay bounded, and so does the
/// time a restart spends replaying.
pub const CHECKPOINT_BYTES: u64 = 8 << 20;
/// Header of a record: checksum and length.
const HEADER: usize = 8;
/// Where a record's payload starts in its body (after epoch, kind and key).
const BODY_START: usize = 17;
/// Longest record read back; anything longer is taken for garbage.
const MAX_RECORD: usize = 1 << 30;

const ENQUEUE: u8 = 1;
const DONE: u8 = 2;
const INBOUND: u8 = 3;

/// How an event left the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered to every target, after this many retries.
    Delivered(u64),
    /// Dropped by the filter.
    Filtered,
    /// Moved to the dead-letter store (counted there).
    DeadLettered,
}

/// A record read back from the journal.
#[derive(Debug, PartialEq, Eq)]
pub enum Record {
    /// An event was accepted.
    Enqueue {
        /// Its key.
        seq: u64,
        /// The sender id and until when it is remembered.
        source: Option<(String, u64)>,
        /// The stored event ([`super::encode_event`]).
        event: Vec<u8>,
    },
    /// An event left the queue.
    Done {
        /// Its key.
        seq: u64,
        /// How.
        outcome: Outcome,
    },
    /// The inbound side's counters at the time.
    Inbound {
        /// Requests received.
        received: u64,
        /// Requests refused.
        rejected: u64,
    },
}

/// The open journal: where the next record goes, and the records not yet written.
pub struct Journal {
    file: Arc<File>,
    path: PathBuf,
    epoch: u64,
    /// Offset of the next write.
    len: u64,
    /// Records encoded but not yet written.
    buf: Vec<u8>,
    /// Whether something was written since the last sync.
    unsynced: bool,
}

impl Journal {
    /// Open (creating and preallocating) the journal in `dir` and read back the records of
    /// `epoch`. Writing starts after them.
    pub fn open(dir: &Path, epoch: u64) -> std::io::Result<(Journal, Vec<Record>)> {
        let path = dir.join(JOURNAL_FILE);
        let file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)?;
        let size = file.metadata()?.len();
        if size < JOURNAL_BYTES {
            preallocate(&file, size)?;
            // The file may be new: its directory entry must be durable too.
            File::open(dir)?.sync_all()?;
        }
        let (records, len) = read(&file, epoch)?;
        let file = Arc::new(file);
        let journal = Journal { file, path, epoch, len, buf: Vec::new(), unsynced: false };
        Ok((journal, records))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file, to read events back from (see [`Journal::enqueue`]).
    pub fn file(&self) -> &Arc<File> {
        &self.file
    }

    /// The epoch records are written in.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Bytes written since the journal was started over.
    pub fn written(&self) -> u64 {
        self.len
    }

    /// Whether records wait to be written.
    pub fn has_pending(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Add an accepted event to the records to write; returns where the event's bytes will
    /// be in the file once they are written.
    pub fn enqueue(&mut self, seq: u64, source: Option<(&str, u64)>, event: &[u8]) -> u64 {
        let (id, until) = source.unwrap_or(("", 0));
        self.record(ENQUEUE, seq, |out| {
            out.extend_from_slice(&until.to_le_bytes());
            put_str(out, id);
            out.extend_from_slice(event);
        });
        self.len + (self.buf.len() - event.len()) as u64
    }

    /// Add the end of an event's stay in the queue to the records to write.
    pub fn done(&mut self, seq: u64, outcome: Outcome) {
        let (code, retries) = match outcome {
            Outcome::Delivered(retries) => (0u8, retries),
            Outcome::Filtered => (1, 0),
            Outcome::DeadLettered => (2, 0),
        };
        self.record(DONE, seq, |out| {
            out.push(code);
            out.extend_from_slice(&retries.to_le_bytes());
        });
    }

    /// Add the inbound side's counters to the records to write.
    pub fn inbound(&mut self, received: u64, rejected: u64) {
        self.record(INBOUND, 0, |out| {
            out.extend_from_slice(&received.to_le_bytes());
            out.extend_from_slice(&rejected.to_le_bytes());
        });
    }

    fn record(&mut self, kind: u8, seq: u64, payload: impl FnOnce(&mut Vec<u8>)) {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; HEADER]);
        self.buf.extend_from_slice(&self.epoch.to_le_bytes());
        self.buf.push(kind);
        self.buf.extend_from_slice(&seq.to_le_bytes());
        payload(&mut self.buf);
        let body = &self.buf[start + HEADER..];
        let (crc, len) = (crc32fast::hash(body), body.len() as u32);
        self.buf[start..start + 4].copy_from_slice(&crc.to_le_bytes());
        self.buf[start + 4..start + HEADER].copy_from_slice(&len.to_le_bytes());
    }

    /// Write the pending records; with `sync`, make everything written so far durable. On an
    /// error the records are dropped and the next write starts where this one did.
    pub fn write(&mut self, sync: bool) -> std::io::Result<()> {
        let result = self.write_pending(sync);
        // The allocation is kept for the next batch.
        self.buf.clear();
        result
    }

    fn write_pending(&mut self, sync: bool) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            self.file.write_all_at(&self.buf, self.len)?;
            self.unsynced = true;
        }
        if sync && self.unsynced {
            self.file.sync_data()?;
            self.unsynced = false;
        }
        self.len += self.buf.len() as u64;
        Ok(())
    }

    /// Start over at the beginning of the file, in `epoch` (after a checkpoint that stored
    /// that epoch).
    pub fn restart(&mut self, epoch: u64) {
        self.epoch = epoch;
        self.len = 0;
        self.buf.clear();
        self.unsynced = false;
    }
}

/// Fill the file with zeros up to [`JOURNAL_BYTES`]: blocks written once need no metadata
/// change when they are overwritten (an unwritten `fallocate` extent would).
fn preallocate(file: &File, from: u64) -> std::io::Result<()> {
    let zeros = vec![0u8; 64 * 1024];
    let mut at = from;
    while at < JOURNAL_BYTES {
        let n = zeros.len().min((JOURNAL_BYTES - at) as usize);
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    file.sync_all()
}

/// The whole records of `epoch` from the start of the file, and where they end.
fn read(file: &File, epoch: u64) -> std::io::Result<(Vec<Record>, u64)> {
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    let mut records = Vec::new();
    let mut offset = 0u64;
    let mut body = Vec::new();
    loop {
        let mut header = [0u8; HEADER];
        if !read_full(&mut reader, &mut header)? {
            break;
        }
        let crc = u32::from_le_bytes(header[..4].try_into().expect("4 bytes"));
        let len = u32::from_le_bytes(header[4..].try_into().expect("4 bytes")) as usize;
        if !(BODY_START..=MAX_RECORD).contains(&len) {
            break;
        }
        body.resize(len, 0);
        if !read_full(&mut reader, &mut body)? || crc32fast::hash(&body) != crc {
            break;
        }
        let Some(record) = decode(&body, epoch) else { break };
        records.push(record);
        offset += (HEADER + len) as u64;
    }
    Ok((records, offset))
}

/// Fill `buf`; false at the end of the file.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<bool> {
    match reader.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

fn decode(body: &[u8], epoch: u64) -> Option<Record> {
    let mut r = Reader(body);
    if r.u64().ok()? != epoch {
        return None;
    }
    let (kind, seq) = (r.u8().ok()?, r.u64().ok()?);
    match kind {
        ENQUEUE => {
            let until = r.u64().ok()?;
            let id = r.str().ok()?;
            let source = (until != 0).then_some((id, until));
            Some(Record::Enqueue { seq, source, event: r.rest().to_vec() })
        }
        DONE => {
            let outcome = match (r.u8().ok()?, r.u64().ok()?) {
                (0, retries) => Outcome::Delivered(retries),
                (1, _) => Outcome::Filtered,
                (2, _) => Outcome::DeadLettered,
                _ => return None,
            };
            Some(Record::Done { seq, outcome })
        }
        INBOUND => Some(Record::Inbound { received: r.u64().ok()?, rejected: r.u64().ok()? }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records() -> Vec<Record> {
        vec![
            Record::Enqueue { seq: 1, source: Some(("s1".into(), 99)), event: b"first".to_vec() },
            Record::Enqueue { seq: 2, source: None, event: vec![0, 1, 2] },
            Record::Done { seq: 1, outcome: Outcome::Delivered(3) },
            Record::Done { seq: 2, outcome: Outcome::DeadLettered },
            Record::Inbound { received: 7, rejected: 2 },
        ]
    }

    fn push(journal: &mut Journal, records: &[Record]) {
        for r in records {
            match r {
                Record::Enqueue { seq, source, event } => {
                    let at = journal.enqueue(
                        *seq,
                        source.as_ref().map(|(id, until)| (id.as_str(), *until)),
                        event,
                    );
                    journal.write(false).unwrap();
                    let mut back = vec![0; event.len()];
                    journal.file().read_exact_at(&mut back, at).unwrap();
                    assert_eq!(&back, event, "enqueue tells where the event is");
                }
                Record::Done { seq, outcome } => journal.done(*seq, *outcome),
                Record::Inbound { received, rejected } => journal.inbound(*received, *rejected),
            }
        }
    }

    #[test]
    fn records_of_the_current_epoch_are_read_back_up_to_a_torn_one() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, read) = Journal::open(dir.path(), 5).unwrap();
        assert!(read.is_empty());
        assert_eq!(std::fs::metadata(journal.path()).unwrap().len(), JOURNAL_BYTES);
        push(&mut journal, &records());
        journal.write(true).unwrap();
        let end = journal.written();
        journal.enqueue(3, None, b"torn");
        journal.write(false).unwrap();
        drop(journal);
        // The last record is cut short by a crash: its checksum fails and reading stops.
        let file = OpenOptions::new().write(true).open(dir.path().join(JOURNAL_FILE)).unwrap();
        file.write_all_at(&[0xff], end + HEADER as u64 + 20).unwrap();
        let (journal, read) = Journal::open(dir.path(), 5).unwrap();
        assert_eq!(read, records());
        assert_eq!(journal.written(), end, "the next write replaces the torn record");
        // Another epoch's records (left before a checkpoint) are not replayed.
        let (_, read) = Journal::open(dir.path(), 6).unwrap();
        assert!(read.is_empty());
    }

    #[test]
    fn a_restarted_journal_hides_the_older_records_behind_it() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = Journal::open(dir.path(), 1).unwrap();
        push(&mut journal, &records());
        journal.write(true).unwrap();
        journal.restart(2);
        journal.done(9, Outcome::Filtered);
        journal.write(true).unwrap();
        let (_, read) = Journal::open(dir.path(), 2).unwrap();
        assert_eq!(read, vec![Record::Done { seq: 9, outcome: Outcome::Filtered }]);
    }
}
