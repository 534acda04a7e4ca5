//! A TCP proxy in front of a registry that misbehaves on purpose: for chosen requests (a request
//! line containing a pattern, by default blob GETs) it either forwards the first bytes of the
//! response and then cuts both connections (a registry dying mid-transfer), or answers with an
//! error status itself (a registry having a bad moment). Everything else passes through, and
//! matching requests are counted either way.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;

/// What happens to a chosen request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward `after_bytes` bytes of the response, then close both connections.
    Cut,
    /// Do not forward the request; answer with this HTTP status (e.g. 503) and close.
    Status(u16),
}

/// Which responses to cut and where.
#[derive(Debug, Clone)]
pub struct Cut {
    /// Cut responses to requests whose first line contains this (e.g. `GET /v2/busybox/blobs/`).
    pub request_contains: String,
    /// Forward this many response bytes (headers included) before cutting.
    pub after_bytes: usize,
    /// Cut this many responses, then pass everything through (`usize::MAX`: always cut; `0`:
    /// only count matching requests).
    pub times: usize,
    /// What to do to them.
    pub fault: Fault,
}

impl Cut {
    /// Cut blob downloads (requests for `/blobs/sha256:…`) `times` times after `after_bytes` bytes.
    pub fn blobs(after_bytes: usize, times: usize) -> Cut {
        Cut {
            request_contains: "/blobs/sha256:".into(),
            after_bytes,
            times,
            fault: Fault::Cut,
        }
    }

    /// Answer the first `times` requests whose line contains `pattern` with HTTP `status`.
    pub fn status(pattern: &str, status: u16, times: usize) -> Cut {
        Cut {
            request_contains: pattern.into(),
            after_bytes: 0,
            times,
            fault: Fault::Status(status),
        }
    }

    /// Only count requests whose line contains `pattern` (see [`CutProxy::matching_requests`]).
    pub fn count(pattern: &str) -> Cut {
        Cut {
            request_contains: pattern.into(),
            after_bytes: 0,
            times: 0,
            fault: Fault::Cut,
        }
    }
}

struct State {
    cut: Cut,
    remaining: AtomicUsize,
    done: AtomicUsize,
    stop: AtomicBool,
    requests: AtomicUsize,
}

/// A running proxy; stops accepting when dropped (open connections end with their peers).
pub struct CutProxy {
    addr: SocketAddr,
    state: Arc<State>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for CutProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CutProxy")
            .field("addr", &self.addr)
            .field("cut", &self.state.cut)
            .finish()
    }
}

impl CutProxy {
    /// Listen on a free loopback port and forward to `upstream`.
    pub fn start(upstream: SocketAddr, cut: Cut) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(State {
            remaining: AtomicUsize::new(cut.times),
            cut,
            done: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            requests: AtomicUsize::new(0),
        });
        let st = state.clone();
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = conn else { continue };
                let Ok(server) = TcpStream::connect(upstream) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let st = st.clone();
                std::thread::spawn(move || pump_pair(client, server, st));
            }
        });
        CutProxy {
            addr,
            state,
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:PORT` of the proxy: use it as the registry host.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many responses have been cut so far.
    pub fn cuts(&self) -> usize {
        self.state.done.load(Ordering::SeqCst)
    }

    /// How many matching requests were seen (cut or not).
    pub fn matching_requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Per connection: `armed` is set when the client sends a matching request; the response side
/// then counts bytes and cuts at the limit.
fn pump_pair(client: TcpStream, server: TcpStream, st: Arc<State>) {
    let armed = Arc::new(AtomicBool::new(false));
    let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let up = {
        let st = st.clone();
        let armed = armed.clone();
        std::thread::spawn(move || client_to_server(client, server, &st, &armed))
    };
    server_to_client(s2, c2, &st, &armed);
    let _ = up.join();
}

fn client_to_server(mut client: TcpStream, mut server: TcpStream, st: &State, armed: &AtomicBool) {
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        let first_line = chunk.split(|&b| b == b'\n').next().unwrap_or(chunk);
        if String::from_utf8_lossy(first_line).contains(&st.cut.request_contains) {
            st.requests.fetch_add(1, Ordering::SeqCst);
            let take = st
                .remaining
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |r| r.checked_sub(1))
                .is_ok();
            if take {
                if let Fault::Status(code) = st.cut.fault {
                    st.done.fetch_add(1, Ordering::SeqCst);
                    let _ = write!(
                        client,
                        "HTTP/1.1 {code} Injected Fault\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
                    );
                    let _ = client.flush();
                    let _ = client.shutdown(Shutdown::Both);
                    let _ = server.shutdown(Shutdown::Both);
                    return;
                }
                armed.store(true, Ordering::SeqCst);
            }
        }
        if server.write_all(chunk).is_err() {
            break;
        }
    }
    let _ = server.shutdown(Shutdown::Write);
}

fn server_to_client(mut server: TcpStream, mut client: TcpStream, st: &State, armed: &AtomicBool) {
    let mut buf = vec![0u8; 1 << 16];
    let mut sent_since_armed = 0usize;
    loop {
        let n = match server.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if armed.load(Ordering::SeqCst) {
            let room = st.cut.after_bytes.saturating_sub(sent_since_armed);
            if n >= room {
                let _ = client.write_all(&buf[..room]);
                let _ = client.flush();
                st.done.fetch_add(1, Ordering::SeqCst);
                let _ = client.shutdown(Shutdown::Both);
                let _ = server.shutdown(Shutdown::Both);
                return;
            }
            sent_since_armed += n;
        }
        if client.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = client.shutdown(Shutdown::Write);
}
