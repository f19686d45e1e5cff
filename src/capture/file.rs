//! Capture files (pcap and pcapng) read through libpcap's offline mode (`pcap` crate).
//!
//! A damaged or truncated file yields every packet before the damage, then one warning that says
//! where it stopped; the run goes on with what was read.

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
                Next::Packet(Frame {
                    ts,
                    interface: 0,
                    linktype: self.linktype,
                    data: packet.data,
                    wire_len: header.len,
                })
            }
            Err(pcap::Error::NoMorePackets) => {
                self.ended = true;
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

    /// A file has no interface names of its own: its frames are named after the file.
    fn interfaces(&self) -> Vec<String> {
        let name = Path::new(&self.label).file_name().map(|n| n.to_string_lossy().into_owned());
        vec![name.unwrap_or_else(|| self.label.clone())]
    }

    fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }
}
