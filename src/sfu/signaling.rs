//! How a publisher hands its offer to the SFU and gets the answer: the Calls API (Cloudflare,
//! or the embedded SFU through the very same client) or WHIP.

use std::fmt;

use anyhow::{Context, bail};
use camrelay_api_clients::calls::{
    CallsClient, CallsErrorKind, CloseTracksRequest, NewSessionQuery, SdpType, TrackObject,
    TracksRequest,
};
use camrelay_api_clients::whip::{self, WhipClient};
use secrecy::SecretString;
use url::Url;

/// The SFU protocol in use.
pub enum Signaling {
    /// The Calls API: `sessions/new`, then `tracks/new` with the offer and local tracks.
    Calls(CallsClient),
    /// WHIP (RFC 9725): POST the offer to the camera's endpoint, DELETE the resource to stop.
    Whip {
        /// HTTP client.
        client: WhipClient,
        /// Endpoint URL template with `{camera_id}`.
        template: String,
        /// Optional bearer token.
        token: Option<SecretString>,
    },
}

impl fmt::Debug for Signaling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Calls(client) => f.debug_tuple("Calls").field(client).finish(),
            Self::Whip { .. } => f.write_str("Whip { .. }"),
        }
    }
}

/// A published session, to stop later.
#[derive(Debug, Clone)]
pub struct Publication {
    /// The SFU's answer.
    pub answer: String,
    /// The Calls session id (what viewers pull from); `None` for WHIP.
    pub session_id: Option<String>,
    /// The mids published (Calls), to close on stop.
    mids: Vec<String>,
    /// The WHIP resource to DELETE on stop.
    resource: Option<Url>,
}

impl Signaling {
    /// Publishes `tracks` (`(mid, track name)`) of `camera_id` with `offer`.
    pub async fn publish(
        &self,
        camera_id: &str,
        offer: String,
        tracks: &[(String, String)],
    ) -> anyhow::Result<Publication> {
        match self {
            Self::Calls(client) => {
                let session = client
                    .new_session(&NewSessionQuery::default())
                    .await
                    .context("the SFU refused a new session")?;
                let request = TracksRequest::push(
                    offer,
                    tracks
                        .iter()
                        .map(|(mid, name)| TrackObject::local(mid.clone(), name.clone()))
                        .collect(),
                );
                let response = session
                    .new_tracks(&request)
                    .await
                    .context("the SFU refused the tracks")?;
                let Some(answer) = response.session_description else {
                    bail!("the SFU sent no answer to the offer");
                };
                if answer.sdp_type != SdpType::Answer {
                    bail!("the SFU sent an offer where an answer belongs");
                }
                Ok(Publication {
                    answer: answer.sdp,
                    session_id: Some(session.id().to_owned()),
                    mids: tracks.iter().map(|(mid, _)| mid.clone()).collect(),
                    resource: None,
                })
            }
            Self::Whip {
                client,
                template,
                token,
            } => {
                let endpoint =
                    whip::expand_url_template(template, camera_id).context("bad WHIP endpoint")?;
                let session = client
                    .publish(&endpoint, &offer, token.as_ref())
                    .await
                    .context("the WHIP endpoint refused the offer")?;
                Ok(Publication {
                    answer: session.answer_sdp,
                    session_id: None,
                    mids: Vec::new(),
                    resource: Some(session.resource_url),
                })
            }
        }
    }

    /// Whether the SFU still has the publication's session: `false` only when it says the
    /// session is gone or unknown (a failed check is no evidence either way). WHIP has no way
    /// to ask; its sessions always count as there.
    pub async fn still_there(&self, publication: &Publication) -> bool {
        let (Self::Calls(client), Some(id)) = (self, &publication.session_id) else {
            return true;
        };
        match client.session(id.clone()).state().await {
            Ok(_) => true,
            Err(e) => !matches!(
                e.kind,
                CallsErrorKind::SessionGone(_) | CallsErrorKind::NotFound(_)
            ),
        }
    }

    /// Stops a publication: closes its tracks (Calls) or deletes its resource (WHIP). Errors
    /// are logged: the SFU also drops a session whose peer went away.
    pub async fn unpublish(&self, publication: &Publication) {
        let result = match self {
            Self::Calls(client) => match &publication.session_id {
                Some(id) => client
                    .session(id.clone())
                    .close_tracks(&CloseTracksRequest::forced(publication.mids.clone()))
                    .await
                    .map(drop)
                    .map_err(anyhow::Error::from),
                None => Ok(()),
            },
            Self::Whip { client, token, .. } => match &publication.resource {
                Some(resource) => client
                    .stop(resource, token.as_ref())
                    .await
                    .map_err(anyhow::Error::from),
                None => Ok(()),
            },
        };
        if let Err(e) = result {
            tracing::debug!(error = %format!("{e:#}"), "unpublishing failed");
        }
    }
}
