//! The policy file exactly as serde reads it: strict (`deny_unknown_fields`),
//! with byte spans on every value that validation may complain about, so
//! errors can name the line. Nothing here checks meaning; `validate` does.

use serde::Deserialize;
use toml::Spanned;

pub(crate) type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFile {
    pub(crate) company: RawCompany,
    #[serde(default)]
    pub(crate) revoked_tickets: Vec<S<String>>,
    #[serde(default)]
    pub(crate) organization: Vec<RawOrganization>,
    #[serde(default)]
    pub(crate) category: Vec<RawCategory>,
    #[serde(default)]
    pub(crate) group: Vec<RawGroup>,
    #[serde(default)]
    pub(crate) role: Vec<RawRole>,
    #[serde(default)]
    pub(crate) user: Vec<RawUser>,
    #[serde(default)]
    pub(crate) device: Vec<RawDevice>,
    #[serde(default)]
    pub(crate) test: Vec<RawTest>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCompany {
    pub(crate) id: S<String>,
    pub(crate) name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOrganization {
    pub(crate) id: S<String>,
    pub(crate) name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCategory {
    pub(crate) id: S<String>,
    pub(crate) name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGroup {
    pub(crate) id: S<String>,
    pub(crate) name: Option<String>,
    #[serde(rename = "type")]
    pub(crate) kind: S<String>,
    pub(crate) parent: Option<S<String>>,
    pub(crate) status: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRole {
    pub(crate) id: S<String>,
    pub(crate) name: Option<String>,
    pub(crate) scope: S<String>,
    #[serde(default)]
    pub(crate) grants: Vec<S<String>>,
    #[serde(default)]
    pub(crate) mfa: bool,
    #[serde(default)]
    pub(crate) site_consent: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMembership {
    pub(crate) group: S<String>,
    pub(crate) role: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUser {
    pub(crate) id: S<String>,
    pub(crate) name: Option<String>,
    pub(crate) org: Option<S<String>>,
    pub(crate) status: Option<S<String>>,
    #[serde(default)]
    pub(crate) roles: Vec<S<String>>,
    #[serde(default)]
    pub(crate) memberships: Vec<RawMembership>,
    #[serde(default)]
    pub(crate) mfa: bool,
    pub(crate) logout_period: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDevice {
    pub(crate) id: S<String>,
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) groups: Vec<S<String>>,
    #[serde(default)]
    pub(crate) services: Vec<RawService>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawService {
    pub(crate) id: S<String>,
    pub(crate) name: Option<String>,
    pub(crate) kind: S<String>,
    pub(crate) target: Option<S<String>>,
    pub(crate) networks: Option<Vec<S<String>>>,
    pub(crate) ports: Option<S<Vec<toml::Value>>>,
    pub(crate) category: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTest {
    pub(crate) user: S<String>,
    pub(crate) device: S<String>,
    pub(crate) service: S<String>,
    pub(crate) expect: S<String>,
    #[serde(default)]
    pub(crate) mfa: bool,
    #[serde(default)]
    pub(crate) consent: bool,
    pub(crate) destination: Option<S<String>>,
    pub(crate) at: Option<S<String>>,
    pub(crate) after: Option<S<String>>,
}
