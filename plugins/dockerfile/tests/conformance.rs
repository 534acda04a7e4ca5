//! Every Dockerfile of the shared conformance corpus, parsed to the plan kiln must execute.
//! (Fixtures are copies of shared/conformance/dockerfile/*/Dockerfile, with the build args of
//! their bud.args.)

mod common;
use common::*;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/{name}.Dockerfile",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn check(name: &str, args: &[(&str, &str)], expected: &str) -> Images {
    let mut images = Images::default();
    let p = plan_with(&fixture(name), &opts(args), &mut images)
        .unwrap_or_else(|e| panic!("{}", render_errors(&e)));
    let got = show(&p);
    assert_eq!(got, expected, "{name}: got\n{got}");
    images
}

#[test]
fn case_01_static_scratch() {
    let images = check(
        "01-static-scratch",
        &[],
        r#"stage 0 build image:127.0.0.1:5000/debian:bookworm @2:1
3:1 RUN sh "apt-get update  && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gcc libc6-dev  && rm -rf /var/lib/apt/lists/*"
    # /bin/sh -c apt-get update  && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gcc libc6-dev  && rm -rf /var/lib/apt/lists/*
6:1 WORKDIR /src
    # /bin/sh -c #(nop) WORKDIR /src
7:1 COPY ctx ["tinyhttpd.c"] -> .
    # /bin/sh -c #(nop) COPY tinyhttpd.c in . 
8:1 RUN sh "gcc -static -Os -s -o /tinyhttpd tinyhttpd.c && /tinyhttpd --version"
    # /bin/sh -c gcc -static -Os -s -o /tinyhttpd tinyhttpd.c && /tinyhttpd --version
stage 1 - scratch @10:1
11:1 COPY stage0 ["/tinyhttpd"] -> /bin/tinyhttpd
    # /bin/sh -c #(nop) COPY /tinyhttpd in /bin/tinyhttpd 
12:1 COPY ctx ["index.html"] -> /srv/index.html chown=65534:65534
    # /bin/sh -c #(nop) COPY index.html in /srv/index.html 
13:1 USER 65534:65534
    # /bin/sh -c #(nop) USER 65534:65534
14:1 EXPOSE ["8080/tcp"]
    # /bin/sh -c #(nop) EXPOSE 8080/tcp
15:1 ENTRYPOINT exec ["/bin/tinyhttpd"]
    # /bin/sh -c #(nop) ENTRYPOINT ["/bin/tinyhttpd"]
16:1 CMD exec ["/srv", "8080"]
    # /bin/sh -c #(nop) CMD ["/srv", "8080"]
target 1
"#,
    );
    // Only the real base image is looked up (not scratch).
    assert_eq!(
        images.calls,
        vec![(DEBIAN.to_string(), "linux/amd64".to_string())]
    );
}

#[test]
fn case_02_metadata() {
    check(
        "02-metadata",
        &[("VERSION", "1.2.3")],
        r#"stage 0 - image:127.0.0.1:5000/busybox:latest @3:1
4:1 ARG ["VERSION"]
    # /bin/sh -c #(nop) ARG VERSION
5:1 ARG ["UNUSED_ARG"]
    # /bin/sh -c #(nop) ARG VERSION
6:1 ENV [("APP_HOME", "/opt/app"), ("APP_VERSION", "1.2.3"), ("GREETING", "hello world")]
    # /bin/sh -c #(nop) ENV APP_HOME=/opt/app     APP_VERSION=${VERSION}     GREETING="hello world"
9:1 ENV [("PATH", "/opt/app/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")]
    # /bin/sh -c #(nop) ENV PATH=${APP_HOME}/bin:${PATH}
10:1 LABEL [("org.opencontainers.image.title", "kiln metadata case"), ("org.opencontainers.image.version", "1.2.3"), ("multi.word", "a b c")]
    # /bin/sh -c #(nop) LABEL org.opencontainers.image.title="kiln metadata case"       org.opencontainers.image.version=${VERSION}       multi.word="a b c"
13:1 WORKDIR /opt/app
    # /bin/sh -c #(nop) WORKDIR ${APP_HOME}
14:1 WORKDIR /opt/app/sub
    # /bin/sh -c #(nop) WORKDIR sub
15:1 RUN sh "echo \"$APP_VERSION $GREETING\" > version.txt  && echo \"app:x:1001:1001::/opt/app:/bin/sh\" >> /etc/passwd  && echo \"app:x:1001:\" >> /etc/group" args[VERSION=1.2.3]
    # |1 VERSION=1.2.3 /bin/sh -c echo "$APP_VERSION $GREETING" > version.txt  && echo "app:x:1001:1001::/opt/app:/bin/sh" >> /etc/passwd  && echo "app:x:1001:" >> /etc/group
18:1 USER 1001:1001
    # /bin/sh -c #(nop) USER 1001:1001
19:1 EXPOSE ["8080/tcp", "53/udp"]
    # /bin/sh -c #(nop) EXPOSE 8080/tcp 53/udp
20:1 EXPOSE ["9090/tcp"]
    # /bin/sh -c #(nop) EXPOSE 9090
21:1 VOLUME ["/data", "/cache"]
    # /bin/sh -c #(nop) VOLUME ["/data", "/cache"]
22:1 STOPSIGNAL SIGTERM
    # /bin/sh -c #(nop) STOPSIGNAL SIGTERM
23:1 SHELL ["/bin/sh", "-ec"]
    # /bin/sh -c #(nop) SHELL ["/bin/sh", "-ec"]
24:1 HEALTHCHECK Some(Healthcheck { test: ["CMD-SHELL", "wget -q -O- http://127.0.0.1:8080/ || exit 1"], interval_ns: Some(30000000000), timeout_ns: Some(3000000000), start_period_ns: None, start_interval_ns: None, retries: Some(2) })
    # /bin/sh -c #(nop) HEALTHCHECK --interval=30s --timeout=3s --retries=2 CMD wget -q -O- http://127.0.0.1:8080/ || exit 1
25:1 ENTRYPOINT exec ["/bin/sh", "-c", "exec \"$@\"", "--"]
    # /bin/sh -c #(nop) ENTRYPOINT ["/bin/sh", "-c", "exec \"$@\"", "--"]
26:1 CMD exec ["cat", "version.txt"]
    # /bin/sh -c #(nop) CMD ["cat", "version.txt"]
target 0
"#,
    );
}

#[test]
fn case_03_copy_chown_chmod() {
    check(
        "03-copy-chown-chmod",
        &[],
        r#"stage 0 - image:127.0.0.1:5000/busybox:latest @2:1
3:1 COPY ctx ["."] -> /ctx/
    # /bin/sh -c #(nop) COPY . in /ctx/ 
4:1 COPY ctx ["app/"] -> /opt/app/ chown=1000:1000
    # /bin/sh -c #(nop) COPY app/ in /opt/app/ 
5:1 COPY ctx ["app/conf/app.conf"] -> /etc/app/by-name.conf chown=nobody:nogroup
    # /bin/sh -c #(nop) COPY app/conf/app.conf in /etc/app/by-name.conf 
6:1 COPY ctx ["app/conf/app.conf"] -> /etc/app/app.conf chmod=0640
    # /bin/sh -c #(nop) COPY app/conf/app.conf in /etc/app/app.conf 
7:1 COPY ctx ["README.md"] -> /usr/local/bin/readme chown=1000:1000 chmod=0755
    # /bin/sh -c #(nop) COPY README.md in /usr/local/bin/readme 
8:1 COPY ctx ["app/bin/run.sh", "app/conf/app.conf"] -> /multi/
    # /bin/sh -c #(nop) COPY app/bin/run.sh app/conf/app.conf in /multi/ 
9:1 RUN sh "ls -lnR /ctx /opt/app /etc/app /multi > /listing.txt"
    # /bin/sh -c ls -lnR /ctx /opt/app /etc/app /multi > /listing.txt
target 0
"#,
    );
}

#[test]
fn case_04_add_tar() {
    check(
        "04-add-tar",
        &[],
        r#"stage 0 - image:127.0.0.1:5000/busybox:latest @2:1
3:1 ADD ctx ["payload.tar"] -> /opt/
    # /bin/sh -c #(nop) ADD payload.tar in /opt/ 
4:1 ADD ctx ["payload.tar.gz"] -> /opt/
    # /bin/sh -c #(nop) ADD payload.tar.gz in /opt/ 
5:1 ADD ctx ["plain.txt"] -> /opt/plain.txt
    # /bin/sh -c #(nop) ADD plain.txt in /opt/plain.txt 
6:1 ADD ctx ["plain.txt"] -> /opt/plain-owned.txt chown=2000:2000
    # /bin/sh -c #(nop) ADD plain.txt in /opt/plain-owned.txt 
7:1 RUN sh "test -x /opt/pkg/bin/tool && test -L /opt/pkg/bin/tool-alias && test -f /opt/extra/from-gz.txt"
    # /bin/sh -c test -x /opt/pkg/bin/tool && test -L /opt/pkg/bin/tool-alias && test -f /opt/extra/from-gz.txt
target 0
"#,
    );
}

#[test]
fn case_05_whiteouts() {
    check(
        "05-whiteouts",
        &[],
        r#"stage 0 - image:127.0.0.1:5000/debian:bookworm @3:1
4:1 RUN sh "rm -rf /usr/share/doc/* /usr/share/man /usr/share/info /var/log/dpkg.log*  && rm -f /etc/motd /usr/bin/perl5.36.0  && mkdir -p /data/old && echo one > /data/old/1 && echo two > /data/old/2"
    # /bin/sh -c rm -rf /usr/share/doc/* /usr/share/man /usr/share/info /var/log/dpkg.log*  && rm -f /etc/motd /usr/bin/perl5.36.0  && mkdir -p /data/old && echo one > /data/old/1 && echo two > /data/old/2
7:1 RUN sh "rm -rf /data && mkdir -p /data/new && echo three > /data/new/3  && rm -rf /etc/apt/apt.conf.d && mkdir /etc/apt/apt.conf.d  && echo 'APT::Install-Recommends \"false\";' > /etc/apt/apt.conf.d/99norecommends"
    # /bin/sh -c rm -rf /data && mkdir -p /data/new && echo three > /data/new/3  && rm -rf /etc/apt/apt.conf.d && mkdir /etc/apt/apt.conf.d  && echo 'APT::Install-Recommends "false";' > /etc/apt/apt.conf.d/99norecommends
10:1 RUN sh "mv /etc/issue /etc/issue.moved && ln -s issue.moved /etc/issue"
    # /bin/sh -c mv /etc/issue /etc/issue.moved && ln -s issue.moved /etc/issue
target 0
"#,
    );
}

#[test]
fn case_06_secret() {
    check(
        "06-secret",
        &[],
        r#"stage 0 - image:127.0.0.1:5000/busybox:latest @2:1
3:1 RUN sh "test \"$(cat /run/secrets/token)\" = \"s3cr3t-value\"  && sha256sum /run/secrets/token | cut -d' ' -f1 > /token.sha256" mountMountSpec { kind: Secret, target: Some("/run/secrets/token"), source: None, from: None, id: Some("token"), read_write: false, required: false, mode: None, uid: None, gid: None, env: None, sharing: None, size: None }
    # /bin/sh -c --mount=type=secret,id=token test "$(cat /run/secrets/token)" = "s3cr3t-value"  && sha256sum /run/secrets/token | cut -d' ' -f1 > /token.sha256
5:1 RUN sh "wc -c < /tmp/tok > /token.len" mountMountSpec { kind: Secret, target: Some("/tmp/tok"), source: None, from: None, id: Some("token"), read_write: false, required: true, mode: None, uid: None, gid: None, env: None, sharing: None, size: None }
    # /bin/sh -c --mount=type=secret,id=token,target=/tmp/tok,required=true wc -c < /tmp/tok > /token.len
6:1 RUN sh "test ! -e /run/secrets/token && test ! -s /tmp/tok"
    # /bin/sh -c test ! -e /run/secrets/token && test ! -s /tmp/tok
target 0
"#,
    );
}

#[test]
fn case_07_apt() {
    check(
        "07-apt",
        &[],
        r#"stage 0 - image:127.0.0.1:5000/debian:bookworm @2:1
3:1 RUN sh "apt-get update  && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends jq  && apt-get clean && rm -rf /var/lib/apt/lists/* /var/log/apt /var/log/dpkg.log /var/cache/ldconfig/aux-cache"
    # /bin/sh -c apt-get update  && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends jq  && apt-get clean && rm -rf /var/lib/apt/lists/* /var/log/apt /var/log/dpkg.log /var/cache/ldconfig/aux-cache
6:1 CMD exec ["jq", "--version"]
    # /bin/sh -c #(nop) CMD ["jq", "--version"]
target 0
"#,
    );
}

#[test]
fn case_08_https_ca() {
    check(
        "08-https-ca",
        &[],
        r#"stage 0 - image:127.0.0.1:5000/debian-py:bookworm @4:1
5:1 RUN sh "curl -fsS --max-time 30 https://pypi.org/simple/six/ -o /tmp/six.html  && grep -c 'six-' /tmp/six.html > /six-links.txt && rm /tmp/six.html"
    # /bin/sh -c curl -fsS --max-time 30 https://pypi.org/simple/six/ -o /tmp/six.html  && grep -c 'six-' /tmp/six.html > /six-links.txt && rm /tmp/six.html
7:1 RUN sh "pip download --no-deps --no-cache-dir --disable-pip-version-check six==1.16.0 -d /wheels  && ls /wheels > /wheels.txt"
    # /bin/sh -c pip download --no-deps --no-cache-dir --disable-pip-version-check six==1.16.0 -d /wheels  && ls /wheels > /wheels.txt
target 0
"#,
    );
}

#[test]
fn case_09_stages_args() {
    check(
        "09-stages-args",
        &[("GREETING", "hello")],
        r#"stage 0 base image:127.0.0.1:5000/busybox:latest @5:1
6:1 ARG ["GREETING"]
    # /bin/sh -c #(nop) ARG GREETING
7:1 RUN sh "mkdir -p /out && echo \"${GREETING} from base\" > /out/base.txt" args[GREETING=hello]
    # |1 GREETING=hello /bin/sh -c mkdir -p /out && echo "${GREETING} from base" > /out/base.txt
stage 1 middle stage0 @9:1
10:1 ARG ["GREETING"]
    # /bin/sh -c #(nop) ARG GREETING
11:1 RUN sh "echo \"${GREETING:-unset} from middle\" > /out/middle.txt && rm /out/base.txt" args[GREETING=hello]
    # |1 GREETING=hello /bin/sh -c echo "${GREETING:-unset} from middle" > /out/middle.txt && rm /out/base.txt
stage 2 - image:127.0.0.1:5000/busybox:latest @13:1
14:1 ARG ["FLAVOR"]
    # /bin/sh -c #(nop) ARG FLAVOR
15:1 COPY stage0 ["/out/base.txt"] -> /result/
    # /bin/sh -c #(nop) COPY /out/base.txt in /result/ 
16:1 COPY stage1 ["/out/"] -> /result/
    # /bin/sh -c #(nop) COPY /out/ in /result/ 
17:1 RUN sh "echo \"${FLAVOR}\" > /result/flavor.txt && cat /result/*.txt" args[FLAVOR=busybox]
    # |1 FLAVOR=busybox /bin/sh -c echo "${FLAVOR}" > /result/flavor.txt && cat /result/*.txt
18:1 ENTRYPOINT exec ["cat"]
    # /bin/sh -c #(nop) ENTRYPOINT ["cat"]
19:1 CMD exec ["/result/middle.txt"]
    # /bin/sh -c #(nop) CMD ["/result/middle.txt"]
target 2
"#,
    );
}

#[test]
fn metadata_without_build_args_uses_defaults() {
    let p = plan(&fixture("02-metadata"));
    let text = show(&p);
    assert!(text.contains(r#"ENV [("APP_HOME", "/opt/app"), ("APP_VERSION", "0.0.0"), ("GREETING", "hello world")]"#), "{text}");
    assert!(text.contains("args[VERSION=0.0.0]"), "{text}");
    // The global ARG BASE chose the image; overriding it changes the base.
    let p = plan_args(&fixture("02-metadata"), &[("BASE", "example.com/other:1")]);
    assert_eq!(
        p.stages[0].base,
        kiln_plugin_dockerfile::plan::Base::Image("example.com/other:1".into())
    );
}

#[test]
fn stages_args_without_build_args() {
    let p = plan(&fixture("09-stages-args"));
    let text = show(&p);
    // Stage 0 uses its default; stage 1 re-declares GREETING without default or global: unset.
    assert!(text.contains("7:1 RUN sh \"mkdir -p /out && echo \\\"${GREETING} from base\\\" > /out/base.txt\" args[GREETING=hi]"), "{text}");
    assert!(text.contains("11:1 RUN sh \"echo \\\"${GREETING:-unset} from middle\\\" > /out/middle.txt && rm /out/base.txt\"\n"), "{text}");
    let p = plan_args(
        &fixture("09-stages-args"),
        &[("FLAVOR", "debian"), ("REGISTRY", "r.example")],
    );
    assert_eq!(
        p.stages[0].base,
        kiln_plugin_dockerfile::plan::Base::Image("r.example/debian:latest".into())
    );
    assert!(show(&p).contains("args[FLAVOR=debian]"));
}
