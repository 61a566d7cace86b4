//! The thread pool every call runs on, the GIL released around compute, and Ctrl-C.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::prelude::*;
use rayon::ThreadPool;

use crate::errors::invalid;

/// The pool of `set_num_threads`; `None`: rayon's global pool (all cores, or
/// `RAYON_NUM_THREADS`).
static POOL: Mutex<Option<Arc<ThreadPool>>> = Mutex::new(None);

fn pool() -> Option<Arc<ThreadPool>> {
    match POOL.lock() {
        Ok(p) => p.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

/// Runs `f` with the GIL released, on Prism's thread pool.
pub fn compute<R: Send>(py: Python<'_>, f: impl FnOnce() -> R + Send) -> R {
    let pool = pool();
    py.detach(move || match pool {
        Some(p) => p.install(f),
        None => f(),
    })
}

/// Raises `KeyboardInterrupt` (or whatever a signal handler raised) if Ctrl-C was pressed
/// since the last check. Call between batches, with the GIL held.
pub fn check_signals(py: Python<'_>) -> PyResult<()> {
    py.check_signals()
}

/// Sets the number of threads Prism computes on (`None` or 0: all cores).
#[pyfunction]
#[pyo3(signature = (n=None))]
fn set_num_threads(n: Option<usize>) -> PyResult<()> {
    let new = match n {
        None | Some(0) => None,
        Some(n) => Some(Arc::new(
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .thread_name(|i| format!("prism-{i}"))
                .build()
                .map_err(|e| invalid(format!("cannot start {n} threads: {e}")))?,
        )),
    };
    match POOL.lock() {
        Ok(mut p) => *p = new,
        Err(poisoned) => *poisoned.into_inner() = new,
    }
    Ok(())
}

/// The number of threads Prism computes on.
#[pyfunction]
fn get_num_threads() -> usize {
    match pool() {
        Some(p) => p.current_num_threads(),
        None => rayon::current_num_threads(),
    }
}

/// Runs `f` on a helper thread (GIL released, on Prism's pool) while this thread looks for
/// Ctrl-C every 10 ms. On Ctrl-C, `stop` is set (the job stops at its next
/// checkpoint) and the `KeyboardInterrupt` is returned with `f`'s result once `f` ends.
pub fn watch_signals<R: Send>(
    py: Python<'_>,
    stop: &AtomicBool,
    f: impl FnOnce() -> R + Send,
) -> (R, Option<PyErr>) {
    std::thread::scope(|s| {
        let worker = s.spawn(move || Python::attach(|py| compute(py, f)));
        let mut interrupt = None;
        while !worker.is_finished() {
            py.detach(|| std::thread::sleep(Duration::from_millis(10)));
            if interrupt.is_none() {
                if let Err(e) = check_signals(py) {
                    stop.store(true, Ordering::SeqCst);
                    interrupt = Some(e);
                }
            }
        }
        match py.detach(|| worker.join()) {
            Ok(r) => (r, interrupt),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(get_num_threads, m)?)?;
    Ok(())
}
