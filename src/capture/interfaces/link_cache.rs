use std::fs;
use std::path::Path;

use super::*;

/// A link's directory as `/sys/class/net/NAME` shows it.
fn make_link(root: &Path, name: &str, ifindex: u32, devtype: Option<&str>, master: Option<&str>) {
    let dir = root.join(name);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("ifindex"), format!("{ifindex}\n")).unwrap();
    fs::write(dir.join("iflink"), format!("{ifindex}\n")).unwrap();
    fs::write(dir.join("flags"), "0x1003\n").unwrap();
    fs::write(dir.join("type"), "1\n").unwrap();
    let uevent = devtype.map_or(String::new(), |t| format!("DEVTYPE={t}\n"));
    fs::write(dir.join("uevent"), format!("{uevent}INTERFACE={name}\n")).unwrap();
    if let Some(master) = master {
        std::os::unix::fs::symlink(format!("../{master}"), dir.join("master")).unwrap();
    }
}

/// A link whose flags cannot be read is going away (its directory is being torn down):
/// it is left out, new or known, rather than listed as down, and read whole if it is back.
#[test]
fn a_link_whose_flags_cannot_be_read_is_left_out() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    make_link(root, "cni0", 3, Some("bridge"), None);
    make_link(root, "veth1", 7, None, None);
    make_link(root, "veth2", 8, None, None);
    fs::remove_file(root.join("veth2").join("flags")).unwrap();
    let routes = RouteFacts::default();
    let mut cache = LinkCache::default();
    let names = |links: &[LinkFacts]| links.iter().map(|l| l.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&cache.discover_in(root, &routes).unwrap()), ["cni0", "veth1"]);
    // Known from the last poll, then its flags go: left out too.
    fs::remove_file(root.join("veth1").join("flags")).unwrap();
    assert_eq!(names(&cache.discover_in(root, &routes).unwrap()), ["cni0"]);
    fs::write(root.join("veth1").join("flags"), "0x1002\n").unwrap();
    let back = cache.discover_in(root, &routes).unwrap();
    assert_eq!(names(&back), ["cni0", "veth1"]);
    assert!(!back[1].up);
}

#[test]
fn known_links_are_read_again_only_where_they_can_change() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    make_link(root, "cni0", 3, Some("bridge"), None);
    make_link(root, "veth1", 7, None, None);
    let routes = RouteFacts::default();
    let mut cache = LinkCache::default();
    let first = cache.discover_in(root, &routes).unwrap();
    let names: Vec<_> = first.iter().map(|l| (l.name.as_str(), l.ifindex)).collect();
    assert_eq!(names, [("cni0", 3), ("veth1", 7)]);
    assert_eq!(first[0].devtype.as_deref(), Some("bridge"));
    assert!(first[1].up && first[1].master.is_none());

    // The veth goes down, joins the bridge and its peer moves: all seen on the next poll.
    let veth = root.join("veth1");
    fs::write(veth.join("flags"), "0x1002\n").unwrap();
    std::os::unix::fs::symlink("../cni0", veth.join("master")).unwrap();
    fs::write(veth.join("iflink"), "2\n").unwrap();
    // Stacked on another link once its lower_ entry appears (a macvlan just registered).
    fs::create_dir(veth.join("lower_eth0")).unwrap();
    // A fact that cannot change for a live link is not read again.
    fs::write(veth.join("uevent"), "DEVTYPE=vxlan\n").unwrap();
    let second = cache.discover_in(root, &routes).unwrap();
    assert!(!second[1].up);
    assert_eq!(second[1].master.as_deref(), Some("cni0"));
    assert_eq!(second[1].iflink, 2);
    assert!(second[1].stacked);
    assert_eq!(second[1].devtype, None, "kept from the first read");
    assert_eq!(
        second,
        LinkCache::default()
            .discover_in(root, &routes)
            .map(|mut l| {
                l[1].devtype = None;
                l
            })
            .unwrap()
    );

    // Deleted and made again under the same name: a new index, read whole.
    fs::remove_dir_all(&veth).unwrap();
    make_link(root, "veth1", 9, Some("vxlan"), None);
    let third = cache.discover_in(root, &routes).unwrap();
    assert_eq!((third[1].ifindex, third[1].devtype.as_deref()), (9, Some("vxlan")));

    // Gone: left out, and forgotten.
    fs::remove_dir_all(root.join("veth1")).unwrap();
    let fourth = cache.discover_in(root, &routes).unwrap();
    assert_eq!(fourth.len(), 1);
    assert!(!cache.known.contains_key("veth1"));
}
