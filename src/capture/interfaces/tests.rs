use super::*;

fn link(name: &str, ifindex: u32, iflink: u32) -> LinkFacts {
    LinkFacts { name: name.into(), ifindex, iflink, arp_type: 1, up: true, ..LinkFacts::default() }
}

/// A bridge-CNI node: lo, eth0 (uplink, hardware), cni0, two pod veths on it (peer
/// indexes in the pods' namespaces; index 2 also exists here, as eth0), a same-namespace
/// veth pair (cilium_host/cilium_net), flannel.1, docker0, and a Calico pod veth.
fn node() -> Vec<LinkFacts> {
    vec![
        LinkFacts { arp_type: 772, ..link("lo", 1, 1) },
        LinkFacts { physical: true, default_route: true, ..link("eth0", 2, 2) },
        LinkFacts { bridge: true, devtype: Some("bridge".into()), ..link("cni0", 3, 3) },
        LinkFacts { master: Some("cni0".into()), ..link("veth1a2b3c4d", 4, 2) },
        LinkFacts { master: Some("cni0".into()), ..link("vethfeedbeef", 5, 3) },
        link("cilium_host", 6, 7),
        link("cilium_net", 7, 6),
        LinkFacts { devtype: Some("vxlan".into()), ..link("flannel.1", 8, 8) },
        LinkFacts { bridge: true, devtype: Some("bridge".into()), ..link("docker0", 9, 9) },
        LinkFacts {
            routed_addresses: vec!["10.244.7.21".parse().unwrap()],
            ..link("cali12345678", 10, 4)
        },
        LinkFacts { stacked: true, ..link("macvlan0", 11, 2) },
        LinkFacts { up: false, ..link("veth0down", 12, 2) },
    ]
}

fn by_name<'a>(infos: &'a [InterfaceInfo], name: &str) -> &'a InterfaceInfo {
    infos.iter().find(|info| info.name == name).unwrap()
}

#[test]
fn a_veth_whose_peer_is_in_another_namespace_is_a_pod_veth_whatever_its_name() {
    let infos = survey(&node(), &Selection::PodFacing);
    for name in ["veth1a2b3c4d", "vethfeedbeef", "cali12345678"] {
        let info = by_name(&infos, name);
        assert_eq!(info.class, InterfaceClass::PodVeth, "{name}");
        assert!(info.captured, "{name}: {}", info.reason);
    }
    assert_eq!(by_name(&infos, "veth1a2b3c4d").peer_ifindex, Some(2));
    assert_eq!(by_name(&infos, "cali12345678").routed_addresses.len(), 1);
}

#[test]
fn a_veth_pair_inside_the_host_namespace_is_not_a_pod() {
    let infos = survey(&node(), &Selection::PodFacing);
    let host = by_name(&infos, "cilium_host");
    assert_eq!(host.class, InterfaceClass::Cni);
    assert!(!host.captured);
    assert!(host.reason.contains("cilium_net"), "{}", host.reason);
}

#[test]
fn bridges_overlays_uplink_and_loopback_are_classified_and_left_out_by_default() {
    let infos = survey(&node(), &Selection::PodFacing);
    let expect = [
        ("cni0", InterfaceClass::Bridge),
        ("docker0", InterfaceClass::Bridge),
        ("flannel.1", InterfaceClass::Cni),
        ("eth0", InterfaceClass::Uplink),
        ("lo", InterfaceClass::Loopback),
        ("macvlan0", InterfaceClass::Other),
    ];
    for (name, class) in expect {
        let info = by_name(&infos, name);
        assert_eq!(info.class, class, "{name}");
        assert!(!info.captured, "{name}");
    }
}

#[test]
fn an_uplink_reached_through_a_veth_is_the_uplink_not_a_pod() {
    let links = vec![LinkFacts { default_route: true, ..link("eth0", 7, 31) }];
    let infos = survey(&links, &Selection::PodFacing);
    assert_eq!(infos[0].class, InterfaceClass::Uplink);
    assert!(!infos[0].captured);
}

#[test]
fn a_pod_veth_that_is_down_waits_until_it_comes_up() {
    let infos = survey(&node(), &Selection::PodFacing);
    let down = by_name(&infos, "veth0down");
    assert_eq!(down.class, InterfaceClass::PodVeth);
    assert!(!down.captured);
    assert!(down.reason.contains("down"));
}

#[test]
fn named_interfaces_and_globs_override_the_default() {
    let selection = Selection::from_names(&["eth0".into(), "veth*".into()]);
    let infos = survey(&node(), &selection);
    let captured: Vec<&str> =
        infos.iter().filter(|i| i.captured).map(|i| i.name.as_str()).collect();
    assert_eq!(captured, ["veth1a2b3c4d", "vethfeedbeef", "eth0"]);
    assert!(by_name(&infos, "vethfeedbeef").reason.contains("'veth*'"));
}

#[test]
fn dash_i_any_selects_the_any_device() {
    assert_eq!(Selection::from_names(&["any".into()]), Selection::Any);
    assert_eq!(Selection::from_names(&[]), Selection::PodFacing);
    assert!(survey(&node(), &Selection::Any).iter().all(|i| i.captured));
}

#[test]
fn globs_match_stars_and_question_marks() {
    assert!(glob_match("veth*", "veth1a2b"));
    assert!(glob_match("*", ""));
    assert!(glob_match("br-*", "br-0f1e"));
    assert!(glob_match("c?i0", "cni0"));
    assert!(glob_match("*a*b", "xxaxxab"));
    assert!(!glob_match("veth*", "cali1"));
    assert!(!glob_match("cni0", "cni01"));
    assert!(glob_match("flannel.*", "flannel.1"));
}

#[test]
fn routes_give_the_default_devices_and_per_pod_host_routes() {
    let ipv4 = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
        eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
        eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
        cali12345678\t1507F40A\t00000000\t0005\t0\t0\t0\tFFFFFFFF\t0\t0\t0\n";
    let ipv6 = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000002 00000000 00000003     eth0\n\
        fd000000000000000000000000000002 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000003 00000000 80200001     eth0\n\
        fd000000000000000000000000000015 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000001 00000000 00000001 cali12345678\n\
        00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n";
    let facts = parse_routes(ipv4, ipv6);
    assert_eq!(facts.default_devices, ["eth0"]);
    let pod: Vec<String> =
        facts.host_routes["cali12345678"].iter().map(ToString::to_string).collect();
    if cfg!(target_endian = "little") {
        assert_eq!(pod, ["10.244.7.21", "fd00::15"]);
    }
    assert!(!facts.host_routes.contains_key("eth0"));
}

#[test]
fn the_table_shows_class_decision_pod_and_reason() {
    let infos = survey(&node(), &Selection::PodFacing);
    let table = render_table(
        &infos,
        |info| info.captured.then(|| "32.0MiB".into()),
        |info| {
            (info.peer_ifindex == Some(2) && info.name == "veth1a2b3c4d")
                .then(|| "shop/web-a".into())
        },
    );
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("INTERFACE"), "{table}");
    let veth = lines.iter().find(|l| l.starts_with("veth1a2b3c4d (cni0)")).unwrap();
    assert!(veth.contains("pod veth") && veth.contains("yes") && veth.contains("shop/web-a"));
    assert!(veth.contains(" 32.0MiB "), "{veth}");
    let lo = lines.iter().find(|l| l.starts_with("lo ")).unwrap();
    assert!(lo.contains("loopback") && lo.contains(" no ") && lo.contains("no pod traffic"));
}
