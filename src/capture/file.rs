//! Capture files (pcap and pcapng) read through libpcap's offline mode (`pcap` crate).
//!
//! A damaged or truncated file yields every packet before the damage, then one warning that says
//! where it stopped; the run goes on with what was read.
//!
//! A Linux cooked v2 capture (`tcpdump -i any`) names the interface of every packet, and sees a
//! pod's packet on its veth and again on the bridge or uplink. Its frames carry their interface
//! (a dense index per kernel interface index, named `if<N>`), so the copies can be counted once.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use pcap::{Capture, Offline, Precision};

use super::{CaptureError, Frame, Next, PacketSource};
use crate::decode::LinkType;
use crate::time::Timestamp;

pub struct FileSource {
    capture: Capture<Offline>,
    linktype: Option<LinkType>,
    label: String,
    packets_read: u64,
    last_ts: Option<Timestamp>,
    warnings: Vec<String>,
    ended: bool,
    /// Cooked v2 only: the interfaces its packets name.
    kernel_interfaces: KernelInterfaces,
    /// Keeps a bundled capture's temporary copy alive for as long as libpcap reads it.
    _temp: Option<tempfile::NamedTempFile>,
}

impl FileSource {
    /// Opens a capture file. Timestamps are read at nanosecond precision whatever the file has.
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        let label = path.display().to_string();
        Self::open_labelled(path, label, None)
    }

    /// Opens capture bytes held in memory (the bundled demo): libpcap reads only files, so they
    /// go through a private temporary file, removed when the source is dropped.
    pub fn from_bytes(label: &str, bytes: &[u8]) -> Result<Self, CaptureError> {
        let open_error = |e: std::io::Error| CaptureError::Open {
            path: label.to_owned(),
            reason: e.to_string(),
        };
        let mut temp = tempfile::Builder::new()
            .prefix("netwatch-")
            .suffix(".pcap")
            .tempfile()
            .map_err(open_error)?;
        temp.write_all(bytes).map_err(open_error)?;
        temp.flush().map_err(open_error)?;
        let path = temp.path().to_owned();
        Self::open_labelled(&path, label.to_owned(), Some(temp))
    }

    fn open_labelled(
        path: &Path,
        label: String,
        temp: Option<tempfile::NamedTempFile>,
    ) -> Result<Self, CaptureError> {
        if let Err(e) = std::fs::metadata(path) {
            return Err(CaptureError::Open { path: label, reason: e.to_string() });
        }
        let capture = Capture::from_file_with_precision(path, Precision::Nano).map_err(|e| {
            CaptureError::NotACapture { path: label.clone(), reason: e.to_string() }
        })?;
        let datalink = capture.get_datalink();
        let linktype = LinkType::from_linktype(datalink.0);
        let mut warnings = Vec::new();
        if linktype.is_none() {
            let name = datalink.get_name().unwrap_or_else(|_| datalink.0.to_string());
            warnings.push(format!(
                "{label}: link type {name} is not decoded (Ethernet, Linux cooked v1/v2, raw IP and loopback are); its packets are counted as skipped"
            ));
        }
        Ok(Self {
            capture,
            linktype,
            label,
            packets_read: 0,
            last_ts: None,
            warnings,
            ended: false,
            kernel_interfaces: KernelInterfaces::default(),
            _temp: temp,
        })
    }
}

impl PacketSource for FileSource {
    fn next_frame(&mut self) -> Next<'_> {
        if self.ended {
            return Next::End;
        }
        match self.capture.next_packet() {
            Ok(packet) => {
                let header = packet.header;
                // With nanosecond precision libpcap puts nanoseconds in the microsecond field.
                let secs = u64::try_from(header.ts.tv_sec).unwrap_or(0);
                let nanos = u64::try_from(header.ts.tv_usec).unwrap_or(0);
                let ts = Timestamp(secs.saturating_mul(1_000_000_000).saturating_add(nanos));
                self.packets_read += 1;
                self.last_ts = Some(ts);
                let interface = match self.linktype {
                    Some(LinkType::LinuxSll2) => match sll2_ifindex(packet.data) {
                        Some(ifindex) => self.kernel_interfaces.index_of(ifindex),
                        // Too short for its header: decode counts it as truncated.
                        None => 0,
                    },
                    _ => 0,
                };
                Next::Packet(Frame {
                    ts,
                    interface,
                    linktype: self.linktype,
                    data: packet.data,
                    wire_len: header.len,
                })
            }
            Err(pcap::Error::NoMorePackets) => {
                self.ended = true;
                if self.kernel_interfaces.beyond > 0 {
                    self.warnings.push(format!(
                        "{}: packets name more than {} interfaces; those of the {} past it are counted as the last one's",
                        self.label,
                        1 << 16,
                        self.kernel_interfaces.beyond
                    ));
                }
                Next::End
            }
            Err(error) => {
                self.ended = true;
                let after = match self.last_ts {
                    Some(ts) => format!("after packet {} ({ts})", self.packets_read),
                    None => "before the first packet".to_owned(),
                };
                self.warnings.push(format!(
                    "{}: the capture is damaged {after}: {error}; the {} packets before it were read",
                    self.label, self.packets_read
                ));
                Next::End
            }
        }
    }

    /// A classic pcap has no interface names: a cooked v2 capture's interfaces are named by
    /// their kernel index (`if7`), any other file's frames after the file.
    fn interfaces(&self) -> Vec<String> {
        if !self.kernel_interfaces.order.is_empty() {
            return self.kernel_interfaces.names();
        }
        let name = Path::new(&self.label).file_name().map(|n| n.to_string_lossy().into_owned());
        vec![name.unwrap_or_else(|| self.label.clone())]
    }

    fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// A cooked v2 capture may be `tcpdump -i any`: its interfaces are only known as they come,
    /// and a single one never yields a copy, so counting once costs nothing wrong.
    fn sees_packets_more_than_once(&self) -> bool {
        self.linktype == Some(LinkType::LinuxSll2)
    }

    fn take_new_interfaces(&mut self) -> Option<Vec<String>> {
        self.kernel_interfaces.take_new()
    }
}

/// The kernel interfaces a cooked v2 capture names, each given the next dense index (the
/// frame's interface) on first sight.
#[derive(Default)]
struct KernelInterfaces {
    /// Kernel indexes in order of first appearance: position = dense index.
    order: Vec<u32>,
    dense: HashMap<u32, u16>,
    /// How many of `order` were already handed out as names.
    announced: usize,
    /// Packets of interfaces past the 65,536th (never met in practice), counted as the last one's.
    beyond: u64,
}

impl KernelInterfaces {
    fn index_of(&mut self, ifindex: u32) -> u16 {
        if let Some(index) = self.dense.get(&ifindex) {
            return *index;
        }
        match u16::try_from(self.order.len()) {
            Ok(index) => {
                self.dense.insert(ifindex, index);
                self.order.push(ifindex);
                index
            }
            Err(_) => {
                self.beyond += 1;
                u16::MAX
            }
        }
    }

    fn names(&self) -> Vec<String> {
        self.order.iter().map(|ifindex| format!("if{ifindex}")).collect()
    }

    /// The names again, if an interface was met since they were last taken.
    fn take_new(&mut self) -> Option<Vec<String>> {
        (self.announced < self.order.len()).then(|| {
            self.announced = self.order.len();
            self.names()
        })
    }
}

/// The interface index in a Linux cooked v2 header (bytes 4..8, network order).
#[must_use]
pub fn sll2_ifindex(data: &[u8]) -> Option<u32> {
    data.get(4..8).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{self, TimedFrame, linktype};

    fn capture_of(linktype: u32, frames: &[(u64, Vec<u8>)]) -> Vec<u8> {
        let frames: Vec<TimedFrame> = frames
            .iter()
            .map(|(ts_nanos, frame)| TimedFrame { ts_nanos: *ts_nanos, frame: frame.clone() })
            .collect();
        let mut bytes = Vec::new();
        synth::write_pcap(&mut bytes, linktype, &frames).unwrap();
        bytes
    }

    fn interfaces_read(source: &mut FileSource) -> Vec<u16> {
        let mut read = Vec::new();
        while let Next::Packet(frame) = source.next_frame() {
            read.push(frame.interface);
        }
        read
    }

    #[test]
    fn cooked_v2_frames_carry_a_dense_index_per_kernel_interface_named_by_it() {
        let frame = synth::udp("10.0.0.1:1".parse().unwrap(), "10.0.0.2:2".parse().unwrap(), b"");
        let on = |ifindex| synth::to_linux_sll2(&frame, ifindex);
        let frames = [(1, on(12)), (2, on(70_000)), (3, on(12)), (4, vec![0, 8]), (5, on(4))];
        let bytes = capture_of(linktype::LINUX_SLL2, &frames);
        let mut source = FileSource::from_bytes("any.pcap", &bytes).unwrap();
        assert!(source.sees_packets_more_than_once());
        assert_eq!(source.take_new_interfaces(), None, "none met before the first frame");
        let mut met = Vec::new();
        let mut read = Vec::new();
        while let Next::Packet(frame) = source.next_frame() {
            read.push(frame.interface);
            met.push(source.take_new_interfaces());
        }
        // The two-byte frame has no interface to name: index 0, and decode counts it truncated.
        assert_eq!(read, [0, 1, 0, 0, 2]);
        let names = |n: &[&str]| Some(n.iter().map(ToString::to_string).collect::<Vec<_>>());
        assert_eq!(
            met,
            [
                names(&["if12"]),
                names(&["if12", "if70000"]),
                None,
                None,
                names(&["if12", "if70000", "if4"])
            ]
        );
        assert_eq!(source.interfaces(), ["if12", "if70000", "if4"]);
        assert!(source.take_warnings().is_empty());
    }

    #[test]
    fn other_link_types_do_not_count_copies() {
        let frame = synth::udp("10.0.0.1:1".parse().unwrap(), "10.0.0.2:2".parse().unwrap(), b"");
        let ethernet = capture_of(linktype::ETHERNET, &[(1, frame.clone()), (2, frame.clone())]);
        let mut source = FileSource::from_bytes("eth.pcap", &ethernet).unwrap();
        assert_eq!(source.interfaces(), ["eth.pcap"]);
        assert!(!source.sees_packets_more_than_once());
        assert_eq!(interfaces_read(&mut source), [0, 0]);
        assert_eq!(source.take_new_interfaces(), None);
    }
}
