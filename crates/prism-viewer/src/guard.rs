//! The viewer on a shared machine: which requests it answers and the headers every answer
//! carries.
//!
//! - **Host check** (DNS rebinding): a web page the user visits can point a name it owns at
//!   127.0.0.1 and then read the viewer's answers as its own. Such a request carries the page's
//!   name in `Host`, so only requests whose `Host` names this server are answered: an IP address
//!   (the browser connected to exactly that address, which no rebinding can fake), `localhost`,
//!   or a name given with `--allowed-host`. The port is not compared: an SSH tunnel forwards
//!   another local port to the server's. Others get 421 Misdirected Request.
//! - **Token** (optional): every request must present it, as `?token=` (the printed URL; the
//!   answer then sets an `HttpOnly; SameSite=Strict` cookie so the UI's own requests carry it),
//!   the cookie, or `Authorization: Bearer`. Others get 401. Compared in constant time.
//! - **Headers**: `X-Content-Type-Options: nosniff`, a `Content-Security-Policy` that allows only
//!   the viewer's own scripts, styles, images, frames and requests, `Referrer-Policy:
//!   no-referrer`, `X-Frame-Options: DENY` (the token pages, shown in a frame of the UI:
//!   `SAMEORIGIN`), `Cross-Origin-Resource-Policy: same-origin`, and never a CORS header.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ViewerError;

/// The policy of the UI and of every answer without one of its own: the viewer's own files and
/// API only, no inline script or style, no plugin, never framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; frame-src 'self'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Shortest token `--token VALUE` accepts.
pub const MIN_TOKEN_LEN: usize = 16;

/// Checks a token given by a user: long enough, and of characters that need no escaping in a
/// URL or a cookie (`A-Z a-z 0-9 - . _ ~`).
pub fn validate_token(token: &str) -> Result<(), ViewerError> {
    if token.len() < MIN_TOKEN_LEN {
        return Err(ViewerError::Access(format!(
            "the token has {} characters; use at least {MIN_TOKEN_LEN} (or let the server \
             make one)",
            token.len()
        )));
    }
    if let Some(c) = token
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~')))
    {
        return Err(ViewerError::Access(format!(
            "the token holds {c:?}; use letters, digits and - . _ ~ only"
        )));
    }
    Ok(())
}

/// A random token: 128 bits from the operating system's generator, as 32 hexadecimal digits.
pub fn generate_token() -> Result<String, ViewerError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| {
        ViewerError::Access(format!("the system's random number generator failed: {e}"))
    })?;
    Ok(hex(&bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `a` equals `b`, in a time that depends on their lengths only.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y));
    // Keeps the optimiser from turning the fold into an early exit.
    std::hint::black_box(diff) == 0
}

/// Which requests a server answers.
#[derive(Debug, Clone)]
pub struct Access {
    /// Host names answered besides IP addresses and `localhost` (lower case, no port).
    allowed_hosts: Vec<String>,
    token: Option<String>,
    /// The name of this server's cookie: `prism-token-` and a random suffix, so that two viewers
    /// on one machine (cookies do not tell ports apart) keep their own.
    cookie: String,
}

/// Cookies whose value is compared with the token start with this.
const COOKIE_PREFIX: &str = "prism-token-";

impl Access {
    /// Answers requests naming an IP address, `localhost` or one of `allowed_hosts`; with a
    /// token, only those that present it.
    pub fn new(allowed_hosts: &[String], token: Option<String>) -> Result<Self, ViewerError> {
        if let Some(t) = &token {
            validate_token(t)?;
        }
        let mut hosts = Vec::new();
        for h in allowed_hosts {
            let name = h.trim().trim_end_matches('.').to_ascii_lowercase();
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
            {
                return Err(ViewerError::Access(format!(
                    "--allowed-host `{h}` is not a host name (give the name only, no port or \
                     scheme: e.g. `gpu-box.lab.example`)"
                )));
            }
            hosts.push(name);
        }
        let mut suffix = [0u8; 4];
        getrandom::fill(&mut suffix).map_err(|e| {
            ViewerError::Access(format!("the system's random number generator failed: {e}"))
        })?;
        Ok(Access {
            allowed_hosts: hosts,
            token,
            cookie: format!("{COOKIE_PREFIX}{}", hex(&suffix)),
        })
    }

    /// The token requests must present, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Why a request with this `Host` header is refused, or `None` if it is answered.
    pub fn host_refusal(&self, host: Option<&str>) -> Option<String> {
        let Some(host) = host else {
            return Some("the request names no Host".into());
        };
        let Some(name) = host_name(host) else {
            return Some(format!(
                "`{host}` is not a host name (the viewer answers only requests naming it: a \
                 guard against DNS rebinding)"
            ));
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if name.parse::<IpAddr>().is_ok()
            || name == "localhost"
            || self.allowed_hosts.contains(&name)
        {
            return None;
        }
        Some(format!(
            "this viewer does not answer requests for `{name}` (a guard against DNS rebinding); \
             open it by IP address or `localhost`, or start it with `--allowed-host {name}`"
        ))
    }

    /// Whether the request presents the token: `Ok(true)` when it came as a query parameter (the
    /// answer should set the cookie), `Ok(false)` when it came otherwise or none is needed.
    fn token_check(&self, query: Option<&str>, headers: &HeaderMap) -> Result<bool, ()> {
        let Some(token) = &self.token else {
            return Ok(false);
        };
        let want = token.as_bytes();
        for value in headers.get_all(header::COOKIE) {
            let Ok(text) = value.to_str() else { continue };
            for pair in text.split(';') {
                if let Some((name, value)) = pair.trim().split_once('=') {
                    if name.starts_with(COOKIE_PREFIX) && same(value.as_bytes(), want) {
                        return Ok(false);
                    }
                }
            }
        }
        if let Some(value) = headers.get(header::AUTHORIZATION) {
            if let Some(given) = value.as_bytes().strip_prefix(b"Bearer ") {
                if same(given, want) {
                    return Ok(false);
                }
            }
        }
        for pair in query.unwrap_or("").split('&') {
            if let Some(given) = pair.strip_prefix("token=") {
                // Tokens need no escaping; an escaped one is compared as sent.
                if same(given.as_bytes(), want) {
                    return Ok(true);
                }
            }
        }
        Err(())
    }

    fn set_cookie(&self) -> Option<HeaderValue> {
        let token = self.token.as_ref()?;
        HeaderValue::from_str(&format!(
            "{}={token}; Path=/; HttpOnly; SameSite=Strict",
            self.cookie
        ))
        .ok()
    }
}

/// The name part of a `Host` header (`name`, `name:port`, `[v6]`, `[v6]:port`), or `None` if it
/// is not one.
fn host_name(host: &str) -> Option<&str> {
    let port_ok = |p: &str| p.is_empty() || p.parse::<u16>().is_ok();
    if let Some(rest) = host.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        let port = match after {
            "" => "",
            a => a.strip_prefix(':')?,
        };
        return (port_ok(port) && v6.parse::<std::net::Ipv6Addr>().is_ok()).then_some(v6);
    }
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) => (n, p),
        None => (host, ""),
    };
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    (valid && port_ok(port)).then_some(name)
}

/// A refusal: JSON `{"errorMessage"}` for the API, plain text for the rest.
fn refuse(api: bool, status: StatusCode, message: String) -> Response {
    let mut r = if api {
        (
            status,
            axum::Json(serde_json::json!({ "errorMessage": message })),
        )
            .into_response()
    } else {
        (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{message}\n"),
        )
            .into_response()
    };
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Middleware: the Host check, then the token.
pub async fn check(State(access): State<Arc<Access>>, req: Request, next: Next) -> Response {
    let api = req.uri().path().starts_with("/api");
    let host = req
        .headers()
        .get(header::HOST)
        .map(|h| h.to_str().unwrap_or("\u{fffd}"));
    // HTTP/1.1 clients may send the authority in the request line instead.
    let host = host.or_else(|| req.uri().authority().map(|a| a.as_str()));
    if let Some(why) = access.host_refusal(host) {
        tracing::warn!("refused a request: {why}");
        return refuse(api, StatusCode::MISDIRECTED_REQUEST, why);
    }
    let set_cookie = match access.token_check(req.uri().query(), req.headers()) {
        Ok(set) => set,
        Err(()) => {
            let mut r = refuse(
                api,
                StatusCode::UNAUTHORIZED,
                "this viewer needs its token: open the URL it printed (…/?token=…), or send \
                 `Authorization: Bearer <token>`"
                    .into(),
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"prism viewer\""),
            );
            return r;
        }
    };
    let mut r = next.run(req).await;
    if set_cookie {
        if let Some(c) = access.set_cookie() {
            r.headers_mut().append(header::SET_COOKIE, c);
        }
    }
    r
}

/// Middleware: the headers every answer carries (see the module's documentation).
pub async fn headers(req: Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    // The token pages bring their own policy (inline styles, framed by the UI).
    let own_policy = h.contains_key(header::CONTENT_SECURITY_POLICY);
    if !own_policy {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
    }
    h.insert(
        header::X_FRAME_OPTIONS,
        HeaderValue::from_static(if own_policy { "SAMEORIGIN" } else { "DENY" }),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    // Nothing here grants another origin access; make sure nothing ever does.
    for name in [
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        header::ACCESS_CONTROL_ALLOW_METHODS,
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
    ] {
        h.remove(name);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(hosts: &[&str], token: Option<&str>) -> Access {
        let hosts: Vec<String> = hosts.iter().map(|s| s.to_string()).collect();
        Access::new(&hosts, token.map(String::from)).unwrap()
    }

    #[test]
    fn host_names_and_ports_are_split() {
        assert_eq!(host_name("localhost:8080"), Some("localhost"));
        assert_eq!(host_name("127.0.0.1"), Some("127.0.0.1"));
        assert_eq!(host_name("[::1]:80"), Some("::1"));
        assert_eq!(host_name("[::1]"), Some("::1"));
        assert_eq!(host_name("[::1]x"), None);
        assert_eq!(host_name("[zz]:80"), None);
        assert_eq!(host_name("a:b:c"), None);
        assert_eq!(host_name("evil.example:99999"), None);
        assert_eq!(host_name("ev il"), None);
        assert_eq!(host_name(""), None);
        assert_eq!(host_name(":80"), None);
    }

    #[test]
    fn only_addresses_localhost_and_allowed_names_are_answered() {
        let a = access(&["Gpu-Box.lab"], None);
        for ok in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LOCALHOST",
            "localhost.:1",
            "[::1]:8080",
            "192.168.1.20:8080",
            "gpu-box.lab:9000",
        ] {
            assert_eq!(a.host_refusal(Some(ok)), None, "{ok}");
        }
        for bad in [
            "evil.example:8080",
            "localhost.evil.example",
            "gpu-box",
            "127.0.0.1.nip.io:8080",
            "",
        ] {
            assert!(a.host_refusal(Some(bad)).is_some(), "{bad}");
        }
        assert!(a.host_refusal(None).is_some());
    }

    #[test]
    fn tokens_are_checked() {
        let a = access(&[], Some("0123456789abcdef"));
        let mut h = HeaderMap::new();
        assert_eq!(a.token_check(None, &h), Err(()));
        assert_eq!(a.token_check(Some("token=0123456789abcdef"), &h), Ok(true));
        assert_eq!(
            a.token_check(Some("category=x&token=0123456789abcdef"), &h),
            Ok(true)
        );
        assert_eq!(a.token_check(Some("token=0123456789abcdeF"), &h), Err(()));
        assert_eq!(a.token_check(Some("token=0123456789abcde"), &h), Err(()));
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; prism-token-1234=0123456789abcdef"),
        );
        assert_eq!(a.token_check(None, &h), Ok(false));
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("other=0123456789abcdef"),
        );
        assert_eq!(a.token_check(None, &h), Err(()));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer 0123456789abcdef"),
        );
        assert_eq!(a.token_check(None, &h), Ok(false));
        let open = access(&[], None);
        assert_eq!(open.token_check(None, &HeaderMap::new()), Ok(false));
    }

    #[test]
    fn tokens_and_host_names_are_validated() {
        assert!(validate_token("short").is_err());
        assert!(validate_token("0123456789abcdef;x").is_err());
        assert!(validate_token("0123456789abcdef").is_ok());
        let t = generate_token().unwrap();
        assert_eq!(t.len(), 32);
        assert!(validate_token(&t).is_ok());
        assert_ne!(t, generate_token().unwrap());
        assert!(Access::new(&["http://x".into()], None).is_err());
        assert!(Access::new(&["x:80".into()], None).is_err());
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
    }
}
