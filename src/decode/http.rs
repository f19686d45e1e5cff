//! HTTP/1.x: the `Host` header of a request, from the first payload a client sends.

use super::sanitize_name;

const METHODS: [&[u8]; 9] = [
    b"GET ",
    b"POST ",
    b"PUT ",
    b"HEAD ",
    b"DELETE ",
    b"OPTIONS ",
    b"PATCH ",
    b"CONNECT ",
    b"TRACE ",
];

/// How far into a request the Host header is looked for: headers beyond are not worth the cost.
pub(crate) const MAX_HEADER_BYTES: usize = 8192;

/// Whether `payload` starts like an HTTP/1.x request: a method and a space.
#[must_use]
pub fn starts_with_method(payload: &[u8]) -> bool {
    // Most payloads are not requests; one byte tells most of them apart.
    matches!(payload.first(), Some(b'G' | b'P' | b'H' | b'D' | b'O' | b'C' | b'T'))
        && METHODS.iter().any(|method| payload.starts_with(method))
}

/// The Host header of an HTTP/1.x request, if `payload` starts one and carries it.
#[must_use]
pub fn request_host(payload: &[u8]) -> Option<String> {
    if !starts_with_method(payload) {
        return None;
    }
    let head = &payload[..payload.len().min(MAX_HEADER_BYTES)];
    let mut lines = head.split(|b| *b == b'\n').skip(1);
    lines.find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|b| *b == b':')?;
        let (name, value) = line.split_at(colon);
        if !name.eq_ignore_ascii_case(b"host") {
            return None;
        }
        let value = std::str::from_utf8(&value[1..]).ok()?.trim();
        (!value.is_empty()).then(|| sanitize_name(value))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_header_is_read_case_insensitively() {
        let request =
            b"GET /payload.bin HTTP/1.1\r\nUser-Agent: curl/8\r\nhOsT: www.example.com\r\n\r\n";
        assert_eq!(request_host(request).as_deref(), Some("www.example.com"));
    }

    #[test]
    fn every_method_is_read_past_the_first_byte_check() {
        for method in METHODS {
            let mut request = method.to_vec();
            request.extend_from_slice(b"/ HTTP/1.1\r\nHost: a.example\r\n\r\n");
            assert_eq!(request_host(&request).as_deref(), Some("a.example"), "{method:?}");
        }
    }

    #[test]
    fn responses_and_binary_give_no_host() {
        assert_eq!(request_host(b"HTTP/1.1 200 OK\r\nHost: x\r\n"), None);
        assert_eq!(request_host(&[0x16, 0x03, 0x01]), None);
    }
}
