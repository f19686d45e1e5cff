//! The fixed-size pieces of pcapng blocks: integers in the section's byte order, timestamp
//! resolutions, options, block names for messages, and reading that tells a clean end from a
//! cut. Every read is bounds-checked and returns `None` rather than panicking.

use std::io::{self, Read};

use crate::record::pcapng::{
    BLOCK_CUSTOM_COPY, BLOCK_CUSTOM_NO_COPY, BLOCK_ENHANCED_PACKET, BLOCK_INTERFACE,
    BLOCK_PACKET_OBSOLETE, BLOCK_SECTION_HEADER, BLOCK_SIMPLE_PACKET,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Endian {
    Little,
    Big,
}

impl Endian {
    pub(super) fn u16(self, bytes: &[u8], at: usize) -> Option<u16> {
        let raw: [u8; 2] = bytes.get(at..at + 2)?.try_into().ok()?;
        Some(match self {
            Self::Little => u16::from_le_bytes(raw),
            Self::Big => u16::from_be_bytes(raw),
        })
    }

    pub(super) fn u32(self, bytes: &[u8], at: usize) -> Option<u32> {
        let raw: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        Some(match self {
            Self::Little => u32::from_le_bytes(raw),
            Self::Big => u32::from_be_bytes(raw),
        })
    }

    pub(super) fn u64(self, bytes: &[u8], at: usize) -> Option<u64> {
        let raw: [u8; 8] = bytes.get(at..at + 8)?.try_into().ok()?;
        Some(match self {
            Self::Little => u64::from_le_bytes(raw),
            Self::Big => u64::from_be_bytes(raw),
        })
    }

    pub(super) fn timestamp(self, bytes: &[u8], at: usize) -> Option<u64> {
        let high = u64::from(self.u32(bytes, at)?);
        let low = u64::from(self.u32(bytes, at + 4)?);
        Some((high << 32) | low)
    }
}

/// How an interface counts time: units per second as a power of ten or of two, plus an offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Resolution {
    Decimal(u8),
    Binary(u8),
}

impl Resolution {
    pub(super) fn from_option(value: u8) -> Self {
        if value & 0x80 == 0 { Self::Decimal(value) } else { Self::Binary(value & 0x7f) }
    }

    pub(super) fn to_nanos(self, units: u64) -> u64 {
        match self {
            Self::Decimal(9) => units,
            Self::Decimal(exponent) if exponent < 9 => {
                units.saturating_mul(10u64.pow(u32::from(9 - exponent)))
            }
            Self::Decimal(exponent) => {
                let divisor = 10u128.checked_pow(u32::from(exponent - 9)).unwrap_or(u128::MAX);
                u64::try_from(u128::from(units) / divisor).unwrap_or(u64::MAX)
            }
            Self::Binary(exponent) => {
                let nanos = (u128::from(units) * 1_000_000_000) >> exponent.min(127);
                u64::try_from(nanos).unwrap_or(u64::MAX)
            }
        }
    }
}

/// The options of a block body: `(code, value)` until the end option or the first that does
/// not fit.
pub(super) fn options(endian: Endian, mut bytes: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let code = endian.u16(bytes, 0)?;
        let len = usize::from(endian.u16(bytes, 2)?);
        if code == 0 {
            return None;
        }
        let value = bytes.get(4..4 + len)?;
        bytes = bytes.get(4 + ((len + 3) & !3)..).unwrap_or(&[]);
        Some((code, value))
    })
}

pub(super) fn block_name(block_type: u32) -> &'static str {
    match block_type {
        BLOCK_SECTION_HEADER => "a Section Header Block",
        BLOCK_INTERFACE => "an Interface Description Block",
        BLOCK_ENHANCED_PACKET => "an Enhanced Packet Block",
        BLOCK_SIMPLE_PACKET => "a Simple Packet Block",
        BLOCK_PACKET_OBSOLETE => "a Packet Block",
        BLOCK_CUSTOM_COPY | BLOCK_CUSTOM_NO_COPY => "a custom block",
        _ => "a block",
    }
}

/// Reads until `buf` is full or the input ends; returns how much was read.
pub(super) fn read_up_to(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
