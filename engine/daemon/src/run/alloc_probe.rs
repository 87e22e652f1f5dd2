//! Marks the stretches of a hot role's loop (intake, builder, merger: drain, core, publish,
//! housekeeping) so a test's counting allocator can tell their allocations from everything
//! else on the same executor thread (the journal, glommio's own tasks while a role parks).
//!
//! One thread-local flag, const-initialised and without a destructor, so reading it from
//! inside a global allocator neither allocates nor registers anything.

use std::cell::Cell;

thread_local! {
    static HOT: Cell<bool> = const { Cell::new(false) };
}

/// The calling thread is running a hot role's loop body.
#[inline]
pub fn is_hot() -> bool {
    HOT.with(Cell::get)
}

/// Called at the top of each loop iteration of a hot role.
#[inline]
pub fn enter() {
    HOT.with(|h| h.set(true));
}

/// Called before the role yields to the executor (idle perform) and when it leaves its loop.
#[inline]
pub fn leave() {
    HOT.with(|h| h.set(false));
}
