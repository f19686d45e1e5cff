//! Names learned from DNS answers seen on the wire, per client, with their TTLs.
//!
//! External addresses are named by what the workloads were told, never by reverse lookups: the
//! name a pod asked for is the name that pod used. Two pods may reach one address under
//! different names, so names are kept per (client, address); another client's answer is only a
//! fallback, and marked as such. Pure: answers and `now` come in as values.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rustc_hash::FxHashMap;

use crate::decode::dns::Resolution;
use crate::flow::LearnedName;
use crate::time::Timestamp;

/// Clients connect right after the answer, and resolvers and runtimes (the JVM, Go) often reuse
/// an answer a little past a very short TTL, so a name is honoured for at least this long.
pub const MIN_VALIDITY: Duration = Duration::from_secs(10);

/// Entries kept at most; past it the soonest-to-expire are dropped. A DNS flood must not grow
/// memory without bound.
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Clone)]
struct Entry {
    name: Arc<str>,
    expires: Timestamp,
}

/// What DNS told each client.
#[derive(Debug, Default)]
pub struct NameBook {
    by_client: FxHashMap<(IpAddr, IpAddr), Entry>,
    /// The most recent answer naming an address, whoever asked.
    by_address: FxHashMap<IpAddr, Entry>,
}

impl NameBook {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Records what a DNS response told `client` at `now`.
    pub fn learn(&mut self, client: IpAddr, resolutions: &[Resolution], now: Timestamp) {
        for resolution in resolutions {
            let validity = Duration::from_secs(u64::from(resolution.ttl_secs)).max(MIN_VALIDITY);
            let entry = Entry {
                name: Arc::from(resolution.name.as_str()),
                expires: now.saturating_add(validity),
            };
            self.by_client.insert((client, resolution.address), entry.clone());
            self.by_address.insert(resolution.address, entry);
        }
        if self.by_client.len() > MAX_ENTRIES {
            self.expire(now);
        }
        if self.by_client.len() > MAX_ENTRIES {
            self.shrink();
        }
    }

    /// The name under which `client` reached `address` at `now`: its own valid answer, else
    /// another client's valid answer (marked), else none.
    #[must_use]
    pub fn lookup(&self, client: IpAddr, address: IpAddr, now: Timestamp) -> Option<LearnedName> {
        if let Some(entry) = self.by_client.get(&(client, address)).filter(|e| e.expires >= now) {
            return Some(LearnedName { name: entry.name.clone(), own_lookup: true });
        }
        self.by_address
            .get(&address)
            .filter(|e| e.expires >= now)
            .map(|entry| LearnedName { name: entry.name.clone(), own_lookup: false })
    }

    /// Forgets answers whose validity ended before `now`.
    pub fn expire(&mut self, now: Timestamp) {
        self.by_client.retain(|_, entry| entry.expires >= now);
        self.by_address.retain(|_, entry| entry.expires >= now);
    }

    fn shrink(&mut self) {
        let mut expiries: Vec<Timestamp> = self.by_client.values().map(|e| e.expires).collect();
        let cut = expiries.len() - MAX_ENTRIES * 3 / 4;
        let (_, threshold, _) = expiries.select_nth_unstable(cut);
        let threshold = *threshold;
        self.by_client.retain(|_, entry| entry.expires > threshold);
        self.by_address.retain(|_, entry| entry.expires > threshold);
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.by_client.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_client.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn answer(name: &str, address: &str, ttl: u32) -> Resolution {
        Resolution { name: name.into(), address: ip(address), ttl_secs: ttl }
    }

    #[test]
    fn each_client_sees_the_name_it_asked_for() {
        let mut book = NameBook::new();
        let t0 = Timestamp::from_secs(1000);
        book.learn(ip("10.244.1.10"), &[answer("api.stripe.example", "203.0.113.10", 30)], t0);
        book.learn(ip("10.244.1.11"), &[answer("cdn.shop.example", "203.0.113.10", 30)], t0);
        let a = book.lookup(ip("10.244.1.10"), ip("203.0.113.10"), t0).unwrap();
        let b = book.lookup(ip("10.244.1.11"), ip("203.0.113.10"), t0).unwrap();
        assert_eq!((&*a.name, a.own_lookup), ("api.stripe.example", true));
        assert_eq!((&*b.name, b.own_lookup), ("cdn.shop.example", true));
    }

    #[test]
    fn a_client_that_never_asked_gets_another_clients_answer_marked_as_such() {
        let mut book = NameBook::new();
        let t0 = Timestamp::from_secs(1000);
        book.learn(ip("10.244.1.10"), &[answer("api.stripe.example", "203.0.113.10", 30)], t0);
        let name = book.lookup(ip("10.244.1.12"), ip("203.0.113.10"), t0).unwrap();
        assert_eq!((&*name.name, name.own_lookup), ("api.stripe.example", false));
    }

    #[test]
    fn a_name_expires_with_its_ttl() {
        let mut book = NameBook::new();
        let t0 = Timestamp::from_secs(1000);
        book.learn(ip("10.244.1.10"), &[answer("a.example", "198.51.100.1", 30)], t0);
        let client = ip("10.244.1.10");
        assert!(book.lookup(client, ip("198.51.100.1"), Timestamp::from_secs(1030)).is_some());
        assert!(book.lookup(client, ip("198.51.100.1"), Timestamp::from_secs(1031)).is_none());
        book.expire(Timestamp::from_secs(1031));
        assert!(book.is_empty());
    }

    #[test]
    fn a_zero_ttl_answer_still_names_the_connection_that_follows() {
        let mut book = NameBook::new();
        let t0 = Timestamp::from_secs(1000);
        book.learn(ip("10.244.1.10"), &[answer("a.example", "198.51.100.1", 0)], t0);
        let soon = Timestamp::from_secs(1005);
        assert!(book.lookup(ip("10.244.1.10"), ip("198.51.100.1"), soon).is_some());
    }
}
