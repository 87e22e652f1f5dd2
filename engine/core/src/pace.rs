//! Cooperative pacing of long computations.
//!
//! A window's build is the one piece of work here that runs for milliseconds. On a CPU shared
//! with an intake, a build that does not pause holds the intake off its socket for as long as
//! it runs (`docs/runtime.md`, "Slices"). So the builders are written as `async fn`s that
//! call [`Pace::point`] between their phases and every few hundred steps inside the long
//! ones. The core stays sans-IO: what a point does is the caller's choice.
//! - [`Unpaced`] never pauses; [`run_unpaced`] completes such a computation in one poll
//!   (tests, the single-threaded engine, the simulator, benches).
//! - The daemon's pace yields to the executor once its time slice is used
//!   (`flashpointd::run::roles`), so the roles sharing the CPU run in between.
//!
//! A paused computation resumes exactly where it stopped: pacing never changes a result.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

/// Where a long computation may pause.
pub trait Pace {
    /// A point at which the computation may be suspended for a while.
    fn point(&mut self) -> impl Future<Output = ()>;
}

/// Never pauses.
#[derive(Debug, Default, Clone, Copy)]
pub struct Unpaced;

impl Pace for Unpaced {
    #[inline]
    fn point(&mut self) -> impl Future<Output = ()> {
        std::future::ready(())
    }
}

/// Completes a computation paced by [`Unpaced`] (it never returns `Pending`).
pub fn run_unpaced<T>(f: impl Future<Output = T>) -> T {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => unreachable!("an unpaced computation never suspends"),
    }
}

/// Suspends once at every point (and wakes itself): for tests and simulations of the paced
/// path, driven by [`run_to_completion`].
#[derive(Debug, Default, Clone, Copy)]
pub struct EveryPoint {
    /// Points passed.
    pub points: u64,
}

impl Pace for EveryPoint {
    async fn point(&mut self) {
        self.points += 1;
        yield_once().await
    }
}

/// Suspends once, waking itself, then completes: one turn back to whoever polls (a driver
/// loop polling its tasks in turn, or an executor).
pub async fn yield_once() {
    let mut suspended = false;
    std::future::poll_fn(|cx| {
        if suspended {
            Poll::Ready(())
        } else {
            suspended = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

/// Polls `f` until it completes (a busy loop with a no-op waker: for computations that only
/// suspend at [`Pace`] points, such as those paced by [`EveryPoint`]).
pub fn run_to_completion<T>(f: impl Future<Output = T>) -> T {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

/// Steps between two pace points inside the long loops (local search, exact search):
/// a few tens of microseconds of work on the dev VM.
pub(crate) const STEPS_PER_POINT: u64 = 256;

#[cfg(test)]
mod tests {
    use super::*;

    async fn work(p: &mut impl Pace) -> u32 {
        let mut n = 0;
        for _ in 0..3 {
            p.point().await;
            n += 1;
        }
        n
    }

    #[test]
    fn unpaced_completes_in_one_poll_and_every_point_suspends_at_each() {
        assert_eq!(run_unpaced(work(&mut Unpaced)), 3);
        let mut pace = EveryPoint::default();
        {
            let mut f = pin!(work(&mut pace));
            let mut cx = Context::from_waker(Waker::noop());
            let mut polls = 1;
            while f.as_mut().poll(&mut cx).is_pending() {
                polls += 1;
            }
            assert_eq!(polls, 4);
        }
        assert_eq!(run_to_completion(work(&mut pace)), 3);
        assert_eq!(pace.points, 6);
    }
}
