//! A flow's record and its verdict: the names of both ends as the cluster view has them, the
//! verdict under the current policies (cached per connection), and the name DNS gave the
//! responder.

use std::sync::Arc;

use crate::cluster::{ClusterView, IpOwner, ResourceKind};
use crate::flow::dedup::Endpoints;
use crate::flow::{Flow, LearnedName, SocketEnd};
use crate::identity::{self, EndpointKind, Identity};
use crate::names::NameBook;
use crate::policy::{Connection, Decision, PolicySet, Verdict};
use crate::snapshot::{EndpointRecord, FlowRecord, NameSource, TxRx};
use crate::time::Timestamp;
use rustc_hash::FxHashMap;

/// What turning a flow into a record reads (and the verdict cache it fills): borrowed field by
/// field, so records can be made while the flow table is being read.
pub(super) struct RecordContext<'a> {
    pub(super) view: &'a ClusterView,
    pub(super) policies: &'a PolicySet,
    pub(super) verdicts: &'a mut VerdictCache,
    pub(super) interface_names: &'a [String],
    pub(super) input_ended: bool,
}

/// [`Engine::refresh_cluster`](super::Engine::refresh_cluster) on the fields it needs, so a caller may hold a flow of the table.
pub(super) fn refresh_cluster(
    view: &mut ClusterView,
    policies: &mut PolicySet,
    policy_diagnostics: &mut Vec<String>,
    verdicts: &mut VerdictCache,
) {
    view.reindex();
    if policies.generation() != view.generation() {
        let (compiled, diagnostics) = PolicySet::compile(view);
        *policies = compiled;
        *policy_diagnostics = diagnostics.iter().map(ToString::to_string).collect();
        verdicts.clear();
    }
}

pub(super) fn record(ctx: &mut RecordContext<'_>, flow: &Flow, now: Timestamp) -> FlowRecord {
    let protocol = flow.key.protocol;
    let port = |p: u16| protocol.has_ports().then_some(p);
    let (initiator, responder) = (flow.initiator(), flow.responder());
    let (src_id, dst_id, verdict) = match &flow.closed_as {
        Some(closed) => {
            (closed.initiator.clone(), closed.responder.clone(), Arc::clone(&closed.verdict))
        }
        None => (
            identity::resolve(ctx.view, initiator.ip, initiator.port, protocol),
            identity::resolve(ctx.view, responder.ip, responder.port, protocol),
            current_verdict(ctx, &connection_of(flow)),
        ),
    };
    let violation = verdict.violation();
    let denied =
        verdict.egress.decision == Decision::Deny || verdict.ingress.decision == Decision::Deny;
    let dst_external = dst_id.kind == EndpointKind::External;
    let learned = flow.responder_name();
    let own_lookup = learned.is_some_and(|(_, own)| own);
    let direct_ip = dst_external && src_id.kind != EndpointKind::External && !own_lookup;
    let service = (dst_id.kind == EndpointKind::Service).then(|| dst_id.qualified_name()).flatten();
    let mut src = endpoint_record(initiator.ip, port(initiator.port), src_id);
    let mut dst = endpoint_record(responder.ip, port(responder.port), dst_id);
    src.dns = None;
    if let Some((name, own)) = learned {
        dst.dns = Some(name.to_owned());
        dst.dns_source = Some(if own { NameSource::Own } else { NameSource::Other });
    }
    dst.sni = flow.sni.as_deref().map(str::to_owned);
    dst.http_host = flow.http_host.as_deref().map(str::to_owned);
    let rates = flow.rates.rates(now.whole_secs());
    let backend = flow.backend.as_deref().map(|end| {
        Box::new(endpoint_record(
            end.ip,
            port(end.port),
            identity::resolve(ctx.view, end.ip, end.port, protocol),
        ))
    });
    FlowRecord {
        first_seen: flow.first_seen,
        last_seen: flow.last_seen,
        protocol,
        src,
        dst,
        service,
        backend,
        packets: TxRx { tx: flow.tx.packets, rx: flow.rx.packets },
        bytes: TxRx { tx: flow.tx.bytes, rx: flow.rx.bytes },
        tcp: flow.tcp_state_at(now, ctx.input_ended),
        interfaces: flow
            .interfaces
            .iter()
            .map(|i| {
                ctx.interface_names
                    .get(usize::from(*i))
                    .cloned()
                    .unwrap_or_else(|| format!("if{i}"))
            })
            .collect(),
        leak: denied && flow.got_replies(),
        violation,
        verdict,
        direct_ip,
        flow_id: flow.id,
        rates: (rates.tx_bytes_per_sec, rates.rx_bytes_per_sec),
    }
}

/// The post-DNAT end of a packet counted as `counted` but seen as `seen`: what the flow's
/// `responder` (a Service address) was translated to, in either direction of the conversation.
/// A rewritten initiator end (SNAT, masquerade on the uplink) names no backend.
pub(super) fn backend_of(
    responder: SocketEnd,
    counted: Endpoints,
    seen: Endpoints,
) -> Option<SocketEnd> {
    if counted.dst == responder && seen.dst != counted.dst {
        Some(seen.dst)
    } else if counted.src == responder && seen.src != counted.src {
        Some(seen.src)
    } else {
        None
    }
}

/// Verdicts under the current policies, shared (not copied: many flows and their records hold
/// the same one) until the cluster view changes.
#[derive(Default)]
pub(super) struct VerdictCache {
    by_connection: FxHashMap<Connection, Arc<Verdict>>,
    /// The one verdict of every connection between two addresses the cluster does not know: a
    /// capture of hosts outside any cluster would otherwise fill the map one per connection.
    between_strangers: Option<Arc<Verdict>>,
    /// The one verdict while the policies or namespaces are not listed yet.
    unlisted: Option<Arc<Verdict>>,
    /// The one verdict of a denial that may be for want of the Nodes, or the Services, not
    /// listed yet (by [`UnlistedKind`]).
    denial_unlisted: [Option<Arc<Verdict>>; 2],
}

impl VerdictCache {
    fn clear(&mut self) {
        self.by_connection.clear();
        self.between_strangers = None;
        self.unlisted = None;
        self.denial_unlisted = [None, None];
    }
}

/// The verdict under the current policies, cached until the cluster view changes.
pub(super) fn current_verdict(
    ctx: &mut RecordContext<'_>,
    connection: &Connection,
) -> Arc<Verdict> {
    let (policies, view) = (ctx.policies, ctx.view);
    if let Some(missing) = unlisted_for_verdicts(view) {
        // "No policy isolates this pod" cannot be said before the policies are known (their
        // list is in flight, or the API refuses it): n/a, saying why.
        let verdict = ctx
            .verdicts
            .unlisted
            .get_or_insert_with(|| Arc::new(Verdict::not_evaluated(&not_listed_yet(missing))));
        return Arc::clone(verdict);
    }
    if view.owners(connection.src).is_empty() && view.owners(connection.dst).is_empty() {
        // Neither end is a pod, node or service: no policy can apply, whatever the port.
        let verdict = ctx
            .verdicts
            .between_strangers
            .get_or_insert_with(|| Arc::new(policies.evaluate(view, connection)));
        return Arc::clone(verdict);
    }
    // Cached with the rest: a kind listed later bumps the view's generation, which clears it.
    let VerdictCache { by_connection, denial_unlisted, .. } = &mut *ctx.verdicts;
    let verdict = by_connection.entry(*connection).or_insert_with(|| {
        let verdict = policies.evaluate(view, connection);
        match UnlistedKind::for_denial(view, connection, &verdict) {
            Some(kind) => Arc::clone(
                denial_unlisted[kind as usize].get_or_insert_with(|| Arc::new(kind.verdict())),
            ),
            None => Arc::new(verdict),
        }
    });
    Arc::clone(verdict)
}

/// A kind whose listing a denial may wait for (see [`UnlistedKind::for_denial`]).
#[derive(Debug, Clone, Copy)]
enum UnlistedKind {
    Nodes,
    Services,
}

impl UnlistedKind {
    /// A denial that may be only for want of a kind not listed yet (or that the API refuses):
    /// traffic to a pod from an address nothing owns may come from the pod's own node (its
    /// kubelet's probes), which is always allowed, until the Nodes are listed; a destination
    /// nothing owns may be a Service's address, judged after DNAT as the backends behind it,
    /// until the Services are (so until then a denial of egress outside the cluster waits too:
    /// its address cannot be told from a ClusterIP). Only denials wait, each on the kind it may
    /// lack, not every verdict on every kind: Nodes are often refused to users who may read
    /// the rest, and their pods' egress must still be judged.
    fn for_denial(view: &ClusterView, connection: &Connection, verdict: &Verdict) -> Option<Self> {
        let unlisted = |kind| !view.synced.contains(&kind);
        let unowned = |ip| view.owners(ip).is_empty();
        if verdict.ingress.decision == Decision::Deny
            && unlisted(ResourceKind::Node)
            && unowned(connection.src)
        {
            Some(Self::Nodes)
        } else if verdict.egress.decision == Decision::Deny
            && unlisted(ResourceKind::Service)
            && unowned(connection.dst)
        {
            Some(Self::Services)
        } else {
            None
        }
    }

    /// The n/a verdict that says what is missing.
    fn verdict(self) -> Verdict {
        let (kind, why) = match self {
            Self::Nodes => {
                ("Nodes", "the source may be the pod's own node, whose traffic is always allowed")
            }
            Self::Services => {
                ("Services", "the destination may be a Service, judged as the backends behind it")
            }
        };
        Verdict::not_evaluated(&format!("{}: {why}", not_listed_yet(kind)))
    }
}

/// Why a verdict is n/a while `kinds` (a kind, or kinds joined by "and") are not listed.
fn not_listed_yet(kinds: &str) -> String {
    format!("{kinds} not listed from the cluster yet")
}

/// What verdicts wait for, when a cluster is being watched or was loaded: NetworkPolicies (an
/// unlisted one could isolate any pod) and Namespaces (namespaceSelector peers match their
/// labels). `None` with no cluster at all (nothing is a pod; verdicts are n/a anyway) and once
/// both are listed.
fn unlisted_for_verdicts(view: &ClusterView) -> Option<&'static str> {
    if view.is_empty() {
        return None;
    }
    match (
        view.synced.contains(&ResourceKind::NetworkPolicy),
        view.synced.contains(&ResourceKind::Namespace),
    ) {
        (true, true) => None,
        (false, true) => Some("NetworkPolicies"),
        (true, false) => Some("Namespaces"),
        (false, false) => Some("NetworkPolicies and Namespaces"),
    }
}

/// The connection a flow asks policy about: to the backend a Service address was translated
/// to, when a copy of the flow showed it (the CNI judges the packet after DNAT); else to the
/// address the initiator used, which for a Service address means all its backends.
pub(super) fn connection_of(flow: &Flow) -> Connection {
    let protocol = flow.key.protocol;
    let to = flow.backend.as_deref().copied().unwrap_or_else(|| flow.responder());
    Connection {
        src: flow.initiator().ip,
        dst: to.ip,
        protocol,
        dst_port: protocol.has_ports().then_some(to.port),
    }
}

/// The responder's name as DNS told the initiator. A dual-stack pod may ask over IPv4 and
/// connect over IPv6, so a lookup from any of the initiator pod's addresses is its own.
pub(super) fn learned_name(
    names: &NameBook,
    view: &ClusterView,
    flow: &Flow,
    now: Timestamp,
) -> Option<LearnedName> {
    let (client, address) = (flow.initiator().ip, flow.responder().ip);
    let found = names.lookup(client, address, now);
    if found.as_ref().is_some_and(|name| name.own_lookup) {
        return found;
    }
    let pod = view.owners(client).iter().find_map(|owner| match owner {
        IpOwner::Pod(key) => view.pods.get(key),
        _ => None,
    });
    let sibling = pod.into_iter().flat_map(|pod| pod.ips.iter()).filter(|ip| **ip != client);
    sibling.filter_map(|ip| names.lookup(*ip, address, now)).find(|name| name.own_lookup).or(found)
}

fn endpoint_record(ip: std::net::IpAddr, port: Option<u16>, id: Identity) -> EndpointRecord {
    EndpointRecord {
        ip,
        port,
        kind: id.kind,
        namespace: id.namespace,
        name: id.name,
        node: id.node,
        dns: None,
        dns_source: None,
        sni: None,
        http_host: None,
    }
}
