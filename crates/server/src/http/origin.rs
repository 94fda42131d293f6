//! Where a request comes from, for the two checks that depend on it: a change authenticated by
//! the `herald_token` cookie must come from an allowed origin (the browser sends the cookie
//! with any site's request, so the cookie alone proves nothing), and in development mode Herald
//! answers only requests addressed to a loopback host name (so a DNS-rebinding page cannot reach
//! the development token endpoint through the browser).

use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use crate::config::Config;

/// Nothing, unless `parts` is a change (not GET, HEAD or OPTIONS) from an origin that is neither
/// Herald's own nor one of `--cors-origin`: then 403. The origin is the `Origin` header, or
/// failing that the `Referer`'s; a change with neither is refused too.
pub fn require_allowed_origin(parts: &Parts, config: &Config) -> Result<(), ApiError> {
    if matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let origin = header_text(&parts.headers, header::ORIGIN)
        .filter(|origin| *origin != "null")
        .map(str::to_owned)
        .or_else(|| header_text(&parts.headers, header::REFERER).and_then(origin_of_url));
    let allowed = origin.as_deref().is_some_and(|origin| {
        config.cors_origins.iter().any(|listed| listed == origin)
            || same_origin(origin, own_host(&parts.headers, config))
    });
    if allowed {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden_origin",
        format!(
            "a change authenticated by the herald_token cookie must come from this server's \
             own origin or one allowed with --cors-origin, not {}; other clients send \
             Authorization: Bearer",
            origin.as_deref().unwrap_or("an unknown origin")
        ),
    ))
}

/// In development mode, answers 403 to a request whose `Host` is not a loopback name
/// (`localhost`, `127.0.0.0/8`, `[::1]`, with any port); otherwise passes it on.
pub async fn loopback_host_only(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if state.config.dev && !is_loopback_host(header_text(request.headers(), header::HOST)) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden_host",
            "development mode answers only requests addressed to localhost, 127.0.0.1 or [::1]",
        )
        .into_response();
    }
    next.run(request).await
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// The host the client addressed: `Host`, or the trusted proxy's `X-Forwarded-Host`.
fn own_host<'a>(headers: &'a HeaderMap, config: &Config) -> Option<&'a str> {
    let forwarded = config
        .trust_forwarded_for
        .then(|| header_text(headers, header::HeaderName::from_static("x-forwarded-host")))
        .flatten();
    forwarded.or_else(|| header_text(headers, header::HOST))
}

/// `scheme://host[:port]` of a URL such as a `Referer`.
fn origin_of_url(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    (!authority.is_empty()).then(|| format!("{scheme}://{authority}"))
}

/// Whether `origin` (`scheme://host[:port]`) names `host` (`host[:port]`), ports compared with
/// the scheme's default filled in.
fn same_origin(origin: &str, host: Option<&str>) -> bool {
    let (Some((scheme, authority)), Some(host)) = (origin.split_once("://"), host) else {
        return false;
    };
    let default_port = match scheme {
        "http" => "80",
        "https" => "443",
        _ => return false,
    };
    let with_port = |authority: &str| {
        let authority = authority.to_ascii_lowercase();
        let has_port = authority
            .rsplit_once(':')
            .is_some_and(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()) && !port.is_empty())
            && !authority.ends_with(']');
        if has_port {
            authority
        } else {
            format!("{authority}:{default_port}")
        }
    };
    with_port(authority) == with_port(host)
}

/// Whether a `Host` header names this machine: `localhost` (or a name under it), an address in
/// `127.0.0.0/8`, or `[::1]`, with or without a port.
fn is_loopback_host(host: Option<&str>) -> bool {
    let Some(host) = host else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    let name = name.to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_origin_compares_host_and_port_with_the_default_filled_in() {
        assert!(same_origin("http://127.0.0.1:8080", Some("127.0.0.1:8080")));
        assert!(same_origin(
            "https://app.example.com",
            Some("APP.example.com")
        ));
        assert!(same_origin(
            "https://app.example.com",
            Some("app.example.com:443")
        ));
        assert!(same_origin("http://[::1]:8080", Some("[::1]:8080")));
        assert!(!same_origin(
            "http://127.0.0.1:8081",
            Some("127.0.0.1:8080")
        ));
        assert!(!same_origin(
            "https://evil.example",
            Some("app.example.com")
        ));
        assert!(!same_origin(
            "http://app.example.com",
            Some("app.example.com:443")
        ));
        assert!(!same_origin("file://x", Some("x")));
        assert!(!same_origin("http://a", None));
    }

    #[test]
    fn a_referer_gives_its_origin() {
        assert_eq!(
            origin_of_url("https://app.example.com:8443/orders?id=1").as_deref(),
            Some("https://app.example.com:8443")
        );
        assert_eq!(origin_of_url("not a url"), None);
    }

    #[test]
    fn loopback_host_names_are_recognised() {
        for host in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:9",
            "127.1.2.3",
            "[::1]:8080",
            "app.localhost:3000",
        ] {
            assert!(is_loopback_host(Some(host)), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:8080",
            "10.0.0.1",
            "[::2]:80",
            "localhost.evil.com",
        ] {
            assert!(!is_loopback_host(Some(host)), "{host}");
        }
        assert!(!is_loopback_host(None));
    }
}
