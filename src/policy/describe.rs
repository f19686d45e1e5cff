//! The wording of verdict reasons: rules' ports and peers, and the traffic being judged, in the
//! notation `kubectl describe networkpolicy` users know. Pure string building; no decisions.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::Direction;
use super::compile::{Peer, PortMatch, PortSpec};
use super::evaluate::Side;

/// A rule's ports, grouped by port: `UDP/TCP port 53, TCP ports 8000-9000`; `traffic` when the
/// rule has no ports (it allows every port and protocol).
pub(super) fn ports(entries: Option<&[PortMatch]>) -> String {
    let Some(entries) = entries else {
        return "traffic".to_owned();
    };
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for entry in entries {
        let label = match &entry.port {
            PortSpec::Any => "(any port)".to_owned(),
            PortSpec::Range(start, end) if start == end => format!("port {start}"),
            PortSpec::Range(start, end) => format!("ports {start}-{end}"),
            PortSpec::Named(name) => format!("port '{name}'"),
            PortSpec::Invalid => "(invalid port entry)".to_owned(),
        };
        let protocol = entry.protocol.name().into_owned();
        match groups.iter_mut().find(|(existing, _)| *existing == label) {
            Some((_, protocols)) if !protocols.contains(&protocol) => protocols.push(protocol),
            Some(_) => {}
            None => groups.push((label, vec![protocol])),
        }
    }
    groups
        .iter()
        .map(|(label, protocols)| format!("{} {label}", protocols.join("/")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A rule's peers, joined by "or": `pods app=api in shop or 10.0.0.0/8 except 10.1.0.0/16`.
pub(super) fn peers(peers: Option<&[Peer]>, namespace: &str) -> String {
    let Some(peers) = peers else {
        return "any peer".to_owned();
    };
    peers.iter().map(|peer| self::peer(peer, namespace)).collect::<Vec<_>>().join(" or ")
}

fn peer(peer: &Peer, namespace: &str) -> String {
    match peer {
        Peer::Pods { namespaces, pods } => {
            let pods =
                if pods.is_everything() { "all pods".to_owned() } else { format!("pods {pods}") };
            match namespaces {
                None => format!("{pods} in {namespace}"),
                Some((_, selector)) if selector.is_everything() => {
                    format!("{pods} in all namespaces")
                }
                Some((_, selector)) => format!("{pods} in namespaces {selector}"),
            }
        }
        Peer::Block(block) => {
            let mut text = block.cidr.to_string();
            if !block.except.is_empty() {
                let except: Vec<String> = block.except.iter().map(ToString::to_string).collect();
                let _ = write!(text, " except {}", except.join(", "));
            }
            text
        }
        Peer::Invalid => "(invalid peer)".to_owned(),
    }
}

/// The traffic of one side: `TCP 203.0.113.10:443` for egress, `TCP port 8080 from 10.0.0.5
/// (shop/web-a)` for ingress.
pub(super) fn traffic(side: &Side<'_>) -> String {
    let protocol = side.protocol;
    let who =
        side.peer.pod.map(|pod| format!(" ({}/{})", pod.namespace, pod.name)).unwrap_or_default();
    match (side.direction, side.port) {
        (Direction::Egress, Some(port)) => {
            format!("{protocol} {}{who}", socket(side.peer.ip, port))
        }
        (Direction::Egress, None) => format!("{protocol} {}{who}", side.peer.ip),
        (Direction::Ingress, Some(port)) => {
            format!("{protocol} port {port} from {}{who}", side.peer.ip)
        }
        (Direction::Ingress, None) => format!("{protocol} from {}{who}", side.peer.ip),
    }
}

/// `ip:port`, with brackets for IPv6.
pub(super) fn socket(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(ip) => format!("{ip}:{port}"),
        IpAddr::V6(ip) => format!("[{ip}]:{port}"),
    }
}

/// At most `limit` names, then "and N more".
pub(super) fn list(names: &[String], limit: usize) -> String {
    if names.len() <= limit {
        return names.join(", ");
    }
    let shown = names.get(..limit).unwrap_or_default().join(", ");
    format!("{shown} and {} more", names.len() - limit)
}
