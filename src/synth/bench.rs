//! The benchmark capture: a deterministic, streaming mix of many flows, as a busy node sees it.
//!
//! Pods (200, in 10.244.0.0/16, a tenth of them talking IPv6 from fd00:10:244::/48) reach about
//! 2,000 external hosts — from the benchmarking range 198.18.0.0/15 and 2001:db8::/32, since the
//! documentation /24s are too small — plus cluster Services and other pods: TLS on 443 (a
//! ClientHello first), HTTP, UDP request/response, pings, unanswered SYNs, and DNS lookups to
//! kube-dns before a share of the connections (about 5% of packets). About 16 packets per flow,
//! so ~60,000 flows per million packets, started evenly over ~60 seconds.
//!
//! Streaming: only flows in progress are held (each materialised when it starts, merged by
//! timestamp), so a million-packet capture needs a few megabytes, not gigabytes. The same
//! `(packets, seed)` always gives the same frames.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::app::{
    Body, http_request, http_response, tls_application_data, tls_client_finished, tls_client_hello,
    tls_server_hello,
};
use super::dns::Answer;
use super::scenario::START_NANOS;
use super::timeline::{Exchange, Timeline};
use super::{MICRO_NANOS, MILLI_NANOS, SECOND_NANOS, TimedFrame};

const PODS: u32 = 200;
const EXTERNAL_HOSTS: u32 = 2_000;
const SERVICES: u32 = 50;
const PACKETS_PER_FLOW: usize = 16;
const SPAN_NANOS: u64 = 60 * SECOND_NANOS;
const KUBE_DNS: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);

/// `packets` frames of a busy node's traffic, generated lazily. See the module docs.
#[must_use]
pub fn bench_capture(packets: usize, seed: u64) -> BenchCapture {
    let flows = (packets / PACKETS_PER_FLOW).max(1) as u64;
    BenchCapture {
        rng: Rng(seed ^ 0x6e65_7477_6174_6368),
        remaining: packets,
        flow_interval_nanos: (SPAN_NANOS / flows).max(1),
        next_flow_nanos: START_NANOS,
        started: 0,
        active: BinaryHeap::new(),
    }
}

/// The iterator [`bench_capture`] returns.
#[derive(Debug)]
pub struct BenchCapture {
    rng: Rng,
    remaining: usize,
    flow_interval_nanos: u64,
    next_flow_nanos: u64,
    started: u64,
    /// Flows in progress, by the timestamp of their next frame (then start order, for ties).
    active: BinaryHeap<Reverse<Pending>>,
}

#[derive(Debug)]
struct Pending {
    ts_nanos: u64,
    order: u64,
    frames: std::vec::IntoIter<TimedFrame>,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.ts_nanos, self.order) == (other.ts_nanos, other.order)
    }
}

impl Eq for Pending {}

impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Pending {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.ts_nanos, self.order).cmp(&(other.ts_nanos, other.order))
    }
}

impl Iterator for BenchCapture {
    type Item = TimedFrame;

    fn next(&mut self) -> Option<TimedFrame> {
        if self.remaining == 0 {
            return None;
        }
        // Start every flow that begins before the earliest pending frame, so frames come out
        // in timestamp order.
        while self.active.peek().is_none_or(|Reverse(p)| self.next_flow_nanos <= p.ts_nanos) {
            self.start_flow();
        }
        let Reverse(mut pending) = self.active.pop()?;
        let frame = pending.frames.next()?;
        if let Some(ts_nanos) = pending.frames.as_slice().first().map(|f| f.ts_nanos) {
            pending.ts_nanos = ts_nanos;
            self.active.push(Reverse(pending));
        }
        self.remaining -= 1;
        Some(frame)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl BenchCapture {
    fn start_flow(&mut self) {
        let start = self.next_flow_nanos;
        let jitter = self.rng.below(self.flow_interval_nanos);
        self.next_flow_nanos += self.flow_interval_nanos;
        let frames = flow(&mut self.rng, start + jitter).into_frames();
        if let Some(first) = frames.first() {
            let pending = Pending {
                ts_nanos: first.ts_nanos,
                order: self.started,
                frames: frames.into_iter(),
            };
            self.active.push(Reverse(pending));
        }
        self.started += 1;
    }
}

/// SplitMix64: small, fast, and reproducible across platforms.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0); the modulo bias is irrelevant here.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high - low + 1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn pod_v4(index: u32) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, 1 + (index / 50) as u8, 10 + (index % 50) as u8)
}

fn pod_v6(index: u32) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0x10, 0x244, 1 + (index / 50) as u16, 0, 0, 0, 10 + (index % 50) as u16)
}

fn external_v4(index: u32) -> Ipv4Addr {
    Ipv4Addr::new(
        198,
        18 + (index / 62_500) as u8,
        ((index / 250) % 250) as u8,
        1 + (index % 250) as u8,
    )
}

fn external_v6(index: u32) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, (index >> 8) as u16, (index & 0xff) as u16, 0, 0, 0, 0x10)
}

fn external_name(index: u32) -> String {
    format!("host{index}.bench.example")
}

/// One flow (with the DNS lookup before it, if any), starting at `start`.
fn flow(rng: &mut Rng, start: u64) -> Timeline {
    let mut t = Timeline::new();
    let pod = rng.below(u64::from(PODS)) as u32;
    let ipv6 = rng.chance(10);
    let client_ip: IpAddr = if ipv6 { pod_v6(pod).into() } else { pod_v4(pod).into() };
    let client = SocketAddr::new(client_ip, rng.range(32_768, 60_999) as u16);
    // Externals are popular in a skewed way: a few hosts get most flows, like real egress.
    let host = (rng.below(u64::from(EXTERNAL_HOSTS)) * rng.below(u64::from(EXTERNAL_HOSTS))
        / u64::from(EXTERNAL_HOSTS)) as u32;
    let external: IpAddr = if ipv6 { external_v6(host).into() } else { external_v4(host).into() };
    let internet_rtt = rng.range(8, 60) * MILLI_NANOS;
    let mut at = start;

    let kind = rng.below(100);
    let to_external = kind < 55 || (75..85).contains(&kind);
    if to_external && rng.chance(65) {
        t.set_timing(200 * MICRO_NANOS, rng.range(1, 20) * MILLI_NANOS);
        let name = external_name(host);
        let answer = match external {
            IpAddr::V4(ip) => Answer::A { name: name.clone(), ip, ttl: 60 },
            IpAddr::V6(ip) => Answer::Aaaa { name: name.clone(), ip, ttl: 60 },
        };
        let resolver = SocketAddr::new(KUBE_DNS.into(), 53);
        let dns_client = SocketAddr::new(pod_v4(pod).into(), rng.range(32_768, 60_999) as u16);
        let id = rng.next() as u16;
        at = t.dns_exchange(dns_client, resolver, at, id, &name, &[answer]) + 200 * MICRO_NANOS;
    }

    match kind {
        // TLS to the Internet: ClientHello, server flight, then one to three request turns.
        0..55 => {
            t.set_timing(internet_rtt, rng.range(1, 5) * MILLI_NANOS);
            let sni = external_name(host);
            let hello = tls_client_hello(&sni);
            let flight = tls_server_hello(&sni, rng.range(1200, 3200) as usize);
            let mut payloads = vec![(0, hello, flight)];
            for turn in 0..rng.range(1, 3) {
                let mut request = if turn == 0 { tls_client_finished() } else { Vec::new() };
                let seed = rng.next().to_le_bytes();
                request.extend(tls_application_data(&seed, rng.range(80, 700) as usize));
                let response = tls_application_data(&seed[1..], response_len(rng));
                payloads.push((rng.range(0, 150) * MILLI_NANOS, request, response));
            }
            let exchanges: Vec<Exchange<'_>> = payloads
                .iter()
                .map(|(pause_nanos, request, response)| Exchange {
                    pause_nanos: *pause_nanos,
                    request,
                    response,
                })
                .collect();
            t.tcp_conversation(client, SocketAddr::new(external, 443), at, &exchanges, true);
        }
        // HTTP inside the cluster: pod → Service ClusterIP on 80, or straight to a pod on 8080.
        55..75 => {
            t.set_timing(rng.range(100, 600) * MICRO_NANOS, rng.range(200, 3000) * MICRO_NANOS);
            let server = if ipv6 || rng.chance(50) {
                let other = rng.below(u64::from(PODS)) as u32;
                let ip: IpAddr = if ipv6 { pod_v6(other).into() } else { pod_v4(other).into() };
                SocketAddr::new(ip, 8080)
            } else {
                let service = rng.below(u64::from(SERVICES)) as u8;
                SocketAddr::new(Ipv4Addr::new(10, 96, 10 + service, 5).into(), 80)
            };
            let request = http_request(
                &format!("svc{}.default.svc.cluster.local", server.port()),
                "/api/v1/items",
            );
            let response = http_response(200, &Body::Json(response_len(rng)));
            t.tcp_session(client, server, at, &request, &response, true);
        }
        // Plain HTTP to the Internet.
        75..85 => {
            t.set_timing(internet_rtt, rng.range(1, 10) * MILLI_NANOS);
            let request = http_request(&external_name(host), "/");
            let response = http_response(200, &Body::Json(response_len(rng)));
            t.tcp_session(client, SocketAddr::new(external, 80), at, &request, &response, true);
        }
        // UDP request/response pairs on ports no dissector claims, some unanswered.
        85..94 => {
            t.set_timing(internet_rtt, 0);
            let server = SocketAddr::new(external, [8125, 8126, 9125, 7777][rng.below(4) as usize]);
            for _ in 0..rng.range(1, 4) {
                let request = vec![0x5a; rng.range(40, 400) as usize];
                let response = vec![0xa5; rng.range(40, 1200) as usize];
                let answered = rng.chance(85).then_some(response.as_slice());
                at = t.udp_exchange(client, server, at, &request, answered)
                    + rng.range(1, 40) * MILLI_NANOS;
            }
        }
        // Pings to the Internet.
        94..97 => {
            t.set_timing(internet_rtt, 0);
            t.ping(client_ip, external, at, rng.next() as u16, rng.range(1, 3) as u16);
        }
        // Connections a firewall drops: the SYN is retried once, never answered.
        _ => {
            t.tcp_syn_unanswered(client, SocketAddr::new(external, 443), at, 2);
        }
    }
    t
}

/// Response sizes: mostly small, some large (a heavy tail, like web traffic).
fn response_len(rng: &mut Rng) -> usize {
    match rng.below(100) {
        0..60 => rng.range(200, 1400) as usize,
        60..90 => rng.range(1400, 6000) as usize,
        _ => rng.range(6000, 24_000) as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_capture_yields_exactly_the_requested_packets_in_time_order() {
        let frames: Vec<TimedFrame> = bench_capture(5_000, 1).collect();
        assert_eq!(frames.len(), 5_000);
        assert!(frames.windows(2).all(|w| w[0].ts_nanos <= w[1].ts_nanos));
    }

    #[test]
    fn bench_capture_is_deterministic_per_seed() {
        let a: Vec<TimedFrame> = bench_capture(2_000, 7).collect();
        let b: Vec<TimedFrame> = bench_capture(2_000, 7).collect();
        let c: Vec<TimedFrame> = bench_capture(2_000, 8).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn bench_capture_spreads_over_about_a_minute_with_realistic_sizes() {
        let frames: Vec<TimedFrame> = bench_capture(20_000, 3).collect();
        let span = frames.last().unwrap().ts_nanos - frames[0].ts_nanos;
        assert!((50 * SECOND_NANOS..75 * SECOND_NANOS).contains(&span), "span {span} ns");
        let average = frames.iter().map(|f| f.frame.len()).sum::<usize>() / frames.len();
        assert!((300..=600).contains(&average), "average frame {average} bytes");
        let ipv6 = frames.iter().filter(|f| f.frame[12..14] == [0x86, 0xdd]).count();
        assert!((frames.len() / 20..frames.len() / 5).contains(&ipv6), "{ipv6} IPv6 frames");
    }
}
