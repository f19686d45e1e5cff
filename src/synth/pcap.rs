//! The classic pcap writer (nanosecond timestamps) for synthetic frames.
//!
//! The only I/O in `synth`, and only through the `std::io::Write` the caller passes in, so the
//! demo asset, test fixtures and benchmark captures are all written the same way. Classic pcap
//! rather than pcapng: every tool (tcpdump, tshark, libpcap) reads it.

use std::io::{self, Write};

use super::TimedFrame;

/// Nanosecond-resolution pcap magic (libpcap's `NSEC_TCPDUMP_MAGIC`).
pub const MAGIC_NANOS: u32 = 0xa1b2_3c4d;
/// What tcpdump uses by default: large enough for any frame we build.
pub const SNAPLEN: u32 = 262_144;

/// Streams frames into a pcap file: the header on creation, then one record per frame.
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    out: W,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header for `linktype` (see [`super::linktype`]).
    pub fn new(mut out: W, linktype: u32) -> io::Result<Self> {
        let mut header = Vec::with_capacity(24);
        header.extend_from_slice(&MAGIC_NANOS.to_le_bytes());
        header.extend_from_slice(&2u16.to_le_bytes()); // version 2.4
        header.extend_from_slice(&4u16.to_le_bytes());
        header.extend_from_slice(&0i32.to_le_bytes()); // thiszone: UTC
        header.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
        header.extend_from_slice(&SNAPLEN.to_le_bytes());
        header.extend_from_slice(&linktype.to_le_bytes());
        out.write_all(&header)?;
        Ok(Self { out })
    }

    /// Appends one record; frames longer than the snap length are cut, as a capture would.
    pub fn write(&mut self, frame: &TimedFrame) -> io::Result<()> {
        let orig_len = u32::try_from(frame.frame.len()).unwrap_or(u32::MAX);
        let incl_len = orig_len.min(SNAPLEN);
        let seconds = u32::try_from(frame.ts_nanos / 1_000_000_000).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "timestamp past 2106 does not fit pcap")
        })?;
        let nanos = (frame.ts_nanos % 1_000_000_000) as u32;
        let mut header = [0u8; 16];
        header[0..4].copy_from_slice(&seconds.to_le_bytes());
        header[4..8].copy_from_slice(&nanos.to_le_bytes());
        header[8..12].copy_from_slice(&incl_len.to_le_bytes());
        header[12..16].copy_from_slice(&orig_len.to_le_bytes());
        self.out.write_all(&header)?;
        self.out.write_all(&frame.frame[..incl_len as usize])
    }

    /// Flushes and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Writes a whole classic pcap file (nanosecond magic, snaplen 262144) of `frames`.
pub fn write_pcap(out: &mut impl Write, linktype: u32, frames: &[TimedFrame]) -> io::Result<()> {
    let mut writer = PcapWriter::new(out, linktype)?;
    for frame in frames {
        writer.write(frame)?;
    }
    writer.finish().map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::linktype;

    #[test]
    fn pcap_file_has_the_nanosecond_header_and_one_record_per_frame() {
        let frames = [
            TimedFrame { ts_nanos: 1_795_946_400_123_456_789, frame: vec![1; 60] },
            TimedFrame { ts_nanos: 1_795_946_401_000_000_001, frame: vec![2; 42] },
        ];
        let mut out = Vec::new();
        write_pcap(&mut out, linktype::ETHERNET, &frames).unwrap();
        assert_eq!(&out[0..4], &[0x4d, 0x3c, 0xb2, 0xa1]);
        assert_eq!(u32::from_le_bytes(out[16..20].try_into().unwrap()), 262_144);
        assert_eq!(u32::from_le_bytes(out[20..24].try_into().unwrap()), 1);
        assert_eq!(out.len(), 24 + 16 + 60 + 16 + 42);
        assert_eq!(u32::from_le_bytes(out[24..28].try_into().unwrap()), 1_795_946_400);
        assert_eq!(u32::from_le_bytes(out[28..32].try_into().unwrap()), 123_456_789);
    }

    #[test]
    fn the_pcap_crate_reads_what_the_writer_wrote() {
        let frames = [TimedFrame { ts_nanos: 1_795_946_400_000_000_500, frame: vec![7; 100] }];
        let mut file = tempfile::NamedTempFile::new().unwrap();
        write_pcap(&mut file, linktype::ETHERNET, &frames).unwrap();
        let mut capture =
            pcap::Capture::from_file_with_precision(file.path(), pcap::Precision::Nano).unwrap();
        let packet = capture.next_packet().unwrap();
        assert_eq!(packet.data, &frames[0].frame[..]);
        assert_eq!(packet.header.ts.tv_usec, 500);
        assert!(capture.next_packet().is_err());
    }
}
