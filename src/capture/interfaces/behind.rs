//! Who is behind a pod veth, when no route names the pod (bridge CNIs: one /24 on the bridge):
//! the pod's addresses, from which the cluster view finds the pod.
//!
//! Two ways, neither by interface name:
//! * **Kernel tables, without entering any namespace.** The ARP table maps a pod's IP to its MAC
//!   on the bridge (`/proc/net/arp`), the bridge's forwarding database maps that MAC to a port
//!   (`/sys/class/net/BRIDGE/brforward`), and each veth says which port it is
//!   (`/sys/class/net/VETH/brport/port_no`). IPv4 only (no such file lists IPv6 neighbours), and
//!   only for pods the node has talked to lately.
//! * **The peer's namespace.** A veth's peer index (`iflink`) is an index in the pod's network
//!   namespace; its `link_netnsid` says which namespace. For the named namespaces CNI plugins
//!   create in `/var/run/netns`, `ip -n NAME -j addr` lists that namespace's links: the one with
//!   the peer's index, pointing back at our veth, carries the pod's addresses.
//!
//! Parsing and matching are pure and tested on fixtures; [`via_bridge_tables`] and
//! [`via_peer_namespaces`] are the thin readers. Anything unreadable means "not known": this
//! only ever adds a name to the interfaces table.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;

use super::{InterfaceClass, InterfaceInfo};

/// One complete entry of `/proc/net/arp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArpEntry {
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
    pub device: String,
}

/// `ATF_COM`: the entry's MAC is known (incomplete entries are all zeros).
const ATF_COM: u32 = 0x2;

/// Parses `/proc/net/arp`: complete entries only.
#[must_use]
pub fn parse_arp(text: &str) -> Vec<ArpEntry> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [ip, _hw_type, flags, mac, _mask, device] = fields.as_slice() else {
                return None;
            };
            let flags = u32::from_str_radix(flags.trim_start_matches("0x"), 16).ok()?;
            (flags & ATF_COM != 0).then_some(())?;
            Some(ArpEntry { ip: ip.parse().ok()?, mac: parse_mac(mac)?, device: (*device).into() })
        })
        .collect()
}

fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// One entry of a bridge's forwarding database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdbEntry {
    pub mac: [u8; 6],
    pub port: u16,
    /// The bridge's or a port's own address, not one learned from traffic.
    pub local: bool,
}

/// `sizeof(struct __fdb_entry)` in `linux/if_bridge.h`: mac_addr[6], port_no, is_local,
/// ageing_timer_value (u32), port_hi, pad0, unused (u16).
const FDB_ENTRY_LEN: usize = 16;

/// Parses the binary `brforward` file: whole 16-byte entries (a torn tail is ignored).
#[must_use]
pub fn parse_brforward(bytes: &[u8]) -> Vec<FdbEntry> {
    bytes
        .chunks_exact(FDB_ENTRY_LEN)
        .map(|entry| {
            let mut mac = [0u8; 6];
            mac.copy_from_slice(&entry[..6]);
            // The port number's high byte came later (port_hi), after 256 ports ran out.
            let port = u16::from_be_bytes([entry[12], entry[6]]);
            FdbEntry { mac, port, local: entry[7] != 0 }
        })
        .collect()
}

/// Parses `brport/port_no` (`0x3`).
#[must_use]
pub fn parse_port_no(text: &str) -> Option<u16> {
    let text = text.trim();
    let digits = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X"))?;
    u16::from_str_radix(digits, 16).ok()
}

/// One bridge port: a veth and its port number on its bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgePort {
    pub ifindex: u32,
    pub bridge: String,
    pub port: u16,
}

/// Addresses behind each bridge port (by the port's interface index): an ARP entry on the
/// bridge, whose MAC the bridge learned on that port.
#[must_use]
pub fn match_bridge_tables(
    arp: &[ArpEntry],
    fdb: &BTreeMap<String, Vec<FdbEntry>>,
    ports: &[BridgePort],
) -> BTreeMap<u32, Vec<IpAddr>> {
    let mut found: BTreeMap<u32, Vec<IpAddr>> = BTreeMap::new();
    for entry in arp {
        let Some(table) = fdb.get(&entry.device) else { continue };
        let learned = table.iter().filter(|f| !f.local && f.mac == entry.mac);
        let port_numbers: BTreeSet<u16> = learned.map(|f| f.port).collect();
        // A MAC learned on two ports (moving between them) names neither for sure.
        let [port] = port_numbers.into_iter().collect::<Vec<_>>()[..] else { continue };
        for veth in ports.iter().filter(|p| p.bridge == entry.device && p.port == port) {
            let ips = found.entry(veth.ifindex).or_default();
            if !ips.contains(&IpAddr::V4(entry.ip)) {
                ips.push(IpAddr::V4(entry.ip));
            }
        }
    }
    found
}

/// What `ip -j link` or `ip -j addr` (iproute2 JSON) says about one link.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NsLink {
    pub ifindex: u32,
    /// The peer's index (in the peer's namespace when `link_netnsid` is set).
    pub link_index: Option<u32>,
    /// The id, in this link's namespace, of the namespace its peer is in.
    pub link_netnsid: Option<i64>,
    /// Global-scope addresses (not loopback, not link-local).
    pub addresses: Vec<IpAddr>,
}

/// Parses iproute2's JSON list of links (`ip -j link`, `ip -j addr`).
pub fn parse_ip_links(json: &str) -> Result<Vec<NsLink>, String> {
    let value: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let links = value.as_array().ok_or("not a JSON list of links")?;
    let number = |link: &serde_json::Value, key: &str| link.get(key).and_then(|v| v.as_u64());
    Ok(links
        .iter()
        .filter_map(|link| {
            let addresses = link
                .get("addr_info")
                .and_then(|a| a.as_array())
                .into_iter()
                .flatten()
                .filter(|a| a.get("scope").and_then(|s| s.as_str()) == Some("global"))
                .filter_map(|a| a.get("local")?.as_str()?.parse().ok())
                .collect();
            Some(NsLink {
                ifindex: u32::try_from(number(link, "ifindex")?).ok()?,
                link_index: number(link, "link_index").and_then(|i| u32::try_from(i).ok()),
                link_netnsid: link.get("link_netnsid").and_then(serde_json::Value::as_i64),
                addresses,
            })
        })
        .collect())
}

/// Parses `ip -j netns list`: each named namespace with its id here, where it has one.
pub fn parse_netns_list(json: &str) -> Result<Vec<(String, Option<i64>)>, String> {
    // iproute2 prints nothing at all when there is no named namespace.
    if json.trim().is_empty() {
        return Ok(Vec::new());
    }
    let value: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let list = value.as_array().ok_or("not a JSON list of namespaces")?;
    Ok(list
        .iter()
        .filter_map(|ns| {
            let name = ns.get("name")?.as_str()?.to_owned();
            Some((name, ns.get("id").and_then(serde_json::Value::as_i64)))
        })
        .collect())
}

/// A pod veth as the peer match needs it: its index here, and what `ip -j link` says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerQuery {
    pub ifindex: u32,
    pub peer_ifindex: u32,
    /// The peer namespace's id here (`link_netnsid`), where the kernel gave one.
    pub netnsid: Option<i64>,
}

/// Addresses behind each veth (by its index) from its peer in a named namespace: the link
/// whose index is the veth's peer index and whose own peer is the veth. The namespace is the
/// one whose id is the veth's `link_netnsid`; without one, any named namespace, if exactly one
/// matches (indexes repeat across namespaces, so two matches name neither).
#[must_use]
pub fn match_peer_namespaces(
    veths: &[PeerQuery],
    namespaces: &[(String, Option<i64>)],
    links: &BTreeMap<String, Vec<NsLink>>,
) -> BTreeMap<u32, Vec<IpAddr>> {
    let mut found = BTreeMap::new();
    for veth in veths {
        let candidates: Vec<&str> = match veth.netnsid {
            Some(id) => namespaces
                .iter()
                .filter(|(_, ns_id)| *ns_id == Some(id))
                .map(|(name, _)| name.as_str())
                .collect(),
            None => namespaces.iter().map(|(name, _)| name.as_str()).collect(),
        };
        let peers: Vec<&NsLink> = candidates
            .iter()
            .filter_map(|name| links.get(*name))
            .flat_map(|ns_links| ns_links.iter())
            .filter(|l| l.ifindex == veth.peer_ifindex && l.link_index == Some(veth.ifindex))
            .collect();
        if let [peer] = peers[..]
            && !peer.addresses.is_empty()
        {
            found.insert(veth.ifindex, peer.addresses.clone());
        }
    }
    found
}

/// The pod veths' addresses as the bridge tables give them (by interface index).
#[must_use]
pub fn via_bridge_tables(interfaces: &[InterfaceInfo]) -> BTreeMap<u32, Vec<IpAddr>> {
    let read = |path: String| std::fs::read_to_string(path).ok();
    let ports: Vec<BridgePort> = interfaces
        .iter()
        .filter(|info| info.class == InterfaceClass::PodVeth)
        .filter_map(|info| {
            let bridge = info.master.clone()?;
            let port =
                parse_port_no(&read(format!("/sys/class/net/{}/brport/port_no", info.name))?)?;
            Some(BridgePort { ifindex: info.ifindex, bridge, port })
        })
        .collect();
    if ports.is_empty() {
        return BTreeMap::new();
    }
    let bridges: BTreeSet<&str> = ports.iter().map(|p| p.bridge.as_str()).collect();
    let fdb = bridges
        .into_iter()
        .filter_map(|bridge| {
            let bytes = std::fs::read(format!("/sys/class/net/{bridge}/brforward")).ok()?;
            Some((bridge.to_owned(), parse_brforward(&bytes)))
        })
        .collect();
    let arp = parse_arp(&read("/proc/net/arp".into()).unwrap_or_default());
    match_bridge_tables(&arp, &fdb, &ports)
}

/// The pod veths' addresses from their peers in named network namespaces (by interface
/// index). Needs iproute2's `ip`; without it, or without named namespaces, finds nothing.
#[must_use]
pub fn via_peer_namespaces(interfaces: &[InterfaceInfo]) -> BTreeMap<u32, Vec<IpAddr>> {
    let pod_veths: Vec<(u32, u32)> = interfaces
        .iter()
        .filter(|info| info.class == InterfaceClass::PodVeth)
        .filter_map(|info| Some((info.ifindex, info.peer_ifindex?)))
        .collect();
    if pod_veths.is_empty() {
        return BTreeMap::new();
    }
    let Some(namespaces) = ip(&["-j", "netns", "list"]).and_then(|t| parse_netns_list(&t).ok())
    else {
        return BTreeMap::new();
    };
    let here =
        ip(&["-j", "link", "show"]).and_then(|t| parse_ip_links(&t).ok()).unwrap_or_default();
    let veths: Vec<PeerQuery> = pod_veths
        .iter()
        .map(|(ifindex, peer_ifindex)| PeerQuery {
            ifindex: *ifindex,
            peer_ifindex: *peer_ifindex,
            netnsid: here.iter().find(|l| l.ifindex == *ifindex).and_then(|l| l.link_netnsid),
        })
        .collect();
    // Only the namespaces some veth may point into are asked.
    let wanted = |id: Option<i64>| veths.iter().any(|v| v.netnsid.is_none() || v.netnsid == id);
    let links = namespaces
        .iter()
        .filter(|(_, id)| wanted(*id))
        .filter_map(|(name, _)| {
            let text = ip(&["-n", name, "-j", "addr", "show"])?;
            Some((name.clone(), parse_ip_links(&text).ok()?))
        })
        .collect();
    match_peer_namespaces(&veths, &namespaces, &links)
}

/// Runs `ip ARGS…` and returns its output, or `None` when it cannot run or fails.
fn ip(args: &[&str]) -> Option<String> {
    let output = Command::new("ip").args(args).output().ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARP: &str = "\
IP address       HW type     Flags       HW address            Mask     Device
10.244.7.12      0x1         0x2         be:ef:00:00:00:12     *        cni0
10.244.7.11      0x1         0x2         be:ef:00:00:00:11     *        cni0
10.244.7.99      0x1         0x0         00:00:00:00:00:00     *        cni0
10.244.7.13      0x1         0x2         be:ef:00:00:00:13     *        cni0
198.51.100.2     0x1         0x2         02:00:c6:33:64:02     *        eth0
garbage
";

    fn fdb_entry(mac: [u8; 6], port: u16, local: bool) -> Vec<u8> {
        let mut entry = mac.to_vec();
        let [hi, lo] = port.to_be_bytes();
        entry.extend_from_slice(&[lo, u8::from(local)]);
        entry.extend_from_slice(&300u32.to_ne_bytes());
        entry.extend_from_slice(&[hi, 0, 0, 0]);
        entry
    }

    fn mac(last: u8) -> [u8; 6] {
        [0xbe, 0xef, 0, 0, 0, last]
    }

    #[test]
    fn the_arp_table_gives_complete_entries_only() {
        let arp = parse_arp(ARP);
        let ips: Vec<String> = arp.iter().map(|e| e.ip.to_string()).collect();
        assert_eq!(ips, ["10.244.7.12", "10.244.7.11", "10.244.7.13", "198.51.100.2"]);
        assert_eq!(arp[0].mac, mac(0x12));
        assert_eq!(arp[0].device, "cni0");
        assert_eq!(parse_mac("be:ef:00:00:00"), None);
        assert_eq!(parse_mac("be:ef:00:00:00:12:34"), None);
    }

    #[test]
    fn brforward_entries_are_sixteen_bytes_with_the_port_split_in_two() {
        let mut bytes = fdb_entry(mac(0x11), 1, false);
        bytes.extend(fdb_entry(mac(0x12), 0x0102, false));
        bytes.extend(fdb_entry([2, 0, 0, 0, 0, 1], 1, true));
        bytes.extend_from_slice(&[1, 2, 3]);
        let entries = parse_brforward(&bytes);
        assert_eq!(
            entries,
            [
                FdbEntry { mac: mac(0x11), port: 1, local: false },
                FdbEntry { mac: mac(0x12), port: 0x0102, local: false },
                FdbEntry { mac: [2, 0, 0, 0, 0, 1], port: 1, local: true },
            ]
        );
        assert_eq!(parse_port_no("0x3\n"), Some(3));
        assert_eq!(parse_port_no("0x1ff"), Some(0x1ff));
        assert_eq!(parse_port_no("3"), None);
        assert_eq!(parse_port_no("0xzz"), None);
    }

    #[test]
    fn an_ip_on_the_bridge_names_the_veth_whose_port_learned_its_mac() {
        let arp = parse_arp(ARP);
        let mut table = Vec::new();
        table.extend(fdb_entry(mac(0x11), 1, false));
        table.extend(fdb_entry(mac(0x12), 2, false));
        // .13's MAC moved between ports: not trusted. The local entry is the veth's own MAC.
        table.extend(fdb_entry(mac(0x13), 1, false));
        table.extend(fdb_entry(mac(0x13), 3, false));
        table.extend(fdb_entry(mac(0x12), 1, true));
        let fdb = BTreeMap::from([("cni0".to_owned(), parse_brforward(&table))]);
        let port = |ifindex, port| BridgePort { ifindex, bridge: "cni0".into(), port };
        let ports = [port(4, 1), port(5, 2), port(6, 3)];
        let found = match_bridge_tables(&arp, &fdb, &ports);
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        assert_eq!(
            found,
            BTreeMap::from([(4, vec![ip("10.244.7.11")]), (5, vec![ip("10.244.7.12")])])
        );
        // Another bridge's port with the same number is not confused with these.
        let other = [BridgePort { ifindex: 9, bridge: "docker0".into(), port: 1 }];
        assert!(match_bridge_tables(&arp, &fdb, &other).is_empty());
    }

    /// `ip -n POD -j addr` in a pod namespace (iproute2 6.1), and `ip -j link` on the node.
    const POD_ADDR: &str = r#"[{"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"mtu":65536,"qdisc":"noqueue","operstate":"UNKNOWN","group":"default","txqlen":1000,"link_type":"loopback","address":"00:00:00:00:00:00","broadcast":"00:00:00:00:00:00","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8,"scope":"host","label":"lo","valid_life_time":4294967295,"preferred_life_time":4294967295}]},{"ifindex":2,"link_index":10,"ifname":"eth0","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1500,"qdisc":"noqueue","operstate":"UP","group":"default","txqlen":1000,"link_type":"ether","address":"e6:15:00:24:c6:e0","broadcast":"ff:ff:ff:ff:ff:ff","link_netnsid":0,"addr_info":[{"family":"inet","local":"10.244.7.12","prefixlen":24,"scope":"global","label":"eth0","valid_life_time":4294967295,"preferred_life_time":4294967295},{"family":"inet6","local":"fd00::12","prefixlen":64,"scope":"global","valid_life_time":4294967295,"preferred_life_time":4294967295},{"family":"inet6","local":"fe80::e415:ff:fe24:c6e0","prefixlen":64,"scope":"link","valid_life_time":4294967295,"preferred_life_time":4294967295}]}]"#;
    const NODE_LINK: &str = r#"[{"ifindex":10,"link_index":2,"ifname":"veth1a2b","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1500,"qdisc":"noqueue","master":"cni0","operstate":"UP","linkmode":"DEFAULT","group":"default","txqlen":1000,"link_type":"ether","address":"7e:74:ae:0a:3d:6b","broadcast":"ff:ff:ff:ff:ff:ff","link_netnsid":3}]"#;

    #[test]
    fn iproute2_json_gives_indexes_peer_and_global_addresses() {
        let pod = parse_ip_links(POD_ADDR).unwrap();
        assert_eq!(pod.len(), 2);
        assert_eq!(pod[0].addresses, Vec::<IpAddr>::new(), "loopback is not the pod's address");
        let ips: Vec<String> = pod[1].addresses.iter().map(ToString::to_string).collect();
        assert_eq!(ips, ["10.244.7.12", "fd00::12"]);
        assert_eq!(
            (pod[1].ifindex, pod[1].link_index, pod[1].link_netnsid),
            (2, Some(10), Some(0))
        );
        let node = parse_ip_links(NODE_LINK).unwrap();
        assert_eq!((node[0].ifindex, node[0].link_netnsid), (10, Some(3)));
        assert!(parse_ip_links("{").is_err());
        assert!(parse_ip_links(r#"{"ifindex":1}"#).is_err());
        let namespaces = parse_netns_list(r#"[{"name":"cni-1234","id":3},{"name":"lonely"}]"#);
        assert_eq!(
            namespaces.unwrap(),
            [("cni-1234".to_owned(), Some(3)), ("lonely".to_owned(), None)]
        );
        assert_eq!(parse_netns_list("\n").unwrap(), []);
    }

    #[test]
    fn the_peer_in_the_namespace_of_the_veths_netnsid_gives_the_pods_addresses() {
        let pod = parse_ip_links(POD_ADDR).unwrap();
        // Another pod namespace whose eth0 has the same indexes: it must not be taken instead.
        let twin = vec![NsLink { addresses: vec!["10.9.9.9".parse().unwrap()], ..pod[1].clone() }];
        let links = BTreeMap::from([("cni-a".to_owned(), pod), ("cni-b".to_owned(), twin)]);
        let namespaces = [("cni-a".to_owned(), Some(3)), ("cni-b".to_owned(), Some(4))];
        let query = PeerQuery { ifindex: 10, peer_ifindex: 2, netnsid: Some(3) };
        let found = match_peer_namespaces(std::slice::from_ref(&query), &namespaces, &links);
        assert_eq!(found[&10][0].to_string(), "10.244.7.12");
        // Without the id, two namespaces match: neither is trusted.
        let unknown = PeerQuery { netnsid: None, ..query.clone() };
        assert!(
            match_peer_namespaces(std::slice::from_ref(&unknown), &namespaces, &links).is_empty()
        );
        let only_a = BTreeMap::from([("cni-a".to_owned(), links["cni-a"].clone())]);
        assert_eq!(match_peer_namespaces(&[unknown], &namespaces, &only_a).len(), 1);
        // A link with the peer's index that does not point back at this veth is someone else.
        let elsewhere = PeerQuery { ifindex: 11, ..query };
        assert!(match_peer_namespaces(&[elsewhere], &namespaces, &links).is_empty());
    }
}
