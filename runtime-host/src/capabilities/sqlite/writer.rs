//! One writer at a time per database file, in arrival order, and a WAL
//! that stays bounded under load.
//!
//! SQLite lets one connection write at a time; the others wait in its busy
//! handler, which sleeps and polls (1, 2, 5 … 100 ms steps). Under load the
//! lock is free most of the time it is being slept on, and a waiter can
//! lose every race for a second: that was the 1 s tail of `POST
//! /api/orders`. Here a connection takes the database's [`WriteGate`] (a
//! fair mutex: released, it passes straight to the longest waiter) before
//! it starts writing (a `BEGIN`, or a write outside a transaction) and
//! releases it the moment its transaction ends. Readers never take it (WAL
//! readers do not block writers).
//!
//! Under a steady stream of overlapping readers SQLite's automatic (passive)
//! checkpoint never finds a moment with no reader, so the WAL only grows
//! (230 MB after a minute of orders). Every [`CHECKPOINT_EVERY`] write
//! transactions the writer, still holding the gate, runs a `RESTART`
//! checkpoint: it waits (up to the busy timeout) for the readers of older
//! snapshots to finish, copies everything back and lets the next writer
//! start the WAL from the beginning; `journal_size_limit` then truncates
//! the file.

use parking_lot::{ArcMutexGuard, FairMutex, RawFairMutex};
use std::sync::Arc;
use std::time::Duration;

/// Write transactions between two `RESTART` checkpoints.
pub const CHECKPOINT_EVERY: u64 = 512;

/// The WAL file is truncated to this size after it restarts.
pub const WAL_SIZE_LIMIT_BYTES: i64 = 16 << 20;

/// How long a writer waits for its turn before giving up, like SQLite's
/// busy timeout it replaces.
pub const WRITE_WAIT: Duration = Duration::from_secs(5);

/// The right to write one database file; it guards the count of write
/// transactions so far.
#[derive(Default)]
pub struct WriteGate(Arc<FairMutex<u64>>);

/// Held while a connection writes; passes the gate on when dropped.
pub struct WritePermit(ArcMutexGuard<RawFairMutex, u64>);

impl WriteGate {
    /// Waits up to `patience` for the gate. `None` if it did not come.
    pub fn acquire(&self, patience: Duration) -> Option<WritePermit> {
        self.0.try_lock_arc_for(patience).map(WritePermit)
    }
}

impl WritePermit {
    /// Counts a finished write transaction; true when this one should be
    /// followed by a `RESTART` checkpoint (see the module docs).
    pub fn finished_transaction(&mut self) -> bool {
        *self.0 += 1;
        (*self.0).is_multiple_of(CHECKPOINT_EVERY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn one_writer_at_a_time_and_waiters_get_their_turn() {
        let gate = Arc::new(WriteGate::default());
        let first = gate.acquire(WRITE_WAIT).expect("free gate");
        let (done_tx, done_rx) = mpsc::channel();
        let waiters: Vec<_> = (0..4)
            .map(|n| {
                let gate = gate.clone();
                let done_tx = done_tx.clone();
                std::thread::spawn(move || {
                    let _permit = gate.acquire(WRITE_WAIT).expect("turn comes");
                    done_tx.send(n).unwrap();
                })
            })
            .collect();
        assert!(gate.acquire(Duration::from_millis(1)).is_none());
        assert!(done_rx.try_recv().is_err(), "nobody writes while held");
        drop(first);
        for w in waiters {
            w.join().unwrap();
        }
        assert_eq!(done_rx.try_iter().count(), 4);
        assert!(gate.acquire(Duration::ZERO).is_some(), "free again");
    }

    #[test]
    fn every_nth_transaction_asks_for_a_checkpoint() {
        let gate = WriteGate::default();
        let mut permit = gate.acquire(WRITE_WAIT).unwrap();
        let asks = (0..CHECKPOINT_EVERY * 2)
            .filter(|_| permit.finished_transaction())
            .count();
        assert_eq!(asks, 2);
    }
}
