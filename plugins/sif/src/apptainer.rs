//! What Apptainer adds to a SIF built from an OCI image: the definition file, the
//! `/.singularity.d` tree (environment scripts, runscript, labels, action scripts), mount-point
//! directories and links, and the JSON objects (inspect metadata, OCI config). The script texts
//! are kiln's own; they behave as Apptainer's do.

use crate::error::{Error, Result};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// The parts of an OCI image config the SIF needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageConfig {
    /// `architecture` (Go name: amd64, arm64 …).
    pub architecture: String,
    /// `created`, as written.
    pub created: Option<String>,
    /// `config.Env`.
    pub env: Vec<String>,
    /// `config.Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `config.Cmd`.
    pub cmd: Vec<String>,
    /// `config.Labels`.
    pub labels: BTreeMap<String, String>,
    /// The raw `config` object.
    pub config: Map<String, Value>,
}

fn strings(v: Option<&Value>, what: &str) -> Result<Vec<String>> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| Error::InvalidInput(format!("image config {what} holds a non-string")))
            })
            .collect(),
        Some(_) => Err(Error::InvalidInput(format!("image config {what} is not a list"))),
    }
}

/// Parse an OCI image config.
pub fn parse_config(bytes: &[u8]) -> Result<ImageConfig> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| Error::InvalidInput(format!("image config is not JSON: {e}")))?;
    let top = v
        .as_object()
        .ok_or_else(|| Error::InvalidInput("image config is not a JSON object".into()))?;
    let architecture = top
        .get("architecture")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::InvalidInput("image config has no architecture".into()))?
        .to_string();
    let created = top.get("created").and_then(Value::as_str).map(str::to_string);
    let config = match top.get("config") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(Error::InvalidInput("image config's config is not an object".into())),
    };
    let mut labels = BTreeMap::new();
    match config.get("Labels") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                let s = v
                    .as_str()
                    .ok_or_else(|| Error::InvalidInput(format!("label {k} is not a string")))?;
                labels.insert(k.clone(), s.to_string());
            }
        }
        Some(_) => return Err(Error::InvalidInput("image config Labels is not an object".into())),
    }
    Ok(ImageConfig {
        architecture,
        created,
        env: strings(config.get("Env"), "Env")?,
        entrypoint: strings(config.get("Entrypoint"), "Entrypoint")?,
        cmd: strings(config.get("Cmd"), "Cmd")?,
        labels,
        config,
    })
}

/// The definition file Apptainer records for `docker://FROM`.
pub fn deffile(from: &str) -> String {
    format!("bootstrap: docker\nfrom: {from}\n\n")
}

/// Backslash before `\`, `"`, `$` and backtick (text inside shell double quotes).
fn escape_dq(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | '"' | '$' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A shell word in single quotes.
fn single_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\"'\"'"))
}

fn is_env_name(k: &str) -> bool {
    let mut c = k.chars();
    matches!(c.next(), Some(f) if f == '_' || f.is_ascii_alphabetic()) && c.all(|x| x == '_' || x.is_ascii_alphanumeric())
}

/// `/.singularity.d/env/10-docker2singularity.sh`: the image's `Env`, with host values winning
/// except for PATH.
pub fn docker_env_script(env: &[String]) -> String {
    let mut s = String::from("#!/bin/sh\n");
    for e in env {
        let (k, v) = match e.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (e.as_str(), None),
        };
        if !is_env_name(k) {
            continue;
        }
        match v {
            None => s.push_str(&format!("export {k}=\"${{{k}:-}}\"\n")),
            Some(v) if k == "PATH" => s.push_str(&format!("export PATH=\"{}\"\n", escape_dq(v))),
            Some(v) => s.push_str(&format!("export {k}=\"${{{k}:-\"{}\"}}\"\n", escape_dq(v))),
        }
    }
    s
}

/// An argv as the runscript stores it: each element double-quoted and escaped, joined with
/// spaces, the whole single-quoted.
fn oci_value(argv: &[String]) -> String {
    let joined: Vec<String> = argv.iter().map(|a| format!("\"{}\"", escape_dq(a))).collect();
    single_quote(&joined.join(" "))
}

const RUNSCRIPT_BODY: &str = r#"
# Without evaluation (APPTAINER_NO_EVAL / SINGULARITY_NO_EVAL): OCI semantics, arguments are
# passed through untouched; they replace CMD and follow ENTRYPOINT.
if [ -n "${APPTAINER_NO_EVAL:-}${SINGULARITY_NO_EVAL:-}" ]; then
    if [ $# -eq 0 ]; then
        set -- @CMD_WORDS@
    fi
    set -- @ENTRYPOINT_WORDS@ "$@"
    if [ $# -eq 0 ]; then
        echo "the image defines no ENTRYPOINT or CMD and no command was given" >&2
        exit 1
    fi
    exec "$@"
fi

# Default: the command line is rebuilt as shell text and evaluated.
CMDLINE_ARGS=""
for arg in "$@"; do
    CMDLINE_ARGS="${CMDLINE_ARGS} \"${arg}\""
done
if [ -n "$OCI_ENTRYPOINT" ]; then
    if [ -n "$CMDLINE_ARGS" ]; then
        EXEC_ARGS="$OCI_ENTRYPOINT $CMDLINE_ARGS"
    else
        EXEC_ARGS="$OCI_ENTRYPOINT $OCI_CMD"
    fi
elif [ -n "$CMDLINE_ARGS" ]; then
    EXEC_ARGS="$CMDLINE_ARGS"
else
    EXEC_ARGS="$OCI_CMD"
fi
eval "set -- ${EXEC_ARGS}"
if [ $# -eq 0 ]; then
    echo "the image defines no ENTRYPOINT or CMD and no command was given" >&2
    exit 1
fi
exec "$@"
"#;

/// `/.singularity.d/runscript` for an image's ENTRYPOINT and CMD.
pub fn runscript(entrypoint: &[String], cmd: &[String]) -> String {
    let words = |argv: &[String]| argv.iter().map(|a| single_quote(a)).collect::<Vec<_>>().join(" ");
    let body = RUNSCRIPT_BODY
        .replace("@CMD_WORDS@", &words(cmd))
        .replace("@ENTRYPOINT_WORDS@", &words(entrypoint));
    format!(
        "#!/bin/sh\nOCI_ENTRYPOINT={}\nOCI_CMD={}\n{body}",
        oci_value(entrypoint),
        oci_value(cmd)
    )
}

/// `/.singularity.d/startscript`.
pub const STARTSCRIPT: &str = "#!/bin/sh\n# Runs when an instance starts; this image defines no start commands.\n";

/// `/.singularity.d/env/90-environment.sh`.
pub const ENVIRONMENT_SCRIPT: &str = "#!/bin/sh\n# Custom environment shell code should follow\n";

const SOURCE_ENV: &str = r#"for script in /.singularity.d/env/*.sh; do
    if [ -f "$script" ]; then
        . "$script"
    fi
done
"#;

/// Files of the `/.singularity.d` base environment: (path, mode, content).
pub fn base_files() -> Vec<(&'static str, u16, String)> {
    let action = |tail: &str| format!("#!/bin/sh\n{SOURCE_ENV}{tail}");
    vec![
        (
            "/.singularity.d/env/01-base.sh",
            0o755,
            "#!/bin/sh\n# Sourced first; the base environment sets nothing.\n".to_string(),
        ),
        ("/.singularity.d/env/90-environment.sh", 0o755, ENVIRONMENT_SCRIPT.to_string()),
        (
            "/.singularity.d/env/95-apps.sh",
            0o755,
            r#"#!/bin/sh
# SCIF apps: put the selected app's bin and lib directories first and load its environment.
APPNAME="${APPTAINER_APPNAME:-${SINGULARITY_APPNAME:-}}"
if [ -n "$APPNAME" ] && [ -d "/scif/apps/$APPNAME" ]; then
    SCIF_APPROOT="/scif/apps/$APPNAME"
    SCIF_APPDATA="/scif/data/$APPNAME"
    export SCIF_APPROOT SCIF_APPDATA
    PATH="$SCIF_APPROOT/bin:$PATH"
    LD_LIBRARY_PATH="$SCIF_APPROOT/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export PATH LD_LIBRARY_PATH
    for script in "$SCIF_APPROOT"/scif/env/*.sh; do
        if [ -f "$script" ]; then
            . "$script"
        fi
    done
fi
"#
            .to_string(),
        ),
        (
            "/.singularity.d/env/99-base.sh",
            0o755,
            r#"#!/bin/sh
# Libraries bound in by the runtime, and the shell prompt.
LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}/.singularity.d/libs"
PS1="Apptainer> "
export LD_LIBRARY_PATH PS1
"#
            .to_string(),
        ),
        (
            "/.singularity.d/env/99-runtimevars.sh",
            0o755,
            r#"#!/bin/sh
# PATH as the user asked for it at run time (--env PATH=…, APPTAINERENV_PREPEND_PATH/APPEND_PATH).
if [ -n "${SING_USER_DEFINED_PREPEND_PATH:-}" ]; then
    PATH="$SING_USER_DEFINED_PREPEND_PATH:$PATH"
fi
if [ -n "${SING_USER_DEFINED_APPEND_PATH:-}" ]; then
    PATH="$PATH:$SING_USER_DEFINED_APPEND_PATH"
fi
if [ -n "${SING_USER_DEFINED_PATH:-}" ]; then
    PATH="$SING_USER_DEFINED_PATH"
fi
unset SING_USER_DEFINED_PREPEND_PATH SING_USER_DEFINED_APPEND_PATH SING_USER_DEFINED_PATH
export PATH
"#
            .to_string(),
        ),
        ("/.singularity.d/actions/exec", 0o755, action("exec \"$@\"\n")),
        (
            "/.singularity.d/actions/run",
            0o755,
            action(
                r#"if [ -x /.singularity.d/runscript ]; then
    exec /.singularity.d/runscript "$@"
fi
echo "No runscript found in the container, running /bin/sh" >&2
exec /bin/sh "$@"
"#,
            ),
        ),
        (
            "/.singularity.d/actions/shell",
            0o755,
            action(
                r#"SHELL_BIN="${APPTAINER_SHELL:-${SINGULARITY_SHELL:-}}"
if [ -n "$SHELL_BIN" ] && [ -x "$SHELL_BIN" ]; then
    exec "$SHELL_BIN" "$@"
elif [ -x /bin/bash ]; then
    SHELL=/bin/bash
    export SHELL
    exec /bin/bash --norc "$@"
fi
SHELL=/bin/sh
export SHELL
exec /bin/sh "$@"
"#,
            ),
        ),
        (
            "/.singularity.d/actions/start",
            0o755,
            action(
                r#"if [ -x /.singularity.d/startscript ]; then
    exec /.singularity.d/startscript "$@"
fi
"#,
            ),
        ),
        (
            "/.singularity.d/actions/test",
            0o755,
            action(
                r#"if [ -x /.singularity.d/test ]; then
    exec /.singularity.d/test "$@"
fi
echo "No test script found in the container, exiting" >&2
exit 0
"#,
            ),
        ),
        ("/.singularity.d/startscript", 0o755, STARTSCRIPT.to_string()),
    ]
}

/// Directories Apptainer creates when missing: (path, mode).
pub const BASE_DIRS: &[(&str, u16)] = &[
    ("/.singularity.d", 0o755),
    ("/.singularity.d/libs", 0o755),
    ("/.singularity.d/actions", 0o755),
    ("/.singularity.d/env", 0o755),
    ("/dev", 0o755),
    ("/proc", 0o755),
    ("/root", 0o700),
    ("/var", 0o755),
    ("/var/tmp", 0o1777),
    ("/tmp", 0o1777),
    ("/etc", 0o755),
    ("/sys", 0o755),
    ("/home", 0o755),
];

/// Symbolic links created when missing: (path, target).
pub const BASE_LINKS: &[(&str, &str)] = &[
    ("/singularity", ".singularity.d/runscript"),
    ("/.run", ".singularity.d/actions/run"),
    ("/.exec", ".singularity.d/actions/exec"),
    ("/.test", ".singularity.d/actions/test"),
    ("/.shell", ".singularity.d/actions/shell"),
    ("/environment", ".singularity.d/env/90-environment.sh"),
];

/// Inputs to the labels Apptainer records.
#[derive(Debug, Clone)]
pub struct LabelInputs<'a> {
    /// The image's own labels (they win over build labels).
    pub image: &'a BTreeMap<String, String>,
    /// Go architecture name.
    pub arch: &'a str,
    /// Build time, Unix seconds.
    pub time: i64,
    /// The `from:` reference.
    pub from: &'a str,
    /// The image config's `created`, if any.
    pub created: Option<&'a str>,
    /// The manifest digest.
    pub digest: &'a str,
}

/// The labels of `/.singularity.d/labels.json` and the inspect metadata.
pub fn labels(i: &LabelInputs) -> BTreeMap<String, String> {
    let mut l = BTreeMap::new();
    let mut set = |k: &str, v: &str| {
        l.insert(k.to_string(), v.to_string());
    };
    set("org.label-schema.schema-version", "1.0");
    set("org.label-schema.build-arch", i.arch);
    set("org.label-schema.build-date", &crate::civil::label_date(i.time));
    set("org.label-schema.usage.singularity.deffile.bootstrap", "docker");
    set("org.label-schema.usage.singularity.deffile.from", i.from);
    set(
        "org.opencontainers.image.created",
        i.created
            .map(str::to_string)
            .unwrap_or_else(|| crate::civil::rfc3339(i.time))
            .as_str(),
    );
    set("org.opencontainers.image.architecture", i.arch);
    set("org.opencontainers.image.base.name", i.from);
    if !i.digest.is_empty() {
        set("org.opencontainers.image.base.digest", i.digest);
    }
    for (k, v) in i.image {
        l.insert(k.clone(), v.clone());
    }
    l
}

/// `labels.json`: a tab-indented JSON object.
pub fn labels_json(labels: &BTreeMap<String, String>) -> String {
    use serde::Serialize;
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, serde_json::ser::PrettyFormatter::with_indent(b"\t"));
    labels.serialize(&mut ser).expect("a string map serializes");
    String::from_utf8(out).expect("JSON is UTF-8")
}

/// The `inspect-metadata.json` object (`apptainer inspect --all --json`).
pub fn inspect_metadata(
    deffile: &str,
    environment: &[(&str, &str)],
    labels: &BTreeMap<String, String>,
    runscript: &str,
    startscript: &str,
) -> String {
    let env: Map<String, Value> = environment
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect();
    json!({
        "data": {
            "attributes": {
                "deffile": deffile,
                "environment": env,
                "labels": labels,
                "runscript": runscript,
                "startscript": startscript,
            }
        },
        "type": "container",
    })
    .to_string()
}

/// `oci-config.json`: the image config's `config` with the OCI Go struct's field order, empty
/// fields left out.
pub fn oci_config_json(config: &Map<String, Value>) -> String {
    const FIELDS: [&str; 10] = [
        "User",
        "ExposedPorts",
        "Env",
        "Entrypoint",
        "Cmd",
        "Volumes",
        "WorkingDir",
        "Labels",
        "StopSignal",
        "ArgsEscaped",
    ];
    let mut parts = Vec::new();
    for f in FIELDS {
        let Some(v) = config.get(f) else { continue };
        let empty = match v {
            Value::Null => true,
            Value::String(s) => s.is_empty(),
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
            Value::Bool(b) => !b,
            Value::Number(_) => false,
        };
        if !empty {
            parts.push(format!("{}:{}", Value::String(f.to_string()), v));
        }
    }
    format!("{{{}}}", parts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn sh(script: &str, args: &[&str], env: &[(&str, &str)]) -> String {
        let mut c = Command::new("/bin/sh");
        c.arg("-c")
            .arg(script)
            .arg("sh")
            .args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin");
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn env_script_quotes_and_keeps_host_values() {
        let env: Vec<String> = [
            "PATH=/opt/$x bin:/usr/bin:/bin",
            "TRICKY=a \"q\" $HOME `id` \\ 'single'",
            "EMPTY=",
            "NOVALUE",
            "HOSTWINS=image",
            "1BAD=x",
            "BAD-NAME=x",
            "EQ=a=b",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let s = docker_env_script(&env);
        assert!(s.starts_with("#!/bin/sh\nexport PATH=\"/opt/\\$x bin:/usr/bin:/bin\"\n"), "{s}");
        assert!(!s.contains("1BAD") && !s.contains("BAD-NAME"), "{s}");
        assert!(s.contains("export NOVALUE=\"${NOVALUE:-}\"\n"), "{s}");
        let probe =
            format!("{s}\nprintf '%s|' \"$PATH\" \"$TRICKY\" \"$EMPTY\" \"$NOVALUE\" \"$HOSTWINS\" \"$EQ\"; env | grep -c '^EMPTY=$'");
        let out = sh(&probe, &[], &[("HOSTWINS", "host"), ("PATH", "/host/bin")]);
        assert_eq!(out, "/opt/$x bin:/usr/bin:/bin|a \"q\" $HOME `id` \\ 'single'|||host|a=b|1\n");
    }

    fn run(entrypoint: &[&str], cmd: &[&str], args: &[&str], no_eval: bool) -> String {
        let ep: Vec<String> = entrypoint.iter().map(|s| s.to_string()).collect();
        let cmd: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        let script = runscript(&ep, &cmd);
        let dir = crate::test_util::Scratch::new("runscript");
        let path = dir.join("runscript");
        std::fs::write(&path, &script).unwrap();
        let mut c = Command::new("/bin/sh");
        c.arg(&path)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("V", "expanded");
        if no_eval {
            c.env("APPTAINER_NO_EVAL", "1");
        }
        let out = c.output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }

    #[test]
    fn runscript_picks_entrypoint_cmd_and_args() {
        let p = &["printf", "[%s]"];
        assert_eq!(run(p, &["a b", "it's", "$V"], &[], false), "[a b][it's][$V]");
        assert_eq!(run(p, &["x"], &["1 2", "3"], false), "[1 2][3]");
        assert_eq!(run(&[], &["printf", "<%s>", "c d"], &[], false), "<c d>");
        assert_eq!(run(&[], &["printf", "<%s>", "c"], &["printf", "{%s}", "e f"], false), "{e f}");
        // The default mode evaluates runtime arguments (as Apptainer does); NO_EVAL does not.
        assert_eq!(run(p, &[], &["$V"], false), "[expanded]");
        assert_eq!(run(p, &[], &["$V", "it's"], true), "[$V][it's]");
        assert_eq!(run(p, &["q'uote", "`x`"], &[], true), "[q'uote][`x`]");
        assert!(run(&[], &[], &[], true).contains("no command"));
        assert!(run(&[], &[], &[], false).contains("no command"));
        let s = runscript(&["/bin/echo".into()], &["it's".into()]);
        assert!(
            s.starts_with("#!/bin/sh\nOCI_ENTRYPOINT='\"/bin/echo\"'\nOCI_CMD='\"it'\"'\"'s\"'\n"),
            "{s}"
        );
        assert!(runscript(&[], &[]).contains("OCI_ENTRYPOINT=''\nOCI_CMD=''\n"));
    }

    #[test]
    fn json_objects() {
        let cfg = parse_config(
            br#"{"architecture":"arm64","created":"2024-01-02T03:04:05Z","config":{"Cmd":["sh"],"Env":["PATH=/bin"],"Labels":{"b":"2","a":"1"},"WorkingDir":"","Volumes":{"/data":{}},"ArgsEscaped":false,"User":"1000"},"rootfs":{"type":"layers","diff_ids":[]}}"#,
        )
        .unwrap();
        assert_eq!(cfg.architecture, "arm64");
        assert_eq!(
            oci_config_json(&cfg.config),
            r#"{"User":"1000","Env":["PATH=/bin"],"Cmd":["sh"],"Volumes":{"/data":{}},"Labels":{"a":"1","b":"2"}}"#
        );
        let labels = labels(&LabelInputs {
            image: &cfg.labels,
            arch: "arm64",
            time: 0,
            from: "busybox:1",
            created: cfg.created.as_deref(),
            digest: "sha256:ab",
        });
        assert_eq!(labels["a"], "1");
        assert_eq!(labels["org.opencontainers.image.created"], "2024-01-02T03:04:05Z");
        assert_eq!(labels["org.label-schema.build-date"], "Thursday_1_January_1970_00:0:0_UTC");
        let lj = labels_json(&labels);
        assert!(lj.starts_with("{\n\t\"a\": \"1\",\n\t\"b\": \"2\",\n"), "{lj}");
        let parsed: Value = serde_json::from_str(&lj).unwrap();
        assert_eq!(parsed["org.label-schema.usage.singularity.deffile.from"], "busybox:1");
        let meta = inspect_metadata(
            &deffile("busybox:1"),
            &[("/.singularity.d/env/90-environment.sh", ENVIRONMENT_SCRIPT)],
            &labels,
            "rs",
            STARTSCRIPT,
        );
        let v: Value = serde_json::from_str(&meta).unwrap();
        assert_eq!(v["type"], "container");
        assert_eq!(v["data"]["attributes"]["deffile"], "bootstrap: docker\nfrom: busybox:1\n\n");
        assert_eq!(v["data"]["attributes"]["labels"]["b"], "2");
        assert!(parse_config(br#"{"config":{}}"#).is_err());
        assert!(parse_config(br#"{"architecture":"amd64","config":{"Env":"x"}}"#).is_err());
    }
}
