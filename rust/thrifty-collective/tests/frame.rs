//! The frame decoder and the handshake against random and hostile input.

use std::io::{Cursor, Read};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use thrifty_collective::auth::{client_handshake, server_handshake, Purpose, Secret};
use thrifty_collective::frame::{
    decode_message, encode_message, read_frame, write_frame, FrameHeader, FrameKind, ProtocolError,
    HEADER_LEN, MAX_CONTROL_FRAME, PROTOCOL_VERSION,
};
use thrifty_collective::message::{AbortKind, FromCoordinator, ToCoordinator, Vote};
use thrifty_core::CoreError;

/// A reader that claims whatever it is given and then ends, counting what was read.
struct Counting<R> {
    inner: R,
    read: usize,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n;
        Ok(n)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut cursor = Cursor::new(bytes.clone());
        let _ = read_frame(&mut cursor, MAX_CONTROL_FRAME);
        let _ = decode_message::<ToCoordinator>(&bytes);
        let _ = decode_message::<FromCoordinator>(&bytes);
    }

    #[test]
    fn valid_headers_with_random_payloads_never_panic_message_decoding(
        payload in proptest::collection::vec(any::<u8>(), 0..512)
    ) {
        let mut frame = Vec::new();
        write_frame(&mut frame, FrameKind::Control, 0, &payload).expect("write");
        let (header, body) = read_frame(&mut Cursor::new(frame), MAX_CONTROL_FRAME).expect("read");
        prop_assert_eq!(header.len as usize, payload.len());
        prop_assert_eq!(&body, &payload);
        let _ = decode_message::<ToCoordinator>(&body);
        let _ = decode_message::<FromCoordinator>(&body);
    }

    #[test]
    fn headers_round_trip(len in 0usize..1_000_000, tag in any::<u64>(), kind in 1u8..=3) {
        let kind = match kind { 1 => FrameKind::Auth, 2 => FrameKind::Control, _ => FrameKind::Data };
        let header = FrameHeader::new(kind, len, tag);
        prop_assert_eq!(FrameHeader::decode(&header.encode(), 1 << 20).expect("decode"), header);
    }

    #[test]
    fn votes_round_trip(seq in any::<u64>(), payload in proptest::collection::vec(any::<u8>(), 0..64)) {
        let vote = ToCoordinator::Vote(Vote {
            epoch: 3, seq, participants: vec![1, 2, 3], descriptor: "barrier".into(),
            ok: seq % 2 == 0, reason: String::new(), kind: AbortKind::PeerLost, payload,
        });
        prop_assert_eq!(decode_message::<ToCoordinator>(&encode_message(&vote)).expect("decode"), vote);
    }
}

#[test]
fn oversized_unknown_version_and_bad_magic_are_refused_before_any_payload_is_read() {
    let mut header = FrameHeader::new(FrameKind::Control, 0, 0).encode();
    header[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    let mut reader = Counting {
        inner: Cursor::new(header.to_vec()),
        read: 0,
    };
    assert!(matches!(
        read_frame(&mut reader, MAX_CONTROL_FRAME),
        Err(ProtocolError::Oversized { .. })
    ));
    assert_eq!(reader.read, HEADER_LEN);

    let mut old = FrameHeader::new(FrameKind::Control, 0, 0).encode();
    old[2] = PROTOCOL_VERSION + 1;
    assert!(matches!(
        read_frame(&mut Cursor::new(old.to_vec()), MAX_CONTROL_FRAME),
        Err(ProtocolError::UnknownVersion(_))
    ));
    assert!(matches!(
        read_frame(
            &mut Cursor::new(b"GET / HTTP/1.1\r\n\r\n".to_vec()),
            MAX_CONTROL_FRAME
        ),
        Err(ProtocolError::BadMagic(_))
    ));
}

#[test]
fn a_claimed_length_is_not_allocated_up_front() {
    // 16 MiB claimed, 10 bytes sent: the decoder reports truncation having held 10 bytes.
    let mut frame = FrameHeader::new(FrameKind::Control, MAX_CONTROL_FRAME, 0)
        .encode()
        .to_vec();
    frame.extend_from_slice(&[7; 10]);
    match read_frame(&mut Cursor::new(frame), MAX_CONTROL_FRAME) {
        Err(ProtocolError::Truncated { expected, got }) => {
            assert_eq!(expected, MAX_CONTROL_FRAME);
            assert_eq!(got, 10);
        }
        other => panic!("expected truncation, got {other:?}"),
    }
}

fn handshake(
    server_secret: &str,
    client_secret: &str,
) -> (Result<(), CoreError>, Result<(), CoreError>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server_secret = Secret::new(server_secret.as_bytes().to_vec()).expect("secret");
    let server = thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        server_handshake(
            &mut stream,
            &server_secret,
            Purpose::Link,
            Instant::now() + Duration::from_secs(5),
        )
    });
    let mut stream = TcpStream::connect(addr).expect("connect");
    let secret = Secret::new(client_secret.as_bytes().to_vec()).expect("secret");
    let client = client_handshake(
        &mut stream,
        &secret,
        Purpose::Link,
        Instant::now() + Duration::from_secs(5),
    );
    drop(stream);
    (server.join().expect("server thread"), client)
}

#[test]
fn matching_secrets_authenticate_both_ways() {
    let (server, client) = handshake("s3cret", "s3cret");
    assert!(server.is_ok(), "{server:?}");
    assert!(client.is_ok(), "{client:?}");
}

#[test]
fn a_wrong_secret_is_refused_on_both_sides() {
    let (server, client) = handshake("s3cret", "guess");
    assert!(
        matches!(client, Err(CoreError::Authentication(_))),
        "{client:?}"
    );
    assert!(
        matches!(server, Err(CoreError::Authentication(_))),
        "{server:?}"
    );
}

#[test]
fn a_silent_client_times_out_instead_of_hanging() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let _client = TcpStream::connect(addr).expect("connect");
    let (mut stream, _) = listener.accept().expect("accept");
    let secret = Secret::new(b"x".to_vec()).expect("secret");
    let started = Instant::now();
    let result = server_handshake(
        &mut stream,
        &secret,
        Purpose::Control,
        Instant::now() + Duration::from_millis(300),
    );
    assert!(matches!(result, Err(CoreError::Timeout(_))), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn an_empty_secret_is_rejected_by_name() {
    let error = Secret::new(Vec::new()).expect_err("empty");
    assert_eq!(error.argument(), Some("secret"));
}
