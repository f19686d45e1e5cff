use netwatch::capture::{DecodedFrame, Frame};
use netwatch::decode::LinkType;
use netwatch::engine::Engine;
use netwatch::flow::TableLimits;
use netwatch::time::Timestamp;
use std::time::Instant;

fn udp_frame(src: [u8; 4], port: u16) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20 + 8 + 64];
    f[12] = 0x08;
    f[13] = 0x00;
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    let total = (20 + 8 + 64) as u16;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&[10, 99, 0, 3]);
    let udp = &mut f[34..42];
    udp[0..2].copy_from_slice(&port.to_be_bytes());
    udp[2..4].copy_from_slice(&53u16.to_be_bytes());
    udp[4..6].copy_from_slice(&(8u16 + 64).to_be_bytes());
    f
}

fn main() {
    let mut engine = Engine::new(TableLimits::default());
    let start = 1_700_000_000_000_000_000u64;
    for i in 0..100_000u32 {
        let bytes = udp_frame([10, 1, (i >> 8) as u8, i as u8], 1024 + (i % 60000) as u16);
        let f = Frame {
            ts: Timestamp(start + i as u64 * 1000),
            interface: 0,
            linktype: Some(LinkType::Ethernet),
            data: &bytes,
            wire_len: bytes.len() as u32,
        };
        let d = DecodedFrame::from_frame(&f);
        engine.ingest_decoded(d.ts, d.interface, d.decoded);
    }
    let now = Timestamp(start + 200_000_000);
    for _ in 0..40 {
        let t = Instant::now();
        let records = engine.live_records(now);
        eprintln!("{} records in {:.1} ms", records.len(), t.elapsed().as_secs_f64() * 1e3);
    }
}
