//! The table of evaluation cases: one per rule of the NetworkPolicy semantics and their
//! combinations, written after the examples of the Kubernetes NetworkPolicy documentation, each
//! checking the decision and the deciding policies of both sides (and, where it matters, the
//! wording of the reason). Fixtures are described in `fixtures`.

use super::Decision::{Allow, Deny, NotApplicable as NA, Unrestricted};
use super::fixtures::{cluster_with, connection, tcp};
use super::{Connection, Decision, PolicySet};
use crate::flow::key::Protocol;

const WEB_A: &str = "10.244.1.10";
const API_1: &str = "10.244.1.20";
const API_2: &str = "10.244.2.21";
const DB: &str = "10.244.1.30";
const SCTP_POD: &str = "10.244.2.50";
const MONITOR: &str = "10.244.3.40";
const BATCH: &str = "10.244.3.43";
const OTHER_CLIENT: &str = "10.244.3.41";
const DEFAULT_CLIENT: &str = "10.244.3.42";
const COREDNS: &str = "10.244.3.53";
const AGENT: &str = "192.168.0.12";
const NODE_1: &str = "192.168.0.11";
const EXTERNAL: &str = "203.0.113.10";

const DENY_INGRESS: &str = "podSelector: {}\npolicyTypes: [Ingress]";
const DENY_EGRESS: &str = "podSelector: {}\npolicyTypes: [Egress]";
const DENY_ALL: &str = "podSelector: {}\npolicyTypes: [Ingress, Egress]";
const ALLOW_ALL_INGRESS: &str = "podSelector: {}\ningress: [{}]\npolicyTypes: [Ingress]";
const DOCS_EXAMPLE: &str = "
podSelector: {matchLabels: {role: db}}
policyTypes: [Ingress, Egress]
ingress:
- from:
  - ipBlock: {cidr: 172.17.0.0/16, except: [172.17.1.0/24]}
  - namespaceSelector: {matchLabels: {project: myproject}}
  - podSelector: {matchLabels: {role: frontend}}
  ports: [{protocol: TCP, port: 6379}]
egress:
- to: [{ipBlock: {cidr: 10.0.0.0/24}}]
  ports: [{protocol: TCP, port: 5978}]";
const AND_PEER: &str = "
podSelector: {matchLabels: {role: db}}
ingress:
- from:
  - namespaceSelector: {matchLabels: {team: ops}}
    podSelector: {matchLabels: {role: frontend}}";
const OR_PEERS: &str = "
podSelector: {matchLabels: {role: db}}
ingress:
- from:
  - namespaceSelector: {matchLabels: {team: ops}}
  - podSelector: {matchLabels: {role: frontend}}";
const ALLOW_DNS: &str = "
podSelector: {matchLabels: {app: web}}
policyTypes: [Egress]
egress:
- to:
  - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}
    podSelector: {matchLabels: {k8s-app: kube-dns}}
  ports: [{protocol: UDP, port: 53}, {protocol: TCP, port: 53}]";
const EXPRESSIONS: &str = "
podSelector:
  matchExpressions: [{key: role, operator: In, values: [db, cache]}]
ingress:
- from:
  - podSelector:
      matchExpressions:
      - {key: role, operator: Exists}
      - {key: app, operator: NotIn, values: [web]}
  - namespaceSelector:
      matchExpressions: [{key: project, operator: DoesNotExist}]
    podSelector: {matchLabels: {role: frontend}}";
const END_PORT: &str = "
podSelector: {matchLabels: {app: web}}
policyTypes: [Egress]
egress:
- to: [{ipBlock: {cidr: 10.0.0.0/24}}]
  ports: [{protocol: TCP, port: 32000, endPort: 32768}]";
const NAMED_INGRESS: &str = "
podSelector: {matchLabels: {app: api}}
ingress: [{ports: [{port: http}]}]";
const NAMED_EGRESS: &str = "
podSelector: {matchLabels: {app: web}}
policyTypes: [Egress]
egress: [{ports: [{port: http}]}]";
const UDP_ONLY: &str = "
podSelector: {matchLabels: {role: db}}
ingress: [{ports: [{protocol: UDP, port: 6379}]}]";
const SCTP_ONLY: &str = "
podSelector: {matchLabels: {app: sctp}}
ingress: [{ports: [{protocol: SCTP, port: 9999}]}]";
const DB_TCP_6379: &str = "
podSelector: {matchLabels: {role: db}}
ingress: [{ports: [{port: 6379}]}]";
const POD_CIDR_BLOCK: &str = "
podSelector: {matchLabels: {app: web}}
policyTypes: [Egress]
egress: [{to: [{ipBlock: {cidr: 10.244.0.0/16}}]}]";
const IPV6_BLOCK: &str = "
podSelector: {matchLabels: {app: web6}}
policyTypes: [Egress]
egress: [{to: [{ipBlock: {cidr: 'fd00::/64', except: ['fd00::99/128']}}]}]";
const FROM_MONITOR: &str = "
podSelector: {matchLabels: {role: db}}
ingress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {app: monitor}}}]}]";
const FROM_FRONTEND: &str = "
podSelector: {matchLabels: {role: db}}
ingress: [{from: [{podSelector: {matchLabels: {role: frontend}}}]}]";
const FROM_OPS: &str = "
podSelector: {matchLabels: {role: db}}
ingress: [{from: [{namespaceSelector: {matchLabels: {team: ops}}}]}]";
const DEFAULT_TYPES: &str = "
podSelector: {matchLabels: {app: web}}
egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8}}]}]";
const EGRESS_TYPE_ONLY: &str =
    "podSelector: {}\npolicyTypes: [Egress]\ningress: [{}]\negress: [{}]";

type Policies = &'static [(&'static str, &'static str, &'static str)];

struct Case {
    name: &'static str,
    policies: Policies,
    connection: Connection,
    egress: (Decision, &'static [&'static str]),
    ingress: (Decision, &'static [&'static str]),
    /// A fragment the egress or ingress reason must contain.
    reason: &'static str,
}

fn case(
    name: &'static str,
    policies: Policies,
    connection: Connection,
    egress: (Decision, &'static [&'static str]),
    ingress: (Decision, &'static [&'static str]),
    reason: &'static str,
) -> Case {
    Case { name, policies, connection, egress, ingress, reason }
}

#[rustfmt::skip]
fn cases() -> Vec<Case> {
    const NONE: &[&str] = &[];
    let deny_in: Policies = &[("shop", "default-deny-ingress", DENY_INGRESS)];
    let deny_all: Policies = &[("shop", "default-deny-all", DENY_ALL)];
    let docs: Policies = &[("shop", "test-network-policy", DOCS_EXAMPLE)];
    let dns: Policies = &[("shop", "default-deny-egress", DENY_EGRESS), ("shop", "allow-dns", ALLOW_DNS)];
    let union: Policies = &[("shop", "from-monitor", FROM_MONITOR), ("shop", "from-frontend", FROM_FRONTEND)];
    vec![
        case("no policy leaves both sides unrestricted", &[], tcp(WEB_A, DB, 6379),
            (Unrestricted, NONE), (Unrestricted, NONE), "no NetworkPolicy in shop selects shop/web-a for egress"),
        case("default deny ingress denies every pod of its namespace", deny_in, tcp(WEB_A, DB, 6379),
            (Unrestricted, NONE), (Deny, &["shop/default-deny-ingress"]), "shop/db is isolated for ingress by shop/default-deny-ingress"),
        case("allow all ingress adds up with default deny", &[("shop", "default-deny-ingress", DENY_INGRESS), ("shop", "allow-all-ingress", ALLOW_ALL_INGRESS)],
            tcp(WEB_A, DB, 6379), (Unrestricted, NONE), (Allow, &["shop/allow-all-ingress"]), "allowed by shop/allow-all-ingress ingress rule 0"),
        case("default deny egress denies traffic to the internet", &[("shop", "default-deny-egress", DENY_EGRESS)], tcp(WEB_A, EXTERNAL, 443),
            (Deny, &["shop/default-deny-egress"]), (NA, NONE), "no egress rule allows TCP 203.0.113.10:443"),
        case("absent policy types default to ingress only without egress rules", &[("shop", "bare", "podSelector: {}")], tcp(WEB_A, DB, 6379),
            (Unrestricted, NONE), (Deny, &["shop/bare"]), ""),
        case("absent policy types include egress when egress rules exist", &[("shop", "web-egress", DEFAULT_TYPES)], tcp(WEB_A, EXTERNAL, 443),
            (Deny, &["shop/web-egress"]), (NA, NONE), ""),
        case("absent policy types always include ingress", &[("shop", "web-egress", DEFAULT_TYPES)], tcp(OTHER_CLIENT, WEB_A, 8080),
            (Unrestricted, NONE), (Deny, &["shop/web-egress"]), ""),
        case("an empty egress list without policy types isolates ingress only", &[("shop", "p", "podSelector: {}\negress: []")], tcp(WEB_A, DB, 6379),
            (Unrestricted, NONE), (Deny, &["shop/p"]), ""),
        case("ingress rules are ignored when policy types name only egress", &[("shop", "p", EGRESS_TYPE_ONLY)], tcp(WEB_A, DB, 6379),
            (Allow, &["shop/p"]), (Unrestricted, NONE), ""),
        case("docs example admits frontend pods of its namespace on the listed port", docs, tcp(WEB_A, DB, 6379),
            (Unrestricted, NONE), (Allow, &["shop/test-network-policy"]), "allowed by shop/test-network-policy ingress rule 0"),
        case("docs example admits any pod of a selected namespace", docs, tcp(BATCH, DB, 6379),
            (Unrestricted, NONE), (Allow, &["shop/test-network-policy"]), ""),
        case("docs example refuses frontend pods of other namespaces", docs, tcp(OTHER_CLIENT, DB, 6379),
            (Unrestricted, NONE), (Deny, &["shop/test-network-policy"]), ""),
        case("docs example admits an address of its ip block", docs, tcp("172.17.0.5", DB, 6379),
            (NA, NONE), (Allow, &["shop/test-network-policy"]), "source is not a pod"),
        case("docs example refuses an address in the except list", docs, tcp("172.17.1.5", DB, 6379),
            (NA, NONE), (Deny, &["shop/test-network-policy"]), ""),
        case("docs example names the allowed port when the port is wrong", docs, tcp(WEB_A, DB, 6380),
            (Unrestricted, NONE), (Deny, &["shop/test-network-policy"]), "shop/test-network-policy allows TCP port 6379 only"),
        case("docs example lets the db egress to its block on the listed port", docs, tcp(DB, "10.0.0.7", 5978),
            (Allow, &["shop/test-network-policy"]), (NA, NONE), "allowed by shop/test-network-policy egress rule 0"),
        case("docs example denies db egress on another port", docs, tcp(DB, "10.0.0.7", 5979),
            (Deny, &["shop/test-network-policy"]), (NA, NONE), "allows TCP port 5978 only"),
        case("a peer with both selectors needs both to match", &[("shop", "and", AND_PEER)], tcp(BATCH, DB, 6379),
            (Unrestricted, NONE), (Deny, &["shop/and"]), ""),
        case("a peer with both selectors admits a pod matching both", &[("shop", "and", AND_PEER)], tcp(MONITOR, DB, 6379),
            (Unrestricted, NONE), (Allow, &["shop/and"]), ""),
        case("a peer with both selectors does not admit same-namespace pods", &[("shop", "and", AND_PEER)], tcp(WEB_A, DB, 6379),
            (Unrestricted, NONE), (Deny, &["shop/and"]), "only from pods role=frontend in namespaces team=ops"),
        case("separate peers admit a pod matching either", &[("shop", "or", OR_PEERS)], tcp(BATCH, DB, 6379),
            (Unrestricted, NONE), (Allow, &["shop/or"]), ""),
        case("separate peers admit a same-namespace pod", &[("shop", "or", OR_PEERS)], tcp(WEB_A, DB, 6379),
            (Unrestricted, NONE), (Allow, &["shop/or"]), ""),
        case("separate peers refuse a pod matching neither", &[("shop", "or", OR_PEERS)], tcp(OTHER_CLIENT, DB, 6379),
            (Unrestricted, NONE), (Deny, &["shop/or"]), ""),
        case("a namespace selector alone admits every pod of those namespaces", &[("shop", "ops", FROM_OPS)], tcp(BATCH, DB, 6379),
            (Unrestricted, NONE), (Allow, &["shop/ops"]), ""),
        case("a namespace selector alone does not admit the policy namespace", &[("shop", "ops", FROM_OPS)], tcp(WEB_A, DB, 6379),
            (Unrestricted, NONE), (Deny, &["shop/ops"]), ""),
        case("a pod selector alone admits only pods of the policy namespace", &[("shop", "fe", FROM_FRONTEND)], tcp(OTHER_CLIENT, DB, 6379),
            (Unrestricted, NONE), (Deny, &["shop/fe"]), ""),
        case("the implicit namespace name label selects a namespace absent from the view", dns, connection(WEB_A, COREDNS, Protocol::Udp, Some(53)),
            (Allow, &["shop/allow-dns"]), (Unrestricted, NONE), "allowed by shop/allow-dns egress rule 0"),
        case("a denied egress names the closest rule that allows another port", dns, tcp(WEB_A, COREDNS, 80),
            (Deny, &["shop/allow-dns", "shop/default-deny-egress"]), (Unrestricted, NONE), "shop/allow-dns allows UDP/TCP port 53 only"),
        case("egress to the internet is denied when only dns is allowed", dns, tcp(WEB_A, EXTERNAL, 443),
            (Deny, &["shop/allow-dns", "shop/default-deny-egress"]), (NA, NONE), "isolated for egress by shop/allow-dns, shop/default-deny-egress"),
        case("match expressions of a pod selector alone apply to the policy namespace only", &[("shop", "expr", EXPRESSIONS)], tcp(MONITOR, DB, 6379),
            (Unrestricted, NONE), (Deny, &["shop/expr"]), "only from pods role,app notin (web) in shop or pods role=frontend in namespaces !project"),
        case("match expressions see only the implicit label of a namespace absent from the view", &[("shop", "expr", EXPRESSIONS)], tcp(DEFAULT_CLIENT, DB, 6379),
            (Unrestricted, NONE), (Allow, &["shop/expr"]), ""),
        case("match expressions honour does not exist on namespace labels", &[("shop", "expr", EXPRESSIONS)], tcp(WEB_A, DB, 6379),
            (Unrestricted, NONE), (Allow, &["shop/expr"]), "ingress rule 0"),
        case("match expressions refuse a pod failing every peer", &[("shop", "expr", EXPRESSIONS)], tcp(BATCH, DB, 6379),
            (Unrestricted, NONE), (Deny, &["shop/expr"]), ""),
        case("an end port range includes its last port", &[("shop", "range", END_PORT)], tcp(WEB_A, "10.0.0.9", 32768),
            (Allow, &["shop/range"]), (NA, NONE), ""),
        case("an end port range excludes the port after it", &[("shop", "range", END_PORT)], tcp(WEB_A, "10.0.0.9", 32769),
            (Deny, &["shop/range"]), (NA, NONE), "allows TCP ports 32000-32768 only"),
        case("a named ingress port resolves on the protected pod", &[("shop", "http", NAMED_INGRESS)], tcp(WEB_A, API_1, 8080),
            (Unrestricted, NONE), (Allow, &["shop/http"]), ""),
        case("a named ingress port resolves per pod", &[("shop", "http", NAMED_INGRESS)], tcp(WEB_A, API_2, 8081),
            (Unrestricted, NONE), (Allow, &["shop/http"]), ""),
        case("a named ingress port does not match another port of the pod", &[("shop", "http", NAMED_INGRESS)], tcp(WEB_A, API_2, 8080),
            (Unrestricted, NONE), (Deny, &["shop/http"]), "allows TCP port 'http' only"),
        case("a named egress port resolves on the destination pod", &[("shop", "http", NAMED_EGRESS)], tcp(WEB_A, API_1, 8080),
            (Allow, &["shop/http"]), (Unrestricted, NONE), ""),
        case("a named egress port matches nothing outside the cluster", &[("shop", "http", NAMED_EGRESS)], tcp(WEB_A, EXTERNAL, 8080),
            (Deny, &["shop/http"]), (NA, NONE), ""),
        case("a udp rule does not allow tcp", &[("shop", "udp", UDP_ONLY)], tcp(WEB_A, DB, 6379),
            (Unrestricted, NONE), (Deny, &["shop/udp"]), "shop/udp allows UDP port 6379 only"),
        case("an sctp rule allows sctp", &[("shop", "sctp", SCTP_ONLY)], connection(WEB_A, SCTP_POD, Protocol::Sctp, Some(9999)),
            (Unrestricted, NONE), (Allow, &["shop/sctp"]), ""),
        case("an sctp rule does not allow tcp on its port", &[("shop", "sctp", SCTP_ONLY)], tcp(WEB_A, SCTP_POD, 9999),
            (Unrestricted, NONE), (Deny, &["shop/sctp"]), ""),
        case("a rule with ports does not allow icmp", &[("shop", "db", DB_TCP_6379)], connection(WEB_A, DB, Protocol::Icmp, None),
            (Unrestricted, NONE), (Deny, &["shop/db"]), "no ingress rule allows ICMP from 10.244.1.10 (shop/web-a)"),
        case("a rule without ports allows icmp", &[("shop", "all", ALLOW_ALL_INGRESS)], connection(WEB_A, DB, Protocol::Icmp, None),
            (Unrestricted, NONE), (Allow, &["shop/all"]), ""),
        case("an ip block matches a pod ip as seen on the wire", &[("shop", "cidr", POD_CIDR_BLOCK)], tcp(WEB_A, DB, 6379),
            (Allow, &["shop/cidr"]), (Unrestricted, NONE), "ipBlock 10.244.0.0/16 matched the pod IP of shop/db"),
        case("an ipv6 block allows an address inside it", &[("shop", "v6", IPV6_BLOCK)], tcp("fd00::12", "fd00::30", 443),
            (Allow, &["shop/v6"]), (NA, NONE), ""),
        case("an ipv6 block honours its except list", &[("shop", "v6", IPV6_BLOCK)], tcp("fd00::12", "fd00::99", 443),
            (Deny, &["shop/v6"]), (NA, NONE), "[fd00::99]:443"),
        case("an ipv6 block does not match ipv4 addresses", &[("shop", "v6", IPV6_BLOCK)], tcp("10.244.1.12", "10.0.0.1", 443),
            (Deny, &["shop/v6"]), (NA, NONE), ""),
        case("a host network source is not governed", deny_all, tcp(AGENT, DB, 6379),
            (NA, NONE), (Deny, &["shop/default-deny-all"]), "uses the host network"),
        case("a host network destination is not governed", deny_all, tcp(WEB_A, AGENT, 9100),
            (Deny, &["shop/default-deny-all"]), (NA, NONE), "destination shop/host-agent uses the host network"),
        case("traffic from a pod's own node is always allowed", deny_all, tcp(NODE_1, WEB_A, 8080),
            (NA, NONE), (Allow, NONE), "its own node n1"),
        case("probes from the own node's bridge gateway are always allowed", deny_all, tcp("10.244.1.1", WEB_A, 8080),
            (NA, NONE), (Allow, NONE), "its own node n1"),
        case("another node's bridge gateway is not the own node", deny_all, tcp("10.244.2.1", WEB_A, 8080),
            (NA, NONE), (Deny, &["shop/default-deny-all"]), ""),
        case("a pod cannot block traffic to itself", deny_all, tcp(WEB_A, WEB_A, 8080),
            (Allow, NONE), (Allow, NONE), "talks to itself"),
        case("policies add up and only the allowing one decides", union, tcp(WEB_A, DB, 6379),
            (Unrestricted, NONE), (Allow, &["shop/from-frontend"]), ""),
        case("a denial lists every isolating policy sorted", union, tcp(BATCH, DB, 6379),
            (Unrestricted, NONE), (Deny, &["shop/from-frontend", "shop/from-monitor"]), ""),
        case("a policy in another namespace does not isolate", &[("ops", "default-deny-all", DENY_ALL)], tcp(WEB_A, DB, 6379),
            (Unrestricted, NONE), (Unrestricted, NONE), ""),
        case("a policy isolates pods of its own namespace", &[("ops", "default-deny-all", DENY_ALL)], tcp(WEB_A, MONITOR, 8080),
            (Unrestricted, NONE), (Deny, &["ops/default-deny-all"]), ""),
        case("an external source has no egress verdict", &[], tcp(EXTERNAL, WEB_A, 8080),
            (NA, NONE), (Unrestricted, NONE), "source is not a pod"),
    ]
}

#[test]
fn every_case_in_the_table_gets_its_decisions_and_deciding_policies() {
    let mut failures = Vec::new();
    for case in cases() {
        let view = cluster_with(case.policies);
        let (set, diagnostics) = PolicySet::compile(&view);
        assert!(diagnostics.is_empty(), "{}: {diagnostics:?}", case.name);
        let verdict = set.evaluate(&view, &case.connection);
        let got = |side: &super::SideVerdict| (side.decision, side.policies.clone());
        let want = |(decision, policies): (Decision, &[&str])| {
            (decision, policies.iter().map(|p| (*p).to_owned()).collect::<Vec<_>>())
        };
        let reasons = format!("{} | {}", verdict.egress.reason, verdict.ingress.reason);
        if got(&verdict.egress) != want(case.egress)
            || got(&verdict.ingress) != want(case.ingress)
            || !reasons.contains(case.reason)
        {
            failures.push(format!("{}:\n  got {verdict:?}", case.name));
        }
    }
    assert!(failures.is_empty(), "{} case(s) failed:\n{}", failures.len(), failures.join("\n"));
}

/// IPAM that ignores the node's podCIDR (Calico, Cilium cluster-pool) may give the address
/// that would be the bridge gateway to a pod: then it is that pod, and policy applies.
#[test]
fn a_pod_given_the_gateway_address_is_a_pod_not_the_node() {
    use crate::cluster::{ClusterEvent, Object};
    let mut view = cluster_with(&[("shop", "default-deny-all", DENY_ALL)]);
    let pod = super::fixtures::pod("other", "lucky", &["10.244.1.1"], &[("app", "lucky")], "n2");
    view.apply(ClusterEvent::Upsert(Object::Pod(pod)));
    view.reindex();
    let (set, _) = PolicySet::compile(&view);
    let verdict = set.evaluate(&view, &tcp("10.244.1.1", WEB_A, 8080));
    assert_eq!(verdict.ingress.decision, Deny, "{}", verdict.ingress.reason);
}
