//! `edgegate bundle push` over the tunnel port: any peer may push, the
//! bundle's signatures decide.

use super::{ClientError, Target};
use edgegate_proto::frame::{Frame, PushResult, MAX_FRAME};

/// Push `bundle` and return the daemon's answer.
pub async fn push_bundle(target: &Target, bundle: Vec<u8>) -> Result<PushResult, ClientError> {
    match target
        .exchange(Frame::PushBundle { bundle }, MAX_FRAME)
        .await?
    {
        Frame::PushResult(r) => Ok(r),
        _ => Err(ClientError::Link("unexpected answer to PushBundle".into())),
    }
}
