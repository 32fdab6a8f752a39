//! TLS settings against HTTPS servers of this file's own: actix-http's
//! HTTP/1.1 and HTTP/2 service behind rustls on 127.0.0.1:0, with
//! certificates generated here (rcgen), never the machine's roots.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_http::{HttpService, Protocol, Request as HttpRequest, Response as HttpResponse};
use actix_service::{fn_service, Service, ServiceFactory};
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion};
use spinneret::{
    ConnectCause, Counter, CrawlerBuilder, Error, ErrorKind, Failure, Output, Request, Response,
    Settings, Spider, StartRequests, StatsSnapshot, TlsVersion,
};

use crate::proxy::proxy_var;
use crate::spiders::run;

/// A certificate authority of the test's own.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// A certificate for `names` it signs, with its key.
    fn sign(&self, names: &[&str], expired: bool) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, "leaf");
        if expired {
            params.not_before = date_time_ymd(2000, 1, 1);
            params.not_after = date_time_ymd(2001, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert: cert.der().clone(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            key: PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        }
    }
}

/// A certificate and its key.
struct Leaf {
    cert: CertificateDer<'static>,
    cert_pem: String,
    key: PrivateKeyDer<'static>,
    key_pem: String,
}

/// A self-signed certificate for 127.0.0.1 (signed by a throwaway
/// authority nobody trusts: what `openssl req -x509` or nginx's snakeoil
/// certificate gives).
fn self_signed() -> Leaf {
    Ca::new("nobody's CA").sign(&["127.0.0.1"], false)
}

/// A self-signed certificate for `names` marked as an authority, as
/// `openssl req -x509` makes one (nginx's usual self-signed setup).
fn self_signed_authority(names: &[&str]) -> Leaf {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Leaf {
        cert: cert.der().clone(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        key: PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
    }
}

/// How a test server speaks TLS.
struct ServerTls<'a> {
    leaf: &'a Leaf,
    /// Require a client certificate signed by this authority.
    client_ca: Option<CertificateDer<'static>>,
    versions: &'static [&'static SupportedProtocolVersion],
}

impl<'a> ServerTls<'a> {
    fn new(leaf: &'a Leaf) -> Self {
        ServerTls {
            leaf,
            client_ca: None,
            versions: rustls::ALL_VERSIONS,
        }
    }

    fn config(&self) -> ServerConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(self.versions)
            .unwrap();
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                roots.add(ca.clone()).unwrap();
                let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
        };
        let chain = vec![self.leaf.cert.clone()];
        let mut config = builder
            .with_single_cert(chain, self.leaf.key.clone_key())
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config
    }
}

/// Serves a small HTML page on every path, over TLS as `tls` says, on
/// 127.0.0.1:0 (HTTP/2 when the client offers it, else HTTP/1.1); stops
/// with the test's system.
async fn serve(tls: ServerTls<'_>) -> SocketAddr {
    serve_on("127.0.0.1", tls).await
}

/// As [`serve`], on `host`:0.
async fn serve_on(host: &str, tls: ServerTls<'_>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind((host, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls.config()));
    let page = fn_service(|_: HttpRequest| async {
        Ok::<_, Infallible>(HttpResponse::ok().set_body("<html><body>ok</body></html>"))
    });
    let service = HttpService::build().finish(page);
    let service = Rc::new(service.new_service(()).await.unwrap());
    actix_rt::spawn(async move {
        while let Ok((tcp, peer)) = listener.accept().await {
            let (acceptor, service) = (acceptor.clone(), service.clone());
            actix_rt::spawn(async move {
                // A client refusing the certificate ends the handshake.
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                let protocol = if h2 { Protocol::Http2 } else { Protocol::Http1 };
                let _ = service.call((stream, protocol, Some(peer))).await;
            });
        }
    });
    addr
}

/// Fetches its start URLs (through `proxy` when set), recording each
/// failure's connection cause and text.
struct Fetch {
    urls: Vec<String>,
    proxy: Option<String>,
    failures: Arc<Mutex<Vec<Failed>>>,
}

/// A failed request: its connection cause (`None` for another kind of
/// error) and the error's text.
type Failed = (Option<ConnectCause>, String);

impl Spider for Fetch {
    type Callback = ();

    fn name(&self) -> &str {
        "tls"
    }

    fn start_requests(&self) -> StartRequests<()> {
        let proxy = self.proxy.clone();
        let requests: Vec<_> = (self.urls.iter())
            .map(|u| match &proxy {
                None => Request::get(u).unwrap(),
                Some(p) => Request::get(u).unwrap().proxy(p),
            })
            .collect();
        Box::new(requests.into_iter())
    }

    fn parse(&self, _: (), response: &Response, out: &mut Output<()>) -> Result<(), Error> {
        out.item(serde_json::json!({"url": response.url.as_str()}));
        Ok(())
    }

    fn on_error(&self, failure: &Failure<()>) -> Vec<Request<()>> {
        let cause = match failure.error.kind() {
            ErrorKind::Connect { cause, .. } => Some(*cause),
            _ => None,
        };
        let text = failure.error.to_string();
        self.failures.lock().unwrap().push((cause, text));
        Vec::new()
    }
}

/// What a crawl of `urls` gave.
struct Crawled {
    stats: StatsSnapshot,
    failures: Vec<Failed>,
}

/// Crawls `urls` with the builder `configure` makes (retries left on, so a
/// test sees whether a failure is retried).
async fn crawl(
    urls: Vec<String>,
    configure: impl FnOnce(CrawlerBuilder<Fetch>) -> CrawlerBuilder<Fetch>,
) -> Crawled {
    crawl_via(urls, None, configure).await
}

/// As [`crawl`], every request through `proxy` when given.
async fn crawl_via(
    urls: Vec<String>,
    proxy: Option<&str>,
    configure: impl FnOnce(CrawlerBuilder<Fetch>) -> CrawlerBuilder<Fetch>,
) -> Crawled {
    let failures = Arc::default();
    let spider = Fetch {
        urls,
        proxy: proxy.map(str::to_string),
        failures: Arc::clone(&failures),
    };
    let builder = spinneret::Crawler::builder(spider).timeout(Duration::from_secs(20));
    let stats = run(configure(builder)).await;
    let failures = failures.lock().unwrap().clone();
    Crawled { stats, failures }
}

fn url(addr: SocketAddr) -> Vec<String> {
    vec![format!("https://{addr}/index.html")]
}

/// One request, failed once for `cause`, not retried, counted under the
/// cause's name.
fn assert_failed_for(c: &Crawled, cause: ConnectCause) {
    let s = &c.stats;
    assert_eq!(c.failures.len(), 1, "{:?}", c.failures);
    assert_eq!(c.failures[0].0, Some(cause), "{}", c.failures[0].1);
    assert_eq!(s.counter(Counter::ResponseCount), 0);
    assert_eq!(s.counter(Counter::RequestFailures), 1);
    let key = format!("downloader/exception_type_count/{}", cause.name());
    assert_eq!(s.get(&key), 1, "{key}: {s:#?}");
    assert_eq!(
        s.get("retry/count"),
        0,
        "a certificate is refused every time"
    );
}

#[actix::test]
async fn an_unknown_issuer_fails_with_its_kind_and_is_not_retried() {
    let leaf = self_signed();
    let addr = serve(ServerTls::new(&leaf)).await;
    let c = crawl(url(addr), |b| b).await;
    assert_failed_for(&c, ConnectCause::TlsUnknownIssuer);
    let text = &c.failures[0].1;
    assert!(text.contains("[tls_unknown_issuer]"), "{text}");
    assert!(
        text.contains(&format!("url https://{addr}/index.html")),
        "{text}"
    );
}

#[actix::test]
async fn the_same_server_trusted_through_an_extra_root_succeeds() {
    let ca = Ca::new("test CA");
    let leaf = ca.sign(&["127.0.0.1"], false);
    let addr = serve(ServerTls::new(&leaf)).await;
    let c = crawl(url(addr), |b| b.tls_root_pem(ca.pem())).await;
    assert_eq!(c.failures, []);
    assert_eq!(c.stats.status_count(200), 1);

    // The same root from a file named in a settings file.
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("ca.pem");
    std::fs::write(&pem, ca.pem()).unwrap();
    let toml = format!("tls_root_files = [{:?}]", pem.display().to_string());
    let settings = Settings::from_toml_str(&toml, "t").unwrap();
    let c = crawl(url(addr), |b| b.settings(&settings)).await;
    assert_eq!(c.failures, []);
    assert_eq!(c.stats.status_count(200), 1);
}

#[actix::test]
async fn a_self_signed_server_certificate_given_as_a_root_is_trusted_for_its_names() {
    let own = self_signed_authority(&["127.0.0.1"]);
    let addr = serve(ServerTls::new(&own)).await;
    let c = crawl(url(addr), |b| b).await;
    assert_failed_for(&c, ConnectCause::TlsUnknownIssuer);
    let c = crawl(url(addr), |b| b.tls_root_pem(own.cert_pem.clone())).await;
    assert_eq!(c.failures, []);
    assert_eq!(c.stats.status_count(200), 1);

    // Trusted as itself, but only for the names it holds.
    let elsewhere = self_signed_authority(&["other.example"]);
    let addr = serve(ServerTls::new(&elsewhere)).await;
    let c = crawl(url(addr), |b| b.tls_root_pem(elsewhere.cert_pem.clone())).await;
    assert_failed_for(&c, ConnectCause::TlsHostnameMismatch);
}

#[actix::test]
async fn a_server_requiring_a_client_certificate_lets_in_only_the_crawl_that_has_one() {
    let ca = Ca::new("server CA");
    let leaf = ca.sign(&["127.0.0.1"], false);
    let clients = Ca::new("client CA");
    let client = clients.sign(&["crawler.example"], false);
    let mut tls = ServerTls::new(&leaf);
    tls.client_ca = Some(clients.der());
    let addr = serve(tls).await;
    let with = crawl(url(addr), |b| {
        b.tls_root_pem(ca.pem())
            .tls_client_cert_pem(client.cert_pem.clone(), client.key_pem.clone())
    })
    .await;
    assert_eq!(with.failures, []);
    assert_eq!(with.stats.status_count(200), 1);

    let without = crawl(url(addr), |b| b.tls_root_pem(ca.pem())).await;
    assert_failed_for(&without, ConnectCause::TlsClientCertRequired);
    // Over HTTP/1.1 the server's alert reaches the client another way.
    let without = crawl(url(addr), |b| b.tls_root_pem(ca.pem()).http1_only(true)).await;
    assert_failed_for(&without, ConnectCause::TlsClientCertRequired);
}

#[actix::test]
async fn a_client_certificate_for_one_host_is_shown_to_that_host_only() {
    let ca = Ca::new("server CA");
    let leaf = ca.sign(&["127.0.0.1", "127.0.0.2"], false);
    let clients = Ca::new("client CA");
    let client = clients.sign(&["crawler.example"], false);
    let partner = |host| {
        let mut tls = ServerTls::new(&leaf);
        tls.client_ca = Some(clients.der());
        serve_on(host, tls)
    };
    let (one, two) = (partner("127.0.0.1").await, partner("127.0.0.2").await);
    let c = crawl([url(one), url(two)].concat(), |b| {
        let (cert, key) = (client.cert_pem.clone(), client.key_pem.clone());
        b.tls_root_pem(ca.pem())
            .tls_client_cert_pem_for("127.0.0.1", cert, key)
    })
    .await;
    assert_eq!(c.stats.status_count(200), 1, "{:?}", c.failures);
    assert_eq!(c.failures.len(), 1);
    let (cause, text) = &c.failures[0];
    assert_eq!(*cause, Some(ConnectCause::TlsClientCertRequired), "{text}");
    assert!(text.contains(&format!("url https://{two}/")), "{text}");
}

#[actix::test]
async fn an_expired_certificate_and_a_wrong_host_name_each_fail_with_their_kind() {
    let ca = Ca::new("test CA");
    let expired = ca.sign(&["127.0.0.1"], true);
    let addr = serve(ServerTls::new(&expired)).await;
    let c = crawl(url(addr), |b| b.tls_root_pem(ca.pem())).await;
    assert_failed_for(&c, ConnectCause::TlsExpired);

    let elsewhere = ca.sign(&["other.example"], false);
    let addr = serve(ServerTls::new(&elsewhere)).await;
    let c = crawl(url(addr), |b| b.tls_root_pem(ca.pem())).await;
    assert_failed_for(&c, ConnectCause::TlsHostnameMismatch);
}

#[actix::test]
async fn a_minimum_version_the_server_does_not_reach_fails_the_handshake() {
    let leaf = self_signed();
    let mut tls = ServerTls::new(&leaf);
    static TLS12_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];
    tls.versions = TLS12_ONLY;
    let addr = serve(tls).await;
    let c = crawl(url(addr), |b| {
        b.danger_accept_invalid_certs(true)
            .tls_min_version(TlsVersion::Tls13)
    })
    .await;
    assert_failed_for(&c, ConnectCause::TlsHandshake);
    // TLS 1.2 accepted by default.
    let c = crawl(url(addr), |b| b.danger_accept_invalid_certs(true)).await;
    assert_eq!(c.stats.status_count(200), 1, "{:?}", c.failures);
}

#[actix::test]
async fn accepting_invalid_certificates_crawls_a_self_signed_server_and_counts_it() {
    let leaf = self_signed();
    let addr = serve(ServerTls::new(&leaf)).await;
    let c = crawl(url(addr), |b| b.danger_accept_invalid_certs(true)).await;
    assert_eq!(c.failures, []);
    assert_eq!(c.stats.status_count(200), 1);
    assert_eq!(c.stats.get("tls/invalid_cert_accepted/127.0.0.1"), 1);

    // A valid certificate is not counted.
    let ca = Ca::new("test CA");
    let valid = ca.sign(&["127.0.0.1"], false);
    let addr = serve(ServerTls::new(&valid)).await;
    let c = crawl(url(addr), |b| {
        b.danger_accept_invalid_certs(true).tls_root_pem(ca.pem())
    })
    .await;
    assert_eq!(c.stats.status_count(200), 1);
    assert_eq!(c.stats.get("tls/invalid_cert_accepted/127.0.0.1"), 0);
}

#[actix::test]
async fn http2_is_negotiated_and_counted_and_http1_can_be_forced() {
    let ca = Ca::new("test CA");
    let leaf = ca.sign(&["127.0.0.1"], false);
    let addr = serve(ServerTls::new(&leaf)).await;
    let pages: Vec<String> = (0..3).map(|i| format!("https://{addr}/{i}")).collect();
    let h2 = crawl(pages.clone(), |b| b.tls_root_pem(ca.pem())).await;
    assert_eq!(h2.stats.status_count(200), 3, "{:?}", h2.failures);
    assert_eq!(h2.stats.get("downloader/response_http_version/2"), 3);
    assert_eq!(h2.stats.get("downloader/response_http_version/1.1"), 0);

    let h1 = crawl(pages, |b| b.tls_root_pem(ca.pem()).http1_only(true)).await;
    assert_eq!(h1.stats.status_count(200), 3, "{:?}", h1.failures);
    assert_eq!(h1.stats.get("downloader/response_http_version/1.1"), 3);
    assert_eq!(h1.stats.get("downloader/response_http_version/2"), 0);
}

#[actix::test]
async fn an_https_target_through_a_connect_proxy_uses_the_same_tls_settings() {
    let Some(proxy) = proxy_var("CI_TEST_PROXY") else {
        return;
    };
    let ca = Ca::new("test CA");
    let leaf = ca.sign(&["127.0.0.1"], false);
    let addr = serve(ServerTls::new(&leaf)).await;
    let untrusted = crawl_via(url(addr), Some(&proxy), |b| b).await;
    assert_failed_for(&untrusted, ConnectCause::TlsUnknownIssuer);
    let trusted = crawl_via(url(addr), Some(&proxy), |b| b.tls_root_pem(ca.pem())).await;
    assert_eq!(trusted.failures, []);
    assert_eq!(trusted.stats.status_count(200), 1);
    if let Some(logged) = crate::proxy::proxy_logged_connect_to(addr.port()) {
        assert!(logged, "the proxy's log has no CONNECT to {addr}");
    }
}

#[test]
fn tls_settings_that_cannot_work_fail_the_build_saying_why() {
    let build = |configure: &dyn Fn(CrawlerBuilder<Fetch>) -> CrawlerBuilder<Fetch>| {
        let spider = Fetch {
            urls: Vec::new(),
            proxy: None,
            failures: Arc::default(),
        };
        match configure(spinneret::Crawler::builder(spider)).build() {
            Ok(_) => panic!("built"),
            Err(e) => (e.kind_name(), e.to_string()),
        }
    };
    let (kind, text) = build(&|b| b.tls_root_file("/nonexistent/ca.pem"));
    assert_eq!(kind, "config");
    assert!(
        text.contains("TLS: cannot read /nonexistent/ca.pem"),
        "{text}"
    );

    let ca = Ca::new("test CA");
    let (one, other) = (
        ca.sign(&["a.example"], false),
        ca.sign(&["b.example"], false),
    );
    let (_, text) = build(&|b| b.tls_client_cert_pem(one.cert_pem.clone(), other.key_pem.clone()));
    assert!(text.contains("TLS: client certificate:"), "{text}");

    let half = Settings::from_toml_str("tls_client_cert = \"me.pem\"", "t").unwrap();
    let (_, text) = build(&|b| b.settings(&half));
    assert!(
        text.contains("tls_client_cert and tls_client_key go together"),
        "{text}"
    );
}
