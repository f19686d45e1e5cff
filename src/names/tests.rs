//! The names book against examples and against a reference model of every answer in one map.

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

    fn lookup(&self, client: IpAddr, address: IpAddr, now: Timestamp) -> Option<(String, bool)> {
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
