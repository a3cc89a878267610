//! Which address the other peers dial to reach this one.

use std::net::{ToSocketAddrs, UdpSocket};

use thrifty_core::{CoreError, CoreResult};

use super::CommunicatorOptions;

/// The address other peers should dial: as configured, else the bind host when it is a
/// real address, else the local address the OS routes towards the coordinator (learned
/// from a connected UDP socket, which sends nothing).
pub(super) fn advertised_host(
    options: &CommunicatorOptions,
    coordinator: &str,
) -> CoreResult<String> {
    if let Some(host) = &options.advertise_host {
        return Ok(host.clone());
    }
    if options.bind_host != "0.0.0.0" && options.bind_host != "::" {
        return Ok(options.bind_host.clone());
    }
    let target = coordinator
        .to_socket_addrs()
        .map_err(|e| {
            CoreError::invalid(
                "coordinator",
                format!("cannot resolve {coordinator:?}: {e}"),
            )
        })?
        .next()
        .ok_or_else(|| {
            CoreError::invalid("coordinator", format!("{coordinator:?} has no address"))
        })?;
    let probe = UdpSocket::bind(if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    })
    .and_then(|s| s.connect(target).map(|()| s))
    .and_then(|s| s.local_addr())
    .map_err(|e| {
        CoreError::invalid(
            "advertise_host",
            format!("cannot find a local address: {e}"),
        )
    })?;
    Ok(probe.ip().to_string())
}

/// `host:port`, with an IPv6 host in brackets.
pub(super) fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}
