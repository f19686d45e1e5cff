//! TLS ClientHello: the server name (SNI) a client asked for.
//!
//! Read from the first payload the initiator sends. A ClientHello split across TCP segments is
//! read as far as it goes: when the SNI extension is not in the first segment, there is no name.

use super::sanitize_name;

const HANDSHAKE: u8 = 0x16;
const CLIENT_HELLO: u8 = 0x01;
const SERVER_NAME: u16 = 0x0000;

/// The SNI host name of a TLS ClientHello, if `payload` starts one and carries the extension.
#[must_use]
pub fn client_hello_sni(payload: &[u8]) -> Option<String> {
    let mut r = Reader(payload);
    if r.u8()? != HANDSHAKE {
        return None;
    }
    let _record_version = r.u16()?;
    // Read within the record and the hello: a ClientHello split over two TLS records would
    // otherwise be read through the second record's header, into a wrong name. (A segment
    // shorter than the record is read as far as it goes.)
    let record_len = usize::from(r.u16()?);
    let mut r = r.within(record_len);
    if r.u8()? != CLIENT_HELLO {
        return None;
    }
    let hello_len = usize::try_from(r.u24()?).ok()?;
    let mut r = r.within(hello_len);
    let _client_version = r.u16()?;
    r.skip(32)?; // random
    let session_id_len = r.u8()?;
    r.skip(usize::from(session_id_len))?;
    let suites_len = r.u16()?;
    r.skip(usize::from(suites_len))?;
    let compression_len = r.u8()?;
    r.skip(usize::from(compression_len))?;
    let extensions_len = usize::from(r.u16()?);
    let mut extensions = Reader(r.take(extensions_len.min(r.0.len()))?);
    while let (Some(kind), Some(len)) = (extensions.u16(), extensions.u16()) {
        let body = extensions.take(usize::from(len))?;
        if kind == SERVER_NAME {
            let mut names = Reader(body);
            let _list_len = names.u16()?;
            while let Some(name_type) = names.u8() {
                let name_len = names.u16()?;
                let name = names.take(usize::from(name_len))?;
                if name_type == 0 {
                    return std::str::from_utf8(name).ok().map(sanitize_name);
                }
            }
            return None;
        }
    }
    None
}

/// A cursor over bytes whose every read is bounds-checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = tail;
        Some(head)
    }

    /// The next `n` bytes, or what there is of them.
    fn within(&self, n: usize) -> Reader<'a> {
        Reader(self.0.get(..n).unwrap_or(self.0))
    }

    fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    fn u24(&mut self) -> Option<u32> {
        self.take(3).map(|b| u32::from_be_bytes([0, b[0], b[1], b[2]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(sni: &str) -> Vec<u8> {
        let name = sni.as_bytes();
        let mut server_name = Vec::new();
        server_name.extend_from_slice(&u16::try_from(name.len() + 3).unwrap().to_be_bytes());
        server_name.push(0);
        server_name.extend_from_slice(&u16::try_from(name.len()).unwrap().to_be_bytes());
        server_name.extend_from_slice(name);
        let mut extensions = vec![0x00, 0x17, 0x00, 0x00]; // extended master secret, empty
        extensions.extend_from_slice(&SERVER_NAME.to_be_bytes());
        extensions.extend_from_slice(&u16::try_from(server_name.len()).unwrap().to_be_bytes());
        extensions.extend_from_slice(&server_name);
        let mut body = vec![0x03, 0x03];
        body.extend_from_slice(&[7; 32]);
        body.push(0); // no session id
        body.extend_from_slice(&[0x00, 0x02, 0x13, 0x01]); // one cipher suite
        body.extend_from_slice(&[0x01, 0x00]); // null compression
        body.extend_from_slice(&u16::try_from(extensions.len()).unwrap().to_be_bytes());
        body.extend_from_slice(&extensions);
        let mut handshake = vec![CLIENT_HELLO];
        handshake.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes()[1..]);
        handshake.extend_from_slice(&body);
        let mut record = vec![HANDSHAKE, 0x03, 0x01];
        record.extend_from_slice(&u16::try_from(handshake.len()).unwrap().to_be_bytes());
        record.extend_from_slice(&handshake);
        record
    }

    #[test]
    fn the_server_name_is_read_from_a_client_hello() {
        assert_eq!(
            client_hello_sni(&hello("api.stripe.example")).as_deref(),
            Some("api.stripe.example")
        );
    }

    /// A ClientHello split over two TLS records, the cut inside the name: no name, not one
    /// with the second record's header read into it.
    #[test]
    fn a_client_hello_split_over_two_records_gives_no_name() {
        let whole = hello("api.stripe.example");
        let handshake = &whole[5..];
        let cut = handshake.len() - 6; // inside "example"
        let mut split = vec![HANDSHAKE, 0x03, 0x03];
        split.extend_from_slice(&u16::try_from(cut).unwrap().to_be_bytes());
        split.extend_from_slice(&handshake[..cut]);
        split.extend_from_slice(&[HANDSHAKE, 0x03, 0x03]);
        split.extend_from_slice(&u16::try_from(handshake.len() - cut).unwrap().to_be_bytes());
        split.extend_from_slice(&handshake[cut..]);
        assert_eq!(client_hello_sni(&split), None);
    }

    #[test]
    fn a_cut_client_hello_or_other_payload_gives_no_name_and_no_panic() {
        let full = hello("api.stripe.example");
        for end in 0..full.len() {
            let _ = client_hello_sni(&full[..end]);
        }
        assert_eq!(client_hello_sni(&full[..full.len() - 3]), None);
        assert_eq!(client_hello_sni(b"GET / HTTP/1.1\r\n"), None);
    }
}
