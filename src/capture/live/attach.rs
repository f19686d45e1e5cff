//! Attaching interfaces: opening a capture on one (promiscuous off, the configured buffer,
//! snap length and filter), at start and as interfaces come and go, with a stable index per
//! interface name. A vanished interface is a quiet detach, never an error.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};

use pcap::{Active, Capture, Linktype, Precision};

use super::budget::BUFFER_FLOOR;
use super::supervisor::{Supervisor, stats_for};
use super::worker::{AnyIndexes, Reader};
use super::{
    CaptureEvent, InterfaceStats, LiveConfig, LiveError, interfaces, is_permission_error,
    open_error,
};
use crate::capture::interfaces::{InterfaceInfo, Selection};
use crate::decode::LinkType;
use crate::record::human_bytes;

/// Opens one interface for capture, with a kernel buffer of `buffer_bytes`.
fn open(
    name: &str,
    config: &LiveConfig,
    buffer_bytes: u32,
) -> Result<Capture<Active>, pcap::Error> {
    let mut capture = Capture::from_device(name)?
        .immediate_mode(config.immediate)
        // A promiscuous bridge is handed frames meant for others: the DNAT'd SYN twice.
        .promisc(false)
        .snaplen(i32::try_from(config.snaplen).unwrap_or(i32::MAX))
        .buffer_size(i32::try_from(buffer_bytes).unwrap_or(i32::MAX))
        .precision(Precision::Nano)
        .timeout(i32::try_from(config.read_timeout.as_millis()).unwrap_or(i32::MAX).max(1))
        .open()?;
    if name == "any" {
        // Cooked v2 names the interface of each frame, so dedup can tell the copies apart.
        let _ = capture.set_datalink(Linktype(LINKTYPE_LINUX_SLL2));
    }
    if let Some(filter) = &config.filter {
        capture.filter(filter, true)?;
    }
    Ok(capture)
}

const LINKTYPE_LINUX_SLL2: i32 = 276;

/// One attached interface, as the supervisor tracks it.
pub(super) struct Attachment {
    pub(super) name: String,
    pub(super) ifindex: u32,
    pub(super) detach: Arc<AtomicBool>,
    /// Wakes the thread from a wait for packets.
    pub(super) breaker: pcap::BreakLoop,
    pub(super) thread: Option<JoinHandle<()>>,
    pub(super) stats: InterfaceStats,
    /// Raw counters last reported by libpcap (32-bit, wrapping).
    pub(super) raw: (u32, u32, u32),
}

impl Attachment {
    /// Asks the thread to end, waking it if it waits for packets.
    pub(super) fn detach(&self) {
        self.detach.store(true, Ordering::Relaxed);
        self.breaker.breakloop();
    }
}

impl Supervisor {
    /// Opens the initial selection on the caller's thread, so failures are errors of `start`.
    pub(super) fn attach_initial(&mut self, survey: &[InterfaceInfo]) -> Result<(), LiveError> {
        if self.config.selection == Selection::Any {
            let (capture, buffer) = self.open_granted("any").map_err(|e| open_error("any", &e))?;
            let datalink = capture.get_datalink().0;
            let linktype = LinkType::from_linktype(datalink);
            // Only cooked v2 (libpcap 1.10 and later) names each frame's interface; in v1 those
            // bytes are the MAC address, and every frame is the one `any` interface.
            let names_interfaces = datalink == LINKTYPE_LINUX_SLL2;
            if !names_interfaces {
                self.queued.push(CaptureEvent::Warning(
                    "this libpcap gives '-i any' without each packet's interface (it needs 1.10 or \
                     later): a packet crossing several interfaces counts once per crossing"
                        .into(),
                ));
            }
            let any = names_interfaces.then(|| self.any_indexes.clone());
            let (detach, breaker, thread) = self.spawn_reader(capture, 0, linktype, any)?;
            self.attached.insert(
                0,
                Attachment {
                    name: "any".into(),
                    ifindex: 0,
                    detach,
                    breaker,
                    thread: Some(thread),
                    stats: stats_for(0, "any", buffer),
                    raw: (0, 0, 0),
                },
            );
            self.follow_any_members(survey);
            return Ok(());
        }
        let named = matches!(self.config.selection, Selection::Named(_));
        for info in survey.iter().filter(|info| info.captured) {
            match self.open_granted(&info.name) {
                Ok((capture, buffer)) => {
                    let index = self.slot_for(&info.name);
                    self.start_reader(capture, index, info, buffer)?;
                }
                Err(error) if is_permission_error(&error) => {
                    return Err(open_error(&info.name, &error));
                }
                // Gone between listing and opening: pods come and go.
                Err(_) if !still_present(&info.name, info.ifindex) => {}
                Err(error) if named => return Err(open_error(&info.name, &error)),
                Err(error) => {
                    self.failed.insert((info.name.clone(), info.ifindex));
                    self.queued
                        .push(CaptureEvent::Warning(open_error(&info.name, &error).to_string()));
                }
            }
        }
        if self.attached.is_empty() && self.config.selection == Selection::PodFacing {
            self.queued.push(CaptureEvent::Warning(
                "no pod-facing interfaces yet: waiting for pods (run 'netwatch interfaces' to see why, or choose with -i)".into(),
            ));
        }
        Ok(())
    }

    fn spawn_reader(
        &self,
        mut capture: Capture<Active>,
        index: u16,
        linktype: Option<LinkType>,
        any: Option<AnyIndexes>,
    ) -> Result<(Arc<AtomicBool>, pcap::BreakLoop, JoinHandle<()>), LiveError> {
        let breaker = capture.breakloop_handle();
        let detach = Arc::new(AtomicBool::new(false));
        let reader = Reader {
            index,
            linktype,
            any,
            stop: self.stop.clone(),
            detach: detach.clone(),
            out: self.internal.clone(),
            stats_interval: self.config.stats_interval,
            keep_bytes: self.config.keep_bytes,
            batches: self.batches.clone(),
        };
        let thread = thread::Builder::new()
            .name(format!("netwatch-cap-{index}"))
            .spawn(move || reader.run(capture))
            .map_err(|e| LiveError::Open { interface: index.to_string(), reason: e.to_string() })?;
        Ok((detach, breaker, thread))
    }

    fn start_reader(
        &mut self,
        capture: Capture<Active>,
        index: u16,
        info: &InterfaceInfo,
        buffer: u32,
    ) -> Result<(), LiveError> {
        let linktype = LinkType::from_linktype(capture.get_datalink().0);
        let (detach, breaker, thread) =
            self.spawn_reader(capture, index, linktype, None).inspect_err(|_| {
                self.budget.release(buffer);
            })?;
        self.attached.insert(
            index,
            Attachment {
                name: info.name.clone(),
                ifindex: info.ifindex,
                detach,
                breaker,
                thread: Some(thread),
                stats: stats_for(index, &info.name, buffer),
                raw: (0, 0, 0),
            },
        );
        self.queued.push(CaptureEvent::Attached { index, interface: info.clone() });
        Ok(())
    }

    /// Opens an interface with a buffer from the budget (given back if the open fails); the
    /// first time the budget shrinks a buffer, says so once.
    fn open_granted(&mut self, name: &str) -> Result<(Capture<Active>, u32), pcap::Error> {
        let grant = self.budget.grant();
        let capture = open(name, &self.config, grant.bytes).inspect_err(|_| {
            self.budget.release(grant.bytes);
        })?;
        if grant.shrunk && !self.budget_warned {
            self.budget_warned = true;
            self.queued.push(CaptureEvent::Warning(format!(
                "--buffer-total {} is used up: '{name}' and later interfaces get {} kernel buffers instead of --buffer-size {} (never below {}); raise --buffer-total if they drop packets",
                human_bytes(self.budget.total()),
                human_bytes(u64::from(grant.bytes)),
                human_bytes(u64::from(self.budget.per_interface())),
                human_bytes(u64::from(BUFFER_FLOOR)),
            )));
        }
        Ok((capture, grant.bytes))
    }

    /// The index for an interface name: its old one if it was seen before, else the next free.
    fn slot_for(&mut self, name: &str) -> u16 {
        if let Some(slot) = self.slots.get(name) {
            return *slot;
        }
        let slot = if self.next_slot < u16::MAX {
            self.next_slot += 1;
            self.next_slot - 1
        } else {
            // Sixty-five thousand interface names in one run: reuse one not attached now.
            let free = (0..u16::MAX).find(|slot| !self.attached.contains_key(slot)).unwrap_or(0);
            self.slots.retain(|_, s| *s != free);
            free
        };
        self.slots.insert(name.to_owned(), slot);
        slot
    }

    /// Hot-plug: attaches new matching interfaces, detaches vanished ones.
    pub(super) fn poll(&mut self) {
        let Ok(links) = self.links.discover() else { return };
        let survey = interfaces::survey(&links, &self.config.selection);
        if self.config.selection == Selection::Any {
            self.follow_any_members(&survey);
            return;
        }
        let wanted: HashSet<(&str, u32)> = survey
            .iter()
            .filter(|info| info.captured)
            .map(|info| (info.name.as_str(), info.ifindex))
            .collect();
        for attachment in self.attached.values() {
            if !wanted.contains(&(attachment.name.as_str(), attachment.ifindex)) {
                attachment.detach();
            }
        }
        let attached: HashSet<(String, u32)> =
            self.attached.values().map(|a| (a.name.clone(), a.ifindex)).collect();
        for info in survey.iter().filter(|info| info.captured) {
            let key = (info.name.clone(), info.ifindex);
            if attached.contains(&key) || self.failed.contains(&key) {
                continue;
            }
            // An old thread on a same-named interface still winding down keeps its slot.
            if let Some(slot) = self.slots.get(&info.name)
                && self.attached.contains_key(slot)
            {
                continue;
            }
            match self.open_granted(&info.name) {
                Ok((capture, buffer)) => {
                    let index = self.slot_for(&info.name);
                    if let Err(error) = self.start_reader(capture, index, info, buffer) {
                        self.queued.push(CaptureEvent::Warning(error.to_string()));
                    }
                }
                Err(_) if !still_present(&info.name, info.ifindex) => {}
                Err(error) => {
                    self.failed.insert(key);
                    self.queued
                        .push(CaptureEvent::Warning(open_error(&info.name, &error).to_string()));
                }
            }
        }
    }

    /// With `-i any`, announces interfaces by kernel index as they appear and vanish.
    fn follow_any_members(&mut self, survey: &[InterfaceInfo]) {
        let present: BTreeMap<u32, &InterfaceInfo> =
            survey.iter().map(|info| (info.ifindex, info)).collect();
        let gone: Vec<u32> =
            self.any_members.keys().filter(|i| !present.contains_key(i)).copied().collect();
        for ifindex in gone {
            if let Some(name) = self.any_members.remove(&ifindex) {
                let index = self.any_indexes.index_of(ifindex);
                self.queued.push(CaptureEvent::Detached { index, name });
            }
        }
        for (ifindex, info) in present {
            if let std::collections::btree_map::Entry::Vacant(entry) =
                self.any_members.entry(ifindex)
            {
                entry.insert(info.name.clone());
                let index = self.any_indexes.index_of(ifindex);
                self.queued.push(CaptureEvent::Attached { index, interface: info.clone() });
            }
        }
    }
}

/// Whether the interface of that name is still the same one (same index).
pub(super) fn still_present(name: &str, ifindex: u32) -> bool {
    std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex"))
        .ok()
        .and_then(|text| text.trim().parse::<u32>().ok())
        == Some(ifindex)
}

/// Whether the same interface is still there and up: a capture error on it is worth a word.
pub(super) fn still_up(name: &str, ifindex: u32) -> bool {
    still_present(name, ifindex)
        && std::fs::read_to_string(format!("/sys/class/net/{name}/flags"))
            .ok()
            .and_then(|text| u32::from_str_radix(text.trim().trim_start_matches("0x"), 16).ok())
            .is_some_and(|flags| flags & 0x1 != 0)
}
