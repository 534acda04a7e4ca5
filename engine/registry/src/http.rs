//! One registry's HTTP session: endpoint discovery (https, then plain http for insecure
//! registries, like containers/image), per-registry TLS and proxy, Basic and bearer-token
//! authentication driven by `WWW-Authenticate`, and retries with backoff on connection errors,
//! 5xx and 429.

use crate::auth::{AuthFiles, Credentials};
use crate::challenge::{self, Challenge};
use crate::conf::RegistriesConf;
use crate::error::{Error, Result};
use crate::netproxy;
use crate::reference::DOCKER_HUB;
use crate::tls::RegistryTls;
use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use ureq::http::{Request, Response};

/// Settings every session of a client shares.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub tls_verify: Option<bool>,
    pub cert_dir: Option<PathBuf>,
    pub conf: RegistriesConf,
    pub auth: AuthFiles,
    pub credentials: Option<Credentials>,
    pub retries: u32,
    pub backoff: Duration,
}

/// A request body that can be produced again for a retry.
pub(crate) enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    /// A reader factory and the exact length it yields.
    Stream(
        &'a (dyn Fn() -> std::io::Result<Box<dyn Read + Send>> + Sync),
        u64,
    ),
}

/// One HTTP call through a session.
pub(crate) struct Call<'a> {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Body<'a>,
    /// Token scopes the call needs (`repository:NAME:pull`, …).
    pub scopes: Vec<String>,
    /// Retry on connection errors, 5xx and 429.
    pub retry: bool,
}

impl<'a> Call<'a> {
    pub fn new(method: &'static str, url: String, scopes: &[String]) -> Call<'a> {
        Call {
            method,
            url,
            headers: Vec::new(),
            body: Body::Empty,
            scopes: scopes.to_vec(),
            retry: true,
        }
    }
    pub fn header(mut self, k: &'static str, v: impl Into<String>) -> Self {
        self.headers.push((k, v.into()));
        self
    }
    pub fn body(mut self, b: Body<'a>) -> Self {
        self.body = b;
        self
    }
}

#[derive(Default)]
struct AuthState {
    challenge: Option<Challenge>,
    /// Tokens by sorted scope list.
    tokens: HashMap<String, (String, Instant)>,
}

/// A connection to one registry (and the credentials for one repository in it).
pub(crate) struct Session {
    /// The registry host as references spell it (`docker.io`, `127.0.0.1:5000`).
    pub registry: String,
    /// `https://HOST` or `http://HOST` of the API.
    pub base: String,
    agent: ureq::Agent,
    /// TLS settings for token endpoints (system trust plus the registry's CAs, always verified).
    token_tls: ureq::tls::TlsConfig,
    creds: Option<Credentials>,
    state: Mutex<AuthState>,
    retries: u32,
    backoff: Duration,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("registry", &self.registry)
            .field("base", &self.base)
            .finish()
    }
}

fn agent(tls: ureq::tls::TlsConfig, proxy: Option<String>) -> Result<ureq::Agent> {
    let proxy = match proxy {
        Some(p) => Some(
            ureq::Proxy::new(&p)
                .map_err(|e| Error::Unsupported(format!("invalid proxy URL {p:?}: {e}")))?,
        ),
        None => None,
    };
    let cfg = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(tls)
        .proxy(proxy)
        .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
        .accept_encoding("identity")
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(300)))
        .max_redirects(10)
        .max_idle_connections_per_host(8)
        .build();
    Ok(cfg.into())
}

/// A failure worth retrying: the connection broke, timed out or was refused.
fn transient(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::Io(io) => !matches!(
            io.kind(),
            std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData
        ),
        ureq::Error::Timeout(_) | ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => true,
        ureq::Error::Protocol(_) => true,
        _ => false,
    }
}

fn retryable_status(s: u16) -> bool {
    matches!(s, 429 | 500 | 502 | 503 | 504)
}

impl Session {
    /// Connect to `registry` for `repository`: pick https (or http when the registry is insecure
    /// and https fails), learn its authentication challenge, find credentials.
    pub fn connect(
        settings: &Settings,
        registry: &str,
        repository: Option<&str>,
    ) -> Result<Session> {
        let api_host = if registry == DOCKER_HUB {
            crate::reference::DOCKER_HUB_API
        } else {
            registry
        };
        let insecure = match settings.tls_verify {
            Some(v) => !v,
            None => settings.conf.is_insecure(registry),
        };
        let tls = RegistryTls::for_host(registry, settings.cert_dir.as_deref())?;
        let token_tls = RegistryTls {
            roots: tls.roots.clone(),
            client: None,
            dir: None,
        }
        .config(true);
        let creds = match &settings.credentials {
            Some(c) => Some(c.clone()),
            None => settings.auth.lookup(registry, repository)?,
        };
        let https = agent(
            tls.config(!insecure),
            netproxy::proxy_for("https", api_host),
        )?;
        let mut s = Session {
            registry: registry.to_string(),
            base: format!("https://{api_host}"),
            agent: https,
            token_tls,
            creds,
            state: Mutex::new(AuthState::default()),
            retries: settings.retries,
            backoff: settings.backoff,
        };
        // When plain http is allowed, a failing https endpoint is not retried: http is tried instead.
        match s.ping(!insecure) {
            Ok(()) => Ok(s),
            Err(e @ Error::Network { .. }) if insecure => {
                tracing::debug!(
                    "https to {api_host} failed ({e}); trying plain http (insecure registry)"
                );
                s.base = format!("http://{api_host}");
                s.agent = agent(tls.config(false), netproxy::proxy_for("http", api_host))?;
                s.ping(true).map_err(|e2| match e2 {
                    Error::Network {
                        method,
                        url,
                        message,
                    } => Error::Network {
                        method,
                        url,
                        message: format!("{message} (and over https: {e})"),
                    },
                    other => other,
                })?;
                Ok(s)
            }
            Err(e) => Err(e),
        }
    }

    /// `GET /v2/`: reachability and the authentication challenge.
    fn ping(&self, retry: bool) -> Result<()> {
        let url = format!("{}/v2/", self.base);
        let mut attempt = 0;
        loop {
            let req = Request::get(&url)
                .body(())
                .map_err(|e| Error::Unsupported(e.to_string()))?;
            match self.agent.run(req) {
                Ok(mut resp) => {
                    let status = resp.status().as_u16();
                    if retry && retryable_status(status) && attempt < self.retries {
                        drain(&mut resp);
                        self.sleep(attempt);
                        attempt += 1;
                        continue;
                    }
                    if status == 401 {
                        let ch = pick_challenge(&resp);
                        self.state.lock().expect("auth state").challenge = ch;
                    } else if !(200..300).contains(&status) {
                        let message = error_message(&mut resp);
                        return Err(Error::Status {
                            method: "GET".into(),
                            url,
                            status,
                            message,
                        });
                    }
                    drain(&mut resp);
                    return Ok(());
                }
                Err(e) if retry && transient(&e) && attempt < self.retries && !is_tls_error(&e) => {
                    self.sleep(attempt);
                    attempt += 1;
                }
                Err(e) => {
                    return Err(Error::Network {
                        method: "GET".into(),
                        url,
                        message: describe(&e),
                    });
                }
            }
        }
    }

    fn sleep(&self, attempt: u32) {
        let d = self.backoff * 2u32.saturating_pow(attempt);
        std::thread::sleep(d.min(Duration::from_secs(10)));
    }

    /// Make `url` absolute (registries may return relative `Location`s).
    pub fn absolute(&self, url: &str) -> String {
        if url.starts_with("http://") || url.starts_with("https://") {
            url.to_string()
        } else if url.starts_with('/') {
            format!("{}{url}", self.base)
        } else {
            format!("{}/{url}", self.base)
        }
    }

    /// Check credentials: `GET /v2/` authenticated (a token without scope for bearer registries).
    pub fn verify_login(&self) -> Result<()> {
        let url = format!("{}/v2/", self.base);
        let mut resp =
            self.send(Call::new("GET", url.clone(), &[]).header("Accept", "application/json"))?;
        let status = resp.status().as_u16();
        if status == 401 || status == 403 {
            let message = error_message(&mut resp);
            return Err(Error::Unauthorized {
                registry: self.registry.clone(),
                message: format!(
                    "GET {url}: HTTP {status}{}",
                    if message.is_empty() {
                        String::new()
                    } else {
                        format!(": {message}")
                    }
                ),
            });
        }
        if !(200..300).contains(&status) {
            let message = error_message(&mut resp);
            return Err(Error::Status {
                method: "GET".into(),
                url,
                status,
                message,
            });
        }
        drain(&mut resp);
        Ok(())
    }

    /// Whether the session has credentials.
    pub fn has_credentials(&self) -> bool {
        self.creds.is_some()
    }

    /// Send `call`, authenticating as the registry asks and retrying transient failures. Returns
    /// the final response whatever its status (callers map statuses to errors).
    pub fn send(&self, mut call: Call<'_>) -> Result<Response<ureq::Body>> {
        let mut attempt = 0;
        let mut auth_retried = false;
        loop {
            let auth = self.authorization(&call.scopes)?;
            let result = self.run_once(&call, auth.as_deref());
            match result {
                Ok(mut resp) => {
                    let status = resp.status().as_u16();
                    if status == 401 && !auth_retried {
                        auth_retried = true;
                        if let Some(ch) = pick_challenge(&resp) {
                            if let Some(scope) = ch.param("scope") {
                                for s in scope.split(' ') {
                                    if !s.is_empty() && !call.scopes.iter().any(|x| x == s) {
                                        call.scopes.push(s.to_string());
                                    }
                                }
                            }
                            let mut st = self.state.lock().expect("auth state");
                            st.challenge = Some(ch);
                            st.tokens.remove(&scope_key(&call.scopes));
                            drop(st);
                            if self.creds.is_some() || self.is_bearer() {
                                drain(&mut resp);
                                continue;
                            }
                        }
                        return Ok(resp);
                    }
                    if retryable_status(status) && call.retry && attempt < self.retries {
                        tracing::debug!("{} {}: HTTP {status}, retrying", call.method, call.url);
                        drain(&mut resp);
                        self.sleep(attempt);
                        attempt += 1;
                        continue;
                    }
                    return Ok(resp);
                }
                Err(e) if call.retry && transient(&e) && attempt < self.retries => {
                    tracing::debug!("{} {}: {e}, retrying", call.method, call.url);
                    self.sleep(attempt);
                    attempt += 1;
                }
                Err(e) => {
                    return Err(Error::Network {
                        method: call.method.into(),
                        url: call.url.clone(),
                        message: describe(&e),
                    });
                }
            }
        }
    }

    fn run_once(
        &self,
        call: &Call<'_>,
        auth: Option<&str>,
    ) -> std::result::Result<Response<ureq::Body>, ureq::Error> {
        let mut b = Request::builder().method(call.method).uri(&call.url);
        for (k, v) in &call.headers {
            b = b.header(*k, v);
        }
        if let Some(a) = auth {
            b = b.header("Authorization", a);
        }
        match &call.body {
            Body::Empty => {
                if matches!(call.method, "PUT" | "POST" | "PATCH") {
                    b = b.header("Content-Length", "0");
                }
                self.agent.run(b.body(()).map_err(ureq::Error::Http)?)
            }
            Body::Bytes(bytes) => {
                b = b.header("Content-Length", bytes.len().to_string());
                self.agent.run(b.body(*bytes).map_err(ureq::Error::Http)?)
            }
            Body::Stream(open, len) => {
                b = b.header("Content-Length", len.to_string());
                let reader = open().map_err(ureq::Error::Io)?;
                let body = ureq::SendBody::from_owned_reader(reader);
                self.agent.run(b.body(body).map_err(ureq::Error::Http)?)
            }
        }
    }

    fn is_bearer(&self) -> bool {
        self.state
            .lock()
            .expect("auth state")
            .challenge
            .as_ref()
            .is_some_and(|c| c.scheme == "bearer")
    }

    /// The Authorization header for `scopes` under the current challenge.
    fn authorization(&self, scopes: &[String]) -> Result<Option<String>> {
        let ch = self.state.lock().expect("auth state").challenge.clone();
        let Some(ch) = ch else { return Ok(None) };
        match ch.scheme.as_str() {
            "basic" => Ok(self
                .creds
                .as_ref()
                .filter(|c| !c.username.is_empty())
                .map(Credentials::basic_header)),
            "bearer" => {
                let key = scope_key(scopes);
                if let Some((t, exp)) = self.state.lock().expect("auth state").tokens.get(&key)
                    && *exp > Instant::now()
                {
                    return Ok(Some(format!("Bearer {t}")));
                }
                let (token, ttl) = self.fetch_token(&ch, scopes)?;
                let exp = Instant::now() + ttl.saturating_sub(Duration::from_secs(10));
                self.state
                    .lock()
                    .expect("auth state")
                    .tokens
                    .insert(key, (token.clone(), exp));
                Ok(Some(format!("Bearer {token}")))
            }
            other => Err(Error::Unauthorized {
                registry: self.registry.clone(),
                message: format!("unsupported authentication scheme {other:?}"),
            }),
        }
    }

    /// Get a token from the challenge's realm: OAuth2 refresh-token POST when an identity token
    /// is known, else GET with Basic credentials (or anonymously).
    fn fetch_token(&self, ch: &Challenge, scopes: &[String]) -> Result<(String, Duration)> {
        let realm = ch.param("realm").ok_or_else(|| Error::Unauthorized {
            registry: self.registry.clone(),
            message: "bearer challenge without realm".into(),
        })?;
        let service = ch.param("service");
        let (scheme, rest) = realm.split_once("://").unwrap_or(("https", realm));
        let realm_host = rest.split(['/', '?']).next().unwrap_or(rest);
        let token_agent = agent(
            self.token_tls.clone(),
            netproxy::proxy_for(scheme, realm_host),
        )?;
        let mut attempt = 0;
        loop {
            let (url, result) = if let Some(refresh) = self
                .creds
                .as_ref()
                .and_then(|c| c.identity_token.as_deref())
            {
                let mut form = format!(
                    "grant_type=refresh_token&client_id=kiln&refresh_token={}",
                    encode(refresh)
                );
                if let Some(s) = service {
                    form += &format!("&service={}", encode(s));
                }
                if !scopes.is_empty() {
                    form += &format!("&scope={}", encode(&scopes.join(" ")));
                }
                let req = Request::post(realm)
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body(form.into_bytes())
                    .map_err(|e| Error::Unsupported(e.to_string()))?;
                (realm.to_string(), token_agent.run(req))
            } else {
                let mut url = realm.to_string();
                let mut sep = if url.contains('?') { '&' } else { '?' };
                if let Some(s) = service {
                    url += &format!("{sep}service={}", encode(s));
                    sep = '&';
                }
                for s in scopes {
                    url += &format!("{sep}scope={}", encode(s));
                    sep = '&';
                }
                let mut b = Request::get(&url);
                if let Some(c) = self.creds.as_ref().filter(|c| !c.username.is_empty()) {
                    b = b.header("Authorization", c.basic_header());
                }
                let req = b.body(()).map_err(|e| Error::Unsupported(e.to_string()))?;
                (url, token_agent.run(req))
            };
            match result {
                Ok(mut resp) => {
                    let status = resp.status().as_u16();
                    if retryable_status(status) && attempt < self.retries {
                        drain(&mut resp);
                        self.sleep(attempt);
                        attempt += 1;
                        continue;
                    }
                    if !(200..300).contains(&status) {
                        let message = error_message(&mut resp);
                        return Err(Error::Unauthorized {
                            registry: self.registry.clone(),
                            message: format!(
                                "token endpoint {realm} answered HTTP {status}{}",
                                if message.is_empty() {
                                    String::new()
                                } else {
                                    format!(": {message}")
                                }
                            ),
                        });
                    }
                    let v: serde_json::Value = resp
                        .body_mut()
                        .with_config()
                        .limit(1 << 20)
                        .read_json()
                        .map_err(|e| Error::Network {
                            method: "GET".into(),
                            url: url.clone(),
                            message: describe(&e),
                        })?;
                    let token = v
                        .get("token")
                        .or_else(|| v.get("access_token"))
                        .and_then(|t| t.as_str())
                        .filter(|t| !t.is_empty())
                        .ok_or_else(|| Error::Unauthorized {
                            registry: self.registry.clone(),
                            message: format!("token endpoint {realm} returned no token"),
                        })?;
                    let ttl = v
                        .get("expires_in")
                        .and_then(|e| e.as_u64())
                        .unwrap_or(60)
                        .max(60);
                    return Ok((token.to_string(), Duration::from_secs(ttl)));
                }
                Err(e) if transient(&e) && attempt < self.retries => {
                    self.sleep(attempt);
                    attempt += 1;
                }
                Err(e) => {
                    return Err(Error::Network {
                        method: "GET".into(),
                        url,
                        message: describe(&e),
                    });
                }
            }
        }
    }
}

fn is_tls_error(e: &ureq::Error) -> bool {
    let s = describe(e).to_ascii_lowercase();
    matches!(e, ureq::Error::Tls(_))
        || s.contains("certificate")
        || s.contains("tls")
        || s.contains("handshake")
}

/// A readable description of a ureq error (including its sources).
pub(crate) fn describe(e: &ureq::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(x) = src {
        let t = x.to_string();
        if !s.contains(&t) {
            s += &format!(": {t}");
        }
        src = x.source();
    }
    s
}

fn scope_key(scopes: &[String]) -> String {
    let mut v = scopes.to_vec();
    v.sort();
    v.dedup();
    v.join(" ")
}

/// The challenge to follow from a 401: bearer preferred over basic.
fn pick_challenge(resp: &Response<ureq::Body>) -> Option<Challenge> {
    let mut all = Vec::new();
    for h in resp.headers().get_all("www-authenticate") {
        if let Ok(s) = h.to_str() {
            all.extend(challenge::parse(s));
        }
    }
    let bearer = all.iter().position(|c| c.scheme == "bearer");
    let basic = all.iter().position(|c| c.scheme == "basic");
    bearer
        .or(basic)
        .map(|i| all.swap_remove(i))
        .or_else(|| all.into_iter().next())
}

/// Read and discard the rest of a response body (small ones only), so the connection is reused.
pub(crate) fn drain(resp: &mut Response<ureq::Body>) {
    let _ = resp.body_mut().with_config().limit(1 << 20).read_to_vec();
}

/// The registry's error message from a JSON error body (`errors[].message`), or the body text.
pub(crate) fn error_message(resp: &mut Response<ureq::Body>) -> String {
    let body = resp
        .body_mut()
        .with_config()
        .limit(1 << 16)
        .read_to_vec()
        .unwrap_or_default();
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
        if let Some(errs) = v.get("errors").and_then(|e| e.as_array()) {
            let msgs: Vec<String> = errs
                .iter()
                .map(|e| {
                    let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("");
                    let msg = e.get("message").and_then(|c| c.as_str()).unwrap_or("");
                    match (code.is_empty(), msg.is_empty()) {
                        (false, false) => format!("{code}: {msg}"),
                        (false, true) => code.to_string(),
                        _ => msg.to_string(),
                    }
                })
                .collect();
            return msgs.join("; ");
        }
        if let Some(d) = v
            .get("details")
            .or_else(|| v.get("error"))
            .and_then(|d| d.as_str())
        {
            return d.to_string();
        }
    }
    String::from_utf8_lossy(&body)
        .trim()
        .chars()
        .take(300)
        .collect()
}

/// Percent-encode a query component.
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out += &format!("%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{encode, scope_key};

    #[test]
    fn encodes_scopes() {
        assert_eq!(
            encode("repository:a/b:pull,push"),
            "repository%3Aa%2Fb%3Apull%2Cpush"
        );
    }

    #[test]
    fn scope_keys_ignore_order() {
        assert_eq!(
            scope_key(&["b".into(), "a".into(), "a".into()]),
            scope_key(&["a".into(), "b".into()])
        );
    }
}
