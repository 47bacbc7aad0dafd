//! The one thread pool: one function over a list of items on several
//! threads, each result handed back on the calling thread, either in the
//! list's order or as each is done. In the list's order, each result is
//! handed back as soon as it and every one before it are done, so output
//! streams as it is made and reads the same whatever the number of
//! threads. `classify -j N` and the gallery's thumbnails take results in
//! order; `send` takes them as they come, each worker keeping its
//! connection from one item to the next.
//!
//! Workers take items in order and may run at most [`WINDOW_PER_JOB`] items
//! per thread ahead of the first result not yet handed back, so a slow item
//! holds back a bounded number of finished ones, not the rest of the list.
//! A job that panics stops the others and the panic goes on in the calling
//! thread, once every worker has stopped.
//!
//! A leaf: imports nothing of the crate.

use std::any::Any;
use std::collections::BTreeMap;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError, mpsc};
use std::thread;

/// How many items per thread the workers may run ahead of the first result
/// not yet handed back: enough that a slow item does not idle the others.
const WINDOW_PER_JOB: usize = 16;

/// The order in which [`run`] hands results back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// In the order of the items.
    Items,
    /// As each is done.
    Done,
}

/// Runs `work` on each of `items` on up to `jobs` threads, and calls `emit`
/// with each item and its result, in the order of `items`: each as soon as
/// the results of all items before it have been emitted. Once `emit`
/// fails, no new item is started; the threads finish the items they hold,
/// and its error is returned. With one job (or one item) everything runs
/// on the calling thread.
pub fn ordered<T, R, E>(
    items: &[T],
    jobs: usize,
    work: impl Fn(&T) -> R + Sync,
    emit: impl FnMut(&T, R) -> Result<(), E>,
) -> Result<(), E>
where
    T: Sync,
    R: Send,
{
    run(
        items,
        jobs,
        Order::Items,
        |_| (),
        |(), item| work(item),
        emit,
    )
}

/// Runs `work` on each of `items` on up to `jobs` threads, and calls `emit`
/// on the calling thread with each item and its result, in `order`. Each
/// worker has a state of its own, which `state` makes from the worker's
/// number, from 0, and which `work` is given with every item that worker
/// runs. Once `emit` fails, no new item is started; the threads finish the
/// items they hold, and its error is returned. With one job (or one item),
/// or if no thread can be started, everything runs on the calling thread,
/// as worker 0 in the first case and as one more worker in the second.
///
/// Every item is worked on exactly once, unless `emit` fails or a job
/// panics: then the items not yet started are left. A panic in `work`
/// stops the other workers and, once they have stopped, goes on in the
/// calling thread.
pub fn run<T, S, R, E>(
    items: &[T],
    jobs: usize,
    order: Order,
    mut state: impl FnMut(usize) -> S,
    work: impl Fn(&mut S, &T) -> R + Sync,
    mut emit: impl FnMut(&T, R) -> Result<(), E>,
) -> Result<(), E>
where
    T: Sync,
    S: Send,
    R: Send,
{
    let jobs = jobs.min(items.len());
    if jobs <= 1 {
        let mut state = state(0);
        return items
            .iter()
            .try_for_each(|item| emit(item, work(&mut state, item)));
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
    let mut panicked = None;
    let outcome = thread::scope(|scope| {
        let (results, received) = mpsc::channel::<(usize, Result<R, Panic>)>();
        let mut started = 0;
        for worker in 0..jobs {
            let results = results.clone();
            let (next, progress, work) = (&next, &progress, &work);
            let mut state = state(worker);
            let worker = move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    if !progress.wait_for_room(i, window) {
                        break;
                    }
                    let result = panic::catch_unwind(AssertUnwindSafe(|| work(&mut state, item)));
                    let failed = result.is_err();
                    if results.send((i, result)).is_err() || failed {
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
            let mut state = state(jobs);
            return items
                .iter()
                .try_for_each(|item| emit(item, work(&mut state, item)));
        }
        // However this thread leaves, by an error or a panic in `emit`,
        // the workers must not wait for room that will never come.
        let _stop = StopOnDrop(&progress);
        let mut waiting = BTreeMap::new();
        let mut emitted = 0;
        'received: for (i, result) in received.iter() {
            let result = match result {
                Ok(result) => result,
                Err(panic) => {
                    panicked = Some(panic);
                    break 'received;
                }
            };
            match order {
                Order::Done => {
                    emit(&items[i], result)?;
                    emitted += 1;
                }
                Order::Items => {
                    waiting.insert(i, result);
                    while let Some(result) = waiting.remove(&emitted) {
                        emit(&items[emitted], result)?;
                        emitted += 1;
                    }
                }
            }
            progress.emitted(emitted);
        }
        Ok(())
    });
    if let Some(panic) = panicked {
        panic::resume_unwind(panic);
    }
    outcome
}

/// What a panicking job left.
type Panic = Box<dyn Any + Send + 'static>;

/// What the workers need to know of the emitting thread.
struct Progress {
    state: Mutex<State>,
    /// Signalled when `state` changes.
    changed: Condvar,
}

struct State {
    /// Results emitted so far: in [`Order::Items`], the items before this
    /// index.
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
    /// itself. In [`Order::Done`], a worker waits only while the emitting
    /// thread is that far behind the results already sent.
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

/// Stops the workers when the emitting thread leaves.
struct StopOnDrop<'a>(&'a Progress);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::time::{Duration, Instant};

    const JOBS: [usize; 6] = [0, 1, 2, 3, 8, 1000];

    #[test]
    fn every_item_runs_once_and_is_emitted_once() {
        let items: Vec<usize> = (0..300).collect();
        for order in [Order::Items, Order::Done] {
            for jobs in JOBS {
                let runs: Vec<AtomicUsize> = items.iter().map(|_| AtomicUsize::new(0)).collect();
                let mut emitted = vec![0; items.len()];
                let result: Result<(), ()> = run(
                    &items,
                    jobs,
                    order,
                    |_| (),
                    |(), &i| {
                        runs[i].fetch_add(1, Ordering::SeqCst);
                        i * 3
                    },
                    |&i, tripled| {
                        assert_eq!(tripled, i * 3, "each result comes with its item");
                        emitted[i] += 1;
                        Ok(())
                    },
                );
                assert_eq!(result, Ok(()));
                let runs: Vec<usize> = runs.iter().map(|n| n.load(Ordering::SeqCst)).collect();
                assert_eq!(runs, vec![1; items.len()], "{order:?}, {jobs} jobs: runs");
                assert_eq!(
                    emitted,
                    vec![1; items.len()],
                    "{order:?}, {jobs} jobs: emits"
                );
            }
        }
    }

    #[test]
    fn no_items_is_no_work() {
        for order in [Order::Items, Order::Done] {
            for jobs in JOBS {
                let mut states = 0;
                let result: Result<(), ()> = run(
                    &[] as &[u8],
                    jobs,
                    order,
                    |_| states += 1,
                    |(), _| unreachable!("no item"),
                    |_, ()| unreachable!("no result"),
                );
                assert_eq!(result, Ok(()));
                assert!(states <= 1, "{order:?}, {jobs} jobs: {states} states");
            }
        }
    }

    #[test]
    fn one_job_runs_on_the_calling_thread_as_worker_0() {
        let caller = thread::current().id();
        let items: Vec<usize> = (0..20).collect();
        for order in [Order::Items, Order::Done] {
            let mut made = Vec::new();
            let mut seen = Vec::new();
            let result: Result<(), ()> = run(
                &items,
                1,
                order,
                |worker| {
                    made.push(worker);
                    0
                },
                |count, &i| {
                    assert_eq!(thread::current().id(), caller);
                    *count += 1;
                    (i, *count)
                },
                |_, r| {
                    seen.push(r);
                    Ok(())
                },
            );
            assert_eq!(result, Ok(()));
            assert_eq!(made, [0], "{order:?}: one state, worker 0's");
            let want: Vec<_> = items.iter().map(|&i| (i, i + 1)).collect();
            assert_eq!(seen, want, "{order:?}: in order, one state throughout");
        }
    }

    #[test]
    fn each_worker_keeps_its_own_state() {
        let items: Vec<usize> = (0..400).collect();
        for order in [Order::Items, Order::Done] {
            let mut made = Vec::new();
            let mut by_worker = BTreeMap::<usize, Vec<usize>>::new();
            let result: Result<(), ()> = run(
                &items,
                4,
                order,
                |worker| {
                    made.push(worker);
                    (worker, None)
                },
                |(worker, last), &i| {
                    // A worker takes items in increasing order, so its
                    // state sees them so.
                    assert!(last.is_none_or(|last| last < i), "{i} after {last:?}");
                    *last = Some(i);
                    (*worker, i)
                },
                |_, (worker, i)| {
                    by_worker.entry(worker).or_default().push(i);
                    Ok(())
                },
            );
            assert_eq!(result, Ok(()));
            assert_eq!(made, [0, 1, 2, 3], "{order:?}");
            let mut all: Vec<usize> = by_worker.values().flatten().copied().collect();
            all.sort_unstable();
            assert_eq!(all, items, "{order:?}");
            for (worker, seen) in &by_worker {
                assert!(seen.is_sorted(), "{order:?}: worker {worker} ran {seen:?}");
            }
        }
    }

    #[test]
    fn failing_jobs_are_emitted_with_their_items() {
        let items: Vec<u32> = (0..50).collect();
        for jobs in JOBS {
            let mut seen = Vec::new();
            let result: Result<(), ()> = ordered(
                &items,
                jobs,
                |&n| if n % 3 == 0 { Err(n) } else { Ok(n) },
                |&n, r| {
                    seen.push((n, r));
                    Ok(())
                },
            );
            assert_eq!(result, Ok(()));
            let want: Vec<_> = items
                .iter()
                .map(|&n| (n, if n % 3 == 0 { Err(n) } else { Ok(n) }))
                .collect();
            assert_eq!(seen, want, "{jobs} jobs");
        }
    }

    #[test]
    fn a_panicking_job_panics_the_caller_once_the_workers_stop() {
        for order in [Order::Items, Order::Done] {
            for jobs in [1, 2, 4] {
                let (tx, rx) = mpsc::channel();
                // On a thread of its own, so that a hang is a failure with
                // a deadline, not a stuck test run.
                let caller = thread::spawn(move || {
                    let items: Vec<usize> = (0..1000).collect();
                    let ran = AtomicUsize::new(0);
                    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
                        run(
                            &items,
                            jobs,
                            order,
                            |_| (),
                            |(), &i| {
                                ran.fetch_add(1, Ordering::SeqCst);
                                if i == 10 {
                                    panic!("job {i} failed");
                                }
                                i
                            },
                            |_, _| Ok::<(), ()>(()),
                        )
                    }));
                    let message = match outcome {
                        Ok(result) => format!("returned {result:?}"),
                        Err(panic) => panic
                            .downcast_ref::<String>()
                            .cloned()
                            .unwrap_or_else(|| "a panic without a message".into()),
                    };
                    let _ = tx.send((message, ran.load(Ordering::SeqCst)));
                });
                let (message, ran) = rx
                    .recv_timeout(Duration::from_secs(20))
                    .unwrap_or_else(|_| panic!("{order:?}, {jobs} jobs: no answer"));
                caller.join().unwrap();
                assert_eq!(message, "job 10 failed", "{order:?}, {jobs} jobs");
                // In the items' order, nothing after the panicking item is
                // emitted, so the window bounds what the others start.
                if order == Order::Items {
                    assert!(
                        ran <= 10 + jobs * WINDOW_PER_JOB,
                        "{jobs} jobs: {ran} items ran"
                    );
                }
            }
        }
    }

    #[test]
    fn a_panicking_emit_does_not_leave_the_workers_waiting() {
        let (tx, rx) = mpsc::channel();
        let caller = thread::spawn(move || {
            let items: Vec<usize> = (0..10_000).collect();
            let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
                ordered(
                    &items,
                    3,
                    |&i| i,
                    |_, i| {
                        assert!(i < 5, "emit gave up");
                        Ok::<(), ()>(())
                    },
                )
            }));
            let _ = tx.send(outcome.is_err());
        });
        assert_eq!(rx.recv_timeout(Duration::from_secs(20)), Ok(true));
        caller.join().unwrap();
    }

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
