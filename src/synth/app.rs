//! Application payloads: TLS records (ClientHello with SNI, a TLS 1.3 server flight, opaque
//! application data) and HTTP/1.1 requests and responses.
//!
//! Shaped like what curl, Go and OpenSSL send, so decoders and Wireshark read them as the real
//! thing. Nothing is encrypted: the "ciphertext" is reproducible filler derived from the inputs.

use super::fnv1a;

const TLS_HANDSHAKE: u8 = 22;
const TLS_CHANGE_CIPHER_SPEC: u8 = 20;
const TLS_APPLICATION_DATA: u8 = 23;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const HANDSHAKE_SERVER_HELLO: u8 = 2;
const TLS12: [u8; 2] = [3, 3];
const TLS13: [u8; 2] = [3, 4];
/// The largest TLS 1.3 ciphertext record body: 2^14 plaintext + type + 16-byte tag.
const MAX_RECORD: usize = 16_384 + 17;
const X25519: [u8; 2] = [0x00, 0x1d];

/// `len` reproducible bytes that look random, seeded by `seed`.
fn filler(seed: &[u8], len: usize) -> Vec<u8> {
    let mut state = fnv1a(&[seed]);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        // xorshift64*: cheap and good enough to look like ciphertext.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn push_u16_len(out: &mut Vec<u8>, body: &[u8]) {
    out.extend_from_slice(&u16::try_from(body.len()).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(body);
}

fn push_u24_len(out: &mut Vec<u8>, body: &[u8]) {
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX).min(0x00ff_ffff);
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.extend_from_slice(body);
}

fn extension(out: &mut Vec<u8>, kind: u16, body: &[u8]) {
    out.extend_from_slice(&kind.to_be_bytes());
    push_u16_len(out, body);
}

fn record(content_type: u8, version: [u8; 2], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(content_type);
    out.extend_from_slice(&version);
    push_u16_len(&mut out, body);
    out
}

fn handshake(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    push_u24_len(&mut out, body);
    out
}

fn session_id(server_name: &str) -> Vec<u8> {
    filler(format!("session:{server_name}").as_bytes(), 32)
}

/// A TLS ClientHello record as a modern client sends it: TLS 1.2 legacy version offering TLS
/// 1.3 via `supported_versions`, SNI (omitted when `sni` is empty, as clients do when dialing
/// an IP address), ALPN `h2`/`http/1.1`, groups, signature algorithms, an x25519 key share.
#[must_use]
pub fn tls_client_hello(sni: &str) -> Vec<u8> {
    let mut body = Vec::with_capacity(512);
    body.extend_from_slice(&TLS12);
    body.extend_from_slice(&filler(format!("client random:{sni}").as_bytes(), 32));
    body.push(32);
    body.extend_from_slice(&session_id(sni));
    let suites: [u16; 9] = [0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8];
    let suites: Vec<u8> = suites.iter().flat_map(|s| s.to_be_bytes()).collect();
    push_u16_len(&mut body, &suites);
    body.extend_from_slice(&[1, 0]); // compression: null only

    let mut extensions = Vec::with_capacity(256);
    if !sni.is_empty() {
        let mut entry = vec![0]; // host_name
        push_u16_len(&mut entry, sni.as_bytes());
        let mut list = Vec::new();
        push_u16_len(&mut list, &entry);
        extension(&mut extensions, 0, &list);
    }
    extension(&mut extensions, 23, &[]); // extended_master_secret
    extension(&mut extensions, 0xff01, &[0]); // renegotiation_info
    extension(&mut extensions, 10, &[0, 6, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x18]); // groups
    extension(&mut extensions, 11, &[1, 0]); // ec_point_formats: uncompressed
    extension(&mut extensions, 35, &[]); // session_ticket
    extension(&mut extensions, 16, b"\x00\x0c\x02h2\x08http/1.1"); // ALPN
    extension(&mut extensions, 5, &[1, 0, 0, 0, 0]); // status_request: OCSP
    let algorithms: [u16; 8] = [0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601];
    let algorithms: Vec<u8> = algorithms.iter().flat_map(|a| a.to_be_bytes()).collect();
    let mut list = Vec::new();
    push_u16_len(&mut list, &algorithms);
    extension(&mut extensions, 13, &list); // signature_algorithms
    let mut share = X25519.to_vec();
    push_u16_len(&mut share, &filler(format!("client key:{sni}").as_bytes(), 32));
    let mut shares = Vec::new();
    push_u16_len(&mut shares, &share);
    extension(&mut extensions, 51, &shares); // key_share
    extension(&mut extensions, 45, &[1, 1]); // psk_key_exchange_modes: psk_dhe_ke
    extension(&mut extensions, 43, &[4, 3, 4, 3, 3]); // supported_versions: 1.3, 1.2
    push_u16_len(&mut body, &extensions);

    record(TLS_HANDSHAKE, [3, 1], &handshake(HANDSHAKE_CLIENT_HELLO, &body))
}

/// A TLS 1.3 server's first flight in answer to [`tls_client_hello`]`(server_name)`: a
/// ServerHello (TLS_AES_128_GCM_SHA256, x25519), the compatibility ChangeCipherSpec, and
/// `encrypted_len` bytes of application-data records standing for EncryptedExtensions,
/// Certificate, CertificateVerify and Finished.
#[must_use]
pub fn tls_server_hello(server_name: &str, encrypted_len: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(128);
    body.extend_from_slice(&TLS12);
    body.extend_from_slice(&filler(format!("server random:{server_name}").as_bytes(), 32));
    body.push(32);
    body.extend_from_slice(&session_id(server_name));
    body.extend_from_slice(&[0x13, 0x01, 0]); // cipher suite, compression
    let mut extensions = Vec::new();
    extension(&mut extensions, 43, &TLS13); // supported_versions
    let mut share = X25519.to_vec();
    push_u16_len(&mut share, &filler(format!("server key:{server_name}").as_bytes(), 32));
    extension(&mut extensions, 51, &share); // key_share
    push_u16_len(&mut body, &extensions);

    let mut out = record(TLS_HANDSHAKE, TLS12, &handshake(HANDSHAKE_SERVER_HELLO, &body));
    out.extend_from_slice(&record(TLS_CHANGE_CIPHER_SPEC, TLS12, &[1]));
    out.extend_from_slice(&tls_application_data(server_name.as_bytes(), encrypted_len));
    out
}

/// The client's end of a TLS 1.3 handshake: ChangeCipherSpec and its encrypted Finished.
#[must_use]
pub fn tls_client_finished() -> Vec<u8> {
    let mut out = record(TLS_CHANGE_CIPHER_SPEC, TLS12, &[1]);
    // 32-byte verify data + content type + 16-byte AEAD tag.
    out.extend_from_slice(&record(TLS_APPLICATION_DATA, TLS12, &filler(b"finished", 53)));
    out
}

/// `len` bytes of TLS application-data records (record headers included in `len` where they
/// fit), filled with reproducible bytes seeded by `seed`.
#[must_use]
pub fn tls_application_data(seed: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut remaining = len.max(6);
    let mut index = 0u32;
    while remaining > 0 {
        let body_len = (remaining.saturating_sub(5)).clamp(1, MAX_RECORD);
        let mut chunk_seed = seed.to_vec();
        chunk_seed.extend_from_slice(&index.to_be_bytes());
        out.extend_from_slice(&record(TLS_APPLICATION_DATA, TLS12, &filler(&chunk_seed, body_len)));
        remaining = remaining.saturating_sub(body_len + 5);
        index += 1;
    }
    out
}

/// An HTTP/1.1 GET as a Go client sends it.
#[must_use]
pub fn http_request(host: &str, path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Go-http-client/1.1\r\n\
         Accept: */*\r\n\r\n"
    )
    .into_bytes()
}

/// A Prometheus scrape request.
#[must_use]
pub fn http_scrape_request(host: &str, path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Prometheus/2.53.0\r\n\
         Accept: text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\n\
         X-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n"
    )
    .into_bytes()
}

/// An HTTP/1.1 response with `body_len` bytes of body of the given kind.
#[must_use]
pub fn http_response(status: u16, body: &Body) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        304 => "Not Modified",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    };
    let (content_type, bytes) = body.render();
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\n\r\n",
        bytes.len()
    )
    .into_bytes();
    out.extend_from_slice(&bytes);
    out
}

/// A response body of a given length, valid for its content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// `application/json`: one object, padded to the length (at least 2 bytes).
    Json(usize),
    /// Prometheus text exposition format.
    Metrics(usize),
}

impl Body {
    fn render(self) -> (&'static str, Vec<u8>) {
        match self {
            Self::Json(len) => {
                let len = len.max(2);
                let body = if len >= 10 {
                    format!("{{\"pad\":\"{}\"}}", "a".repeat(len - 10))
                } else {
                    format!("{{}}{}", " ".repeat(len - 2))
                };
                ("application/json", body.into_bytes())
            }
            Self::Metrics(len) => {
                let mut text = String::with_capacity(len + 64);
                text.push_str("# TYPE demo_requests_total counter\n");
                let mut i = 0u32;
                while text.len() + 48 < len {
                    text.push_str(&format!(
                        "demo_requests_total{{code=\"200\",n=\"{i:05}\"}} {i}\n"
                    ));
                    i += 1;
                }
                // A comment line pads to the exact length.
                if text.len() + 2 <= len {
                    let pad = len - text.len() - 2;
                    text.push('#');
                    text.push_str(&" ".repeat(pad));
                    text.push('\n');
                }
                ("text/plain; version=0.0.4; charset=utf-8", text.into_bytes())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walks the ClientHello to the SNI, the way a decoder would.
    fn sni_of(record: &[u8]) -> Option<String> {
        let hello = &record[5 + 4..];
        let mut at = 2 + 32;
        at += 1 + usize::from(hello[at]);
        at += 2 + usize::from(u16::from_be_bytes([hello[at], hello[at + 1]]));
        at += 1 + usize::from(hello[at]);
        let end = at + 2 + usize::from(u16::from_be_bytes([hello[at], hello[at + 1]]));
        at += 2;
        assert_eq!(end, hello.len(), "extensions end the hello");
        while at < end {
            let kind = u16::from_be_bytes([hello[at], hello[at + 1]]);
            let len = usize::from(u16::from_be_bytes([hello[at + 2], hello[at + 3]]));
            if kind == 0 {
                let name = &hello[at + 4 + 5..at + 4 + len];
                return Some(String::from_utf8(name.to_vec()).unwrap());
            }
            at += 4 + len;
        }
        None
    }

    #[test]
    fn client_hello_lengths_are_consistent_and_carry_the_sni() {
        let hello = tls_client_hello("api.stripe.example");
        assert_eq!(hello[0], TLS_HANDSHAKE);
        assert_eq!(usize::from(u16::from_be_bytes([hello[3], hello[4]])), hello.len() - 5);
        assert_eq!(hello[5], HANDSHAKE_CLIENT_HELLO);
        let hs_len = u32::from_be_bytes([0, hello[6], hello[7], hello[8]]) as usize;
        assert_eq!(hs_len, hello.len() - 9);
        assert_eq!(sni_of(&hello).as_deref(), Some("api.stripe.example"));
    }

    #[test]
    fn client_hello_without_a_name_has_no_sni_extension() {
        assert_eq!(sni_of(&tls_client_hello("")), None);
    }

    #[test]
    fn server_flight_and_application_data_are_whole_records() {
        for bytes in [tls_server_hello("x.example", 3000), tls_application_data(b"s", 40_000)] {
            let mut at = 0;
            while at < bytes.len() {
                let len = usize::from(u16::from_be_bytes([bytes[at + 3], bytes[at + 4]]));
                assert!(len <= MAX_RECORD);
                at += 5 + len;
            }
            assert_eq!(at, bytes.len());
        }
        assert_eq!(tls_application_data(b"s", 40_000).len(), 40_000);
    }

    #[test]
    fn http_response_bodies_have_the_declared_length_and_type() {
        for body in [Body::Json(0), Body::Json(5), Body::Json(500), Body::Metrics(3000)] {
            let response = http_response(200, &body);
            let text = String::from_utf8(response).unwrap();
            let (head, payload) = text.split_once("\r\n\r\n").unwrap();
            let declared: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(declared, payload.len());
            if let Body::Json(_) = body {
                serde_json::from_str::<serde_json::Value>(payload).unwrap();
            }
        }
        let Body::Metrics(len) = Body::Metrics(3000) else { unreachable!() };
        assert_eq!(Body::Metrics(len).render().1.len(), 3000);
    }

    #[test]
    fn http_request_names_the_host() {
        let request = String::from_utf8(http_request("www.example.com", "/")).unwrap();
        assert!(request.starts_with("GET / HTTP/1.1\r\nHost: www.example.com\r\n"));
        assert!(request.ends_with("\r\n\r\n"));
    }
}
