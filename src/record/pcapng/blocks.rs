//! The bytes of each block netwatch writes, appended to a buffer: section header, interface
//! description, enhanced packet, netwatch custom block. Pure; the layout is described in the
//! parent module.

use super::{
    BLOCK_CUSTOM_COPY, BLOCK_ENHANCED_PACKET, BLOCK_INTERFACE, BLOCK_SECTION_HEADER,
    BYTE_ORDER_MAGIC, InterfaceDesc, KIND_CLUSTER_EVENTS, MAX_FRAGMENT_BYTES,
    NETWATCH_BLOCK_VERSION, NETWATCH_PEN, NETWATCH_TAG, PACKET_BLOCK_OVERHEAD,
};
use crate::time::Timestamp;

const OPT_END: u16 = 0;
const OPT_COMMENT: u16 = 1;
const OPT_SHB_USERAPPL: u16 = 4;
const OPT_IF_NAME: u16 = 2;
const OPT_IF_TSRESOL: u16 = 9;

/// Bytes and packet blocks among the whole blocks within the first `accepted` bytes of
/// `buffer`, which holds whole blocks written by this module.
pub(super) fn whole_blocks(buffer: &[u8], accepted: usize) -> (usize, u64) {
    let mut offset = 0;
    let mut packets = 0;
    while let Some(header) = buffer.get(offset..offset + 8) {
        let block_type = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        if len == 0 || offset + len > accepted {
            break;
        }
        offset += len;
        packets += u64::from(block_type == BLOCK_ENHANCED_PACKET);
    }
    (offset, packets)
}

pub(super) fn padded(len: usize) -> usize {
    (len + 3) & !3
}

fn push_u16(out: &mut Vec<u8>, value: u16) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn push_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn push_padding(out: &mut Vec<u8>, len: usize) {
    out.resize(out.len() + (padded(len) - len), 0);
}

/// Appends one option; values longer than an option can say are cut (names never are).
fn push_option(out: &mut Vec<u8>, code: u16, value: &[u8]) {
    let value = &value[..value.len().min(usize::from(u16::MAX))];
    push_u16(out, code);
    push_u16(out, u16::try_from(value.len()).unwrap_or(u16::MAX));
    out.extend_from_slice(value);
    push_padding(out, value.len());
}

/// Appends a block whose body `fill` writes, with both length fields right.
fn push_block(out: &mut Vec<u8>, block_type: u32, fill: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    push_u32(out, block_type);
    push_u32(out, 0);
    fill(out);
    let total = u32::try_from(out.len() - start + 4).unwrap_or(u32::MAX);
    push_u32(out, total);
    out[start + 4..start + 8].copy_from_slice(&total.to_le_bytes());
}

pub(super) fn push_section_header(out: &mut Vec<u8>) {
    push_block(out, BLOCK_SECTION_HEADER, |out| {
        push_u32(out, BYTE_ORDER_MAGIC);
        push_u16(out, 1);
        push_u16(out, 0);
        // Section length unknown: the file is written as a stream.
        out.extend_from_slice(&u64::MAX.to_le_bytes());
        let comment = format!(
            "netwatch recording: cluster events in custom blocks (PEN {NETWATCH_PEN}, tag 'netwatch')"
        );
        push_option(out, OPT_COMMENT, comment.as_bytes());
        let application = concat!("netwatch ", env!("CARGO_PKG_VERSION"));
        push_option(out, OPT_SHB_USERAPPL, application.as_bytes());
        push_option(out, OPT_END, &[]);
    });
}

pub(super) fn push_interface_block(out: &mut Vec<u8>, interface: &InterfaceDesc, snaplen: u32) {
    push_block(out, BLOCK_INTERFACE, |out| {
        push_u16(out, interface.linktype);
        push_u16(out, 0);
        push_u32(out, snaplen);
        push_option(out, OPT_IF_NAME, interface.name.as_bytes());
        // Nanoseconds: 10^-9.
        push_option(out, OPT_IF_TSRESOL, &[9]);
        push_option(out, OPT_END, &[]);
    });
}

pub(super) fn push_packet_block(
    out: &mut Vec<u8>,
    interface: u32,
    ts: Timestamp,
    data: &[u8],
    orig_len: u32,
    snaplen: u32,
) {
    let captured = &data[..data.len().min(snaplen as usize)];
    let captured_len = u32::try_from(captured.len()).unwrap_or(u32::MAX);
    let total = u32::try_from(PACKET_BLOCK_OVERHEAD + padded(captured.len())).unwrap_or(u32::MAX);
    let original_len = orig_len.max(u32::try_from(data.len()).unwrap_or(u32::MAX));
    // One header copy rather than seven small pushes: this is the hot path.
    let mut header = [0u8; 28];
    header[0..4].copy_from_slice(&BLOCK_ENHANCED_PACKET.to_le_bytes());
    header[4..8].copy_from_slice(&total.to_le_bytes());
    header[8..12].copy_from_slice(&interface.to_le_bytes());
    header[12..16].copy_from_slice(&((ts.0 >> 32) as u32).to_le_bytes());
    header[16..20].copy_from_slice(&(ts.0 as u32).to_le_bytes());
    header[20..24].copy_from_slice(&captured_len.to_le_bytes());
    header[24..28].copy_from_slice(&original_len.to_le_bytes());
    out.reserve(total as usize);
    out.extend_from_slice(&header);
    out.extend_from_slice(captured);
    push_padding(out, captured.len());
    push_u32(out, total);
}

/// Appends a JSON payload as one or more netwatch blocks (fragments in order).
pub(super) fn push_cluster_blocks(
    out: &mut Vec<u8>,
    ts: Timestamp,
    payload: &[u8],
) -> Result<(), &'static str> {
    let fragments: Vec<&[u8]> = payload.chunks(MAX_FRAGMENT_BYTES).collect();
    let count = u16::try_from(fragments.len())
        .map_err(|_| "the cluster view is larger than 4 GiB; it cannot be recorded")?;
    for (index, fragment) in (0u16..).zip(&fragments) {
        push_block(out, BLOCK_CUSTOM_COPY, |out| {
            push_u32(out, NETWATCH_PEN);
            out.extend_from_slice(&NETWATCH_TAG);
            push_u16(out, NETWATCH_BLOCK_VERSION);
            push_u16(out, KIND_CLUSTER_EVENTS);
            push_u16(out, index);
            push_u16(out, count);
            push_u32(out, (ts.0 >> 32) as u32);
            push_u32(out, ts.0 as u32);
            push_u32(out, u32::try_from(fragment.len()).unwrap_or(u32::MAX));
            out.extend_from_slice(fragment);
            push_padding(out, fragment.len());
        });
    }
    Ok(())
}
