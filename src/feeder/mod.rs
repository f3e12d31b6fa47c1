//! Feeders: the records a scenario's templates read (`{{user.id}}`), streamed from a
//! file (`read.rs`) through a bounded buffer, as Gatling's batch mode does — a 10 GB
//! file costs the buffer, never its size.
//!
//! - `sequential`: in file order, wrapping at the end;
//! - `queue`: in file order, once through;
//! - `unique`: once through, and with `--shard i/n` each record to exactly one shard
//!   (record k, counting every row of the file, to shard k mod n) — exactly once across
//!   the fleet;
//! - `shuffle`: a batch of `buffer` records shuffled and served in turn, then the next
//!   batch (a file that fits the buffer is shuffled whole, again each time round);
//! - `random`: each draw any record of the current batch; the batch is replaced by the
//!   next once it has served as many draws as it holds.
//!
//! A record handed to an iteration counts as used whether or not its request succeeds
//! (at-most-once). A reader thread per pass parses ahead into a channel of `buffer`
//! records; a draw never blocks: when the reader has fallen behind, the draw has no
//! record (counted) and the iteration's template fails to render.

pub mod read;

use parking_lot::Mutex;
use rand::seq::SliceRandom;
use rand::Rng;
use read::{Format, Item, RowError};
use serde_json::Value as Json;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, TryRecvError};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    Random,
    Shuffle,
    Sequential,
    Queue,
    Unique,
}

impl Pick {
    /// Once through the file (then `on_exhausted`).
    pub fn once(self) -> bool {
        matches!(self, Pick::Queue | Pick::Unique)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnExhausted {
    /// The scenario ends and says so.
    Stop,
    /// From the start of the file again.
    Recycle,
}

/// A feeder as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct FeederSpec {
    pub name: String,
    pub path: PathBuf,
    pub format: Format,
    pub gz: bool,
    pub pick: Pick,
    /// Records parsed ahead, and the batch `random` and `shuffle` draw within.
    pub buffer: usize,
    pub on_exhausted: OnExhausted,
    /// This process's shard and the fleet's size (`--shard i/n`; 0 and 1 alone).
    pub shard: u64,
    pub shards: u64,
}

/// What a feeder has done.
#[derive(Debug, Default)]
pub struct Counts {
    /// Records handed to iterations.
    pub used: AtomicU64,
    /// Rows that did not read (each pass counts them again).
    pub bad: AtomicU64,
    /// Draws that found no record ready (the reader behind).
    pub not_ready: AtomicU64,
    /// Passes started.
    pub passes: AtomicU64,
    /// Records the readers have handed over (into the channel).
    pub parsed: AtomicU64,
}

/// What a pass sends: the file's items, then, if the file broke off, why.
enum Msg {
    Item(Item),
    Broken(RowError),
}

struct State {
    rx: Receiver<Msg>,
    /// Records taken from the channel ahead of their draw (priming).
    ahead: VecDeque<Arc<Json>>,
    /// `random`/`shuffle`: the batch, where `shuffle` is in it, and the draws it served.
    batch: Vec<Arc<Json>>,
    next: usize,
    draws: usize,
    /// The whole file is in `batch`.
    fits: bool,
    /// Records this pass has given so far.
    pass_len: u64,
    exhausted: bool,
    /// Why the last pass broke off.
    error: Option<String>,
    /// The first few bad rows, with where they are.
    bad_rows: Vec<String>,
}

enum Next {
    Record(Arc<Json>),
    NotReady,
    PassEnded,
}

/// Bad rows kept with their place, for the status.
const BAD_ROWS_KEPT: usize = 10;

pub struct Feeder {
    pub spec: FeederSpec,
    pub counts: Arc<Counts>,
    state: Mutex<State>,
}

impl std::fmt::Debug for Feeder {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "Feeder({})", self.spec.name)
    }
}

impl Feeder {
    /// Opens the feeder and reads its first `buffer` records (waiting for them: this is
    /// config time, not the hot path).
    pub fn open(spec: FeederSpec) -> Feeder {
        let counts = Arc::new(Counts::default());
        let rx = pass(&spec, &counts);
        let mut st = State {
            rx,
            ahead: VecDeque::new(),
            batch: Vec::new(),
            next: 0,
            draws: 0,
            fits: false,
            pass_len: 0,
            exhausted: false,
            error: None,
            bad_rows: Vec::new(),
        };
        // Prime: block for the first batch (or the whole file, if smaller).
        while st.ahead.len() < spec.buffer.max(1) {
            match st.rx.recv() {
                Ok(Msg::Item(Item::Record(v))) => st.ahead.push_back(Arc::new(v)),
                Ok(Msg::Item(Item::Bad(e))) => note_bad(&mut st, &counts, e),
                Ok(Msg::Broken(e)) => st.error = Some(e.to_string()),
                Err(_) => break,
            }
        }
        Feeder {
            spec,
            counts,
            state: Mutex::new(st),
        }
    }

    /// The next record for an iteration; None when the feeder ran dry (`exhausted`),
    /// holds no record at all, or its reader has fallen behind.
    pub fn draw(&self) -> Option<Arc<Json>> {
        let mut st = self.state.lock();
        let got = match self.spec.pick {
            Pick::Sequential | Pick::Queue | Pick::Unique => self.in_order(&mut st),
            Pick::Shuffle | Pick::Random => self.batch_draw(&mut st),
        };
        match &got {
            Some(_) => self.counts.used.fetch_add(1, Ordering::Relaxed),
            None if !st.exhausted => self.counts.not_ready.fetch_add(1, Ordering::Relaxed),
            None => 0,
        };
        got
    }

    /// The feeder ran dry (`queue`/`unique` with `on_exhausted: stop`).
    pub fn exhausted(&self) -> bool {
        self.state.lock().exhausted
    }

    /// Why the last pass broke off, and the first bad rows.
    pub fn problems(&self) -> (Option<String>, Vec<String>) {
        let st = self.state.lock();
        (st.error.clone(), st.bad_rows.clone())
    }

    fn next(&self, st: &mut State) -> Next {
        if let Some(v) = st.ahead.pop_front() {
            st.pass_len += 1;
            return Next::Record(v);
        }
        loop {
            match st.rx.try_recv() {
                Ok(Msg::Item(Item::Record(v))) => {
                    st.pass_len += 1;
                    return Next::Record(Arc::new(v));
                }
                Ok(Msg::Item(Item::Bad(e))) => note_bad(st, &self.counts, e),
                Ok(Msg::Broken(e)) => st.error = Some(e.to_string()),
                Err(TryRecvError::Empty) => return Next::NotReady,
                Err(TryRecvError::Disconnected) => return Next::PassEnded,
            }
        }
    }

    /// Starts the next pass over the file; false when the pass that ended gave nothing
    /// (an empty file, or nothing for this shard): no point starting again.
    fn again(&self, st: &mut State) -> bool {
        if st.pass_len == 0 {
            return false;
        }
        st.rx = pass(&self.spec, &self.counts);
        st.pass_len = 0;
        true
    }

    fn in_order(&self, st: &mut State) -> Option<Arc<Json>> {
        if st.exhausted {
            return None;
        }
        for _ in 0..2 {
            match self.next(st) {
                Next::Record(v) => return Some(v),
                Next::NotReady => return None,
                Next::PassEnded => {
                    let wrap =
                        !self.spec.pick.once() || self.spec.on_exhausted == OnExhausted::Recycle;
                    if !wrap {
                        st.exhausted = true;
                        return None;
                    }
                    if !self.again(st) {
                        return None;
                    }
                }
            }
        }
        None
    }

    /// Fills the batch with up to `buffer` records; at the end of a pass that fitted
    /// whole, keeps it for good.
    fn refill(&self, st: &mut State) {
        if st.fits {
            return;
        }
        let first_pass = self.counts.passes.load(Ordering::Relaxed) == 1;
        let mut fresh: Vec<Arc<Json>> = Vec::with_capacity(self.spec.buffer.min(1 << 16));
        while fresh.len() < self.spec.buffer.max(1) {
            match self.next(st) {
                Next::Record(v) => fresh.push(v),
                Next::NotReady => break,
                Next::PassEnded => {
                    if first_pass && st.batch.is_empty() && st.pass_len <= self.spec.buffer as u64 {
                        st.fits = true;
                        break;
                    }
                    if !self.again(st) {
                        break;
                    }
                }
            }
        }
        if !fresh.is_empty() || st.fits {
            if st.fits {
                st.batch.extend(fresh);
            } else {
                st.batch = fresh;
            }
        }
        st.next = 0;
        st.draws = 0;
        if self.spec.pick == Pick::Shuffle {
            st.batch.shuffle(&mut rand::rng());
        }
    }

    fn batch_draw(&self, st: &mut State) -> Option<Arc<Json>> {
        let spent = match self.spec.pick {
            Pick::Shuffle => st.next >= st.batch.len(),
            _ => st.draws >= st.batch.len(),
        };
        if spent {
            if st.fits {
                st.next = 0;
                st.draws = 0;
                if self.spec.pick == Pick::Shuffle {
                    st.batch.shuffle(&mut rand::rng());
                }
            } else {
                self.refill(st);
            }
        }
        if st.batch.is_empty() {
            return None;
        }
        st.draws += 1;
        let i = match self.spec.pick {
            Pick::Shuffle => {
                st.next += 1;
                st.next - 1
            }
            _ => rand::rng().random_range(0..st.batch.len()),
        };
        st.batch.get(i).cloned()
    }
}

fn note_bad(st: &mut State, counts: &Counts, e: RowError) {
    counts.bad.fetch_add(1, Ordering::Relaxed);
    if st.bad_rows.len() < BAD_ROWS_KEPT {
        st.bad_rows.push(e.to_string());
    }
}

/// A pass over the file on a thread of its own, into a channel of `buffer` records;
/// with `unique`, only this shard's records. The thread ends with the file, or when the
/// feeder drops the channel.
fn pass(spec: &FeederSpec, counts: &Arc<Counts>) -> Receiver<Msg> {
    counts.passes.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = sync_channel::<Msg>(spec.buffer.max(1));
    let file = spec.path.clone();
    let spec = spec.clone();
    let counts = counts.clone();
    let thread = std::thread::Builder::new()
        .name(format!("feeder-{}", spec.name))
        .spawn(move || {
            let mut k: u64 = 0;
            let partition = spec.pick == Pick::Unique && spec.shards > 1;
            let r = read::stream(&spec.path, spec.format, spec.gz, |item| {
                let mine = !partition || k % spec.shards == spec.shard;
                k += 1;
                match item {
                    Item::Record(_) if !mine => true,
                    Item::Record(v) => {
                        let sent = tx.send(Msg::Item(Item::Record(v))).is_ok();
                        counts.parsed.fetch_add(1, Ordering::Relaxed);
                        sent
                    }
                    item => tx.send(Msg::Item(item)).is_ok(),
                }
            });
            if let Err(e) = r {
                let _ = tx.send(Msg::Broken(e));
            }
        });
    if let Err(e) = thread {
        // No thread: the pass ends at once, saying why.
        let (tx, rx) = sync_channel::<Msg>(1);
        let _ = tx.send(Msg::Broken(RowError {
            file,
            line: 0,
            column: 0,
            message: format!("cannot start the reader: {e}"),
        }));
        return rx;
    }
    rx
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn csv(dir: &std::path::Path, n: usize) -> PathBuf {
        let p = dir.join("rows.csv");
        let mut s = String::from("id\n");
        for i in 0..n {
            s.push_str(&format!("{i}\n"));
        }
        std::fs::write(&p, s).unwrap();
        p
    }

    fn spec(path: PathBuf, pick: Pick, buffer: usize) -> FeederSpec {
        FeederSpec {
            name: "rows".into(),
            path,
            format: Format::Csv,
            gz: false,
            pick,
            buffer,
            on_exhausted: OnExhausted::Stop,
            shard: 0,
            shards: 1,
        }
    }

    fn id(v: &Json) -> u64 {
        v["id"].as_str().unwrap().parse().unwrap()
    }

    /// Waits until the reader has handed over `n` records in all (a batch is what it
    /// has ready).
    fn delivered(f: &Feeder, n: u64) {
        for _ in 0..10_000 {
            if f.counts.parsed.load(Ordering::Relaxed) >= n {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// Draws until `n` records or `limit` attempts (a draw may find the reader behind).
    fn take(f: &Feeder, n: usize) -> Vec<u64> {
        let mut out = Vec::new();
        for _ in 0..n * 1000 {
            if out.len() == n || f.exhausted() {
                break;
            }
            match f.draw() {
                Some(v) => out.push(id(&v)),
                None => std::thread::sleep(std::time::Duration::from_micros(100)),
            }
        }
        out
    }

    #[test]
    fn a_queue_goes_once_through_in_order_then_runs_dry() {
        let dir = tempfile::tempdir().unwrap();
        let f = Feeder::open(spec(csv(dir.path(), 1000), Pick::Queue, 64));
        let got = take(&f, 2000);
        assert_eq!(got, (0..1000).collect::<Vec<u64>>());
        assert!(f.exhausted());
        assert_eq!(f.draw(), None);
        assert_eq!(f.counts.used.load(Ordering::Relaxed), 1000);
    }

    #[test]
    fn sequential_wraps_and_recycle_starts_a_queue_again() {
        let dir = tempfile::tempdir().unwrap();
        let f = Feeder::open(spec(csv(dir.path(), 10), Pick::Sequential, 4));
        let got = take(&f, 25);
        let want: Vec<u64> = (0..25).map(|i| i % 10).collect();
        assert_eq!(got, want);
        let mut s = spec(csv(dir.path(), 10), Pick::Queue, 4);
        s.on_exhausted = OnExhausted::Recycle;
        let f = Feeder::open(s);
        assert_eq!(take(&f, 12), want[..12].to_vec());
    }

    #[test]
    fn unique_gives_each_record_to_exactly_one_shard() {
        let dir = tempfile::tempdir().unwrap();
        let p = csv(dir.path(), 1000);
        let mut seen: Vec<u64> = Vec::new();
        for shard in 0..3 {
            let mut s = spec(p.clone(), Pick::Unique, 32);
            (s.shard, s.shards) = (shard, 3);
            let f = Feeder::open(s);
            let got = take(&f, 2000);
            assert!(f.exhausted());
            assert!(got.iter().all(|i| i % 3 == shard), "shard {shard}");
            seen.extend(got);
        }
        seen.sort_unstable();
        assert_eq!(
            seen,
            (0..1000).collect::<Vec<u64>>(),
            "every row exactly once"
        );
    }

    #[test]
    fn shuffle_serves_a_whole_batch_before_the_next_and_a_small_file_whole() {
        let dir = tempfile::tempdir().unwrap();
        // 100 rows in batches of 25: each 25 draws are one batch, a permutation of 25
        // consecutive rows.
        let f = Feeder::open(spec(csv(dir.path(), 100), Pick::Shuffle, 25));
        let mut got = Vec::new();
        for b in 0..4 {
            // A batch is what the reader has ready: let it fill the next.
            delivered(&f, (b + 1) * 25);
            got.extend(take(&f, 25));
        }
        for (b, chunk) in got.chunks(25).enumerate() {
            let mut c = chunk.to_vec();
            c.sort_unstable();
            assert_eq!(
                c,
                (b as u64 * 25..(b as u64 + 1) * 25).collect::<Vec<u64>>()
            );
        }
        assert_ne!(got, (0..100).collect::<Vec<u64>>(), "shuffled");
        // A file that fits: every round is the whole file.
        let f = Feeder::open(spec(csv(dir.path(), 10), Pick::Shuffle, 64));
        let got = take(&f, 30);
        for chunk in got.chunks(10) {
            let set: HashSet<u64> = chunk.iter().copied().collect();
            assert_eq!(set.len(), 10, "{got:?}");
        }
    }

    #[test]
    fn random_draws_within_the_batch_and_moves_on() {
        let dir = tempfile::tempdir().unwrap();
        let f = Feeder::open(spec(csv(dir.path(), 1000), Pick::Random, 50));
        let got = take(&f, 50);
        assert!(got.iter().all(|i| *i < 50), "the first batch: {got:?}");
        delivered(&f, 100);
        let next = take(&f, 50);
        assert!(
            next.iter().all(|i| (50..100).contains(i)),
            "the next: {next:?}"
        );
    }

    #[test]
    fn a_file_that_cannot_be_read_says_why_and_feeds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let f = Feeder::open(spec(dir.path().join("gone.csv"), Pick::Sequential, 8));
        assert_eq!(f.draw(), None);
        let (error, _) = f.problems();
        assert!(error.is_some_and(|e| e.contains("gone.csv")));
    }

    #[test]
    fn bad_rows_are_counted_with_where_they_are_and_the_rest_is_fed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("rows.csv");
        std::fs::write(&p, "id,name\n0,a\n1\n2,c\n").unwrap();
        let f = Feeder::open(spec(p, Pick::Queue, 8));
        assert_eq!(take(&f, 5), vec![0, 2]);
        assert_eq!(f.counts.bad.load(Ordering::Relaxed), 1);
        let (_, rows) = f.problems();
        assert!(rows[0].contains("rows.csv:3:2"), "{rows:?}");
    }
}
