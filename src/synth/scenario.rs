//! The bundled demo: one minute of traffic on node `n1` of the cluster in
//! `assets/demo-cluster.yaml`, starting 2026-11-29T10:00:00Z.
//!
//! One vantage point, no duplicate copies, the client's view: a pod talking to a Service shows
//! the ClusterIP as destination, replies come from it. External addresses are all from the
//! documentation ranges (203.0.113.0/24, 198.51.100.0/24, 2001:db8::/32). The story, by what the
//! policy engine should make of it:
//!
//! * allowed: shop pods' DNS to kube-dns (UDP, one lookup over TCP); `web-a`/`web-b` → the `api`
//!   Service over HTTP; `api` → the `ledger` Service over TLS.
//! * egress violation that leaks: `web-a` looks up `api.stripe.example` (CNAME chain) and talks
//!   TLS to 203.0.113.10, which answers; `web-b` reaches the same IP with the name learned from
//!   web-a's answer; `web-b` → 198.51.100.77:443 with no lookup at all (direct IP).
//! * egress violation that is enforced: `web-b` → 203.0.113.99:443, SYN retried, never answered.
//! * ingress violation: `monitoring/prometheus-0` scrapes the ledger pod on 9090.
//! * unrestricted: prometheus scrapes CoreDNS on 9153, and after an AAAA lookup pushes to
//!   [2001:db8::10]:443 over IPv6.
//! * the rest of a node's life: ARP, a ping to n2, an SCTP INIT, kube-proxy (host network) to
//!   the API server on n2, an IPv4-fragmented UDP datagram, a NodePort request from outside.
//!
//! Deterministic: no clock, no randomness. The asset is this function's output; `src/demo.rs`
//! tests that they agree.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::app::{
    Body, http_request, http_response, http_scrape_request, tls_application_data,
    tls_client_finished, tls_client_hello, tls_server_hello,
};
use super::dns::Answer;
use super::frame::{arp_reply, arp_request, sctp_init, udp};
use super::timeline::{Exchange, Timeline};
use super::transform::fragment_ipv4;
use super::{MICRO_NANOS, MILLI_NANOS, SECOND_NANOS, TimedFrame};

/// 2026-11-29T10:00:00Z in nanoseconds since the Unix epoch.
pub const START_NANOS: u64 = 1_795_946_400 * SECOND_NANOS;

pub const NODE_N1: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 11);
pub const NODE_N2: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 12);
/// The cni0 bridge on n1: pods' default gateway.
pub const GATEWAY_N1: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 1);
pub const WEB_A: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 10);
pub const WEB_A_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x244, 0x1, 0, 0, 0, 0xa);
pub const WEB_B: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 11);
pub const API: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 12);
pub const PROMETHEUS: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 30);
pub const PROMETHEUS_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x244, 0x1, 0, 0, 0, 0x1e);
pub const COREDNS_N1: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
pub const COREDNS_N2: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 2);
pub const LEDGER: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 20);
pub const KUBE_DNS_SVC: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
pub const API_SVC: Ipv4Addr = Ipv4Addr::new(10, 96, 12, 5);
pub const LEDGER_SVC: Ipv4Addr = Ipv4Addr::new(10, 96, 30, 1);
pub const STRIPE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
pub const DIRECT_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 77);
pub const BLOCKED: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 99);
pub const STATSD: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 30);
pub const OUTSIDE_CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 200);
pub const METRICS_PUSH_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);
/// The `web` NodePort.
pub const WEB_NODE_PORT: u16 = 30_080;

const API_NAME: &str = "api.shop.svc.cluster.local";
const LEDGER_NAME: &str = "ledger.payments.svc.cluster.local";
const STRIPE_NAME: &str = "api.stripe.example";
const STRIPE_CDN_NAME: &str = "edge.stripe-cdn.example";
const PUSH_NAME: &str = "push.metrics.example";
const STATSD_NAME: &str = "statsd.metrics.example";

/// Round trips as seen from n1: same node, across nodes, the Internet; and DNS recursion.
const RTT_LOCAL: u64 = 180 * MICRO_NANOS;
const RTT_NODES: u64 = 450 * MICRO_NANOS;
const RTT_INTERNET: u64 = 24 * MILLI_NANOS;
const THINK: u64 = 300 * MICRO_NANOS;
const DNS_RECURSION: u64 = 9 * MILLI_NANOS;

fn at(seconds: f64) -> u64 {
    START_NANOS + (seconds * 1e6).round() as u64 * MICRO_NANOS
}

fn sock(ip: impl Into<IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

/// The demo capture: about 60 seconds on n1, ordered by time. See the module docs.
#[must_use]
pub fn demo() -> Vec<TimedFrame> {
    let mut t = Timeline::new();
    let dns = sock(KUBE_DNS_SVC, 53);

    // ARP: a pod resolving its gateway, the nodes resolving each other.
    arp_pair(&mut t, at(0.050), WEB_A, GATEWAY_N1, RTT_LOCAL);
    arp_pair(&mut t, at(0.060), NODE_N1, NODE_N2, RTT_NODES);
    arp_pair(&mut t, at(30.000), NODE_N2, NODE_N1, RTT_NODES);

    // kube-proxy (host network) watching the API server on n2: one long-lived TLS connection,
    // dialed by IP so without SNI, with watch events pushed every ten seconds.
    t.set_timing(RTT_NODES, THINK);
    let mut turns = vec![Turn::request(0.0, 320, 1900)];
    turns.extend((0..5).map(|i| Turn::push(10.0, 700 + 40 * i)));
    tls_conversation(
        &mut t,
        sock(NODE_N1, 52_814),
        sock(NODE_N2, 6443),
        at(0.200),
        "",
        &turns,
        false,
    );

    // web-a → the api Service: look up the name (again when the 30 s TTL runs out), then one
    // HTTP request every five seconds on a fresh connection.
    t.set_timing(RTT_LOCAL, THINK);
    let api_answer = [Answer::A { name: API_NAME.into(), ip: API_SVC, ttl: 30 }];
    t.dns_exchange(sock(WEB_A, 41_873), dns, at(1.000), 0x3a01, API_NAME, &api_answer);
    t.dns_exchange(sock(WEB_A, 41_874), dns, at(31.000), 0x3a02, API_NAME, &api_answer);
    for k in 0..12u16 {
        let start = at(1.002 + 5.0 * f64::from(k));
        let request = http_request("api", "/api/cart");
        let response = http_response(200, &Body::Json(1800));
        t.tcp_session(sock(WEB_A, 46_210 + k), sock(API_SVC, 80), start, &request, &response, true);
    }

    // web-b → the api Service every ten seconds.
    t.dns_exchange(sock(WEB_B, 42_001), dns, at(3.498), 0x4b01, API_NAME, &api_answer);
    t.dns_exchange(sock(WEB_B, 42_002), dns, at(33.498), 0x4b02, API_NAME, &api_answer);
    for k in 0..6u16 {
        let start = at(3.500 + 10.0 * f64::from(k));
        let request = http_request("api", "/api/products");
        let response = http_response(200, &Body::Json(4200));
        t.tcp_session(sock(WEB_B, 47_300 + k), sock(API_SVC, 80), start, &request, &response, true);
    }

    // api → the ledger Service: its first lookup over TCP (the resolver retried after a
    // truncated answer), a keep-alive TLS connection with a request every five seconds.
    let ledger_answer = [Answer::A { name: LEDGER_NAME.into(), ip: LEDGER_SVC, ttl: 30 }];
    t.dns_exchange_tcp(sock(API, 38_512), dns, at(2.000), 0x5c01, LEDGER_NAME, &ledger_answer);
    t.dns_exchange(sock(API, 38_513), dns, at(32.000), 0x5c02, LEDGER_NAME, &ledger_answer);
    t.set_timing(RTT_NODES, THINK);
    let mut turns = vec![Turn::request(0.0, 610, 950)];
    turns.extend((0..11).map(|_| Turn::request(5.0, 610, 950)));
    let ledger = (sock(API, 44_950), sock(LEDGER_SVC, 443));
    tls_conversation(&mut t, ledger.0, ledger.1, at(2.010), LEDGER_NAME, &turns, true);

    // web-a → api.stripe.example: a CNAME chain to 203.0.113.10, then TLS that gets answered.
    t.set_timing(RTT_LOCAL, DNS_RECURSION);
    let stripe_answer = [
        Answer::Cname { name: STRIPE_NAME.into(), target: STRIPE_CDN_NAME.into(), ttl: 30 },
        Answer::A { name: STRIPE_CDN_NAME.into(), ip: STRIPE, ttl: 30 },
    ];
    t.dns_exchange(sock(WEB_A, 52_101), dns, at(5.000), 0x7e11, STRIPE_NAME, &stripe_answer);
    t.set_timing(RTT_INTERNET, 2 * MILLI_NANOS);
    let turns = [Turn::request(0.0, 420, 2600)];
    tls_conversation(
        &mut t,
        sock(WEB_A, 53_312),
        sock(STRIPE, 443),
        at(5.020),
        STRIPE_NAME,
        &turns,
        true,
    );

    // web-b → the same IP with no lookup of its own: the name comes from web-a's answer.
    let turns = [Turn::request(0.0, 380, 1400)];
    tls_conversation(
        &mut t,
        sock(WEB_B, 49_822),
        sock(STRIPE, 443),
        at(12.000),
        STRIPE_NAME,
        &turns,
        true,
    );

    // web-b → 198.51.100.77 by IP: no DNS answer names it; the SNI says www.example.com.
    t.set_timing(31 * MILLI_NANOS, 3 * MILLI_NANOS);
    let turns = [Turn::request(0.0, 350, 5200)];
    let direct = (sock(WEB_B, 50_410), sock(DIRECT_IP, 443));
    tls_conversation(&mut t, direct.0, direct.1, at(18.000), "www.example.com", &turns, true);

    // web-b → 203.0.113.99: dropped by an enforcing CNI, so the SYN is retried and never answered.
    t.tcp_syn_unanswered(sock(WEB_B, 50_988), sock(BLOCKED, 443), at(24.000), 4);

    // Prometheus scrapes every 15 s: the ledger pod (not allowed by ledger-ingress) and both
    // CoreDNS pods (kube-system has no policies).
    for k in 0..4u16 {
        let base = 4.0 + 15.0 * f64::from(k);
        let targets = [
            (LEDGER, 9090, 0.0, RTT_NODES, 6100),
            (COREDNS_N1, 9153, 0.1, RTT_LOCAL, 9200),
            (COREDNS_N2, 9153, 0.2, RTT_NODES, 9200),
        ];
        for (n, (ip, port, offset, rtt, len)) in targets.into_iter().enumerate() {
            t.set_timing(rtt, 2 * MILLI_NANOS);
            let host = format!("{ip}:{port}");
            let client = sock(PROMETHEUS, 39_100 + 10 * k + n as u16);
            let request = http_scrape_request(&host, "/metrics");
            let response = http_response(200, &Body::Metrics(len));
            t.tcp_session(client, sock(ip, port), at(base + offset), &request, &response, true);
        }
    }

    // Prometheus looks up its remote-write endpoint (AAAA only) and pushes over IPv6.
    t.set_timing(RTT_LOCAL, DNS_RECURSION);
    let push_answer = [Answer::Aaaa { name: PUSH_NAME.into(), ip: METRICS_PUSH_V6, ttl: 300 }];
    t.dns_exchange(sock(PROMETHEUS, 45_678), dns, at(8.000), 0x9d01, PUSH_NAME, &push_answer);
    t.set_timing(18 * MILLI_NANOS, 4 * MILLI_NANOS);
    let turns = [
        Turn::request(0.0, 4100, 120),
        Turn::request(15.0, 4300, 120),
        Turn::request(15.0, 3900, 120),
    ];
    let push = (sock(PROMETHEUS_V6, 40_112), sock(METRICS_PUSH_V6, 443));
    tls_conversation(&mut t, push.0, push.1, at(8.020), PUSH_NAME, &turns, true);

    // web-a pings n2.
    t.set_timing(RTT_NODES, 0);
    t.ping(WEB_A.into(), NODE_N2.into(), at(15.000), 0x1c2a, 3);

    // api opens an SCTP association to the ledger pod (Diameter): nobody answers the INIT.
    t.push(at(21.000), sctp_init(sock(API, 36_412), sock(LEDGER, 3868)));

    // Prometheus looks up its statsd sink and sends one 3,000-byte datagram: it leaves n1 in
    // three IPv4 fragments.
    t.set_timing(RTT_LOCAL, 8 * MILLI_NANOS);
    let statsd_answer = [Answer::A { name: STATSD_NAME.into(), ip: STATSD, ttl: 60 }];
    t.dns_exchange(sock(PROMETHEUS, 45_679), dns, at(25.990), 0x9d02, STATSD_NAME, &statsd_answer);
    let lines = "demo.scrape.duration_ms:12|ms|#job:ledger\n".repeat(80);
    let datagram = udp(sock(PROMETHEUS, 41_000), sock(STATSD, 8125), &lines.as_bytes()[..3000]);
    for (i, fragment) in fragment_ipv4(&datagram, 1480).into_iter().enumerate() {
        t.push(at(26.000) + i as u64 * 15 * MICRO_NANOS, fragment);
    }

    // A client on the Internet hits the web NodePort on n1.
    t.set_timing(28 * MILLI_NANOS, 2 * MILLI_NANOS);
    let request = http_request("shop.example.com", "/");
    let response = http_response(200, &Body::Json(2400));
    let node_port = (sock(OUTSIDE_CLIENT, 52_000), sock(NODE_N1, WEB_NODE_PORT));
    t.tcp_session(node_port.0, node_port.1, at(33.000), &request, &response, true);

    t.into_frames()
}

fn arp_pair(t: &mut Timeline, start: u64, asker: Ipv4Addr, target: Ipv4Addr, rtt: u64) {
    t.push(start, arp_request(asker, target));
    t.push(start + rtt, arp_reply(target, asker));
}

/// One turn on a TLS connection after the handshake, in sizes: the client's application data
/// (0 for a server push), the server's.
struct Turn {
    pause_seconds: f64,
    request_len: usize,
    response_len: usize,
}

impl Turn {
    fn request(pause_seconds: f64, request_len: usize, response_len: usize) -> Self {
        Self { pause_seconds, request_len, response_len }
    }

    fn push(pause_seconds: f64, response_len: usize) -> Self {
        Self { pause_seconds, request_len: 0, response_len }
    }
}

/// A TLS 1.3 connection: ClientHello / server flight, then the client's Finished with its first
/// request, then the remaining turns; closed or left open.
fn tls_conversation(
    t: &mut Timeline,
    client: SocketAddr,
    server: SocketAddr,
    start: u64,
    sni: &str,
    turns: &[Turn],
    close: bool,
) -> u64 {
    let mut payloads: Vec<(u64, Vec<u8>, Vec<u8>)> = Vec::with_capacity(turns.len() + 1);
    payloads.push((0, tls_client_hello(sni), tls_server_hello(sni, 2800)));
    for (i, turn) in turns.iter().enumerate() {
        let seed = format!("{client}>{server}:{i}");
        let mut request = if i == 0 { tls_client_finished() } else { Vec::new() };
        if turn.request_len > 0 {
            request
                .extend(tls_application_data(format!("{seed}:req").as_bytes(), turn.request_len));
        }
        let response = tls_application_data(format!("{seed}:resp").as_bytes(), turn.response_len);
        let pause = (turn.pause_seconds * 1e6).round() as u64 * MICRO_NANOS;
        payloads.push((pause, request, response));
    }
    let exchanges: Vec<Exchange<'_>> = payloads
        .iter()
        .map(|(pause_nanos, request, response)| Exchange {
            pause_nanos: *pause_nanos,
            request,
            response,
        })
        .collect();
    t.tcp_conversation(client, server, start, &exchanges, close)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_is_deterministic_ordered_and_about_a_minute_long() {
        let frames = demo();
        assert_eq!(frames, demo());
        assert!(frames.windows(2).all(|w| w[0].ts_nanos <= w[1].ts_nanos));
        let first = frames.first().unwrap().ts_nanos;
        let last = frames.last().unwrap().ts_nanos;
        assert!((START_NANOS..START_NANOS + SECOND_NANOS).contains(&first));
        let span = (last - START_NANOS) / SECOND_NANOS;
        assert!((55..=65).contains(&span), "span {span} s");
        assert!((300..=2000).contains(&frames.len()), "{} frames", frames.len());
    }
}
