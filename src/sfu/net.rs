//! Which address WebRTC host candidates advertise.

use std::net::{IpAddr, Ipv4Addr, UdpSocket};

/// A public address used only to ask the kernel which interface routes to the internet; no
/// packet is sent (connecting a UDP socket only picks a route).
const ROUTE_PROBE: (Ipv4Addr, u16) = (Ipv4Addr::new(192, 0, 2, 1), 9);

/// The address to advertise: the configured one, else the address of the interface with the
/// default route, else loopback (a machine without a route reaches nobody else anyway).
pub fn candidate_ip(configured: Option<IpAddr>) -> IpAddr {
    if let Some(ip) = configured {
        return ip;
    }
    UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|s| {
            s.connect(ROUTE_PROBE)?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .ok()
        .filter(|ip| !ip.is_unspecified())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configured_address_wins_and_the_default_is_usable() {
        let ip = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
        assert_eq!(candidate_ip(Some(ip)), ip);
        let auto = candidate_ip(None);
        assert!(!auto.is_unspecified() && !auto.is_multicast());
    }
}
