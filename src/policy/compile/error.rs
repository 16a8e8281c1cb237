//! `CompileError`: why a bundle could not be compiled into a `PolicyIndex`.

/// Why a bundle could not be compiled. Display is one line naming the id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// Two records of one kind share an id.
    #[error("duplicate {kind} id \"{id}\"")]
    DuplicateId {
        /// `user`, `group`, `role`, `category`, `organization` or `service`.
        kind: &'static str,
        /// The repeated id.
        id: String,
    },
    /// A record names an id that does not exist.
    #[error("{kind} \"{owner}\": {field} \"{target}\" does not exist")]
    Dangling {
        /// Kind of the referring record.
        kind: &'static str,
        /// Id of the referring record.
        owner: String,
        /// What it refers to (`role`, `membership group`, `category`, ...).
        field: &'static str,
        /// The missing id.
        target: String,
    },
    /// Following parents from this group leads back to it.
    #[error("group \"{group}\" is its own ancestor (parent cycle)")]
    GroupCycle {
        /// A group on the cycle.
        group: String,
    },
    /// A membership uses a company-scope role.
    #[error("user \"{user}\": membership in group \"{group}\" uses company-scope role \"{role}\"")]
    CompanyRoleInMembership {
        /// User id.
        user: String,
        /// Group id.
        group: String,
        /// Role id.
        role: String,
    },
    /// A user's company-wide roles list a group-scope role.
    #[error("user \"{user}\": group-scope role \"{role}\" listed as a company role")]
    GroupRoleAsCompanyRole {
        /// User id.
        user: String,
        /// Role id.
        role: String,
    },
    /// The device record names another device than the bundle.
    #[error("device id \"{device}\" differs from bundle device id \"{bundle}\"")]
    DeviceMismatch {
        /// `Bundle::device_id`.
        bundle: String,
        /// `Device::id`.
        device: String,
    },
    /// A service's target does not fit its kind.
    #[error("service \"{service}\": {why}")]
    BadTarget {
        /// Service id.
        service: String,
        /// What is wrong.
        why: &'static str,
    },
}

impl CompileError {
    /// Stable code under which the store and the daemon reject such a bundle.
    pub fn code(&self) -> &'static str {
        "invalid-policy"
    }
}
