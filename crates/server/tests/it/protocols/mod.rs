//! HTTPS and HTTP/2: event streams keep every property over HTTP/2, with TLS (ALPN `h2`) and
//! in cleartext with prior knowledge (h2c); the certificate is replaced while streams stay
//! open; a certificate that cannot be used stops Herald at start-up; Debian's curl sees
//! `HTTP/2 200` and events.

mod certificates;
mod curl;
mod deadlines;
mod http2;
