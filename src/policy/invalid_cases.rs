//! Invalid policies: each bad field is a diagnostic naming policy, field and value; the valid
//! rest still applies; nothing panics, whatever the input (checked with generated policies).

use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use proptest::prelude::*;

use super::fixtures::{cluster_with, connection, tcp};
use super::{Decision, PolicySet};
use crate::cluster::{ClusterEvent, ClusterView, NetworkPolicy, Object};
use crate::flow::key::Protocol;

const BAD_PORT: &str = "
podSelector: {matchLabels: {app: web}}
policyTypes: [Egress]
egress:
- ports: [{port: 443}, {port: ABC}, {port: 8000, endPort: 7000}, {protocol: ICMP, port: 1}, {port: 70000}]";
const BAD_CIDR: &str = "
podSelector: {matchLabels: {role: db}}
ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/33}}, {ipBlock: {cidr: 10.0.0.0/8, except: [192.168.0.0/16]}}]}]";
const BAD_SELECTOR: &str = "
podSelector: {matchExpressions: [{key: app, operator: Equals, values: [web]}]}
policyTypes: [Ingress, Egress]";
const BAD_PEER: &str = "
podSelector: {matchLabels: {app: api}}
ingress: [{from: [{namespaceSelector: {matchExpressions: [{key: a, operator: In}]}}, {ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}, {}]}]
policyTypes: [Ingress, Sideways]";
const FROM_FRONTEND: &str = "
podSelector: {matchLabels: {role: db}}
ingress: [{from: [{podSelector: {matchLabels: {role: frontend}}}]}]";

fn compiled() -> (ClusterView, PolicySet, Vec<String>) {
    let view = cluster_with(&[
        ("shop", "bad-port", BAD_PORT),
        ("shop", "bad-cidr", BAD_CIDR),
        ("shop", "bad-selector", BAD_SELECTOR),
        ("shop", "bad-peer", BAD_PEER),
        ("shop", "from-frontend", FROM_FRONTEND),
    ]);
    let (set, diagnostics) = PolicySet::compile(&view);
    (view, set, diagnostics.iter().map(ToString::to_string).collect())
}

#[test]
fn every_invalid_field_is_a_diagnostic_naming_policy_field_and_value() {
    let (_, set, diagnostics) = compiled();
    let expected = [
        "shop/bad-cidr: spec.ingress[0].from[0].ipBlock.cidr: '10.0.0.0/33' is not a CIDR; peer matches nothing",
        "shop/bad-cidr: spec.ingress[0].from[1].ipBlock.except[0]: '192.168.0.0/16' is not inside cidr '10.0.0.0/8'; peer matches nothing",
        "shop/bad-peer: spec.policyTypes[1]: 'Sideways' is not Ingress or Egress; ignored",
        "shop/bad-peer: spec.ingress[0].from[0].namespaceSelector.matchExpressions[0].values: must not be empty for operator 'In'; peer matches nothing",
        "shop/bad-peer: spec.ingress[0].from[1]: ipBlock cannot be combined with a selector; peer matches nothing",
        "shop/bad-peer: spec.ingress[0].from[2]: names no podSelector, namespaceSelector or ipBlock; peer matches nothing",
        "shop/bad-port: spec.egress[0].ports[1].port: 'ABC' is not a port number (1-65535) or a port name (1-15 lowercase letters, digits, '-'); entry matches nothing",
        "shop/bad-port: spec.egress[0].ports[2].endPort: '7000' must be a port number not below port 8000; entry matches nothing",
        "shop/bad-port: spec.egress[0].ports[3].protocol: 'ICMP' is not TCP, UDP or SCTP; entry matches nothing",
        "shop/bad-port: spec.egress[0].ports[4].port: '70000' is not a port number (1-65535); entry matches nothing",
        "shop/bad-selector: spec.podSelector.matchExpressions[0].operator: 'Equals' is not In, NotIn, Exists or DoesNotExist; policy skipped",
    ];
    assert_eq!(diagnostics, expected);
    assert_eq!(set.diagnostics().len(), expected.len());
    assert_eq!(set.len(), 4, "only the policy with an unreadable podSelector is skipped");
}

#[test]
fn the_valid_parts_of_an_invalid_policy_still_apply() {
    let (view, set, _) = compiled();
    let web_a = "10.244.1.10";
    let allowed = set.evaluate(&view, &tcp(web_a, "203.0.113.10", 443));
    assert_eq!(allowed.egress.decision, Decision::Allow);
    assert_eq!(allowed.egress.policies, ["shop/bad-port"]);
    let denied = set.evaluate(&view, &tcp(web_a, "203.0.113.10", 8080));
    assert_eq!(denied.egress.decision, Decision::Deny);
    assert_eq!(denied.egress.policies, ["shop/bad-port"]);
}

#[test]
fn an_invalid_peer_matches_nothing_but_the_policy_still_isolates() {
    let (view, set, _) = compiled();
    let external = set.evaluate(&view, &tcp("10.1.2.3", "10.244.1.30", 6379));
    assert_eq!(external.ingress.decision, Decision::Deny);
    assert_eq!(external.ingress.policies, ["shop/bad-cidr", "shop/from-frontend"]);
    let frontend = set.evaluate(&view, &tcp("10.244.1.10", "10.244.1.30", 6379));
    assert_eq!(frontend.ingress.decision, Decision::Allow);
    assert_eq!(frontend.ingress.policies, ["shop/from-frontend"]);
    let api = set.evaluate(&view, &tcp("10.244.1.10", "10.244.1.20", 8080));
    assert_eq!(api.ingress.decision, Decision::Deny);
    assert_eq!(api.ingress.policies, ["shop/bad-peer"]);
}

#[test]
fn a_skipped_policy_isolates_nothing() {
    let (view, set, _) = compiled();
    let verdict = set.evaluate(&view, &tcp("10.244.1.11", "10.244.2.50", 80));
    assert_eq!(verdict.ingress.decision, Decision::Unrestricted);
}

#[test]
fn the_set_remembers_the_generation_it_was_compiled_from() {
    let (view, set, _) = compiled();
    assert_eq!(set.generation(), view.generation());
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("10.0.0.0/8".to_owned()),
        Just("::/0".to_owned()),
        Just("In".to_owned()),
        Just("Exists".to_owned()),
        Just("http".to_owned()),
        Just("TCP".to_owned()),
        ".{0,12}",
    ]
}

fn port() -> impl Strategy<Value = NetworkPolicyPort> {
    let value =
        prop_oneof![any::<i32>().prop_map(IntOrString::Int), text().prop_map(IntOrString::String)];
    (proptest::option::of(value), proptest::option::of(any::<i32>()), proptest::option::of(text()))
        .prop_map(|(port, end_port, protocol)| NetworkPolicyPort { port, end_port, protocol })
}

fn selector() -> impl Strategy<Value = Option<LabelSelector>> {
    let requirement =
        (text(), text(), proptest::option::of(proptest::collection::vec(text(), 0..3)))
            .prop_map(|(key, operator, values)| LabelSelectorRequirement { key, operator, values });
    proptest::option::of(proptest::collection::vec(requirement, 0..3).prop_map(|expressions| {
        LabelSelector { match_expressions: Some(expressions), match_labels: None }
    }))
}

fn peer() -> impl Strategy<Value = NetworkPolicyPeer> {
    let block = (text(), proptest::option::of(proptest::collection::vec(text(), 0..3)))
        .prop_map(|(cidr, except)| IPBlock { cidr, except });
    (proptest::option::of(block), selector(), selector()).prop_map(
        |(ip_block, namespace_selector, pod_selector)| NetworkPolicyPeer {
            ip_block,
            namespace_selector,
            pod_selector,
        },
    )
}

fn peers() -> impl Strategy<Value = Option<Vec<NetworkPolicyPeer>>> {
    proptest::option::of(proptest::collection::vec(peer(), 0..3))
}

fn ports() -> impl Strategy<Value = Option<Vec<NetworkPolicyPort>>> {
    proptest::option::of(proptest::collection::vec(port(), 0..3))
}

fn spec() -> impl Strategy<Value = NetworkPolicySpec> {
    let types = proptest::option::of(proptest::collection::vec(text(), 0..3));
    (selector(), peers(), ports(), peers(), ports(), types).prop_map(
        |(pod_selector, from, in_ports, to, out_ports, policy_types)| NetworkPolicySpec {
            pod_selector,
            ingress: Some(vec![NetworkPolicyIngressRule { from, ports: in_ports }]),
            egress: Some(vec![NetworkPolicyEgressRule { to, ports: out_ports }]),
            policy_types,
        },
    )
}

proptest! {
    #[test]
    fn no_policy_makes_compile_evaluate_or_audit_panic(spec in spec()) {
        let mut view: ClusterView = cluster_with(&[]);
        let policy = NetworkPolicy { namespace: "shop".into(), name: "generated".into(), spec };
        view.apply(ClusterEvent::Upsert(Object::NetworkPolicy(policy)));
        view.reindex();
        let (set, _) = PolicySet::compile(&view);
        for c in [
            tcp("10.244.1.10", "10.244.1.20", 8080),
            tcp("203.0.113.10", "10.244.1.30", 6379),
            tcp("10.244.1.10", "10.96.0.10", 80),
            connection("10.244.1.10", "fd00::1", Protocol::Icmpv6, None),
        ] {
            let _ = set.evaluate(&view, &c);
        }
        let _ = super::audit(&view, &set);
    }
}
