//! QUIC endpoint setup for both sides: transport parameters that bound a
//! session's streams, keep-alive, idle detection.

use crate::tlsid::{self, Identity, TlsIdError};
use crate::PublicKey;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How long a QUIC connection may be silent before it is considered dead.
/// The client sends keep-alives well within it.
pub const DEAD_PEER_TIMEOUT: Duration = Duration::from_secs(30);

/// Client keep-alive interval.
pub const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// Why an endpoint could not be made.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// TLS configuration failed.
    #[error(transparent)]
    Tls(#[from] TlsIdError),
    /// Binding the UDP socket failed.
    #[error("binding UDP {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
}

fn transport(max_streams: u32, keep_alive: bool) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(max_streams.into());
    t.max_concurrent_uni_streams(0u32.into());
    t.max_idle_timeout(Some(
        DEAD_PEER_TIMEOUT
            .try_into()
            .expect("30 s fits an idle timeout"),
    ));
    if keep_alive {
        t.keep_alive_interval(Some(KEEP_ALIVE));
    }
    t
}

/// The daemon's endpoint. `max_streams` bounds the data streams of one
/// session; the QUIC credit is two more: the control stream, and one stream
/// over the limit so the client hears `limit-exceeded` instead of waiting
/// for credit.
pub fn server(
    addr: SocketAddr,
    id: &Identity,
    max_streams: usize,
) -> Result<quinn::Endpoint, EndpointError> {
    let mut config = tlsid::quic_server_config(id)?;
    let streams = u32::try_from(max_streams.saturating_add(2)).unwrap_or(u32::MAX);
    config.transport_config(Arc::new(transport(streams, false)));
    quinn::Endpoint::server(config, addr).map_err(|source| EndpointError::Bind { addr, source })
}

/// A client endpoint able to reach `gateway`, pinned to `device`.
pub fn client(
    gateway: SocketAddr,
    id: &Identity,
    device: PublicKey,
) -> Result<quinn::Endpoint, EndpointError> {
    let local: SocketAddr = if gateway.is_ipv6() {
        "[::]:0".parse().expect("literal")
    } else {
        "0.0.0.0:0".parse().expect("literal")
    };
    let mut endpoint = quinn::Endpoint::client(local).map_err(|source| EndpointError::Bind {
        addr: local,
        source,
    })?;
    let mut config = tlsid::quic_client_config(id, device)?;
    // The daemon opens no streams towards the client.
    config.transport_config(Arc::new(transport(0, true)));
    endpoint.set_default_client_config(config);
    Ok(endpoint)
}
