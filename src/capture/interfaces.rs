//! Interface discovery: which host interfaces face pods, which would be captured, and why.
//!
//! Classification is a pure function over [`LinkFacts`] (what `/sys/class/net` and the routing
//! table say about one link), so it is tested without root; [`discover`] is the thin layer that
//! reads them. Pod veths are told by topology (a veth whose peer lives in another network
//! namespace), never by name: CNIs name them freely (`veth*`, `cali*`, `lxc*`). This module
//! must not open captures; `live` does, from the list made here. Who is behind a pod veth on a
//! bridge CNI (no per-pod route) is found in [`behind`].

pub mod behind;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

/// What the system says about one link, as read from `/sys/class/net/NAME` and the routes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LinkFacts {
    pub name: String,
    pub ifindex: u32,
    /// The index of the link this one is bound to: itself for most links, the peer for a veth
    /// (an index in the peer's namespace when the peer lives elsewhere).
    pub iflink: u32,
    /// `DEVTYPE` from `uevent` (`bridge`, `vxlan`, `geneve`, `vlan`, `wireguard`, …); a veth
    /// has none.
    pub devtype: Option<String>,
    /// ARPHRD type from `type` (1 Ethernet, 772 loopback, 768 IPIP tunnel, 65534 none).
    pub arp_type: u16,
    /// `IFF_UP` from `flags`.
    pub up: bool,
    /// Has a `bridge/` directory: a bridge device.
    pub bridge: bool,
    /// The bridge (or bond) this link is enslaved to.
    pub master: Option<String>,
    /// Stacked on another link (`lower_*` entries: vlan, macvlan, ipvlan).
    pub stacked: bool,
    /// Backed by hardware (`device` entry).
    pub physical: bool,
    /// Carries a default route (IPv4 or IPv6).
    pub default_route: bool,
    /// Addresses routed to this link alone (/32, /128 routes without a gateway): the pods
    /// behind it on routed CNIs such as Calico.
    pub routed_addresses: Vec<IpAddr>,
}

/// Where a veth's other end is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// Not a veth (or the system did not say).
    None,
    /// The other end is in this namespace (a host-internal pair such as `cilium_host`).
    Local(String),
    /// The other end is in another network namespace: a pod or container.
    Elsewhere { ifindex: u32 },
}

/// What an interface is, as far as capturing pod traffic goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum InterfaceClass {
    /// The host end of a veth whose other end is in a pod or container.
    PodVeth,
    /// docker0, cni0, cbr0, kube-bridge, br-*, any bridge device.
    Bridge,
    /// A CNI device that is not a pod veth: overlays, tunnels, host-side helpers.
    Cni,
    /// Carries the default route.
    Uplink,
    Loopback,
    Other,
}

impl InterfaceClass {
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::PodVeth => "pod veth",
            Self::Bridge => "bridge",
            Self::Cni => "cni",
            Self::Uplink => "uplink",
            Self::Loopback => "loopback",
            Self::Other => "other",
        }
    }
}

/// Which interfaces to capture.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Selection {
    /// The pod-facing interfaces, so each packet a pod sends or receives is seen.
    #[default]
    PodFacing,
    /// `-i NAME` (repeatable; `*` and `?` globs such as `veth*`).
    Named(Vec<String>),
    /// `-i any`: libpcap's pseudo-device for all interfaces at once.
    Any,
}

impl Selection {
    /// The selection for `-i` values as given: none → pod-facing; `any` alone → any.
    #[must_use]
    pub fn from_names(names: &[String]) -> Self {
        match names {
            [] => Self::PodFacing,
            [only] if only == "any" => Self::Any,
            names => Self::Named(names.to_vec()),
        }
    }
}

/// One interface with its class and whether (and why) it is captured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceInfo {
    pub name: String,
    pub ifindex: u32,
    pub class: InterfaceClass,
    pub captured: bool,
    pub reason: String,
    pub master: Option<String>,
    /// The index of a pod veth's other end in the pod's namespace: the pod's `eth0` reports
    /// this interface's index as its `iflink`, which is how a pod is matched to it.
    pub peer_ifindex: Option<u32>,
    /// Addresses routed to this interface alone (routed CNIs): the pod behind it.
    pub routed_addresses: Vec<IpAddr>,
}

const BRIDGE_NAMES: &[&str] = &["docker0", "cni0", "cbr0", "kube-bridge", "br-*", "virbr*"];
const CNI_NAMES: &[&str] = &[
    "cali*",
    "lxc*",
    "cilium_*",
    "flannel.*",
    "flannel-wg*",
    "vxlan.calico",
    "vxlan-v6.calico",
    "wireguard.cali",
    "weave",
    "vethwe-*",
    "datapath",
    "tunl0",
    "genev_sys_*",
    "kube-ipvs0",
    "nodelocaldns",
    "antrea-*",
    "ovn-k8s-*",
    "kube-router*",
];
/// Device types only overlays and tunnels have.
const TUNNEL_DEVTYPES: &[&str] = &["vxlan", "geneve", "wireguard", "ipip", "gre", "gretap"];

/// Where the other end of `link` is, judged from all links of this namespace: a veth's
/// `iflink` names its peer; if this namespace has a link of that index pointing back, the pair
/// is local, else the peer is in another namespace (indexes are per namespace, so an unrelated
/// local link may share the peer's index: it does not point back).
#[must_use]
pub fn peer_of(link: &LinkFacts, links: &[LinkFacts]) -> Peer {
    let veth_like =
        link.devtype.is_none() && !link.stacked && !link.physical && link.iflink != link.ifindex;
    if !veth_like || link.iflink == 0 {
        return Peer::None;
    }
    match links.iter().find(|other| other.ifindex == link.iflink) {
        Some(other) if other.iflink == link.ifindex => Peer::Local(other.name.clone()),
        _ => Peer::Elsewhere { ifindex: link.iflink },
    }
}

/// The class of one link, given where its peer is.
#[must_use]
pub fn classify(link: &LinkFacts, peer: &Peer) -> InterfaceClass {
    if link.arp_type == 772 || link.name == "lo" {
        InterfaceClass::Loopback
    } else if link.bridge
        || link.devtype.as_deref() == Some("bridge")
        || matches_any(BRIDGE_NAMES, &link.name)
    {
        InterfaceClass::Bridge
    } else if link.default_route {
        // Before the veth test: a node reached through a veth (a VM, a test namespace) still
        // has its uplink there, and no pod veth carries the default route.
        InterfaceClass::Uplink
    } else if matches!(peer, Peer::Elsewhere { .. }) {
        InterfaceClass::PodVeth
    } else if matches_any(CNI_NAMES, &link.name)
        || link.devtype.as_deref().is_some_and(|t| TUNNEL_DEVTYPES.contains(&t))
    {
        InterfaceClass::Cni
    } else {
        InterfaceClass::Other
    }
}

/// Every link with its class and the selection's decision on it, sorted by class then name.
#[must_use]
pub fn survey(links: &[LinkFacts], selection: &Selection) -> Vec<InterfaceInfo> {
    let mut infos: Vec<InterfaceInfo> = links
        .iter()
        .map(|link| {
            let peer = peer_of(link, links);
            let class = classify(link, &peer);
            let (captured, reason) = decide(link, class, &peer, selection);
            InterfaceInfo {
                name: link.name.clone(),
                ifindex: link.ifindex,
                class,
                captured,
                reason,
                master: link.master.clone(),
                peer_ifindex: match peer {
                    Peer::Elsewhere { ifindex } => Some(ifindex),
                    _ => None,
                },
                routed_addresses: link.routed_addresses.clone(),
            }
        })
        .collect();
    infos.sort_by(|a, b| (a.class, &a.name).cmp(&(b.class, &b.name)));
    infos
}

fn decide(
    link: &LinkFacts,
    class: InterfaceClass,
    peer: &Peer,
    selection: &Selection,
) -> (bool, String) {
    match selection {
        Selection::Any => (true, "-i any: captured through libpcap's 'any' device".into()),
        Selection::Named(patterns) => match patterns.iter().find(|p| glob_match(p, &link.name)) {
            Some(_) if !link.up => (false, "named by -i, but down: attached when it comes up".into()),
            Some(pattern) => (true, format!("named by -i '{pattern}'")),
            None => (false, "not named by -i".into()),
        },
        Selection::PodFacing => match class {
            InterfaceClass::PodVeth if !link.up => {
                (false, "pod veth, down: attached when it comes up".into())
            }
            InterfaceClass::PodVeth => {
                let ifindex = match peer {
                    Peer::Elsewhere { ifindex } => *ifindex,
                    _ => 0,
                };
                (
                    true,
                    format!(
                        "pod-facing: its peer (index {ifindex}) is in another network namespace, so it sees every packet that pod sends or receives"
                    ),
                )
            }
            InterfaceClass::Bridge => (
                false,
                "bridge: the pod veths already see its pod traffic (and it misses pod-to-pod traffic); -i to add it".into(),
            ),
            InterfaceClass::Cni => match peer {
                Peer::Local(other) => (
                    false,
                    format!("CNI host-side veth paired with '{other}' in this namespace: not a pod"),
                ),
                _ => (
                    false,
                    "CNI overlay or tunnel: carries copies of what the pod veths see; -i to add it"
                        .into(),
                ),
            },
            InterfaceClass::Uplink => {
                (false, "uplink (default route): node traffic, not pod-facing; -i to add it".into())
            }
            InterfaceClass::Loopback => (false, "loopback: no pod traffic".into()),
            InterfaceClass::Other => match peer {
                Peer::Local(other) => {
                    (false, format!("veth paired with '{other}' in this namespace: not a pod"))
                }
                _ => (false, "not pod-facing".into()),
            },
        },
    }
}

fn matches_any(patterns: &[&str], name: &str) -> bool {
    patterns.iter().any(|pattern| glob_match(pattern, name))
}

/// Shell-style match of `*` (any run) and `?` (one character); everything else is literal.
#[must_use]
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    let (mut p, mut n) = (0, 0);
    // Where the last `*` was, and the name position it currently swallows up to.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == '?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((star_p, star_n)) => {
                    p = star_p + 1;
                    n = star_n + 1;
                    star = Some((star_p, star_n + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

/// The `netwatch interfaces` table. `buffer_for` gives the kernel buffer a captured interface
/// would get; `pod_for` names the pod behind an interface (matched by address or peer index,
/// never by name), where a cluster view knows it.
#[must_use]
pub fn render_table(
    interfaces: &[InterfaceInfo],
    buffer_for: impl Fn(&InterfaceInfo) -> Option<String>,
    pod_for: impl Fn(&InterfaceInfo) -> Option<String>,
) -> String {
    let rows: Vec<[String; 6]> = interfaces
        .iter()
        .map(|info| {
            let name = match &info.master {
                Some(master) => format!("{} ({master})", info.name),
                None => info.name.clone(),
            };
            [
                name,
                info.class.name().to_owned(),
                if info.captured { "yes" } else { "no" }.to_owned(),
                buffer_for(info).unwrap_or_else(|| "-".to_owned()),
                pod_for(info).unwrap_or_else(|| "-".to_owned()),
                info.reason.clone(),
            ]
        })
        .collect();
    let header = ["INTERFACE", "CLASS", "CAPTURED", "BUFFER", "POD", "WHY"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(header.map(str::to_owned)).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ", width = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Route facts per device name, parsed from `/proc/net/route` and `/proc/net/ipv6_route`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteFacts {
    pub default_devices: Vec<String>,
    pub host_routes: BTreeMap<String, Vec<IpAddr>>,
}

const RTF_GATEWAY: u32 = 0x0002;
const RTF_REJECT: u32 = 0x0200;
const RTF_LOCAL: u32 = 0x8000_0000;

/// Parses the kernel's route tables: devices carrying a default route, and the /32 and /128
/// routes without a gateway that routed CNIs install per pod.
#[must_use]
pub fn parse_routes(ipv4: &str, ipv6: &str) -> RouteFacts {
    let mut facts = RouteFacts::default();
    for line in ipv4.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [device, destination, _gateway, flags, _, _, _, mask, ..] = fields.as_slice() else {
            continue;
        };
        let (Ok(destination), Ok(flags), Ok(mask)) = (
            u32::from_str_radix(destination, 16),
            u32::from_str_radix(flags, 16),
            u32::from_str_radix(mask, 16),
        ) else {
            continue;
        };
        if flags & RTF_REJECT != 0 {
            continue;
        }
        if destination == 0 && mask == 0 {
            facts.default_devices.push((*device).to_owned());
        } else if mask == u32::MAX && flags & RTF_GATEWAY == 0 {
            // The kernel prints the address as a host-order number of network-order bytes.
            let ip = IpAddr::V4(Ipv4Addr::from(destination.to_ne_bytes()));
            facts.host_routes.entry((*device).to_owned()).or_default().push(ip);
        }
    }
    for line in ipv6.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [destination, prefix, _, _, next_hop, _, _, _, flags, device] = fields.as_slice()
        else {
            continue;
        };
        let (Ok(destination), Ok(prefix), Ok(flags)) = (
            u128::from_str_radix(destination, 16),
            u8::from_str_radix(prefix, 16),
            u32::from_str_radix(flags, 16),
        ) else {
            continue;
        };
        if flags & (RTF_REJECT | RTF_LOCAL) != 0 || *device == "lo" {
            continue;
        }
        if destination == 0 && prefix == 0 {
            facts.default_devices.push((*device).to_owned());
        } else if prefix == 128 && next_hop.chars().all(|c| c == '0') {
            let ip = IpAddr::V6(Ipv6Addr::from(destination));
            facts.host_routes.entry((*device).to_owned()).or_default().push(ip);
        }
    }
    facts.default_devices.sort();
    facts.default_devices.dedup();
    facts
}

/// Reads every link of this network namespace from `/sys/class/net` and the route tables.
/// A link that vanishes while it is read is left out: pods come and go.
pub fn discover() -> io::Result<Vec<LinkFacts>> {
    LinkCache::default().discover()
}

/// Interfaces with their class and the selection's decision: what `netwatch interfaces` shows.
pub fn list(selection: &Selection) -> io::Result<Vec<InterfaceInfo>> {
    Ok(survey(&discover()?, selection))
}

/// [`discover`] for hot-plug polling: a link still there under the same name and index keeps
/// the facts that cannot change while it exists (its type, device, bridge directory), and only
/// its state, master and peer index are read again — and, at its second poll, whether it is
/// stacked (a macvlan's `lower_*` entry may appear just after the device itself). Reading every fact took ~45 µs a
/// link here: 18 ms a poll on a node with 400 links, twice a second.
#[derive(Debug, Default)]
pub struct LinkCache {
    /// By name: the facts, and whether the link was already seen on two polls (settled).
    known: std::collections::HashMap<String, (LinkFacts, bool)>,
}

impl LinkCache {
    pub fn discover(&mut self) -> io::Result<Vec<LinkFacts>> {
        let routes = parse_routes(
            &std::fs::read_to_string("/proc/net/route").unwrap_or_default(),
            &std::fs::read_to_string("/proc/net/ipv6_route").unwrap_or_default(),
        );
        self.discover_in(Path::new("/sys/class/net"), &routes)
    }

    fn discover_in(&mut self, root: &Path, routes: &RouteFacts) -> io::Result<Vec<LinkFacts>> {
        let mut links = Vec::new();
        for entry in std::fs::read_dir(root)? {
            let Ok(entry) = entry else { continue };
            let name = entry.file_name().to_string_lossy().into_owned();
            let dir = entry.path();
            let read = match self.known.get(&name) {
                Some((known, settled)) if read_number(&dir, "ifindex") == Some(known.ifindex) => {
                    refresh(known, *settled, &dir).map(|link| (link, true))
                }
                _ => read_link(&dir, &name).map(|link| (link, false)),
            };
            if let Some((mut link, settled)) = read {
                link.default_route = routes.default_devices.contains(&name);
                link.routed_addresses = routes.host_routes.get(&name).cloned().unwrap_or_default();
                links.push((link, settled));
            }
        }
        // What is gone is forgotten: a link made later under its name is read whole.
        self.known = links
            .iter()
            .map(|(link, settled)| (link.name.clone(), (link.clone(), *settled)))
            .collect();
        let mut links: Vec<LinkFacts> = links.into_iter().map(|(link, _)| link).collect();
        links.sort_by_key(|link| link.ifindex);
        Ok(links)
    }
}

/// A known link read again where it can change: up or down, enslaved or not, its peer's index
/// (a veth's peer may move to a pod's namespace after the host end appeared), and until it is
/// `settled`, whether it is stacked. `None` when it vanished meanwhile.
fn refresh(known: &LinkFacts, settled: bool, dir: &Path) -> Option<LinkFacts> {
    let changing = read_changing(dir, known.ifindex)?;
    Some(LinkFacts {
        iflink: changing.iflink,
        up: changing.up,
        master: changing.master,
        // A directory listing costs as much as the rest of the refresh: once is enough.
        stacked: if settled { known.stacked } else { known.stacked || read_stacked(dir) },
        ..known.clone()
    })
}

/// The facts of a link that change while it exists.
struct Changing {
    iflink: u32,
    up: bool,
    master: Option<String>,
}

/// Reads them; `None` when the link vanished meanwhile (its `flags` are gone).
fn read_changing(dir: &Path, ifindex: u32) -> Option<Changing> {
    let flags = read_flags(dir)?;
    Some(Changing {
        iflink: read_number(dir, "iflink").unwrap_or(ifindex),
        up: flags & 0x1 != 0,
        master: read_master(dir),
    })
}

fn read_stacked(dir: &Path) -> bool {
    std::fs::read_dir(dir).ok().is_some_and(|entries| {
        entries.flatten().any(|e| e.file_name().to_string_lossy().starts_with("lower_"))
    })
}

fn read_text(dir: &Path, file: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(file)).ok()
}

fn read_number(dir: &Path, file: &str) -> Option<u32> {
    read_text(dir, file).and_then(|text| text.trim().parse::<u32>().ok())
}

fn read_flags(dir: &Path) -> Option<u32> {
    read_text(dir, "flags")
        .and_then(|text| u32::from_str_radix(text.trim().trim_start_matches("0x"), 16).ok())
}

fn read_master(dir: &Path) -> Option<String> {
    std::fs::read_link(dir.join("master"))
        .ok()
        .and_then(|target| target.file_name().map(|n| n.to_string_lossy().into_owned()))
}

fn read_link(dir: &Path, name: &str) -> Option<LinkFacts> {
    let ifindex = read_number(dir, "ifindex")?;
    let changing = read_changing(dir, ifindex)?;
    let devtype = read_text(dir, "uevent").and_then(|text| {
        text.lines().find_map(|line| line.strip_prefix("DEVTYPE=").map(str::to_owned))
    });
    let stacked = read_stacked(dir);
    Some(LinkFacts {
        name: name.to_owned(),
        ifindex,
        iflink: changing.iflink,
        devtype,
        arp_type: read_number(dir, "type").and_then(|t| u16::try_from(t).ok()).unwrap_or(0),
        up: changing.up,
        bridge: dir.join("bridge").is_dir(),
        master: changing.master,
        stacked,
        physical: dir.join("device").exists(),
        default_route: false,
        routed_addresses: Vec::new(),
    })
}

#[cfg(test)]
mod link_cache;

#[cfg(test)]
mod tests;
