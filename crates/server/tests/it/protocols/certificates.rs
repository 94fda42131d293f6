//! The certificate: replaced while streams stay open (when its files change, and on SIGHUP),
//! a broken replacement leaves the one in use, and one that cannot be used stops Herald.

use serde_json::json;

use crate::support::tls::{https_builder, https_url, self_signed, trusting, write_atomically};
use crate::support::{HeraldProcess, TestCertificate, TestServer, eventually, herald_refuses};

/// Whether a client trusting only `pem` completes a request to `url`.
async fn trusted(server: &TestServer, pem: &str, url: &str) -> bool {
    let client = https_builder(server, pem).build().unwrap();
    client.get(url).send().await.is_ok()
}

#[tokio::test]
async fn a_renewed_certificate_is_presented_while_open_streams_go_on() {
    let mut certificate = TestCertificate::generate();
    let server = TestServer::start_https(&certificate, |_| {}).await;
    let healthz = https_url(&server, "/healthz");
    let mut stream = server.subscribe("topic=renewal").await;
    stream.connected().await;
    let old = certificate.pem.clone();
    assert!(trusted(&server, &old, &healthz).await);

    certificate.replace();
    eventually("the renewed certificate is presented", || {
        trusted(&server, &certificate.pem, &healthz)
    })
    .await;
    assert!(
        !trusted(&server, &old, &healthz).await,
        "the old one is not"
    );
    // The stream opened under the old certificate, and its connection, go on.
    let published = server.publish("renewal", "note", json!("after")).await;
    assert_eq!(stream.envelope().await.id, published.id);
    assert!(
        server
            .metric("herald_tls_certificate_loads_total{result=\"ok\"}")
            .await
            >= 1.0
    );

    // A key that does not belong to the certificate is refused; the pair in use stays.
    let (_, other_key) = self_signed();
    write_atomically(&certificate.key_file, &other_key);
    eventually("the broken pair is refused", || async {
        server
            .metric("herald_tls_certificate_loads_total{result=\"failed\"}")
            .await
            >= 1.0
    })
    .await;
    assert!(trusted(&server, &certificate.pem, &healthz).await);
    let published = server.publish("renewal", "note", json!("still")).await;
    assert_eq!(stream.envelope().await.id, published.id);
}

#[tokio::test]
async fn sighup_reads_the_certificate_again() {
    let mut certificate = TestCertificate::generate();
    // The files are not watched: only SIGHUP can make Herald read them again.
    let args = [
        format!("--tls-cert={}", certificate.cert_file.display()),
        format!("--tls-key={}", certificate.key_file.display()),
        "--tls-watch=0".to_owned(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let herald = HeraldProcess::start_fresh(&args).await;
    let port = herald.url("").rsplit(':').next().unwrap().to_owned();
    let healthz = format!("https://localhost:{port}/healthz");
    let address = format!("127.0.0.1:{port}").parse().unwrap();
    let client = |pem: &str| trusting(pem, address).build().unwrap();
    let first = client(&certificate.pem);
    assert_eq!(first.get(&healthz).send().await.unwrap().status(), 200);

    certificate.replace();
    let renewed = client(&certificate.pem);
    let status = std::process::Command::new("kill")
        .args(["-HUP", &herald.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    eventually("SIGHUP makes the new certificate presented", || async {
        renewed.get(&healthz).send().await.is_ok()
    })
    .await;
    // The connection made under the first certificate goes on.
    assert_eq!(first.get(&healthz).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_certificate_that_cannot_be_used_stops_herald_with_a_clear_error() {
    let certificate = TestCertificate::generate();
    let cert = format!("--tls-cert={}", certificate.cert_file.display());
    let key = format!("--tls-key={}", certificate.key_file.display());

    let missing = herald_refuses(&["--tls-cert=/nonexistent/cert.pem", &key]).await;
    assert!(
        missing.contains("cannot read the TLS certificate file /nonexistent/cert.pem"),
        "{missing}"
    );
    let alone = herald_refuses(&[&cert]).await;
    assert!(alone.contains("tls_cert needs tls_key"), "{alone}");

    let other = certificate.dir.join("other-key.pem");
    std::fs::write(&other, self_signed().1).unwrap();
    let mismatched = herald_refuses(&[&cert, &format!("--tls-key={}", other.display())]).await;
    assert!(
        mismatched.contains("does not belong to the certificate"),
        "{mismatched}"
    );

    let not_pem = certificate.dir.join("not-a-certificate.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let garbage = herald_refuses(&[&format!("--tls-cert={}", not_pem.display()), &key]).await;
    assert!(garbage.contains("no certificate in"), "{garbage}");
    let no_key = herald_refuses(&[&cert, &format!("--tls-key={}", not_pem.display())]).await;
    assert!(no_key.contains("no private key in"), "{no_key}");
}
