//! Per-flow rates over a sliding window of one-second buckets, in packet time.

use std::time::Duration;

/// Buckets kept: the window plus the second in progress.
const BUCKETS: usize = 6;
/// Complete seconds the rate averages over.
pub const WINDOW: Duration = Duration::from_secs(5);

/// Bytes per second in each direction over the last [`WINDOW`]. Fixed size (no allocation):
/// a table with hundreds of thousands of flows must stay small.
#[derive(Debug, Clone, Default)]
pub struct RateWindow {
    /// Second (since the epoch) of the newest bucket.
    newest_sec: u64,
    tx: [u32; BUCKETS],
    rx: [u32; BUCKETS],
}

/// A rate in bytes per second, one per direction.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rates {
    pub tx_bytes_per_sec: f64,
    pub rx_bytes_per_sec: f64,
}

impl RateWindow {
    /// Adds `bytes` in one direction at second `sec` (seconds from the epoch, packet time).
    pub fn add(&mut self, sec: u64, from_initiator: bool, bytes: u32) {
        self.roll_to(sec);
        // A packet older than the newest bucket (slightly out of order) counts in its bucket,
        // if that bucket is still in the window.
        let age = self.newest_sec.saturating_sub(sec);
        if age >= BUCKETS as u64 {
            return;
        }
        let slot = usize::try_from(sec % BUCKETS as u64).unwrap_or(0);
        let counts = if from_initiator { &mut self.tx } else { &mut self.rx };
        counts[slot] = counts[slot].saturating_add(bytes);
    }

    fn roll_to(&mut self, sec: u64) {
        if sec <= self.newest_sec {
            return;
        }
        let steps = (sec - self.newest_sec).min(BUCKETS as u64);
        for step in 1..=steps {
            let slot = usize::try_from((self.newest_sec + step) % BUCKETS as u64).unwrap_or(0);
            self.tx[slot] = 0;
            self.rx[slot] = 0;
        }
        self.newest_sec = sec;
    }

    /// The average over the [`WINDOW`] complete seconds before `now_sec` (the second in
    /// progress is not complete: counting it over five seconds read a steady rate 20% high).
    #[must_use]
    pub fn rates(&self, now_sec: u64) -> Rates {
        let window_secs = WINDOW.as_secs();
        let mut tx = 0u64;
        let mut rx = 0u64;
        for sec in now_sec.saturating_sub(window_secs)..now_sec {
            // Only seconds the buckets still hold: not newer than the newest, not rolled out.
            if sec > self.newest_sec || self.newest_sec - sec >= BUCKETS as u64 {
                continue;
            }
            let slot = usize::try_from(sec % BUCKETS as u64).unwrap_or(0);
            tx += u64::from(self.tx[slot]);
            rx += u64::from(self.rx[slot]);
        }
        #[allow(clippy::cast_precision_loss)] // rates are for display
        Rates {
            tx_bytes_per_sec: tx as f64 / window_secs as f64,
            rx_bytes_per_sec: rx as f64 / window_secs as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_averages_the_last_five_seconds() {
        let mut window = RateWindow::default();
        for sec in 100..110 {
            window.add(sec, true, 1000);
        }
        window.add(109, false, 500);
        window.add(110, false, 700);
        // During second 110: the five complete seconds 105..=109, a steady 1000 B/s.
        let rates = window.rates(110);
        assert!((rates.tx_bytes_per_sec - 1000.0).abs() < 1e-9);
        assert!((rates.rx_bytes_per_sec - 100.0).abs() < 1e-9, "the second in progress waits");
    }

    #[test]
    fn an_idle_flow_decays_to_zero() {
        let mut window = RateWindow::default();
        window.add(100, true, 1000);
        assert!(window.rates(103).tx_bytes_per_sec > 0.0);
        assert!(window.rates(106).tx_bytes_per_sec.abs() < f64::EPSILON);
    }

    #[test]
    fn a_late_packet_lands_in_its_own_second() {
        let mut window = RateWindow::default();
        window.add(200, true, 10);
        window.add(199, true, 10);
        window.add(150, true, 10_000); // far too old for the window: ignored
        assert!((window.rates(201).tx_bytes_per_sec - 4.0).abs() < 1e-9);
    }
}
