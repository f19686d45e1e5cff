//! The writer's layout, flushing and failure behaviour, read back through `pcapng_reader`.

use std::cell::RefCell;
use std::rc::Rc;

use super::*;
use crate::capture::{Next, PacketSource};
use crate::cluster::{Namespace, Object, ResourceKind};
use crate::record::pcapng_reader::PcapngSource;

const T0: Timestamp = Timestamp(1_795_946_400_123_456_789);

fn interfaces() -> Vec<InterfaceDesc> {
    vec![InterfaceDesc::new("cni0", 1), InterfaceDesc::new("veth1a2b3c", 1)]
}

fn namespace(name: &str) -> ClusterEvent {
    ClusterEvent::Upsert(Object::Namespace(Namespace { name: name.into(), labels: Labels::new() }))
}

use crate::cluster::Labels;

fn frames(source: &mut impl PacketSource) -> Vec<(Timestamp, u16, Vec<u8>)> {
    let mut out = Vec::new();
    while let Next::Packet(frame) = source.next_frame() {
        out.push((frame.ts, frame.interface, frame.data.to_vec()));
    }
    out
}

/// A destination the test can look into while the writer holds it.
#[derive(Clone, Default)]
struct Shared(Rc<RefCell<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Destination for Shared {
    fn cut_to(&mut self, len: u64) -> io::Result<()> {
        self.0.borrow_mut().truncate(len as usize);
        Ok(())
    }
}

/// A disk that fills up after `room` bytes, taking part of the write that does not fit.
struct FullDisk {
    bytes: Vec<u8>,
    room: usize,
}

impl Write for FullDisk {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let free = self.room - self.bytes.len();
        if free == 0 {
            return Err(io::Error::new(io::ErrorKind::StorageFull, "No space left on device"));
        }
        let n = buf.len().min(free);
        self.bytes.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Destination for FullDisk {
    fn cut_to(&mut self, len: u64) -> io::Result<()> {
        self.bytes.truncate(len as usize);
        Ok(())
    }
}

fn write_sample(dest: Vec<u8>, options: WriterOptions) -> Vec<u8> {
    let mut writer =
        PcapngWriter::new(dest, "test.pcapng", &interfaces(), &[namespace("shop")], T0, options)
            .unwrap();
    writer.write_frame(0, T0, &[1; 60], 60).unwrap();
    writer.write_frame(1, Timestamp(T0.0 + 1), &[2; 61], 61).unwrap();
    writer.finish().unwrap()
}

#[test]
fn the_file_starts_with_a_section_header_and_one_named_nanosecond_interface_each() {
    let bytes = write_sample(Vec::new(), WriterOptions::default());
    assert_eq!(&bytes[0..4], &BLOCK_SECTION_HEADER.to_le_bytes());
    assert_eq!(&bytes[8..12], &BYTE_ORDER_MAGIC.to_le_bytes());
    let shb_len = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
    let idb = &bytes[shb_len..];
    assert_eq!(&idb[0..4], &BLOCK_INTERFACE.to_le_bytes());
    assert_eq!(u16::from_le_bytes([idb[8], idb[9]]), 1, "Ethernet");
    // if_name "cni0", then if_tsresol 9.
    assert_eq!(&idb[16..24], &[2, 0, 4, 0, b'c', b'n', b'i', b'0']);
    assert_eq!(&idb[24..29], &[9, 0, 1, 0, 9]);
    let source = PcapngSource::from_bytes("test.pcapng", bytes).unwrap();
    assert_eq!(source.interfaces(), vec!["cni0".to_owned(), "veth1a2b3c".to_owned()]);
}

#[test]
fn packets_read_back_with_their_interface_and_nanosecond_time() {
    let bytes = write_sample(Vec::new(), WriterOptions::default());
    let mut source = PcapngSource::from_bytes("test.pcapng", bytes).unwrap();
    assert_eq!(
        frames(&mut source),
        vec![(T0, 0, vec![1; 60]), (Timestamp(T0.0 + 1), 1, vec![2; 61])]
    );
    assert!(source.take_warnings().is_empty());
    let events = source.take_cluster_events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].ts, T0);
    assert_eq!(events[0].event, namespace("shop"));
}

#[test]
fn a_packet_beyond_the_snap_length_is_cut_and_keeps_its_length_on_the_wire() {
    let options = WriterOptions { snaplen: 40, ..WriterOptions::default() };
    let bytes = write_sample(Vec::new(), options);
    let mut source = PcapngSource::from_bytes("test.pcapng", bytes.clone()).unwrap();
    let read = frames(&mut source);
    assert_eq!(read[0].2, vec![1; 40]);
    // The original length field of the first packet block says 60.
    let epb = bytes.windows(4).position(|w| w == BLOCK_ENHANCED_PACKET.to_le_bytes()).unwrap();
    assert_eq!(u32::from_le_bytes(bytes[epb + 24..epb + 28].try_into().unwrap()), 60);
}

#[test]
fn a_packet_on_an_undescribed_interface_is_an_error_naming_it() {
    let mut writer =
        PcapngWriter::new(Vec::new(), "t", &interfaces(), &[], T0, WriterOptions::default())
            .unwrap();
    let error = writer.write_frame(2, T0, &[0; 60], 60).unwrap_err();
    assert!(error.to_string().contains("interface 2"), "{error}");
    let id = writer.add_interface(InterfaceDesc::new("veth9", 1)).unwrap();
    assert_eq!(id, 2);
    writer.write_frame(2, T0, &[0; 60], 60).unwrap();
    let mut source = PcapngSource::from_bytes("t", writer.finish().unwrap()).unwrap();
    assert_eq!(frames(&mut source)[0].1, 2);
    assert_eq!(source.interfaces()[2], "veth9");
}

#[test]
fn a_big_cluster_view_is_split_into_fragments_and_read_back_whole() {
    let events: Vec<ClusterEvent> =
        (0..5000).map(|i| namespace(&format!("namespace-with-a-long-name-{i:05}"))).collect();
    let bytes = PcapngWriter::new(Vec::new(), "t", &interfaces(), &events, T0, Default::default())
        .unwrap()
        .finish()
        .unwrap();
    let blocks = bytes.windows(4).filter(|w| *w == BLOCK_CUSTOM_COPY.to_le_bytes()).count();
    assert!(blocks >= 3, "{blocks} blocks");
    let mut source = PcapngSource::from_bytes("t", bytes).unwrap();
    let read: Vec<ClusterEvent> =
        source.take_cluster_events().into_iter().map(|e| e.event).collect();
    assert_eq!(read, events);
    assert!(source.take_warnings().is_empty());
}

#[test]
fn the_header_is_on_the_destination_as_soon_as_the_writer_exists() {
    let shared = Shared::default();
    let _writer = PcapngWriter::new(
        shared.clone(),
        "t",
        &interfaces(),
        &[namespace("a")],
        T0,
        Default::default(),
    )
    .unwrap();
    let bytes = shared.0.borrow().clone();
    let source = PcapngSource::from_bytes("t", bytes).unwrap();
    assert!(source.has_netwatch_blocks());
}

#[test]
fn packets_reach_the_destination_within_a_second_of_packet_time() {
    let shared = Shared::default();
    let mut writer =
        PcapngWriter::new(shared.clone(), "t", &interfaces(), &[], T0, Default::default()).unwrap();
    let header = shared.0.borrow().len();
    writer.write_frame(0, T0, &[0; 60], 60).unwrap();
    writer.write_frame(0, T0.saturating_add(Duration::from_millis(999)), &[0; 60], 60).unwrap();
    assert_eq!(shared.0.borrow().len(), header, "buffered within the second");
    writer.write_frame(0, T0.saturating_add(Duration::from_secs(1)), &[0; 60], 60).unwrap();
    assert_eq!(shared.0.borrow().len() as u64, writer.len_bytes(), "flushed at one second");
}

#[test]
fn a_quiet_link_is_flushed_by_the_clock() {
    let shared = Shared::default();
    let mut writer =
        PcapngWriter::new(shared.clone(), "t", &interfaces(), &[], T0, Default::default()).unwrap();
    writer.write_frame(0, T0, &[0; 60], 60).unwrap();
    assert!(!writer.flush_if_due(T0.saturating_add(Duration::from_millis(500))).unwrap());
    assert!((shared.0.borrow().len() as u64) < writer.len_bytes());
    assert!(writer.flush_if_due(T0.saturating_add(Duration::from_secs(1))).unwrap());
    assert_eq!(shared.0.borrow().len() as u64, writer.len_bytes());
}

#[test]
fn a_full_disk_is_an_error_and_what_stays_on_it_is_a_valid_file() {
    let full = FullDisk { bytes: Vec::new(), room: 2000 };
    let options = WriterOptions { buffer_bytes: 300, ..WriterOptions::default() };
    let mut writer =
        PcapngWriter::new(full, "full.pcapng", &interfaces(), &[namespace("a")], T0, options)
            .unwrap();
    let mut error = None;
    for i in 0..100u64 {
        if let Err(e) = writer.write_frame(0, Timestamp(T0.0 + i), &[i as u8; 100], 100) {
            error = Some(e);
            break;
        }
    }
    let error = error.expect("the disk fills up");
    let message = error.to_string();
    assert!(message.contains("full.pcapng") && message.contains("No space left"), "{message}");
    let RecordError::Write { packets, valid_bytes, .. } = error else { panic!("{error:?}") };
    assert!(matches!(writer.write_frame(0, T0, &[0; 10], 10), Err(RecordError::Stopped { .. })));
    let bytes = std::mem::take(&mut writer.dest.as_mut().unwrap().bytes);
    assert_eq!(bytes.len() as u64, valid_bytes);
    let mut source = PcapngSource::from_bytes("full.pcapng", bytes).unwrap();
    let read = frames(&mut source);
    assert_eq!(read.len() as u64, packets);
    assert!(packets > 0);
    assert!(source.take_warnings().is_empty(), "whole blocks only");
}

#[test]
fn whole_blocks_stop_before_the_first_block_the_destination_did_not_take_whole() {
    let mut buffer = Vec::new();
    push_packet_block(&mut buffer, 0, T0, &[0; 10], 10, DEFAULT_SNAPLEN);
    let first = buffer.len();
    push_packet_block(&mut buffer, 0, T0, &[0; 10], 10, DEFAULT_SNAPLEN);
    assert_eq!(whole_blocks(&buffer, first - 1), (0, 0));
    assert_eq!(whole_blocks(&buffer, first + 5), (first, 1));
    assert_eq!(whole_blocks(&buffer, buffer.len()), (buffer.len(), 2));
}

#[test]
fn the_view_as_events_rebuilds_the_same_view() {
    let mut view = crate::cluster::ClusterView::new();
    view.apply(namespace("shop"));
    view.apply(ClusterEvent::Synced(ResourceKind::Namespace));
    let events = rotation::view_events(&view);
    let mut rebuilt = crate::cluster::ClusterView::new();
    for event in events {
        rebuilt.apply(event);
    }
    assert_eq!(rebuilt.namespaces, view.namespaces);
    assert_eq!(rebuilt.synced, vec![ResourceKind::Namespace]);
}
