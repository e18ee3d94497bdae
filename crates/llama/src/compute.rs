//! One thread runs every multi-threaded llama.cpp evaluation of the process.
//!
//! ggml, built with OpenMP, runs an evaluation as a parallel region of the calling thread's OpenMP
//! team and synchronises its operations with OpenMP barriers. libgomp counts the threads of every
//! team in the process against the machine's CPUs; once they outnumber the CPUs it throttles the
//! spinning at barriers to a few hundred iterations, so the hundreds of barriers of one evaluation
//! sleep and wake in the kernel. Each engine has its own scheduler thread, hence its own team:
//! two engines of two threads on a two-core machine (a speculative pipeline's target and draft, or
//! any configuration with two local models) made Qwen2.5-Coder-1.5B decode at 0.7x of
//! `llama-bench` (23 against 30 tokens/s), while one engine alone kept pace. Running every
//! evaluation of an engine with several threads on this one thread keeps a single team of that
//! size. Engines with one thread have no team, and evaluate on their own scheduler thread.
//!
//! Evaluations of different engines are serialised here; on a CPU they would share the same cores
//! anyway.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{channel, sync_channel, Sender};
use std::sync::{Mutex, OnceLock};
use std::thread;

type Job = Box<dyn FnOnce() + Send + 'static>;

fn jobs() -> &'static Mutex<Sender<Job>> {
    static JOBS: OnceLock<Mutex<Sender<Job>>> = OnceLock::new();
    JOBS.get_or_init(|| {
        let (sender, receiver) = channel::<Job>();
        thread::Builder::new()
            .name("llama-compute".into())
            .spawn(move || {
                for job in receiver {
                    // A panicking job drops its reply sender, which its caller sees.
                    let _ = catch_unwind(AssertUnwindSafe(job));
                }
            })
            .expect("cannot start the llama.cpp compute thread");
        Mutex::new(sender)
    })
}

/// Runs `f` on the compute thread and returns its result; `None` when it panicked there.
pub(crate) fn run<R: Send>(f: impl FnOnce() -> R + Send) -> Option<R> {
    let (reply, answer) = sync_channel(1);
    let job: Box<dyn FnOnce() + Send + '_> = Box::new(move || {
        let _ = reply.send(f());
    });
    // SAFETY: the job may borrow from this stack frame, which outlives it: this function returns
    // only once the job has sent its result or has been dropped (unwinding or unsent), since
    // either drops `reply` and ends the wait below. Nothing in the job touches a borrow after
    // sending.
    let job: Job = unsafe { std::mem::transmute::<Box<dyn FnOnce() + Send + '_>, Job>(job) };
    if jobs()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .send(job)
        .is_err()
    {
        return None;
    }
    answer.recv().ok()
}

/// Makes a value that is used by one thread at a time sendable to the compute thread.
pub(crate) struct Exclusive<T>(pub T);

// SAFETY: llama.cpp contexts and batches may be used from any thread as long as no two threads use
// them at once; `run` blocks the owner while the compute thread uses them.
unsafe impl<T> Send for Exclusive<T> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_borrow_from_the_caller_and_panics_are_contained() {
        let mut total = 0;
        let values = [1, 2, 3];
        let sum = run(|| {
            total += values.iter().sum::<i32>();
            total
        });
        assert_eq!(sum, Some(6));
        assert_eq!(total, 6);
        let name = run(|| thread::current().name().map(str::to_string)).flatten();
        assert_eq!(name.as_deref(), Some("llama-compute"));
        assert_eq!(run(|| -> i32 { panic!("in a job") }), None);
        // The thread survives a panicking job.
        assert_eq!(run(|| 7), Some(7));
    }
}
