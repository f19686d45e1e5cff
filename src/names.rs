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
    fn after_the_clock_steps_back_a_name_lives_for_the_validity_it_had_left() {
        let mut book = NameBook::new();
        let client = ip("10.244.1.10");
        book.learn(client, &[answer("a.example", "198.51.100.1", 30)], Timestamp::from_secs(5000));
        // An hour back, 10 s after it was learned: 20 s are left.
        book.step_back(Duration::from_secs(3600));
        let now = Timestamp::from_secs(5010 - 3600);
        assert!(book.lookup(client, ip("198.51.100.1"), now).is_some());
        let later = Timestamp::from_secs(5031 - 3600);
        assert!(book.lookup(client, ip("198.51.100.1"), later).is_none());
        assert!(book.lookup(ip("10.244.1.11"), ip("198.51.100.1"), later).is_none(), "nor latest");
        book.expire(later);
        assert!(book.is_empty(), "and it is forgotten on time");
    }

    #[test]
    fn after_a_step_back_a_popular_address_keeps_each_client_s_validity_left() {
        let mut book = NameBook::new();
        let address = ip("198.51.100.1");
        let client = |i: u32| IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000_u32 + i));
        // More clients than are kept inline: the map of them.
        for i in 0..=FEW_CLIENTS as u32 {
            book.learn(
                client(i),
                &[answer("a.example", "198.51.100.1", 30 + i)],
                Timestamp::from_secs(5000),
            );
        }
        book.step_back(Duration::from_secs(3600));
        let last = client(FEW_CLIENTS as u32);
        let ttl_last = 30 + FEW_CLIENTS as u64;
        assert!(book.lookup(last, address, Timestamp::from_secs(5000 + ttl_last - 3600)).is_some());
        let after = Timestamp::from_secs(5001 + ttl_last - 3600);
        assert!(book.lookup(last, address, after).is_none());
        book.expire(after);
        assert!(book.is_empty());
    }

    #[test]
    fn past_the_cap_the_soonest_to_expire_answers_go_first() {
        let mut book = NameBook::new();
        let t0 = Timestamp::from_secs(1000);
        let address = ip("203.0.113.9");
        for i in 0..=MAX_ENTRIES as u32 {
            let client = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000_u32 + i));
            // Later clients were told longer TTLs: they are the ones kept.
            book.learn(client, &[answer("a.example", "203.0.113.9", 60 + i)], t0);
        }
        assert!(book.len() <= MAX_ENTRIES * 3 / 4 + 1, "{}", book.len());
        let last = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000_u32 + MAX_ENTRIES as u32));
        assert!(book.lookup(last, address, t0).is_some_and(|n| n.own_lookup));
        let first = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000_u32));
        assert!(book.lookup(first, address, t0).is_some_and(|n| !n.own_lookup));
    }

    /// The reference the book must answer like: every (client, address) answer in one map,
    /// expired by a scan; the fallback for a client that never asked is the newest answer
    /// still valid for anyone.
    #[derive(Default)]
    struct OneMap {
        by_client: std::collections::HashMap<(IpAddr, IpAddr), Entry>,
        learned: u64,
    }

    impl OneMap {
        fn learn(&mut self, client: IpAddr, resolutions: &[Resolution], now: Timestamp) {
            for r in resolutions {
                let validity = Duration::from_secs(u64::from(r.ttl_secs)).max(MIN_VALIDITY);
                self.learned += 1;
                let entry = Entry {
                    name: Arc::clone(&r.name),
                    expires: now.saturating_add(validity),
                    learned: self.learned,
                };
                self.by_client.insert((client, r.address), entry);
            }
        }

        fn lookup(
            &self,
            client: IpAddr,
            address: IpAddr,
            now: Timestamp,
        ) -> Option<(String, bool)> {
            if let Some(e) = self.by_client.get(&(client, address)).filter(|e| e.expires >= now) {
                return Some((e.name.to_string(), true));
            }
            self.by_client
                .iter()
                .filter(|((_, to), e)| *to == address && e.expires >= now)
                .max_by_key(|(_, e)| e.learned)
                .map(|(_, e)| (e.name.to_string(), false))
        }

        fn expire(&mut self, now: Timestamp) {
            self.by_client.retain(|_, e| e.expires >= now);
        }

        fn step_back(&mut self, by: Duration) {
            let by = u64::try_from(by.as_nanos()).unwrap();
            for entry in self.by_client.values_mut() {
                entry.expires = Timestamp(entry.expires.0.saturating_sub(by));
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn answers_like_one_map_of_every_answer(
            // Mostly learning, mostly one address, from up to 40 clients: past the inline
            // clients (FEW_CLIENTS) to the map, and back down as answers lapse; now and then
            // the clock steps back.
            steps in proptest::collection::vec(
                (
                    0u8..5,
                    0u8..40,
                    proptest::prop_oneof![3 => proptest::strategy::Just(0u8), 1 => 0u8..3],
                    0u8..4,
                    0u32..40,
                    0u64..8,
                ),
                1..200,
            ),
        ) {
            let mut book = NameBook::new();
            let mut reference = OneMap::default();
            let mut now = Timestamp::from_secs(1000);
            for (action, client, address, name, ttl, advance) in steps {
                now = now.saturating_add(Duration::from_secs(advance));
                let client = IpAddr::from([10, 0, 0, client]);
                let address = IpAddr::from([203, 0, 113, address]);
                match action {
                    0..=2 => {
                        let said = [Resolution { name: format!("n{name}.example").into(), address, ttl_secs: ttl }];
                        book.learn(client, &said, now);
                        reference.learn(client, &said, now);
                    }
                    3 => {
                        book.expire(now);
                        reference.expire(now);
                        proptest::prop_assert_eq!(book.len(), reference.by_client.len());
                    }
                    _ => {
                        let by = Duration::from_secs(10 * advance + 1);
                        now = Timestamp(now.0.saturating_sub(u64::try_from(by.as_nanos()).unwrap()));
                        book.step_back(by);
                        reference.step_back(by);
                    }
                }
                for asked in [client, IpAddr::from([10, 0, 0, 9])] {
                    let got = book.lookup(asked, address, now).map(|n| (n.name.to_string(), n.own_lookup));
                    proptest::prop_assert_eq!(got, reference.lookup(asked, address, now));
                }
            }
        }
    }

    /// When the newest answer for an address lapses (a short TTL), an older one still valid
    /// for another client names it, marked as another client's.
    #[test]
    fn an_older_answer_still_valid_names_the_address_when_the_newest_lapsed() {
        let mut book = NameBook::new();
        let t0 = Timestamp::from_secs(1000);
        book.learn(ip("10.0.0.1"), &[answer("api.example", "203.0.113.10", 300)], t0);
        let t1 = t0.saturating_add(Duration::from_secs(5));
        book.learn(ip("10.0.0.2"), &[answer("cdn.example", "203.0.113.10", 0)], t1);
        let later = t1.saturating_add(Duration::from_secs(20));
        let name = book.lookup(ip("10.0.0.3"), ip("203.0.113.10"), later).unwrap();
        assert_eq!((&*name.name, name.own_lookup), ("api.example", false));
    }

    /// The book grows by moving its entries: one per answered address stays small (it was 184
    /// bytes with a copy of the newest answer and room for two clients inline).
    #[test]
    fn an_answered_address_is_small_in_the_book() {
        assert!(std::mem::size_of::<(IpAddr, Answers)>() <= 104);
    }

    #[test]
    fn many_clients_of_one_address_each_keep_their_own_answer() {
        let mut book = NameBook::new();
        let t0 = Timestamp::from_secs(1000);
        let address = ip("198.51.100.7");
        let client = |i: u32| IpAddr::from(std::net::Ipv4Addr::from(0x0af4_0000_u32 + i));
        let clients = FEW_CLIENTS as u32 * 2;
        for i in 0..clients {
            // Even clients are told a short TTL, odd ones a long one.
            let ttl = if i % 2 == 0 { 30 } else { 600 };
            book.learn(client(i), &[answer(&format!("c{i}.example"), "198.51.100.7", ttl)], t0);
        }
        assert_eq!(book.len(), clients as usize);
        assert!(matches!(book.by_address[&address], Answers::Many(_)));
        for i in 0..clients {
            let name = book.lookup(client(i), address, t0).unwrap();
            assert_eq!((&*name.name, name.own_lookup), (&*format!("c{i}.example"), true));
        }
        let later = Timestamp::from_secs(1000 + 300);
        book.expire(later);
        assert_eq!(book.len(), clients as usize / 2);
        let even = book.lookup(client(0), address, later).unwrap();
        assert!(!even.own_lookup, "client 0's own answer lapsed: {even:?}");
        let odd = book.lookup(client(1), address, later).unwrap();
        assert_eq!((&*odd.name, odd.own_lookup), ("c1.example", true));
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
