//! A real JVM trusts a TLS server through the truststore and `JAVA_TOOL_OPTIONS` the plugin makes
//! (the host's `java` and `openssl`; skipped when no JVM is installed).

use kiln_plugin_proxy_ca::inject::{self, CA_FILE, JAVA_TRUSTSTORE};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const FETCH_JAVA: &str = r#"
public class Fetch {
    public static void main(String[] args) throws Exception {
        var con = (javax.net.ssl.HttpsURLConnection) new java.net.URL(args[0]).openConnection();
        con.setConnectTimeout(10000);
        con.setReadTimeout(10000);
        System.out.println("status " + con.getResponseCode());
    }
}
"#;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("running openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA and a server certificate for 127.0.0.1 signed by it, in `dir`.
fn make_pki(dir: &Path) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-days",
        "2",
        "-subj",
        "/CN=kiln java test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(dir, &ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend(["-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr"]);
    openssl(dir, &csr);
    std::fs::write(dir.join("ext"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n")
        .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-extfile",
            "ext",
            "-out",
            "server.pem",
        ],
    );
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(dir: &Path) -> (Server, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new("openssl")
        .args(["s_server", "-quiet", "-www", "-cert", "server.pem", "-key", "server.key", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting openssl s_server");
    let server = Server(child);
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(10), "openssl s_server did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    (server, port)
}

fn fetch(dir: &Path, tool_options: Option<&str>, port: u16) -> Output {
    let mut c = Command::new("java");
    c.arg(dir.join("Fetch.java")).arg(format!("https://127.0.0.1:{port}/")).env_remove("JAVA_TOOL_OPTIONS");
    if let Some(o) = tool_options {
        c.env("JAVA_TOOL_OPTIONS", o);
    }
    c.output().expect("running java")
}

#[test]
fn java_trusts_the_server_only_with_the_injected_truststore() {
    if Command::new("java").arg("-version").output().is_err() {
        eprintln!("no java on this machine; skipping");
        return;
    }
    let dir = std::env::temp_dir().join(format!("kiln-proxy-ca-java-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    make_pki(&dir);
    std::fs::write(dir.join("Fetch.java"), FETCH_JAVA).unwrap();
    let (_server, port) = serve(&dir);

    let ca = std::fs::read(dir.join("ca.pem")).unwrap();
    let settings = inject::settings(&[], &[(CA_FILE.to_string(), ca)]).unwrap();
    let mut rootfs = |p: &str| -> Result<Option<Vec<u8>>, String> { Ok((p == "/usr/bin/java").then(Vec::new)) };
    let inj = inject::inject(&settings, &["mvn".to_string(), "package".to_string()], &mut rootfs).unwrap();
    let store = inj.mounts.iter().find(|m| m.target == JAVA_TRUSTSTORE).expect("a truststore mount");
    let store_path = dir.join("cacerts.p12");
    std::fs::write(&store_path, &store.content).unwrap();
    let options = inj.env.iter().find(|(k, _)| k == "JAVA_TOOL_OPTIONS").map(|(_, v)| v.clone()).expect("JAVA_TOOL_OPTIONS");
    let options = options.replace(JAVA_TRUSTSTORE, store_path.to_str().unwrap());

    let without = fetch(&dir, None, port);
    assert!(!without.status.success(), "the JVM's default truststore should not know the test CA");
    assert!(String::from_utf8_lossy(&without.stderr).contains("PKIX"), "{}", String::from_utf8_lossy(&without.stderr));

    let with = fetch(&dir, Some(&options), port);
    let stdout = String::from_utf8_lossy(&with.stdout);
    assert!(with.status.success() && stdout.contains("status 200"), "{stdout}\n{}", String::from_utf8_lossy(&with.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}
