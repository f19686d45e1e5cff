//! Packet time as plain data: nanoseconds since the Unix epoch.
//!
//! Time enters netwatch only as values (packet timestamps, or the clock read by the run loop), so
//! replays are deterministic. Nothing here reads the wall clock.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An instant, in nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    #[must_use]
    pub fn from_secs(secs: u64) -> Self {
        Self(secs.saturating_mul(1_000_000_000))
    }

    #[must_use]
    pub fn from_system_time(time: SystemTime) -> Self {
        let nanos = time.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
        Self(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    #[must_use]
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.0)
    }

    #[must_use]
    pub fn saturating_add(self, duration: Duration) -> Self {
        Self(self.0.saturating_add(u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)))
    }

    /// Time from `earlier` to `self`; zero if `earlier` is later (packets can arrive slightly
    /// out of order across interfaces).
    #[must_use]
    pub fn since(self, earlier: Self) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// Whole seconds since the epoch: the bucket index of rate windows.
    #[must_use]
    pub fn whole_secs(self) -> u64 {
        self.0 / 1_000_000_000
    }

    /// RFC 3339 with microseconds, UTC: `2026-11-29T10:00:00.123456Z`.
    #[must_use]
    pub fn rfc3339(self) -> String {
        self.rfc3339_display().to_string()
    }

    /// The RFC 3339 form (microseconds, UTC), to be written without an intermediate string.
    #[must_use]
    pub fn rfc3339_display(self) -> impl std::fmt::Display {
        Rfc3339(self)
    }

    /// Parses RFC 3339 in UTC (`2026-11-29T10:00:00.123456Z`, up to nanoseconds), as flow
    /// records carry it. The error quotes the text and says what was expected.
    pub fn parse_rfc3339(text: &str) -> Result<Self, String> {
        let time = humantime::parse_rfc3339(text).map_err(|e| {
            format!("'{text}' is not an RFC 3339 UTC time like 2026-11-29T10:00:00.123456Z ({e})")
        })?;
        Ok(Self::from_system_time(time))
    }
}

/// A timestamp as RFC 3339 with microseconds.
struct Rfc3339(Timestamp);

impl std::fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let micros = self.0.subsec_micros();
        with_second_text(self.0.whole_secs(), |text| write!(f, "{text}.{micros:06}Z"))
    }
}

impl Timestamp {
    /// Appends the RFC 3339 form (as [`rfc3339`](Self::rfc3339) gives it) to `out`: the fast
    /// path of the JSON Lines encoder.
    pub fn push_rfc3339(self, out: &mut Vec<u8>) {
        with_second_text(self.whole_secs(), |text| out.extend_from_slice(text.as_bytes()));
        let mut micros = self.subsec_micros();
        let mut digits = *b".000000Z";
        for digit in digits[1..7].iter_mut().rev() {
            *digit = b'0' + (micros % 10) as u8;
            micros /= 10;
        }
        out.extend_from_slice(&digits);
    }

    fn subsec_micros(self) -> u64 {
        (self.0 % 1_000_000_000) / 1_000
    }
}

/// Calls `with` on the date and time of day of `secs` since the epoch, as
/// `2026-11-29T10:00:00` (no fraction, no zone). They come from humantime once per second and
/// are kept per thread: a run writes many records stamped in the same second, and working out
/// the calendar date is most of the cost.
fn with_second_text<R>(secs: u64, with: impl FnOnce(&str) -> R) -> R {
    thread_local! {
        static LAST_SECOND: std::cell::RefCell<Option<(u64, String)>> =
            const { std::cell::RefCell::new(None) };
    }
    LAST_SECOND.with_borrow_mut(|last| {
        let text = match last {
            Some((cached, text)) if *cached == secs => text,
            _ => {
                let second = Timestamp::from_secs(secs).to_system_time();
                let mut text = humantime::format_rfc3339_seconds(second).to_string();
                text.pop(); // the 'Z': the fraction goes before it
                &mut last.insert((secs, text)).1
            }
        };
        with(text)
    })
}

/// Serde `deserialize_with` for RFC 3339 timestamps (the flow record contract).
pub fn deserialize_rfc3339<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Timestamp, D::Error> {
    let text = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(deserializer)?;
    Timestamp::parse_rfc3339(&text).map_err(serde::de::Error::custom)
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_as_rfc3339_with_microseconds() {
        let ts = Timestamp(1_795_946_400_123_456_789);
        assert_eq!(ts.rfc3339(), "2026-11-29T10:00:00.123456Z");
    }

    #[test]
    fn rfc3339_parses_back_to_the_same_instant() {
        let ts = Timestamp(1_795_946_400_123_456_000);
        assert_eq!(Timestamp::parse_rfc3339(&ts.rfc3339()), Ok(ts));
        assert_eq!(
            Timestamp::parse_rfc3339("2026-11-29T10:00:00.123456789Z"),
            Ok(Timestamp(1_795_946_400_123_456_789))
        );
        let error = Timestamp::parse_rfc3339("yesterday").unwrap_err();
        assert!(error.contains("'yesterday'"), "{error}");
    }

    #[test]
    fn rfc3339_matches_humantime_across_seconds_and_the_epoch() {
        for ns in [
            0,
            999,
            1_795_946_400_123_456_789,
            1_795_946_400_999_999_999,
            1_795_946_401_000_000_000,
            18_446_744_073_709_551_615,
        ] {
            let ts = Timestamp(ns);
            let expected = humantime::format_rfc3339_micros(ts.to_system_time()).to_string();
            assert_eq!(ts.rfc3339(), expected, "{ns}");
            assert_eq!(ts.rfc3339(), expected, "{ns}, cached");
            let mut pushed = b"x".to_vec();
            ts.push_rfc3339(&mut pushed);
            assert_eq!(pushed, format!("x{expected}").into_bytes(), "{ns}, pushed");
        }
    }

    #[test]
    fn since_never_goes_negative() {
        assert_eq!(Timestamp(5).since(Timestamp(9)), Duration::ZERO);
    }
}
