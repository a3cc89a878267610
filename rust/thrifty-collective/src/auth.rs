//! Mutual HMAC-SHA256 challenge-response, run on every connection before anything else.
//!
//! ```text
//! client -> server   Auth[ purpose u8 | client_nonce 32 ]
//! server -> client   Auth[ server_nonce 32 | HMAC(k, "thrifty/server" | purpose | cn | sn) ]
//! client -> server   Auth[ HMAC(k, "thrifty/client" | purpose | sn | cn) ]
//! server -> client   Auth[ 1 ]   (accepted; on refusal the server closes instead)
//! ```
//!
//! Both sides prove they hold the secret over fresh nonces, so a peer without it is refused
//! before it sees any data, and a peer never sends data to an impostor coordinator either.
//! The two proofs use different labels and nonce orders, so one side's proof can never be
//! replayed as the other's. The connection is authenticated, not encrypted: use a VPN (for
//! example WireGuard) when the links cross an untrusted network.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use thrifty_core::{CoreError, CoreResult};

use crate::frame::{read_frame, write_frame, FrameKind, ProtocolError, MAX_AUTH_FRAME};

type HmacSha256 = Hmac<Sha256>;

const NONCE_LEN: usize = 32;
const PROOF_LEN: usize = 32;

/// The environment variable a secret is read from when none is passed.
pub const SECRET_ENV: &str = "THRIFTY_SECRET";

/// What a connection is for; a server refuses a connection meant for another service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Purpose {
    /// A peer's control connection to the coordinator.
    Control = 1,
    /// A peer-to-peer data link.
    Link = 2,
}

/// The pre-shared secret. Its bytes never appear in `Debug` output or logs.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> CoreResult<Self> {
        let bytes = bytes.into();
        if bytes.is_empty() {
            return Err(CoreError::invalid("secret", "must not be empty"));
        }
        Ok(Self(bytes))
    }

    /// The given secret, else `THRIFTY_SECRET`, else an error naming both.
    pub fn from_arg_or_env(secret: Option<&str>) -> CoreResult<Self> {
        match secret {
            Some(s) => Self::new(s.as_bytes()),
            None => match std::env::var(SECRET_ENV) {
                Ok(s) => Self::new(s.into_bytes()).map_err(|_| {
                    CoreError::invalid("secret", format!("{SECRET_ENV} is set but empty"))
                }),
                Err(_) => Err(CoreError::invalid(
                    "secret",
                    format!("no secret given: pass secret=... or set {SECRET_ENV}"),
                )),
            },
        }
    }

    fn proof(&self, label: &[u8], purpose: u8, first: &[u8], second: &[u8]) -> HmacSha256 {
        // new_from_slice accepts keys of any length for HMAC.
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(label);
        mac.update(&[purpose]);
        mac.update(first);
        mac.update(second);
        mac
    }
}

fn nonce() -> CoreResult<[u8; NONCE_LEN]> {
    let mut n = [0u8; NONCE_LEN];
    getrandom::fill(&mut n).map_err(|e| CoreError::Internal(format!("no randomness: {e}")))?;
    Ok(n)
}

fn set_deadline(stream: &TcpStream, deadline: Instant) -> CoreResult<()> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(CoreError::Timeout(
            "authentication ran past its deadline".into(),
        ));
    }
    let io = |e: std::io::Error| CoreError::PeerLost(format!("socket: {e}"));
    stream.set_read_timeout(Some(left)).map_err(io)?;
    stream.set_write_timeout(Some(left)).map_err(io)
}

fn wire_error(what: &str, error: ProtocolError) -> CoreError {
    if error.is_timeout() {
        CoreError::Timeout(format!("authentication timed out while {what}"))
    } else {
        CoreError::Authentication(format!("authentication failed while {what}: {error}"))
    }
}

fn recv(stream: &mut (impl Read + Write), what: &str, len: usize) -> CoreResult<Vec<u8>> {
    let (header, payload) = read_frame(stream, MAX_AUTH_FRAME).map_err(|e| wire_error(what, e))?;
    if header.kind != FrameKind::Auth || payload.len() != len {
        return Err(CoreError::Authentication(format!(
            "authentication failed while {what}: unexpected {:?} frame of {} bytes",
            header.kind,
            payload.len()
        )));
    }
    Ok(payload)
}

fn send(stream: &mut (impl Read + Write), what: &str, payload: &[u8]) -> CoreResult<()> {
    write_frame(stream, FrameKind::Auth, 0, payload).map_err(|e| wire_error(what, e))
}

/// Prove to the server that we hold the secret, and check that it does too.
pub fn client_handshake(
    stream: &mut TcpStream,
    secret: &Secret,
    purpose: Purpose,
    deadline: Instant,
) -> CoreResult<()> {
    set_deadline(stream, deadline)?;
    let client_nonce = nonce()?;
    let mut hello = vec![purpose as u8];
    hello.extend_from_slice(&client_nonce);
    send(stream, "sending the challenge", &hello)?;
    let answer = recv(stream, "reading the server's proof", NONCE_LEN + PROOF_LEN)?;
    let (server_nonce, server_proof) = answer.split_at(NONCE_LEN);
    secret
        .proof(
            b"thrifty/server",
            purpose as u8,
            &client_nonce,
            server_nonce,
        )
        .verify_slice(server_proof)
        .map_err(|_| {
            CoreError::Authentication(
                "the server does not hold the shared secret (check THRIFTY_SECRET)".into(),
            )
        })?;
    let proof = secret
        .proof(
            b"thrifty/client",
            purpose as u8,
            server_nonce,
            &client_nonce,
        )
        .finalize()
        .into_bytes();
    send(stream, "sending our proof", &proof)?;
    let verdict = recv(stream, "reading the verdict", 1).map_err(|_| {
        CoreError::Authentication("refused by the server: wrong shared secret".into())
    })?;
    if verdict[0] != 1 {
        return Err(CoreError::Authentication(
            "refused by the server: wrong shared secret".into(),
        ));
    }
    Ok(())
}

/// Check that the client holds the secret (and prove that we do); `expected` is the one
/// purpose this listener serves.
pub fn server_handshake(
    stream: &mut TcpStream,
    secret: &Secret,
    expected: Purpose,
    deadline: Instant,
) -> CoreResult<()> {
    set_deadline(stream, deadline)?;
    let hello = recv(stream, "reading the challenge", 1 + NONCE_LEN)?;
    if hello[0] != expected as u8 {
        return Err(CoreError::Authentication(format!(
            "connection for purpose {} reached a listener for {:?}",
            hello[0], expected
        )));
    }
    let client_nonce = &hello[1..];
    let server_nonce = nonce()?;
    let proof = secret
        .proof(b"thrifty/server", hello[0], client_nonce, &server_nonce)
        .finalize()
        .into_bytes();
    let mut answer = server_nonce.to_vec();
    answer.extend_from_slice(&proof);
    send(stream, "sending our proof", &answer)?;
    let client_proof = recv(stream, "reading the client's proof", PROOF_LEN)?;
    secret
        .proof(b"thrifty/client", hello[0], &server_nonce, client_nonce)
        .verify_slice(&client_proof)
        .map_err(|_| {
            CoreError::Authentication("the client does not hold the shared secret".into())
        })?;
    send(stream, "sending the verdict", &[1])?;
    Ok(())
}
