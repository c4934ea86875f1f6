//! Local accounts and sessions, the building blocks the API's Session and Account services
//! use: [`passwords`] (argon2id hashes, the generated initial admin password),
//! [`sessions`] (signed, expiring, revocable session and API tokens) and [`limits`] (login
//! rate limiting), and [`oidc`] (single sign-on with an OpenID Connect provider). Secrets
//! never appear in errors or `Debug` output.

pub mod limits;
pub mod oidc;
pub mod passwords;
pub mod sessions;
