//! The buildah-script frontend, natively: scripts in, plans (or file:line:column errors) out.

use kiln_plugin_buildah_script::script::{Options, plan};
use kiln_sdk::frontend::kiln::plugin::plan::{
    Base, BuildPlan, Command, CopyFrom, CopySource, Layering, MountType, Severity, StepKind,
};

fn opts(args: &[(&str, &str)]) -> Options {
    Options {
        file: "build.sh".into(),
        build_args: args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn ok(src: &str) -> BuildPlan {
    plan(src, &opts(&[])).unwrap_or_else(|e| panic!("{e:?}"))
}

/// The first error as `line:column: message`.
fn error(src: &str) -> String {
    let e = plan(src, &opts(&[])).err().expect("an error");
    let d = &e[0];
    assert!(matches!(d.severity, Severity::Error));
    let l = d.location.as_ref().expect("a location");
    assert_eq!(l.file, "build.sh");
    format!("{}:{}: {}", l.line, l.column, d.message)
}

const SCRATCH: &str = r#"# buildah-style script
container=$(buildah from scratch)
buildah copy $container ./runecho.sh /usr/bin
buildah config --cmd /usr/bin/runecho.sh $container
buildah config --created-by "conformance" $container
buildah config --author "conformance@example.invalid" --label name=scratch-runecho $container
buildah commit $container scratch-runecho
buildah rm $container
"#;

#[test]
fn the_scratch_tutorial_becomes_one_committed_stage() {
    let p = ok(SCRATCH);
    assert_eq!(p.stages.len(), 1);
    assert_eq!(p.target, 0);
    assert_eq!(p.names, vec!["scratch-runecho".to_string()]);
    let s = &p.stages[0];
    assert!(matches!(s.base, Base::Scratch));
    assert!(matches!(s.layering, Layering::OnePerStage));
    assert_eq!(s.name.as_deref(), Some("working-container"));
    assert_eq!(s.steps.len(), 4);
    let StepKind::Copy(c) = &s.steps[0].kind else {
        panic!("copy expected")
    };
    assert!(matches!(c.from, CopyFrom::Context));
    assert!(matches!(&c.sources[..], [CopySource::Path(p)] if p == "./runecho.sh"));
    assert_eq!(c.dest, "/usr/bin");
    assert_eq!(s.steps[0].location.line, 3);
    let StepKind::Config(o) = &s.steps[3].kind else {
        panic!("config expected")
    };
    assert_eq!(
        o,
        &vec![
            (
                "author".to_string(),
                "conformance@example.invalid".to_string()
            ),
            ("label".to_string(), "name=scratch-runecho".to_string()),
        ]
    );
}

#[test]
fn run_keeps_its_command_words_and_flags() {
    let p = ok(r#"c=$(kiln from --name tool 127.0.0.1:5000/busybox:latest)
buildah run --env A=1 -e B="two words" --user 65534 --workingdir /tmp --network none $c -- sh -c 'echo "$A" > /x'
buildah config --entrypoint '["/opt/tool/run"]' --cmd --help -p 8080 $c
buildah commit --squash $c
"#);
    let s = &p.stages[0];
    assert_eq!(s.name.as_deref(), Some("tool"));
    assert!(matches!(&s.base, Base::Image(r) if r == "127.0.0.1:5000/busybox:latest"));
    assert!(matches!(s.layering, Layering::Squashed));
    assert!(p.names.is_empty());
    let StepKind::Run(r) = &s.steps[0].kind else {
        panic!("run expected")
    };
    assert!(matches!(&r.command, Command::Exec(v) if v == &["sh", "-c", "echo \"$A\" > /x"]));
    assert_eq!(
        r.env,
        vec![("A".into(), "1".into()), ("B".into(), "two words".into())]
    );
    assert_eq!(r.user.as_deref(), Some("65534"));
    assert_eq!(r.workdir.as_deref(), Some("/tmp"));
    assert_eq!(r.network.as_deref(), Some("none"));
    let StepKind::Config(o) = &s.steps[1].kind else {
        panic!("config expected")
    };
    assert_eq!(o[1], ("cmd".to_string(), "--help".to_string()));
    assert_eq!(o[2], ("port".to_string(), "8080".to_string()));
}

#[test]
fn default_names_follow_buildah_and_stay_unique() {
    let p = ok(
        "a=$(buildah from docker://127.0.0.1:5000/lib/busybox:1.36)\nb=$(buildah from busybox@sha256:00)\nbuildah copy --from $a $b x /\nbuildah commit $b out\n",
    );
    assert_eq!(
        p.stages[0].name.as_deref(),
        Some("busybox-working-container")
    );
    assert_eq!(
        p.stages[1].name.as_deref(),
        Some("busybox-working-container-1")
    );
    assert_eq!(p.target, 1);
    let StepKind::Copy(c) = &p.stages[1].steps[0].kind else {
        panic!()
    };
    assert!(matches!(c.from, CopyFrom::Stage(0)));
}

#[test]
fn a_bare_from_is_referenced_by_its_printed_name() {
    let p = ok(
        "buildah from scratch\nbuildah config --label a=b working-container\nbuildah commit working-container img\n",
    );
    assert_eq!(p.stages[0].steps.len(), 1);
}

#[test]
fn variables_come_from_build_args_and_assignments() {
    let src = "EMPTY=\nBASE=${BASE:-scratch}\nc=$(buildah from \"$BASE\")\nMSG=\"hello   world\"\nbuildah run $c -- echo $MSG \"$MSG\" ${UNSET:+x} $EMPTY\nexport T=${TAG-latest}\nbuildah commit $c name:$T\n";
    let p = plan(src, &opts(&[("BASE", "127.0.0.1:5000/busybox")])).unwrap();
    assert!(matches!(&p.stages[0].base, Base::Image(r) if r == "127.0.0.1:5000/busybox"));
    let StepKind::Run(r) = &p.stages[0].steps[0].kind else {
        panic!()
    };
    // Unquoted, the value splits into fields; quoted it stays one; an empty unquoted word goes.
    assert!(
        matches!(&r.command, Command::Exec(v) if v == &["echo", "hello", "world", "hello   world"])
    );
    assert_eq!(p.names, vec!["name:latest".to_string()]);
    let p = ok(src);
    assert!(matches!(p.stages[0].base, Base::Scratch));
}

#[test]
fn quoting_continuations_and_comments() {
    let p = ok(
        "c=$(buildah from scratch) # a comment\nbuildah config \\\n  --env 'A=$NOT' \\\n  --env B=\\$lit \\\n  --label \"q=a \\\"b\\\" c\" $c\nbuildah commit $c x; buildah rm $c\n",
    );
    let StepKind::Config(o) = &p.stages[0].steps[0].kind else {
        panic!()
    };
    assert_eq!(o[0].1, "A=$NOT");
    assert_eq!(o[1].1, "B=$lit");
    assert_eq!(o[2].1, "q=a \"b\" c");
    assert_eq!(p.stages[0].steps[0].location.line, 2);
}

#[test]
fn add_fetches_urls_and_run_mounts_context_paths() {
    let p = ok(
        "c=$(buildah from scratch)\nbuildah add --chown 1:2 --chmod 600 $c https://example.invalid/f ./a.tar.gz /opt/\nbuildah run -v ./src:/src:ro --mount type=tmpfs,target=/t $c -- ls\nbuildah commit $c x\n",
    );
    let StepKind::Copy(c) = &p.stages[0].steps[0].kind else {
        panic!()
    };
    assert!(c.is_add);
    assert!(matches!(&c.sources[0], CopySource::Url(_)));
    assert_eq!(c.chown.as_deref(), Some("1:2"));
    assert_eq!(c.chmod.as_deref(), Some("600"));
    let StepKind::Run(r) = &p.stages[0].steps[1].kind else {
        panic!()
    };
    assert!(matches!(r.mounts[0].kind, MountType::Bind));
    assert!(!r.mounts[0].read_write);
    assert!(matches!(r.mounts[1].kind, MountType::Tmpfs));
}

#[test]
fn errors_name_line_and_column() {
    assert_eq!(
        error("c=$(buildah from scratch)\nbuildah frobnicate $c\n"),
        "2:9: buildah frobnicate is not supported in a build script (from, run, copy, add, config, commit and rm are)"
    );
    assert!(
        error("c=$(buildah from scratch)\nbuildah copy $c /etc/passwd /\n")
            .starts_with("2:17: \"/etc/passwd\" is an absolute host path")
    );
    assert!(
        error("c=$(buildah from scratch)\nbuildah config --nope x $c\n")
            .starts_with("2:16: buildah config has no flag --nope")
    );
    assert!(error("buildah run $other -- true\n").starts_with("1:13: variable other is not set"));
    assert!(error("buildah run ghost -- true\n").starts_with("1:13: no container named \"ghost\""));
    assert!(
        error("c=$(buildah from scratch)\necho 'x\n")
            .starts_with("2:6: a single quote is not closed")
    );
    let e = error("c=$(buildah from scratch)\nbuildah run $c -- ls | wc\n");
    assert!(e.starts_with("2:22: pipes"), "{e}");
    assert!(
        error("c=$(buildah from scratch)\ncurl x\n")
            .starts_with("2:1: \"curl\" is not a buildah verb")
    );
    assert!(
        error("c=$(buildah from scratch)\nbuildah config --label a=b $c\n")
            .contains("commits no container")
    );
    assert!(error("x=$(buildah run a -- ls)\n").starts_with("1:13: only `buildah from`"));
    assert!(error("c=$(buildah from scratch\n").contains("not closed"));
    assert!(error("buildah run $1 -- ls\n").starts_with("1:13: `$1`"));
}

#[test]
fn commit_to_a_transport_warns_and_format_flags_are_the_builds() {
    let p =
        ok("c=$(buildah from scratch)\nbuildah commit --format docker $c oci-archive:/tmp/x.tar\n");
    assert!(p.names.is_empty());
    assert_eq!(p.warnings.len(), 2);
    assert!(
        p.warnings
            .iter()
            .all(|w| matches!(w.severity, Severity::Warning))
    );
}

#[test]
fn a_container_changed_after_its_commit_gets_a_stage_on_top() {
    let p = ok(
        "c=$(buildah from scratch)\nbuildah copy $c a /\nbuildah commit $c first\nbuildah run $c -- true\nbuildah commit $c second\n",
    );
    assert_eq!(p.stages.len(), 2);
    assert!(matches!(p.stages[1].base, Base::Scratch));
    // As buildah: the second commit holds every change since `from` in one layer.
    assert_eq!(p.stages[1].steps.len(), 2);
    assert!(matches!(p.stages[1].layering, Layering::OnePerStage));
    assert_eq!(p.target, 1);
    assert_eq!(p.names, vec!["second".to_string()]);
    assert_eq!(p.warnings.len(), 1);
    assert!(p.warnings[0].message.contains("\"first\" is not written"));
}
