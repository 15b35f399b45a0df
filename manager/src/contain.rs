//! Keeps a panic inside the unit of work that raised it. The long-lived
//! loops (health checks, runtime events, reconcile) run each app's work
//! through [`run`] / [`run_async`]: a panic there is caught, logged with the
//! app id, counted (`loop_panics_total` in `/metrics`), and the loop goes on
//! with the other apps.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::FutureExt;

/// Runs `f`; a panic becomes `None` (logged, counted in `panics`).
pub fn run<T>(panics: &AtomicU64, work: &str, app_id: &str, f: impl FnOnce() -> T) -> Option<T> {
    match std::panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => Some(v),
        Err(payload) => {
            report(panics, work, app_id, payload.as_ref());
            None
        }
    }
}

/// Awaits `fut`; a panic becomes `None` (logged, counted in `panics`).
pub async fn run_async<F: Future>(
    panics: &AtomicU64,
    work: &str,
    app_id: &str,
    fut: F,
) -> Option<F::Output> {
    match AssertUnwindSafe(fut).catch_unwind().await {
        Ok(v) => Some(v),
        Err(payload) => {
            report(panics, work, app_id, payload.as_ref());
            None
        }
    }
}

/// The text of a panic payload (`panic!("...")` carries a `&str` or a `String`).
pub fn message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

fn report(panics: &AtomicU64, work: &str, app_id: &str, payload: &(dyn Any + Send)) {
    record(panics, work, app_id, message(payload));
}

/// Logs and counts a panic caught elsewhere (a pure planner that caught
/// it reports its message).
pub fn record(panics: &AtomicU64, work: &str, app_id: &str, panic: &str) {
    panics.fetch_add(1, Ordering::Relaxed);
    tracing::error!(
        app_id,
        work,
        panic,
        "a panic was caught; this app's work is skipped, the loop goes on"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_are_caught_and_counted() {
        let n = AtomicU64::new(0);
        assert_eq!(run(&n, "test", "/a", || 7), Some(7));
        assert_eq!(n.load(Ordering::Relaxed), 0);
        let r: Option<()> = run(&n, "test", "/a", || panic!("boom"));
        assert_eq!(r, None);
        let r: Option<()> = run(&n, "test", "/a", || {
            let _ = std::time::Instant::now() + std::time::Duration::from_secs(u64::MAX);
        });
        assert_eq!(r, None);
        assert_eq!(n.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn async_panics_are_caught_and_counted() {
        let n = AtomicU64::new(0);
        assert_eq!(run_async(&n, "test", "/a", async { 7 }).await, Some(7));
        let r: Option<()> = run_async(&n, "test", "/a", async {
            tokio::task::yield_now().await;
            panic!("boom {}", 1)
        })
        .await;
        assert_eq!(r, None);
        assert_eq!(n.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn messages() {
        let p = std::panic::catch_unwind(|| panic!("plain")).unwrap_err();
        assert_eq!(message(p.as_ref()), "plain");
        let p = std::panic::catch_unwind(|| panic!("formatted {}", 2)).unwrap_err();
        assert_eq!(message(p.as_ref()), "formatted 2");
        let p = std::panic::catch_unwind(|| std::panic::panic_any(3u8)).unwrap_err();
        assert_eq!(message(p.as_ref()), "(no message)");
    }
}
