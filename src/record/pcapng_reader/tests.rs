//! The reader on files other tools write (big-endian, microseconds, several sections, simple
//! packet blocks) and on damage of every kind.

use proptest::prelude::*;

use super::*;
use crate::cluster::{Labels, Namespace, Object};
use crate::record::pcapng::{
    InterfaceDesc, NETWATCH_PEN, NETWATCH_TAG, PcapngWriter, WriterOptions,
};

const T0: Timestamp = Timestamp(1_795_946_400_123_456_789);

/// Builds blocks in either byte order, as another tool would.
struct Builder {
    big: bool,
    bytes: Vec<u8>,
}

impl Builder {
    fn new(big: bool) -> Self {
        Self { big, bytes: Vec::new() }
    }

    fn u16(&self, v: u16) -> [u8; 2] {
        if self.big { v.to_be_bytes() } else { v.to_le_bytes() }
    }

    fn u32(&self, v: u32) -> [u8; 4] {
        if self.big { v.to_be_bytes() } else { v.to_le_bytes() }
    }

    fn block(&mut self, block_type: u32, body: &[u8]) -> &mut Self {
        let mut body = body.to_vec();
        body.resize(body.len().div_ceil(4) * 4, 0);
        let total = u32::try_from(12 + body.len()).unwrap();
        let (t, l) = (self.u32(block_type), self.u32(total));
        self.bytes.extend_from_slice(&t);
        self.bytes.extend_from_slice(&l);
        self.bytes.extend_from_slice(&body);
        self.bytes.extend_from_slice(&l);
        self
    }

    fn section(&mut self) -> &mut Self {
        let mut body = self.u32(BYTE_ORDER_MAGIC).to_vec();
        body.extend_from_slice(&self.u16(1));
        body.extend_from_slice(&self.u16(0));
        body.extend_from_slice(&[0xff; 8]);
        self.block(BLOCK_SECTION_HEADER, &body)
    }

    /// An interface; `tsresol` `None` leaves the default (microseconds).
    fn interface(&mut self, linktype: u16, name: Option<&str>, tsresol: Option<u8>) -> &mut Self {
        let mut body = self.u16(linktype).to_vec();
        body.extend_from_slice(&[0, 0]);
        body.extend_from_slice(&self.u32(0));
        if let Some(name) = name {
            body.extend_from_slice(&self.u16(2));
            body.extend_from_slice(&self.u16(u16::try_from(name.len()).unwrap()));
            body.extend_from_slice(name.as_bytes());
            body.resize(body.len().div_ceil(4) * 4, 0);
        }
        if let Some(resolution) = tsresol {
            body.extend_from_slice(&self.u16(9));
            body.extend_from_slice(&self.u16(1));
            body.extend_from_slice(&[resolution, 0, 0, 0]);
        }
        body.extend_from_slice(&[0; 4]);
        self.block(BLOCK_INTERFACE, &body)
    }

    fn packet(&mut self, interface: u32, units: u64, data: &[u8]) -> &mut Self {
        let mut body = self.u32(interface).to_vec();
        body.extend_from_slice(&self.u32((units >> 32) as u32));
        body.extend_from_slice(&self.u32(units as u32));
        let len = u32::try_from(data.len()).unwrap();
        body.extend_from_slice(&self.u32(len));
        body.extend_from_slice(&self.u32(len));
        body.extend_from_slice(data);
        self.block(BLOCK_ENHANCED_PACKET, &body)
    }

    fn simple_packet(&mut self, data: &[u8]) -> &mut Self {
        let mut body = self.u32(u32::try_from(data.len()).unwrap()).to_vec();
        body.extend_from_slice(data);
        self.block(BLOCK_SIMPLE_PACKET, &body)
    }

    fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.bytes)
    }
}

/// A frame as read: time, interface index, bytes.
type ReadFrame = (Timestamp, u16, Vec<u8>);

fn read_all(bytes: Vec<u8>) -> (Vec<ReadFrame>, Vec<String>, PcapngSource<io::Cursor<Vec<u8>>>) {
    let mut source = PcapngSource::from_bytes("t.pcapng", bytes).unwrap();
    let mut frames = Vec::new();
    while let Next::Packet(frame) = source.next_frame() {
        frames.push((frame.ts, frame.interface, frame.data.to_vec()));
    }
    let warnings = source.take_warnings();
    (frames, warnings, source)
}

fn namespace(name: &str) -> ClusterEvent {
    ClusterEvent::Upsert(Object::Namespace(Namespace { name: name.into(), labels: Labels::new() }))
}

#[test]
fn a_big_endian_file_in_microseconds_reads_like_a_little_endian_one() {
    for big in [false, true] {
        let bytes = Builder::new(big)
            .section()
            .interface(1, Some("eth0"), None)
            .packet(0, 1_795_946_400_123_456, &[7; 42])
            .take();
        let (frames, warnings, source) = read_all(bytes);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(frames, vec![(Timestamp(1_795_946_400_123_456_000), 0, vec![7; 42])]);
        assert_eq!(source.interfaces(), vec!["eth0".to_owned()]);
    }
}

#[test]
fn binary_and_sub_nanosecond_resolutions_become_nanoseconds() {
    assert_eq!(Resolution::from_option(0x80 | 10).to_nanos(1024), 1_000_000_000);
    assert_eq!(Resolution::from_option(12).to_nanos(1_000_000_000_000), 1_000_000_000);
    assert_eq!(Resolution::from_option(3).to_nanos(5), 5_000_000);
    assert_eq!(Resolution::from_option(0x80 | 127).to_nanos(u64::MAX), 0);
    assert_eq!(Resolution::from_option(0).to_nanos(u64::MAX), u64::MAX);
}

#[test]
fn an_unnamed_interface_takes_the_file_name_and_a_later_section_keeps_known_names() {
    let mut builder = Builder::new(false);
    builder.section().interface(1, None, Some(9)).interface(1, Some("cni0"), Some(9));
    builder.packet(1, 10, &[1; 20]);
    builder.section().interface(1, Some("cni0"), Some(9)).packet(0, 20, &[2; 20]);
    let (frames, warnings, source) = read_all(builder.take());
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(source.interfaces(), vec!["t.pcapng".to_owned(), "cni0".to_owned()]);
    assert_eq!(frames.iter().map(|f| f.1).collect::<Vec<_>>(), vec![1, 1]);
}

#[test]
fn simple_packet_blocks_take_interface_zero_and_the_time_before_them() {
    let bytes = Builder::new(false)
        .section()
        .interface(1, Some("eth0"), Some(9))
        .packet(0, 500, &[1; 20])
        .simple_packet(&[2; 30])
        .take();
    let (frames, warnings, _) = read_all(bytes);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(frames[1], (Timestamp(500), 0, vec![2; 30]));
}

#[test]
fn packets_on_an_interface_never_described_are_counted_in_one_warning() {
    let bytes = Builder::new(false)
        .section()
        .interface(1, Some("eth0"), Some(9))
        .packet(3, 1, &[1; 20])
        .packet(3, 2, &[1; 20])
        .packet(0, 3, &[1; 20])
        .take();
    let (frames, warnings, _) = read_all(bytes);
    assert_eq!(frames.len(), 1);
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("2 packets name an interface"), "{warnings:?}");
}

#[test]
fn an_undecodable_link_type_is_named_once_and_its_packets_still_come_through() {
    let bytes =
        Builder::new(false).section().interface(147, Some("usb0"), None).packet(0, 1, &[1]).take();
    let (frames, warnings, _) = read_all(bytes);
    assert_eq!(frames.len(), 1);
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("'usb0'") && warnings[0].contains("147"), "{warnings:?}");
}

#[test]
fn a_block_whose_lengths_disagree_ends_the_read_with_one_warning_saying_where() {
    let mut bytes = Builder::new(false)
        .section()
        .interface(1, Some("eth0"), Some(9))
        .packet(0, 1, &[1; 20])
        .packet(0, 2, &[2; 20])
        .take();
    let last = bytes.len() - 4;
    bytes[last] ^= 0xff;
    let second_packet_at = bytes.len() - (12 + 20 + 20);
    let (frames, warnings, _) = read_all(bytes);
    assert_eq!(frames.len(), 1);
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains(&format!("at byte {second_packet_at}")), "{warnings:?}");
    assert!(warnings[0].contains("the 1 packets before it"), "{warnings:?}");
}

#[test]
fn what_is_not_pcapng_is_refused_with_a_reason() {
    for (bytes, reason) in [
        (Vec::new(), "empty"),
        (b"\xd4\xc3\xb2\xa1 classic pcap".to_vec(), "Section Header Block"),
        (b"{\"first_seen\":1}".to_vec(), "Section Header Block"),
    ] {
        let Err(error) = PcapngSource::from_bytes("x", bytes) else { panic!("accepted") };
        assert!(error.to_string().contains(reason), "{error}");
    }
}

#[test]
fn a_header_cut_inside_the_section_block_reads_nothing_and_says_so() {
    let bytes = Builder::new(false).section().take();
    let (frames, warnings, _) = read_all(bytes[..10].to_vec());
    assert!(frames.is_empty());
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("cut short at byte 0"), "{warnings:?}");
}

#[test]
fn custom_blocks_of_others_are_skipped_and_newer_netwatch_blocks_are_named_once() {
    let mut builder = Builder::new(false);
    builder.section().interface(1, Some("eth0"), Some(9));
    let mut other = NETWATCH_PEN.to_le_bytes().to_vec();
    other.extend_from_slice(b"example!");
    builder.block(BLOCK_CUSTOM_COPY, &other);
    builder.block(BLOCK_CUSTOM_NO_COPY, &10949u32.to_le_bytes());
    let mut newer = NETWATCH_PEN.to_le_bytes().to_vec();
    newer.extend_from_slice(&NETWATCH_TAG);
    newer.extend_from_slice(&2u16.to_le_bytes());
    newer.extend_from_slice(&1u16.to_le_bytes());
    builder.block(BLOCK_CUSTOM_COPY, &newer).block(BLOCK_CUSTOM_COPY, &newer);
    builder.packet(0, 1, &[1; 20]);
    let (frames, warnings, source) = read_all(builder.take());
    assert_eq!(frames.len(), 1);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("newer netwatch"), "{warnings:?}");
    assert!(source.has_netwatch_blocks());
}

#[test]
fn events_due_come_out_in_time_order_up_to_the_time_asked() {
    let interfaces = [InterfaceDesc::new("eth0", 1)];
    let mut writer = PcapngWriter::new(
        Vec::new(),
        "t",
        &interfaces,
        &[namespace("a")],
        T0,
        WriterOptions::default(),
    )
    .unwrap();
    writer.write_cluster_event(Timestamp(T0.0 + 30), &namespace("c")).unwrap();
    writer.write_cluster_event(Timestamp(T0.0 + 20), &namespace("b")).unwrap();
    writer.write_frame(0, Timestamp(T0.0 + 40), &[0; 20], 20).unwrap();
    let mut source = PcapngSource::from_bytes("t", writer.finish().unwrap()).unwrap();
    let first = source.take_cluster_events_due(T0);
    assert_eq!(first.iter().map(|e| e.event.clone()).collect::<Vec<_>>(), vec![namespace("a")]);
    assert!(source.take_cluster_events_due(T0).is_empty(), "later events wait");
    assert!(matches!(source.next_frame(), Next::Packet(_)));
    let rest = source.take_cluster_events_due(Timestamp(T0.0 + 40));
    assert_eq!(rest.iter().map(|e| e.ts.0 - T0.0).collect::<Vec<_>>(), vec![20, 30]);
}

#[test]
fn unreadable_event_json_is_skipped_with_a_warning_and_packets_go_on() {
    let interfaces = [InterfaceDesc::new("eth0", 1)];
    let mut writer = PcapngWriter::new(
        Vec::new(),
        "t",
        &interfaces,
        &[namespace("abc")],
        T0,
        WriterOptions::default(),
    )
    .unwrap();
    writer.write_frame(0, T0, &[0; 20], 20).unwrap();
    let mut bytes = writer.finish().unwrap();
    let at = bytes.windows(3).position(|w| w == b"abc").unwrap();
    bytes[at - 1] = b'{';
    let (frames, warnings, mut source) = read_all(bytes);
    assert_eq!(frames.len(), 1);
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("cannot be read"), "{warnings:?}");
    assert!(source.take_cluster_events().is_empty());
}

fn sample_file() -> Vec<u8> {
    let interfaces = [InterfaceDesc::new("eth0", 1), InterfaceDesc::new("lo", 0)];
    let mut writer = PcapngWriter::new(
        Vec::new(),
        "t",
        &interfaces,
        &[namespace("a")],
        T0,
        WriterOptions::default(),
    )
    .unwrap();
    for i in 0..6u8 {
        writer.write_frame(u32::from(i % 2), Timestamp(T0.0 + u64::from(i)), &[i; 33], 33).unwrap();
        writer.write_cluster_event(Timestamp(T0.0 + u64::from(i)), &namespace("b")).unwrap();
    }
    writer.finish().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn damaged_bytes_never_panic(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        let mut bytes = sample_file();
        for (at, value) in edits {
            let at = at % bytes.len();
            bytes[at] = value;
        }
        bytes.truncate(cut % (bytes.len() + 1));
        if let Ok(mut source) = PcapngSource::from_bytes("fuzz", bytes) {
            let mut count = 0;
            while let Next::Packet(_) = source.next_frame() {
                count += 1;
                prop_assert!(count < 1000);
            }
            let _ = source.take_warnings();
            let _ = source.take_cluster_events_due(Timestamp(u64::MAX));
        }
    }
}
