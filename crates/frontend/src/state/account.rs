//! [`Account`]: who the console is signed in as.

/// The signed-in user, as the credential says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub user: String,
    pub admin: bool,
    /// Signed in with a development credential, which the console renews by itself.
    pub development: bool,
}
