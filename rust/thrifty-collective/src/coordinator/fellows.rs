//! Coordinators told of each other (`fellows`) keep one world: before it takes a peer in
//! while it has no world of its own, a coordinator asks each fellow whether it leads one
//! (`WhoLeads`), and sends the peer there if one does (see `message`, point 7).

use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::shared::Shared;
use crate::auth::{client_handshake, Purpose, Secret};
use crate::frame::{recv_control, send_control};
use crate::message::{FromCoordinator, ToCoordinator};

/// The most a fellow coordinator may take to say whether it holds the world.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The fellow coordinator that holds a live world, while this one has none: the one with
/// the newest epoch. Unreachable fellows count as none.
pub(super) fn leader_elsewhere(shared: &Shared) -> Option<String> {
    let fellows = &shared.options.fellows;
    if fellows.is_empty() || shared.lock().votes.epoch() != 0 {
        return None;
    }
    fellows
        .iter()
        .filter_map(|fellow| {
            probe(fellow, &shared.secret)
                .map_err(|why| log::info!("fellow coordinator {fellow} did not answer: {why}"))
                .ok()
                .filter(|&(epoch, live)| epoch > 0 && live > 0)
                .map(|(epoch, _)| (epoch, fellow))
        })
        .max_by_key(|&(epoch, _)| epoch)
        .map(|(_, fellow)| fellow.clone())
}

/// Ask the coordinator at `addr` for its committed epoch and live member count.
fn probe(addr: &str, secret: &Secret) -> Result<(u64, u32), String> {
    let deadline = Instant::now() + PROBE_TIMEOUT;
    let target = addr
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("no address")?;
    let mut stream =
        TcpStream::connect_timeout(&target, PROBE_TIMEOUT).map_err(|e| e.to_string())?;
    client_handshake(&mut stream, secret, Purpose::Control, deadline).map_err(|e| e.to_string())?;
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    stream
        .set_read_timeout(Some(left))
        .map_err(|e| e.to_string())?;
    send_control(&mut stream, &ToCoordinator::WhoLeads).map_err(|e| e.to_string())?;
    match recv_control::<FromCoordinator>(&mut stream).map_err(|e| e.to_string())? {
        FromCoordinator::Leader { epoch, live } => Ok((epoch, live)),
        other => Err(format!("answered {other:?}")),
    }
}
