//! Running one function over a list of items on several threads while
//! handing the results back in the list's order: each result as soon as it
//! and every one before it are done, so output streams as it is made and
//! reads the same whatever the number of threads.
//!
//! Workers take items in order and may run at most [`WINDOW_PER_JOB`] items
//! per thread ahead of the first result not yet handed back, so a slow item
//! holds back a bounded number of finished ones, not the rest of the list.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError, mpsc};
use std::thread;

/// How many items per thread the workers may run ahead of the first result
/// not yet handed back: enough that a slow item does not idle the others.
const WINDOW_PER_JOB: usize = 16;

/// Runs `work` on each of `items` on up to `jobs` threads, and calls `emit`
/// with each item and its result in the order of `items`, each as soon as
/// the results of all items before it have been emitted. Once `emit` fails,
/// no new item is started; the threads finish the items they hold, and its
/// error is returned. With one job (or one item) everything runs on the
/// calling thread.
pub(super) fn ordered<T, R, E>(
    items: &[T],
    jobs: usize,
    work: impl Fn(&T) -> R + Sync,
    mut emit: impl FnMut(&T, R) -> Result<(), E>,
) -> Result<(), E>
where
    T: Sync,
    R: Send,
{
    let jobs = jobs.min(items.len());
    if jobs <= 1 {
        return items.iter().try_for_each(|item| emit(item, work(item)));
    }
    let window = jobs.saturating_mul(WINDOW_PER_JOB);
    let next = AtomicUsize::new(0);
    let progress = Progress {
        state: Mutex::new(State {
            emitted: 0,
            stopped: false,
        }),
        changed: Condvar::new(),
    };
    thread::scope(|scope| {
        let (results, received) = mpsc::channel();
        let mut started = 0;
        for _ in 0..jobs {
            let results = results.clone();
            let (next, progress, work) = (&next, &progress, &work);
            let worker = move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    if !progress.wait_for_room(i, window) {
                        break;
                    }
                    if results.send((i, work(item))).is_err() {
                        break;
                    }
                }
            };
            // A thread that cannot be started leaves its share to the others.
            if thread::Builder::new().spawn_scoped(scope, worker).is_ok() {
                started += 1;
            }
        }
        drop(results);
        if started == 0 {
            return items.iter().try_for_each(|item| emit(item, work(item)));
        }
        let mut waiting = BTreeMap::new();
        let mut emitted = 0;
        let mut outcome = Ok(());
        'received: for (i, result) in received.iter() {
            waiting.insert(i, result);
            while let Some(result) = waiting.remove(&emitted) {
                if let Err(e) = emit(&items[emitted], result) {
                    outcome = Err(e);
                    break 'received;
                }
                emitted += 1;
            }
            progress.emitted(emitted);
        }
        progress.stop();
        // Workers still busy fail to send their result and stop.
        drop(received);
        outcome
    })
}

/// What the workers need to know of the emitting thread.
struct Progress {
    state: Mutex<State>,
    /// Signalled when `state` changes.
    changed: Condvar,
}

struct State {
    /// Results emitted so far: the items before this index.
    emitted: usize,
    /// No new item is to be started.
    stopped: bool,
}

impl Progress {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until item `i` is within `window` of the first result not yet
    /// emitted; false if the work was stopped instead. The item being
    /// waited for is always within the window, so this cannot wait on
    /// itself.
    fn wait_for_room(&self, i: usize, window: usize) -> bool {
        let state = self
            .changed
            .wait_while(self.lock(), |s| {
                !s.stopped && i >= s.emitted.saturating_add(window)
            })
            .unwrap_or_else(PoisonError::into_inner);
        !state.stopped
    }

    fn emitted(&self, emitted: usize) {
        let mut state = self.lock();
        if state.emitted != emitted {
            state.emitted = emitted;
            drop(state);
            self.changed.notify_all();
        }
    }

    fn stop(&self) {
        self.lock().stopped = true;
        self.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::time::{Duration, Instant};

    #[test]
    fn results_come_in_input_order_whatever_the_jobs() {
        let items: Vec<u64> = (0..500).collect();
        for jobs in [1, 2, 3, 8, 1000] {
            let mut seen = Vec::new();
            let result: Result<(), ()> = ordered(
                &items,
                jobs,
                |&n| {
                    // Later items finish first now and then.
                    if n % 7 == 0 {
                        thread::sleep(Duration::from_millis(1));
                    }
                    n * 2
                },
                |&n, doubled| {
                    seen.push((n, doubled));
                    Ok(())
                },
            );
            assert_eq!(result, Ok(()));
            let want: Vec<_> = items.iter().map(|&n| (n, n * 2)).collect();
            assert_eq!(seen, want, "{jobs} jobs");
        }
    }

    #[test]
    fn results_stream_before_the_last_item_is_done() {
        // The last item finishes only once the first has been emitted, or
        // gives up after a while: if results were held back to the end, it
        // would give up and report that.
        let items: Vec<usize> = (0..4).collect();
        let first_out = AtomicBool::new(false);
        let mut seen = Vec::new();
        let result: Result<(), ()> = ordered(
            &items,
            2,
            |&i| {
                let deadline = Instant::now() + Duration::from_secs(10);
                while i == 3 && !first_out.load(Ordering::SeqCst) {
                    if Instant::now() > deadline {
                        return usize::MAX;
                    }
                    thread::sleep(Duration::from_millis(1));
                }
                i
            },
            |_, i| {
                first_out.store(true, Ordering::SeqCst);
                seen.push(i);
                Ok(())
            },
        );
        assert_eq!(result, Ok(()));
        assert_eq!(seen, [0, 1, 2, 3]);
    }

    #[test]
    fn a_failing_emit_stops_the_work_and_returns_its_error() {
        let items: Vec<usize> = (0..10_000).collect();
        let done = AtomicUsize::new(0);
        let mut emitted = 0;
        let result = ordered(
            &items,
            4,
            |&i| {
                done.fetch_add(1, Ordering::SeqCst);
                i
            },
            |_, i| {
                emitted += 1;
                if i == 5 { Err("closed") } else { Ok(()) }
            },
        );
        assert_eq!(result, Err("closed"));
        assert_eq!(emitted, 6);
        // The window keeps the workers close behind the failure.
        let ran = done.load(Ordering::SeqCst);
        assert!(ran <= 6 + 4 * WINDOW_PER_JOB + 4, "{ran} items ran");
    }

    #[test]
    fn workers_stay_within_the_window_of_a_slow_item() {
        let items: Vec<usize> = (0..1000).collect();
        let jobs = 2;
        let release = AtomicBool::new(false);
        let ahead = AtomicUsize::new(0);
        let result: Result<(), ()> = ordered(
            &items,
            jobs,
            |&i| {
                if i == 0 {
                    // Hold the first item until the others have had time to
                    // run as far ahead as they are allowed.
                    for _ in 0..2000 {
                        if ahead.load(Ordering::SeqCst) + 1 >= jobs * WINDOW_PER_JOB {
                            break;
                        }
                        thread::sleep(Duration::from_millis(1));
                    }
                    thread::sleep(Duration::from_millis(20));
                    release.store(true, Ordering::SeqCst);
                } else if !release.load(Ordering::SeqCst) {
                    ahead.fetch_add(1, Ordering::SeqCst);
                }
                i
            },
            |_, _| Ok(()),
        );
        assert_eq!(result, Ok(()));
        assert_eq!(ahead.load(Ordering::SeqCst), jobs * WINDOW_PER_JOB - 1);
    }
}
