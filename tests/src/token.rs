//! A token server for the `Variant::Token` registry: the bearer-token flow of Docker Hub and most
//! public registries, run on loopback. It answers `GET /token?service=..&scope=..` with a JWT
//! (RS256, `kid` = libtrust id of its key) that distribution's `token` auth accepts, granting the
//! requested actions to the configured user and `pull` only to anonymous clients.

use crate::pki::SigningKey;
use base64::Engine as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

/// The issuer name in tokens and in the registry's configuration.
pub const ISSUER: &str = "kiln-test-issuer";
/// The service name in tokens, challenges and the registry's configuration.
pub const SERVICE: &str = "kiln-test-registry";

/// One request the token server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// The user from Basic credentials, `None` for anonymous requests.
    pub user: Option<String>,
    /// The `scope` parameters, decoded, in order.
    pub scopes: Vec<String>,
    /// The `service` parameter.
    pub service: Option<String>,
    /// The HTTP status the server answered with.
    pub status: u16,
}

struct Shared {
    key: SigningKey,
    user: String,
    password: String,
    requests: Mutex<Vec<TokenRequest>>,
    stop: AtomicBool,
}

/// A running token server; stops when dropped.
pub struct TokenServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for TokenServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl TokenServer {
    /// Start serving on a free loopback port; `user`/`password` get every action they ask for.
    pub fn start(key: SigningKey, user: &str, password: &str) -> TokenServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the token server");
        let addr = listener.local_addr().expect("token server address");
        let shared = Arc::new(Shared {
            key,
            user: user.to_string(),
            password: password.to_string(),
            requests: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let sh = shared.clone();
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sh.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let sh = sh.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, &sh);
                });
            }
        });
        TokenServer {
            addr,
            shared,
            thread: Some(thread),
        }
    }

    /// The realm URL registries send clients to.
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// Every request answered so far.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.shared
            .requests
            .lock()
            .expect("token request log")
            .clone()
    }

    /// The certificate that verifies this server's tokens.
    pub fn cert(&self) -> &std::path::Path {
        &self.shared.key.cert
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(conn: TcpStream, sh: &Shared) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let target = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut auth = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.trim().eq_ignore_ascii_case("authorization")
        {
            auth = Some(v.trim().to_string());
        }
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut scopes = Vec::new();
    let mut service = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "scope" => scopes.extend(
                percent_decode(v)
                    .split(' ')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            ),
            "service" => service = Some(percent_decode(v)),
            _ => {}
        }
    }
    let mut user = None;
    let mut authenticated = false;
    let mut bad_credentials = false;
    if let Some(a) = &auth
        && let Some(b64) = a
            .strip_prefix("Basic ")
            .or_else(|| a.strip_prefix("basic "))
    {
        let dec = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .unwrap_or_default();
        let dec = String::from_utf8_lossy(&dec).into_owned();
        let (u, p) = dec.split_once(':').unwrap_or((&dec, ""));
        user = Some(u.to_string());
        if u == sh.user && p == sh.password {
            authenticated = true;
        } else {
            bad_credentials = true;
        }
    }
    let mut conn = conn;
    let status = if path != "/token" {
        respond(&mut conn, 404, "{\"errors\":[{\"code\":\"NOT_FOUND\"}]}")?;
        404
    } else if bad_credentials {
        respond(
            &mut conn,
            401,
            "{\"details\":\"incorrect username or password\"}",
        )?;
        401
    } else {
        let token = issue(
            sh,
            user.as_deref().filter(|_| authenticated),
            &scopes,
            authenticated,
        );
        let body = serde_json::json!({"token": token, "access_token": token, "expires_in": 300})
            .to_string();
        respond(&mut conn, 200, &body)?;
        200
    };
    sh.requests
        .lock()
        .expect("token request log")
        .push(TokenRequest {
            user,
            scopes,
            service,
            status,
        });
    Ok(())
}

fn respond(conn: &mut TcpStream, status: u16, body: &str) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        _ => "Not Found",
    };
    write!(
        conn,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    conn.flush()
}

fn issue(sh: &Shared, user: Option<&str>, scopes: &[String], authenticated: bool) -> String {
    let mut access = Vec::new();
    for s in scopes {
        let Some((left, actions)) = s.rsplit_once(':') else {
            continue;
        };
        let Some((typ, name)) = left.split_once(':') else {
            continue;
        };
        let granted: Vec<&str> = actions
            .split(',')
            .filter(|a| !a.is_empty())
            .filter(|a| authenticated || *a == "pull")
            .collect();
        access.push(serde_json::json!({"type": typ, "name": name, "actions": granted}));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "kid": sh.key.kid});
    let claims = serde_json::json!({
        "iss": ISSUER,
        "sub": user.unwrap_or(""),
        "aud": SERVICE,
        "exp": now + 300,
        "nbf": now - 30,
        "iat": now - 30,
        "jti": format!("{now}-{}", std::process::id()),
        "access": access,
    });
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = sh.key.sign_rs256(signing_input.as_bytes());
    format!("{signing_input}.{}", b64(&sig))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn decodes_scopes() {
        assert_eq!(
            percent_decode("repository%3Abusybox%3Apull%2Cpush"),
            "repository:busybox:pull,push"
        );
        assert_eq!(percent_decode("a+b%2"), "a b%2");
    }
}
