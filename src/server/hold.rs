//! One connection's hold on what the server shares, which is the handle
//! its upload pipeline gets ([`upload::Handle`]): memory from the budget,
//! made room for by evicting the upload furthest behind the minimum rate,
//! a turn at the decode gate (its wait counted in the metrics), and leave
//! to file, which a stop withdraws.

use super::Shared;
use super::upload;
use crate::budget::{Reservation, Turn};
use crate::config::EVICTION_WAIT;
use crate::sandbox::Memory;
use std::time::Instant;

/// One connection's hold on the server, which its upload pipeline asks
/// for memory and leave to file: memory is reserved at once if it fits,
/// else by evicting the upload furthest behind the minimum rate, if one
/// is, and waiting up to [`EVICTION_WAIT`] for memory to be given back.
pub(super) struct Hold<'a> {
    shared: &'a Shared,
    id: u64,
}

impl<'a> Hold<'a> {
    /// Connection `id`'s hold.
    pub(super) fn new(shared: &'a Shared, id: u64) -> Hold<'a> {
        Hold { shared, id }
    }
}

impl Memory for Hold<'_> {
    fn limit(&self) -> u64 {
        self.shared.guards.budget.limit()
    }

    fn reserve(&self, bytes: u64) -> Option<Reservation<'_>> {
        let budget = &self.shared.guards.budget;
        budget.try_reserve(bytes).or_else(|| {
            self.shared.conns.evict_for_memory(self.id);
            budget.reserve_within(bytes, EVICTION_WAIT)
        })
    }

    fn grow(&self, memory: &mut Reservation<'_>, more: u64) -> bool {
        memory.try_grow(more) || {
            self.shared.conns.evict_for_memory(self.id);
            memory.grow_within(more, EVICTION_WAIT)
        }
    }

    /// A turn at the gate; the wait for one is counted in the metrics.
    fn turn(&self, peak: u64) -> Option<Turn<'_>> {
        let asked = Instant::now();
        let turn = self.shared.guards.gate.enter_if_large(peak);
        if turn.is_some() {
            self.shared.metrics.decode_waited(asked.elapsed());
        }
        turn
    }
}

impl upload::Handle for Hold<'_> {
    fn begin_filing(&self) -> bool {
        self.shared.conns.begin_filing(self.id)
    }
}
