//! What a client can send the RTSP server: any bytes, split into messages as the server does,
//! each request checked (method, CSeq, URL, session, authorization), its stream path, track and
//! transport chosen, and refused or answered. Nothing may panic or loop.

#![no_main]

use std::time::Instant;

use camrelay_rtsp::auth::{Authenticator, User};
use camrelay_rtsp::request;
use libfuzzer_sys::fuzz_target;
use rtsp_types::{Message, ParseError};

fuzz_target!(|data: &[u8]| {
    let users = || {
        vec![User {
            name: "user".into(),
            password: "password".to_owned().into(),
        }]
    };
    // The relay's lenient check and the camera simulator's strict one (the Digest uri must
    // name the request's URL).
    let auths = [
        Authenticator::new("fuzz", users()),
        Authenticator::new("fuzz", users()).checking_request_uri(),
    ];
    let mut input = data;
    // Each round consumes at least one byte, so this ends.
    while !input.is_empty() {
        let (message, consumed) = match Message::<Vec<u8>>::parse(input) {
            Ok(ok) => ok,
            Err(ParseError::Incomplete(_) | ParseError::Error) => return,
        };
        if consumed == 0 {
            return;
        }
        input = &input[consumed.min(input.len())..];
        let Message::Request(req) = message else {
            continue;
        };
        match request::parse(&req) {
            Ok(parsed) => {
                let method = format!("{:?}", parsed.method).to_uppercase();
                for auth in &auths {
                    let _ = auth.check(
                        &method,
                        parsed.url.as_ref(),
                        parsed.authorization.as_deref(),
                        Instant::now(),
                    );
                }
                if let Some(url) = &parsed.url {
                    let _ = request::stream_and_track(url);
                }
                let _ = request::choose_transport(&req, true, 0);
                let _ = request::response(rtsp_types::StatusCode::Ok, Some(parsed.cseq));
            }
            Err(refusal) => {
                let _ = request::refusal(&refusal);
            }
        }
    }
});
