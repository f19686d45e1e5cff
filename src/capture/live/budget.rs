//! The kernel buffer budget: each capture asks the kernel for its own ring, and 32 MiB times a
//! few hundred pod veths is more memory than a node should give a watcher. Interfaces attached
//! while the budget lasts get the per-interface size; later ones get what remains, never less
//! than a floor. Pure bookkeeping: `attach` asks and gives back, `netwatch interfaces` plans
//! with it.

use crate::capture::interfaces::{InterfaceInfo, Selection};

/// Smallest buffer an interface is given, whatever the budget: below it a short burst on one
/// pod (a few thousand full-size frames) drops.
pub const BUFFER_FLOOR: u32 = 2 << 20;
/// Default total over all captures: the per-interface default for 32 interfaces.
pub const DEFAULT_BUFFER_TOTAL: u64 = 1 << 30;

/// Kernel buffer bytes handed out to attached interfaces, against a total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BufferBudget {
    per_interface: u32,
    total: u64,
    in_use: u64,
}

/// What one interface gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub bytes: u32,
    /// Less than the per-interface size: the budget is (nearly) used up.
    pub shrunk: bool,
}

impl BufferBudget {
    #[must_use]
    pub fn new(per_interface: u32, total: u64) -> Self {
        Self { per_interface, total, in_use: 0 }
    }

    /// The buffer for a newly attached interface: the per-interface size while the budget
    /// allows, else what remains of it, but never below [`BUFFER_FLOOR`] (nor above the
    /// per-interface size, should that be smaller than the floor). Counted as in use until
    /// [`release`](Self::release).
    pub fn grant(&mut self) -> Grant {
        let remaining = self.total.saturating_sub(self.in_use);
        let floor = BUFFER_FLOOR.min(self.per_interface);
        let bytes = u32::try_from(remaining).unwrap_or(u32::MAX).clamp(floor, self.per_interface);
        self.in_use += u64::from(bytes);
        Grant { bytes, shrunk: bytes < self.per_interface }
    }

    /// Gives back a detached interface's buffer.
    pub fn release(&mut self, bytes: u32) {
        self.in_use = self.in_use.saturating_sub(u64::from(bytes));
    }

    /// Bytes granted and not yet released (above the total once floors were handed out).
    #[must_use]
    pub fn in_use(&self) -> u64 {
        self.in_use
    }

    #[must_use]
    pub fn total(&self) -> u64 {
        self.total
    }

    #[must_use]
    pub fn per_interface(&self) -> u32 {
        self.per_interface
    }
}

/// The buffer each interface of a survey gets when live capture starts: captured ones in the
/// survey's order (the order they are opened in), one shared buffer with `-i any`; `None` for
/// interfaces not captured.
#[must_use]
pub fn plan(
    survey: &[InterfaceInfo],
    selection: &Selection,
    mut budget: BufferBudget,
) -> Vec<Option<u32>> {
    let shared = (*selection == Selection::Any).then(|| budget.grant().bytes);
    survey
        .iter()
        .map(|info| match shared {
            _ if !info.captured => None,
            Some(bytes) => Some(bytes),
            None => Some(budget.grant().bytes),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::interfaces::InterfaceClass;

    fn info(name: &str, captured: bool) -> InterfaceInfo {
        InterfaceInfo {
            name: name.into(),
            ifindex: 1,
            class: InterfaceClass::PodVeth,
            captured,
            reason: String::new(),
            master: None,
            peer_ifindex: None,
            routed_addresses: Vec::new(),
        }
    }

    #[test]
    fn the_plan_gives_captured_interfaces_their_buffers_in_opening_order() {
        let survey = [info("a", true), info("b", false), info("c", true), info("d", true)];
        let budget = BufferBudget::new(32 * MIB, 40 * u64::from(MIB));
        let planned = plan(&survey, &Selection::PodFacing, budget.clone());
        assert_eq!(planned, [Some(32 * MIB), None, Some(8 * MIB), Some(2 * MIB)]);
        let shared = plan(&survey, &Selection::Any, budget);
        assert_eq!(shared, [Some(32 * MIB), None, Some(32 * MIB), Some(32 * MIB)]);
    }

    const MIB: u32 = 1 << 20;

    #[test]
    fn interfaces_get_the_full_size_until_the_budget_runs_out_then_the_rest_then_the_floor() {
        let mut budget = BufferBudget::new(32 * MIB, 100 * u64::from(MIB));
        let sizes: Vec<(u32, bool)> =
            (0..6).map(|_| budget.grant()).map(|grant| (grant.bytes / MIB, grant.shrunk)).collect();
        assert_eq!(sizes, [(32, false), (32, false), (32, false), (4, true), (2, true), (2, true)]);
        assert_eq!(budget.in_use(), 104 * u64::from(MIB));
    }

    #[test]
    fn a_detached_interface_gives_its_buffer_back_to_the_next() {
        let mut budget = BufferBudget::new(32 * MIB, 64 * u64::from(MIB));
        let first = budget.grant();
        let second = budget.grant();
        assert_eq!(budget.grant(), Grant { bytes: 2 * MIB, shrunk: true });
        budget.release(first.bytes);
        budget.release(2 * MIB);
        assert_eq!(budget.grant(), Grant { bytes: 32 * MIB, shrunk: false });
        budget.release(second.bytes);
        budget.release(32 * MIB);
        assert_eq!(budget.in_use(), 0);
        // Releasing more than was granted never wraps.
        budget.release(MIB);
        assert_eq!(budget.in_use(), 0);
    }

    #[test]
    fn a_per_interface_size_below_the_floor_is_kept_and_never_counts_as_shrunk() {
        let mut budget = BufferBudget::new(MIB, u64::from(MIB));
        assert_eq!(budget.grant(), Grant { bytes: MIB, shrunk: false });
        assert_eq!(budget.grant(), Grant { bytes: MIB, shrunk: false });
    }

    #[test]
    fn a_budget_past_four_gib_does_not_truncate() {
        let mut budget = BufferBudget::new(u32::MAX, 16 << 30);
        assert_eq!(budget.grant(), Grant { bytes: u32::MAX, shrunk: false });
    }
}
