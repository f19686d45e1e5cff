//! Names learned from DNS answers seen on the wire, per client, with their TTLs.
//!
//! External addresses are named by what the workloads were told, never by reverse lookups: the
//! name a pod asked for is the name that pod used. Two pods may reach one address under
//! different names, so names are kept per (client, address); another client's answer is only a
//! fallback, and marked as such. Pure: answers and `now` come in as values.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rustc_hash::FxHashMap;
use smallvec::SmallVec;

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
    /// Learning order across the book: the newest valid answer is the fallback for a client
    /// that never asked.
    learned: u64,
}

/// What DNS told the clients about one address: inline while few (the usual case: one pod, or
/// a handful, ask for a name), a map once many do, so a popular address stays O(1) a lookup.
/// Small: the book holds one per answered address, and grows by moving them.
#[derive(Debug)]
enum Answers {
    Few(SmallVec<[(IpAddr, Entry); 1]>),
    Many(Box<ManyAnswers>),
}

#[derive(Debug)]
struct ManyAnswers {
    by_client: FxHashMap<IpAddr, Entry>,
    /// The most recent answer, whoever asked: the usual fallback, without a scan of them all.
    latest: Option<Entry>,
}

/// Clients kept inline at most.
const FEW_CLIENTS: usize = 16;

impl Default for Answers {
    fn default() -> Self {
        Self::Few(SmallVec::new())
    }
}

impl Answers {
    fn get(&self, client: IpAddr) -> Option<&Entry> {
        match self {
            Self::Few(few) => few.iter().find(|(asked, _)| *asked == client).map(|(_, e)| e),
            Self::Many(many) => many.by_client.get(&client),
        }
    }

    /// Sets `client`'s answer; true when the client had none.
    fn set(&mut self, client: IpAddr, entry: Entry) -> bool {
        match self {
            Self::Few(few) => {
                if let Some((_, own)) = few.iter_mut().find(|(asked, _)| *asked == client) {
                    *own = entry;
                    return false;
                }
                if few.len() < FEW_CLIENTS {
                    few.push((client, entry));
                    return true;
                }
                let mut by_client: FxHashMap<IpAddr, Entry> = few.drain(..).collect();
                by_client.insert(client, entry.clone());
                *self = Self::Many(Box::new(ManyAnswers { by_client, latest: Some(entry) }));
                true
            }
            Self::Many(many) => {
                many.latest = Some(entry.clone());
                many.by_client.insert(client, entry).is_none()
            }
        }
    }

    /// The newest answer still valid at `now`, whoever asked.
    fn newest_valid(&self, now: Timestamp) -> Option<&Entry> {
        let valid = |entry: &&Entry| entry.expires >= now;
        let latest = match self {
            Self::Few(_) => None,
            Self::Many(many) => many.latest.as_ref().filter(valid),
        };
        // The newest is the usual one; when it lapsed (a short TTL), an older answer still
        // valid for another client names the address all the same.
        latest.or_else(|| self.entries().filter(valid).max_by_key(|entry| entry.learned))
    }

    /// Keeps the answers `keep` says; returns how many went.
    fn retain(&mut self, keep: impl Fn(&Entry) -> bool) -> usize {
        let before = self.len();
        match self {
            Self::Few(few) => few.retain(|(_, entry)| keep(entry)),
            Self::Many(many) => {
                many.by_client.retain(|_, entry| keep(entry));
                many.latest = many.latest.take().filter(|entry| keep(entry));
            }
        }
        before - self.len()
    }

    fn entries_mut(&mut self) -> impl Iterator<Item = &mut Entry> + '_ {
        let (few, many) = match self {
            Self::Few(few) => (few.as_mut_slice(), None),
            Self::Many(many) => (&mut [][..], Some(many)),
        };
        few.iter_mut().map(|(_, entry)| entry).chain(
            many.into_iter()
                .flat_map(|many| many.by_client.values_mut().chain(many.latest.as_mut())),
        )
    }

    /// The clients' answers.
    fn entries(&self) -> impl Iterator<Item = &Entry> + '_ {
        // One of the two is empty: no boxed iterator (an allocation per address).
        let (few, many) = match self {
            Self::Few(few) => (few.as_slice(), None),
            Self::Many(many) => (&[][..], Some(many)),
        };
        few.iter()
            .map(|(_, entry)| entry)
            .chain(many.into_iter().flat_map(|many| many.by_client.values()))
    }

    fn len(&self) -> usize {
        match self {
            Self::Few(few) => few.len(),
            Self::Many(many) => many.by_client.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What DNS told each client.
///
/// Kept by answered address, with the clients' answers inline: naming a new flow is one hash
/// lookup, not one per map, and it is done for every flow.
#[derive(Debug, Default)]
pub struct NameBook {
    by_address: FxHashMap<IpAddr, Answers>,
    /// Client answers held, across addresses.
    client_entries: usize,
    /// Answers learned so far: the next one's `learned`.
    learned: u64,
    /// When answers lapse, soonest first. An entry is checked against the book when due (an
    /// answer learned again has a later time), so expiring touches only what is due rather
    /// than scanning the book every sweep.
    expiries: BinaryHeap<Reverse<(Timestamp, IpAddr)>>,
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
            self.learned += 1;
            let entry = Entry {
                name: Arc::clone(&resolution.name),
                expires: now.saturating_add(validity),
                learned: self.learned,
            };
            self.expiries.push(Reverse((entry.expires, resolution.address)));
            let answers = self.by_address.entry(resolution.address).or_default();
            if answers.set(client, entry) {
                self.client_entries += 1;
            }
        }
        if self.client_entries > MAX_ENTRIES {
            self.expire(now);
        }
        if self.client_entries > MAX_ENTRIES {
            self.shrink();
        }
        // Entries for answers learned again wait for their time; start over from the book
        // when they dominate.
        if self.expiries.len() > 2 * (self.client_entries + self.by_address.len()) + 1024 {
            self.rebuild_expiries();
        }
    }

    /// The name under which `client` reached `address` at `now`: its own valid answer, else
    /// the newest valid answer another client got (marked), else none.
    #[must_use]
    pub fn lookup(&self, client: IpAddr, address: IpAddr, now: Timestamp) -> Option<LearnedName> {
        let answers = self.by_address.get(&address)?;
        if let Some(own) = answers.get(client).filter(|entry| entry.expires >= now) {
            return Some(LearnedName { name: own.name.clone(), own_lookup: true });
        }
        let other = answers.newest_valid(now)?;
        Some(LearnedName { name: other.name.clone(), own_lookup: false })
    }

    /// Forgets answers whose validity ended before `now`.
    pub fn expire(&mut self, now: Timestamp) {
        let mut due = Vec::new();
        while let Some(Reverse((expires, address))) = self.expiries.peek().copied()
            && expires < now
        {
            self.expiries.pop();
            due.push(address);
        }
        // Each address once: many clients' answers for one name expire together, and each
        // visit walks all of that address's clients.
        due.sort_unstable();
        due.dedup();
        for address in due {
            self.forget(address, |entry| entry.expires < now);
        }
    }

    /// The clock stepped back by `by` (NTP on a live node): every answer keeps the validity it
    /// had left, counted from the new time, rather than living on for as long as the step.
    pub fn step_back(&mut self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        for answers in self.by_address.values_mut() {
            for entry in answers.entries_mut() {
                entry.expires = Timestamp(entry.expires.0.saturating_sub(by));
            }
        }
        self.rebuild_expiries();
    }

    /// Drops the answers of `address` that `lapsed` says are over, and the address when none
    /// is left.
    fn forget(&mut self, address: IpAddr, lapsed: impl Fn(&Entry) -> bool) {
        let Some(answers) = self.by_address.get_mut(&address) else { return };
        self.client_entries -= answers.retain(|entry| !lapsed(entry));
        if answers.is_empty() {
            self.by_address.remove(&address);
        }
    }

    /// Past the cap: the soonest-to-expire quarter of the client answers go.
    fn shrink(&mut self) {
        let mut expiries: Vec<Timestamp> = self
            .by_address
            .values()
            .flat_map(|answers| answers.entries().map(|entry| entry.expires))
            .collect();
        let Some(last) = expiries.len().checked_sub(1) else { return };
        let cut = expiries.len().saturating_sub(MAX_ENTRIES * 3 / 4).min(last);
        let threshold = *expiries.select_nth_unstable(cut).1;
        let addresses: Vec<IpAddr> = self.by_address.keys().copied().collect();
        for address in addresses {
            self.forget(address, |entry| entry.expires <= threshold);
        }
        self.rebuild_expiries();
    }

    fn rebuild_expiries(&mut self) {
        let mut due: Vec<Reverse<(Timestamp, IpAddr)>> = Vec::new();
        for (address, answers) in &self.by_address {
            due.extend(answers.entries().map(|entry| Reverse((entry.expires, *address))));
        }
        self.expiries = BinaryHeap::from(due);
    }

    /// Client answers held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.client_entries
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.client_entries == 0
    }
}

#[cfg(test)]
mod tests;
