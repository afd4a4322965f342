//! Who a connection is and what it may do in which room.
//!
//! A signed token (JWT, HS256 with a shared secret or RS256 with a public key)
//! names the user (`sub`), their display info, and per-room permissions:
//!
//! ```json
//! {"sub": "u-17", "name": "Ann", "avatar": "https://…", "color": "#e91e63",
//!  "rooms": {"team-42/*": ["read", "write", "presence"], "lobby": ["read"]},
//!  "exp": 1767225600}
//! ```
//!
//! A pattern ending in `*` grants every room starting with what precedes it;
//! `*` alone grants every room. `read` lets a connection join and see the
//! room; `presence` lets it appear as a member and move a cursor; `write`
//! lets it change shared documents and values. In open (development) mode a
//! connection without a token may do everything.

use std::collections::HashMap;

use chorus_core::presence::UserInfo;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::config::Config;

/// A permission in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    Read,
    Write,
    Presence,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Presence => "presence",
        }
    }
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    avatar: Option<String>,
    #[serde(default)]
    color: Option<String>,
    #[serde(default)]
    rooms: HashMap<String, Vec<Permission>>,
    /// Expiry, seconds since the epoch.
    #[serde(default)]
    exp: Option<u64>,
}

/// An authenticated connection's user and grants.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user: UserInfo,
    grants: Grants,
    pub anonymous: bool,
    /// When the token expires (milliseconds since the epoch), if it does.
    pub expires_at: Option<u64>,
}

#[derive(Debug, Clone)]
enum Grants {
    Everything,
    Rooms(Vec<(String, Vec<Permission>)>),
}

impl Identity {
    /// Whether this identity holds `perm` in `room`.
    pub fn can(&self, room: &str, perm: Permission) -> bool {
        match &self.grants {
            Grants::Everything => true,
            Grants::Rooms(grants) => grants
                .iter()
                .any(|(pattern, perms)| pattern_matches(pattern, room) && perms.contains(&perm)),
        }
    }

    /// An identity with every permission everywhere (development mode, server-side tools).
    pub fn open(user: UserInfo) -> Self {
        Self { user, grants: Grants::Everything, anonymous: false, expires_at: None }
    }
}

/// `team-42/*` matches rooms starting with `team-42/`; `*` matches all; any
/// other pattern matches only itself.
pub fn pattern_matches(pattern: &str, room: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => room.starts_with(prefix),
        None => pattern == room,
    }
}

/// Why a token was refused. The message goes to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("a token is required (pass it as ?token=… or offer the subprotocols chorus.v1 and chorus.token.<token>)")]
    Missing,
    #[error("the token is invalid: {0}")]
    Invalid(String),
    #[error("the token has expired")]
    Expired,
}

/// Checks tokens against the configured key.
pub struct Authenticator {
    key: Option<(DecodingKey, Validation)>,
    open: bool,
}

impl Authenticator {
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let key = if let Some(path) = &config.jwt_public_key {
            let pem = std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("cannot read --jwt-public-key {}: {e}", path.display()))?;
            let key = DecodingKey::from_rsa_pem(&pem)
                .map_err(|e| anyhow::anyhow!("--jwt-public-key {} is not an RSA public key in PEM: {e}", path.display()))?;
            Some((key, validation(Algorithm::RS256, config)))
        } else {
            config
                .jwt_secret
                .as_ref()
                .map(|s| (DecodingKey::from_secret(s.as_bytes()), validation(Algorithm::HS256, config)))
        };
        Ok(Self { key, open: config.open_mode() })
    }

    /// The identity behind a connection: its token if it has one, else an
    /// anonymous user when open mode allows (named by `dev_user`/`dev_name`).
    pub fn authenticate(&self, token: Option<&str>, dev_user: Option<&str>, dev_name: Option<&str>) -> Result<Identity, AuthError> {
        match (token, &self.key) {
            (Some(token), Some((key, validation))) => {
                let data = jsonwebtoken::decode::<Claims>(token, key, validation).map_err(|e| match e.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                    jsonwebtoken::errors::ErrorKind::MissingRequiredClaim(claim) if claim == "exp" => AuthError::Invalid(
                        "the token has no exp claim: tokens must expire (unless the server runs with --allow-tokens-without-exp)".into(),
                    ),
                    _ => AuthError::Invalid(e.to_string()),
                })?;
                let c = data.claims;
                if c.sub.is_empty() {
                    return Err(AuthError::Invalid("the sub claim (user id) is empty".into()));
                }
                Ok(Identity {
                    user: UserInfo::new(c.sub, c.name, c.avatar, c.color),
                    grants: Grants::Rooms(c.rooms.into_iter().collect()),
                    anonymous: false,
                    expires_at: c.exp.map(|s| s.saturating_mul(1000)),
                })
            }
            _ if self.open => {
                // Ids and names end up in logs and other users' screens: no
                // control characters (a newline would forge a log line).
                for (what, given) in [("user", dev_user), ("name", dev_name)] {
                    if given.is_some_and(|s| s.chars().any(char::is_control)) {
                        return Err(AuthError::Invalid(format!("the {what} parameter contains control characters")));
                    }
                }
                let id = dev_user
                    .filter(|u| !u.is_empty() && u.len() <= 128)
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("anon-{:06x}", rand::random::<u32>() & 0xff_ffff));
                let name = dev_name.filter(|n| n.len() <= 128).map(str::to_owned).or_else(|| Some(id.clone()));
                Ok(Identity { user: UserInfo::new(id, name, None, None), grants: Grants::Everything, anonymous: true, expires_at: None })
            }
            _ => Err(AuthError::Missing),
        }
    }
}

fn validation(alg: Algorithm, config: &Config) -> Validation {
    let mut v = Validation::new(alg);
    v.required_spec_claims = ["sub"].into_iter().map(str::to_owned).collect();
    if !config.allow_tokens_without_exp {
        v.required_spec_claims.insert("exp".into());
    }
    v.validate_exp = true;
    v.leeway = 5;
    match &config.jwt_audience {
        Some(aud) => {
            v.set_audience(&[aud]);
            v.required_spec_claims.insert("aud".into());
        }
        None => v.validate_aud = false,
    }
    v
}

/// Checks a room name: 1 to 128 bytes of letters, digits and `_ . : / @ ~ -`.
pub fn check_room_name(room: &str) -> Result<(), String> {
    check_name("room", room)
}

/// Document names follow the same rules as room names.
pub fn check_doc_name(doc: &str) -> Result<(), String> {
    check_name("document", doc)
}

pub fn check_value_name(name: &str) -> Result<(), String> {
    check_name("value", name)
}

fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 128 {
        return Err(format!("{what} names are 1 to 128 bytes long; this one has {}", name.len()));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || "_.:/@~-".contains(*c))) {
        return Err(format!("{what} names use letters, digits and _ . : / @ ~ -; {c:?} is not allowed"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    fn config(secret: Option<&str>, dev: bool) -> Config {
        let mut c = Config::for_address("127.0.0.1:0".parse().unwrap());
        c.jwt_secret = secret.map(str::to_owned);
        c.dev = dev;
        c
    }

    fn token(secret: &str, claims: serde_json::Value) -> String {
        encode(&Header::default(), &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
    }

    fn far_future() -> u64 {
        4_102_444_800 // 2100-01-01
    }

    #[test]
    fn patterns() {
        assert!(pattern_matches("team-42/*", "team-42/plan"));
        assert!(!pattern_matches("team-42/*", "team-43/plan"));
        assert!(!pattern_matches("team-42/*", "team-42"));
        assert!(pattern_matches("*", "anything"));
        assert!(pattern_matches("lobby", "lobby"));
        assert!(!pattern_matches("lobby", "lobby2"));
    }

    #[test]
    fn tokens_grant_what_they_say() {
        let auth = Authenticator::from_config(&config(Some("s3cret"), false)).unwrap();
        let t = token("s3cret", json!({"sub": "u1", "name": "Ann", "exp": far_future(),
            "rooms": {"team-42/*": ["read", "presence"], "lobby": ["read", "write", "presence"]}}));
        let id = auth.authenticate(Some(&t), None, None).unwrap();
        assert_eq!(id.user.id, "u1");
        assert_eq!(id.user.name.as_deref(), Some("Ann"));
        assert!(id.can("team-42/plan", Permission::Presence));
        assert!(!id.can("team-42/plan", Permission::Write));
        assert!(id.can("lobby", Permission::Write));
        assert!(!id.can("elsewhere", Permission::Read));
    }

    #[test]
    fn bad_tokens_are_refused_with_a_reason() {
        let auth = Authenticator::from_config(&config(Some("s3cret"), false)).unwrap();
        assert_eq!(auth.authenticate(None, None, None).unwrap_err(), AuthError::Missing);
        let wrong = token("other", json!({"sub": "u1", "exp": far_future()}));
        assert!(matches!(auth.authenticate(Some(&wrong), None, None), Err(AuthError::Invalid(_))));
        let expired = token("s3cret", json!({"sub": "u1", "exp": 1_000}));
        assert_eq!(auth.authenticate(Some(&expired), None, None).unwrap_err(), AuthError::Expired);
        assert!(matches!(auth.authenticate(Some("not.a.jwt"), None, None), Err(AuthError::Invalid(_))));
    }

    #[test]
    fn tokens_must_expire_unless_allowed() {
        let forever = token("s3cret", json!({"sub": "u1"}));
        let auth = Authenticator::from_config(&config(Some("s3cret"), false)).unwrap();
        match auth.authenticate(Some(&forever), None, None) {
            Err(AuthError::Invalid(m)) => assert!(m.contains("--allow-tokens-without-exp"), "{m}"),
            other => panic!("{other:?}"),
        }
        let mut c = config(Some("s3cret"), false);
        c.allow_tokens_without_exp = true;
        let id = Authenticator::from_config(&c).unwrap().authenticate(Some(&forever), None, None).unwrap();
        assert_eq!(id.expires_at, None);
        let id = auth.authenticate(Some(&token("s3cret", json!({"sub": "u1", "exp": far_future()}))), None, None).unwrap();
        assert_eq!(id.expires_at, Some(far_future() * 1000));
    }

    #[test]
    fn open_mode_refuses_control_characters_in_names() {
        let auth = Authenticator::from_config(&config(None, true)).unwrap();
        for (user, name) in [(Some("ann\nINFO forged"), None), (Some("ann"), Some("Ann\u{1b}[31m")), (Some("a\0"), None)] {
            assert!(matches!(auth.authenticate(None, user, name), Err(AuthError::Invalid(_))), "{user:?} {name:?}");
        }
        assert!(auth.authenticate(None, Some("ann"), Some("Ann Smith ✓")).is_ok());
    }

    #[test]
    fn open_mode_admits_anonymous_users() {
        let auth = Authenticator::from_config(&config(None, true)).unwrap();
        let id = auth.authenticate(None, Some("ann"), Some("Ann")).unwrap();
        assert!(id.anonymous && id.can("any/room", Permission::Write));
        assert_eq!(id.user.id, "ann");
        let anon = auth.authenticate(None, None, None).unwrap();
        assert!(anon.user.id.starts_with("anon-"));
        // A secret with --dev still checks the tokens it is given.
        let auth = Authenticator::from_config(&config(Some("s3cret"), true)).unwrap();
        assert!(auth.authenticate(Some("garbage"), None, None).is_err());
        assert!(auth.authenticate(None, None, None).is_ok());
    }

    #[test]
    fn room_names() {
        assert!(check_room_name("team-42/plan.v2").is_ok());
        assert!(check_room_name("").is_err());
        assert!(check_room_name("a b").is_err());
        assert!(check_room_name("team/*").is_err());
        assert!(check_room_name(&"x".repeat(129)).is_err());
    }
}
