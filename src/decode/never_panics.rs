use proptest::prelude::*;

use super::*;

const LINKTYPES: [Option<LinkType>; 6] = [
    Some(LinkType::Ethernet),
    Some(LinkType::LinuxSll),
    Some(LinkType::LinuxSll2),
    Some(LinkType::RawIp),
    Some(LinkType::Null),
    None,
];

/// Bytes that look enough like IPv4/IPv6 to get past the first checks.
fn ip_like() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![Just(0x45u8), Just(0x46), Just(0x60), any::<u8>()],
        proptest::collection::vec(any::<u8>(), 0..200),
    )
        .prop_map(|(first, rest)| {
            let mut bytes = vec![first];
            bytes.extend(rest);
            bytes
        })
}

proptest! {
    /// The ASCII shortcut names exactly what the character-by-character rule does.
    #[test]
    fn sanitized_names_are_cut_and_stripped_of_control_characters(
        name in "[ -~\\x00-\\x1f\\x7f\\u{80}-\\u{10ffff}]{0,300}",
    ) {
        let reference: String = name
            .chars()
            .take(MAX_NAME_LEN)
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        prop_assert_eq!(sanitize_name(&name), reference);
        let ascii: String = name.chars().filter(char::is_ascii_graphic).collect();
        prop_assert_eq!(sanitize_name(&ascii), ascii.chars().take(MAX_NAME_LEN).collect::<String>());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn decode_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300), which in 0usize..6) {
        let _ = decode(LINKTYPES[which], &bytes);
    }

    #[test]
    fn decode_never_panics_on_ip_like_bytes(bytes in ip_like()) {
        if let Ok(Decoded { payload, .. }) = decode(Some(LinkType::RawIp), &bytes) {
            prop_assert!(payload.len() <= bytes.len());
            let _ = dns::parse_udp(payload);
            let _ = dns::parse_tcp(payload);
            let _ = tls::client_hello_sni(payload);
            let _ = http::request_host(payload);
        }
    }

    #[test]
    fn payload_parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = dns::parse_udp(&bytes);
        let _ = dns::parse_tcp(&bytes);
        let _ = tls::client_hello_sni(&bytes);
        let _ = http::request_host(&bytes);
    }
}
