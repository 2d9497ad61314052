//! RTSP requests as the server understands them (RFC 2326, RTSP 1.0), and responses.
//!
//! Parsing is strict about what matters (a CSeq, a request URL, a usable Transport) and
//! tolerant about the rest; anything malformed becomes an error response, never a panic.

use rtsp_types::headers::{
    self, RtpLowerTransport, RtpProfile, RtpTransport, Transport, Transports,
};
use rtsp_types::{Method, Response, StatusCode, Version};
use url::Url;

/// The server's name in `Server` headers.
pub const SERVER_NAME: &str = concat!("camrelay/", env!("CARGO_PKG_VERSION"));

/// Methods the server implements, for `Public` and 405 responses.
pub const PUBLIC_METHODS: &str =
    "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER, SET_PARAMETER";

/// A request the server can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The method.
    pub method: Method,
    /// Its CSeq, echoed in the response.
    pub cseq: u32,
    /// The request URL (`None` for `*`).
    pub url: Option<Url>,
    /// The `Session` id, if any.
    pub session: Option<String>,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
}

/// A request that cannot be served, with the response to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The status.
    pub status: StatusCode,
    /// The CSeq to echo, if the request had a readable one.
    pub cseq: Option<u32>,
    /// Why, for the log.
    pub reason: &'static str,
}

/// Reads the parts of `request` every method needs.
pub fn parse(request: &rtsp_types::Request<Vec<u8>>) -> Result<Parsed, Refusal> {
    let cseq = request
        .header(&headers::CSEQ)
        .and_then(|v| v.as_str().trim().parse::<u32>().ok());
    let refuse = |status, reason| Refusal {
        status,
        cseq,
        reason,
    };
    let Some(cseq) = cseq else {
        return Err(refuse(StatusCode::BadRequest, "missing or invalid CSeq"));
    };
    if request.version() != Version::V1_0 {
        return Err(refuse(
            StatusCode::RTSPVersionNotSupported,
            "only RTSP/1.0 is served",
        ));
    }
    let url = request.request_uri().cloned();
    if url.is_none() && *request.method() != Method::Options {
        return Err(refuse(StatusCode::BadRequest, "missing request URL"));
    }
    if url
        .as_ref()
        .is_some_and(|u| !matches!(u.scheme(), "rtsp" | "rtsps"))
    {
        return Err(refuse(StatusCode::BadRequest, "not an rtsp URL"));
    }
    let session = request
        .header(&headers::SESSION)
        .map(|v| {
            v.as_str()
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned()
        })
        .filter(|s| !s.is_empty());
    let authorization = request
        .header(&headers::AUTHORIZATION)
        .map(|v| v.as_str().to_owned());
    Ok(Parsed {
        method: request.method().clone(),
        cseq,
        url,
        session,
        authorization,
    })
}

/// Splits a request URL into the stream path (without a trailing `trackID=N` segment or
/// slash) and the track index, if the URL names one.
pub fn stream_and_track(url: &Url) -> (String, Option<usize>) {
    let path = url.path().trim_end_matches('/');
    if let Some((base, last)) = path.rsplit_once('/')
        && let Some(index) = last.strip_prefix("trackID=")
        && let Ok(index) = index.parse::<usize>()
    {
        return (base.trim_end_matches('/').to_owned(), Some(index));
    }
    (path.to_owned(), None)
}

/// How a client wants one track delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Interleaved in the RTSP connection (RFC 2326 §10.12), on these channels.
    Interleaved {
        /// Channel of RTP packets.
        rtp: u8,
        /// Channel of RTCP packets.
        rtcp: u8,
    },
    /// UDP unicast to these client ports.
    Udp {
        /// Client's RTP port.
        rtp_port: u16,
        /// Client's RTCP port.
        rtcp_port: u16,
    },
}

/// Chooses the first offered transport the server can serve: RTP/AVP over TCP interleaved, or
/// RTP/AVP over UDP unicast with client ports. `next_channel` is used when an interleaved offer
/// names no channels.
pub fn choose_transport(
    request: &rtsp_types::Request<Vec<u8>>,
    udp_available: bool,
    next_channel: u8,
) -> Result<Delivery, StatusCode> {
    let transports = match request.typed_header::<Transports>() {
        Ok(Some(transports)) => transports,
        Ok(None) | Err(_) => return Err(StatusCode::UnsupportedTransport),
    };
    for transport in transports.iter() {
        let Transport::Rtp(RtpTransport {
            profile,
            lower_transport,
            params,
        }) = transport
        else {
            continue;
        };
        if *profile != RtpProfile::Avp || params.multicast {
            continue;
        }
        match lower_transport {
            Some(RtpLowerTransport::Tcp) => {
                let (rtp, rtcp) = match params.interleaved {
                    Some((rtp, Some(rtcp))) => (rtp, rtcp),
                    Some((rtp, None)) => (rtp, rtp.saturating_add(1)),
                    None => (next_channel, next_channel.saturating_add(1)),
                };
                return Ok(Delivery::Interleaved { rtp, rtcp });
            }
            Some(RtpLowerTransport::Udp) | None => {
                if !udp_available {
                    continue;
                }
                if let Some((rtp_port, rtcp)) = params.client_port
                    && rtp_port != 0
                {
                    let rtcp_port = rtcp.unwrap_or_else(|| rtp_port.saturating_add(1));
                    return Ok(Delivery::Udp {
                        rtp_port,
                        rtcp_port,
                    });
                }
            }
            Some(_) => {}
        }
    }
    Err(StatusCode::UnsupportedTransport)
}

/// A response with the headers every response carries.
pub fn response(status: StatusCode, cseq: Option<u32>) -> rtsp_types::ResponseBuilder {
    let mut builder = Response::builder(Version::V1_0, status).header(headers::SERVER, SERVER_NAME);
    if let Some(cseq) = cseq {
        builder = builder.header(headers::CSEQ, cseq.to_string());
    }
    builder
}

/// The response for a refusal.
pub fn refusal(refusal: &Refusal) -> Response<Vec<u8>> {
    let builder = response(refusal.status, refusal.cseq);
    let builder = if refusal.status == StatusCode::MethodNotAllowed {
        builder.header(headers::ALLOW, PUBLIC_METHODS)
    } else {
        builder
    };
    builder.build(Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(text: &str) -> rtsp_types::Request<Vec<u8>> {
        let (message, _): (rtsp_types::Message<Vec<u8>>, _) =
            rtsp_types::Message::parse(text.as_bytes()).expect("parses");
        match message {
            rtsp_types::Message::Request(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reads_the_common_parts() {
        let r = request(
            "SETUP rtsp://h:8554/front-door/trackID=1 RTSP/1.0\r\nCSeq: 3\r\n\
             Session: 12345678;timeout=60\r\nAuthorization: Basic YTpi\r\n\
             Transport: RTP/AVP/TCP;unicast;interleaved=2-3\r\n\r\n",
        );
        let p = parse(&r).unwrap();
        assert_eq!(p.cseq, 3);
        assert_eq!(p.session.as_deref(), Some("12345678"));
        assert_eq!(p.authorization.as_deref(), Some("Basic YTpi"));
        let url = p.url.unwrap();
        assert_eq!(stream_and_track(&url), ("/front-door".to_owned(), Some(1)));
        assert_eq!(
            choose_transport(&r, false, 0),
            Ok(Delivery::Interleaved { rtp: 2, rtcp: 3 })
        );
    }

    #[test]
    fn chooses_udp_when_offered_and_available() {
        let r = request(
            "SETUP rtsp://h/cam/trackID=0 RTSP/1.0\r\nCSeq: 1\r\n\
             Transport: RTP/AVP;multicast,RTP/AVP;unicast;client_port=5000-5001\r\n\r\n",
        );
        assert_eq!(
            choose_transport(&r, true, 0),
            Ok(Delivery::Udp {
                rtp_port: 5000,
                rtcp_port: 5001
            })
        );
        assert_eq!(
            choose_transport(&r, false, 0),
            Err(StatusCode::UnsupportedTransport)
        );
    }

    #[test]
    fn malformed_requests_are_refused_not_panicked_on() {
        let no_cseq = request("OPTIONS * RTSP/1.0\r\n\r\n");
        assert_eq!(parse(&no_cseq).unwrap_err().status, StatusCode::BadRequest);
        let bad_cseq = request("OPTIONS * RTSP/1.0\r\nCSeq: banana\r\n\r\n");
        assert_eq!(parse(&bad_cseq).unwrap_err().status, StatusCode::BadRequest);
        let http = request("DESCRIBE http://h/x RTSP/1.0\r\nCSeq: 2\r\n\r\n");
        assert_eq!(parse(&http).unwrap_err().cseq, Some(2));
        let no_transport = request("SETUP rtsp://h/x RTSP/1.0\r\nCSeq: 2\r\n\r\n");
        assert_eq!(
            choose_transport(&no_transport, true, 0),
            Err(StatusCode::UnsupportedTransport)
        );
        let options = request("OPTIONS * RTSP/1.0\r\nCSeq: 9\r\n\r\n");
        assert!(parse(&options).unwrap().url.is_none());
    }

    #[test]
    fn stream_paths_without_tracks() {
        let url = Url::parse("rtsp://h/sdm_live_stream/TOKEN?auth=x").unwrap();
        assert_eq!(
            stream_and_track(&url),
            ("/sdm_live_stream/TOKEN".to_owned(), None)
        );
        let url = Url::parse("rtsp://h/cam/").unwrap();
        assert_eq!(stream_and_track(&url), ("/cam".to_owned(), None));
        let url = Url::parse("rtsp://h/cam/trackID=x").unwrap();
        assert_eq!(stream_and_track(&url), ("/cam/trackID=x".to_owned(), None));
    }
}
