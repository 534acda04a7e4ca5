//! Plan-level behaviour: substitution, ARG scoping, ONBUILD inlining, stages, mounts, history
//! lines and diagnostics.

mod common;
use common::*;
use kiln_plugin_dockerfile::builder::Options;
use kiln_plugin_dockerfile::diag::Severity;
use kiln_plugin_dockerfile::plan::*;

fn steps(p: &BuildPlan, stage: usize) -> String {
    show_steps(&p.stages[stage], false)
}

fn history(p: &BuildPlan, stage: usize) -> Vec<String> {
    p.stages[stage]
        .steps
        .iter()
        .map(|s| s.created_by.clone())
        .collect()
}

fn run_step(p: &BuildPlan, stage: usize, i: usize) -> RunStep {
    match &p.stages[stage].steps[i].kind {
        StepKind::Run(r) => r.clone(),
        k => panic!("not a RUN: {k:?}"),
    }
}

fn mounts(src_mounts: &str) -> Vec<RunMount> {
    let p = plan(&format!(
        "FROM scratch AS s\nFROM {BUSYBOX}\nRUN {src_mounts} true\n"
    ));
    run_step(&p, 1, 0).mounts
}

fn mount_err(src_mounts: &str) -> String {
    let e = errors(&format!("FROM {BUSYBOX}\nRUN {src_mounts} true\n"));
    assert_eq!(e.len(), 1, "{e:?}");
    e[0].clone()
}

#[test]
fn lowercase_and_mixed_case_instructions() {
    let p =
        plan("from scratch As Base\nRun echo hi\ncopy a /b\nfrom base\nworkdir app\nCmd [\"x\"]\n");
    assert_eq!(p.stages[0].name.as_deref(), Some("base"));
    assert_eq!(p.stages[1].base, Base::Stage(0));
    assert_eq!(
        steps(&p, 0),
        "2:1 RUN sh \"echo hi\"\n3:1 COPY ctx [\"a\"] -> /b\n"
    );
    assert_eq!(steps(&p, 1), "5:1 WORKDIR /app\n6:1 CMD exec [\"x\"]\n");
    // History keeps the instruction as written.
    assert_eq!(history(&p, 0)[0], "/bin/sh -c echo hi");
    assert_eq!(history(&p, 1)[0], "/bin/sh -c #(nop) workdir app");
}

#[test]
fn backtick_escape_file() {
    let src = "# escape=`\n\nFROM scratch\nENV WIN=C:\\tools\\bin `\n    DOLLAR=`$HOME\nRUN dir C:\\ `\n  && echo done\nCOPY a\\b.txt C:\\dest\\\n";
    let p = plan(src);
    assert_eq!(
        steps(&p, 0),
        "4:1 ENV [(\"WIN\", \"C:\\\\tools\\\\bin\"), (\"DOLLAR\", \"$HOME\")]\n\
         6:1 RUN sh \"dir C:\\\\   && echo done\"\n\
         8:1 COPY ctx [\"a\\\\b.txt\"] -> C:\\dest\\\n"
    );
}

#[test]
fn run_heredoc_forms() {
    let src = "FROM scratch\nARG V=1\nRUN <<EOF\necho $V\necho two\nEOF\nRUN <<-EOT bash\n\tset -e\n\techo hi\n\tEOT\nRUN <<EOF\n#!/usr/bin/env python3\nprint(1)\nEOF\n";
    let p = plan(src);
    assert_eq!(
        run_step(&p, 0, 1).command,
        Command::Shell("echo $V\necho two\n".into())
    );
    assert_eq!(
        run_step(&p, 0, 2).command,
        Command::Shell("<<-EOT bash\n\tset -e\n\techo hi\nEOT".into())
    );
    assert_eq!(
        run_step(&p, 0, 3).command,
        Command::Shell(
            "'/usr/bin/env' 'python3' /dev/stdin <<'EOF'\n#!/usr/bin/env python3\nprint(1)\nEOF"
                .into()
        )
    );
    assert_eq!(
        run_step(&p, 0, 1).build_args,
        vec![("V".to_string(), "1".to_string())]
    );
    // History: the line and the heredoc as written.
    assert_eq!(
        history(&p, 0)[1],
        "|1 V=1 /bin/sh -c <<EOF\necho $V\necho two\nEOF"
    );
    assert_eq!(
        history(&p, 0)[2],
        "|1 V=1 /bin/sh -c <<-EOT bash\n\tset -e\n\techo hi\n\tEOT"
    );
}

#[test]
fn copy_heredocs_expand_unless_quoted() {
    let src = "FROM scratch\nARG NAME=world\nENV GREETING=hello\nCOPY <<EOF <<'RAW' <<-TABS /etc/\n$GREETING ${NAME}! \\$HOME \"q\"\nEOF\n$GREETING stays\nRAW\n\tindented $NAME\n\tTABS\nCOPY <<\"F\" /f\nx\nF\n";
    let p = plan(src);
    assert_eq!(
        steps(&p, 0),
        "2:1 ARG [\"NAME\"]\n\
         3:1 ENV [(\"GREETING\", \"hello\")]\n\
         4:1 COPY ctx [\"inline:EOF=\\\"hello world! $HOME \\\\\\\"q\\\\\\\"\\\\n\\\"\", \"inline:RAW=\\\"$GREETING stays\\\\n\\\"\", \"inline:TABS=\\\"indented world\\\\n\\\"\"] -> /etc/\n\
         11:1 COPY ctx [\"inline:F=\\\"x\\\\n\\\"\"] -> /f\n"
    );
    assert_eq!(
        history(&p, 0)[2],
        "/bin/sh -c #(nop) COPY <<EOF <<RAW <<TABS in /etc/ "
    );
    // One heredoc to a file destination is fine; several need a directory.
    let e = errors("FROM scratch\nCOPY <<A <<B /file\na\nA\nb\nB\n");
    assert!(e[0].contains("needs a directory destination"), "{e:?}");
}

#[test]
fn unterminated_heredoc_is_an_error() {
    let e = errors("FROM scratch\nRUN <<EOF cat\nhello\n");
    assert_eq!(
        e,
        [
            "Dockerfile:2:1: error: unterminated heredoc <<EOF: no line \"EOF\" closes it before the end of the file"
        ]
    );
}

#[test]
fn env_substitution_edge_cases() {
    let src = "FROM nopath\n\
               ENV abc=hello\n\
               ENV abc=bye def=$abc\n\
               ENV ghi=$abc\n\
               ENV a='$abc' b=\"$abc\" c=\\$abc d=${abc:+set} e=${nope:-dflt} f=${nope+x}${abc+y} g=x${abc}y\n\
               ENV LEGACY value with  spaces $abc\n\
               ENV P=${PATH}\n\
               ENV file=archive.tar.gz\n\
               ENV stem=${file%%.*} ext=${file##*.}\n\
               LABEL \"my key\"=\"$abc value\" ${abc}=k\n";
    let p = plan(src);
    assert_eq!(
        steps(&p, 0),
        format!(
            "2:1 ENV [(\"abc\", \"hello\")]\n\
             3:1 ENV [(\"abc\", \"bye\"), (\"def\", \"hello\")]\n\
             4:1 ENV [(\"ghi\", \"bye\")]\n\
             5:1 ENV [(\"a\", \"$abc\"), (\"b\", \"bye\"), (\"c\", \"$abc\"), (\"d\", \"set\"), (\"e\", \"dflt\"), (\"f\", \"y\"), (\"g\", \"xbyey\")]\n\
             6:1 ENV [(\"LEGACY\", \"value with  spaces bye\")]\n\
             7:1 ENV [(\"P\", \"{STD_PATH}\")]\n\
             8:1 ENV [(\"file\", \"archive.tar.gz\")]\n\
             9:1 ENV [(\"stem\", \"archive\"), (\"ext\", \"gz\")]\n\
             10:1 LABEL [(\"my key\", \"bye value\"), (\"bye\", \"k\")]\n"
        )
    );
    // Substitution errors point at the word.
    let e = errors("FROM scratch\nENV A=${B:?required}\n");
    assert_eq!(e, ["Dockerfile:2:7: error: ENV: B: required"]);
    let e = errors("FROM scratch\nWORKDIR ${A\n");
    assert_eq!(e, ["Dockerfile:2:9: error: WORKDIR: missing '}' after ${A"]);
}

#[test]
fn run_commands_are_not_substituted() {
    let p = plan(
        "FROM scratch\nARG A=1\nENV B=2\nRUN echo $A ${B} '$C'\nCMD echo $B\nENTRYPOINT [\"$B\"]\n",
    );
    assert_eq!(
        run_step(&p, 0, 2).command,
        Command::Shell("echo $A ${B} '$C'".into())
    );
    assert_eq!(steps(&p, 0).lines().nth(3), Some("5:1 CMD sh \"echo $B\""));
    assert_eq!(
        steps(&p, 0).lines().nth(4),
        Some("6:1 ENTRYPOINT exec [\"$B\"]")
    );
}

#[test]
fn arg_scoping() {
    let src = "ARG BASE=scratch\n\
               ARG GLOBAL=g\n\
               ARG OVERRIDDEN=default\n\
               FROM $BASE AS one\n\
               ENV SEEN_GLOBAL=\"${GLOBAL:-not visible}\"\n\
               ARG GLOBAL\n\
               ARG OVERRIDDEN\n\
               ARG LOCAL=l\n\
               ENV G=$GLOBAL O=$OVERRIDDEN L=$LOCAL\n\
               FROM one\n\
               ENV L2=\"${LOCAL:-gone}\"\n\
               ARG LOCAL\n\
               ENV L3=\"${LOCAL:-unset}\"\n\
               ARG GLOBAL=stage-default\n\
               ENV G2=$GLOBAL\n";
    let p = plan_args(src, &[("OVERRIDDEN", "cli")]);
    assert_eq!(p.stages[0].base, Base::Scratch);
    assert_eq!(
        steps(&p, 0),
        "5:1 ENV [(\"SEEN_GLOBAL\", \"not visible\")]\n\
         6:1 ARG [\"GLOBAL\"]\n\
         7:1 ARG [\"OVERRIDDEN\"]\n\
         8:1 ARG [\"LOCAL\"]\n\
         9:1 ENV [(\"G\", \"g\"), (\"O\", \"cli\"), (\"L\", \"l\")]\n"
    );
    assert_eq!(
        steps(&p, 1),
        "11:1 ENV [(\"L2\", \"gone\")]\n\
         12:1 ARG [\"LOCAL\"]\n\
         13:1 ENV [(\"L3\", \"unset\")]\n\
         14:1 ARG [\"GLOBAL\"]\n\
         15:1 ENV [(\"G2\", \"stage-default\")]\n"
    );
    // A --build-arg beats a stage default; a global default can use earlier global ARGs.
    let p = plan_args(
        "ARG R=reg\nARG IMG=$R/app\nFROM $IMG\nARG X=dflt\nENV X2=$X\n",
        &[("X", "cli")],
    );
    assert_eq!(p.stages[0].base, Base::Image("reg/app".into()));
    assert_eq!(
        steps(&p, 0).lines().nth(1),
        Some("5:1 ENV [(\"X2\", \"cli\")]")
    );
    // ARGs of a stage are not usable in later FROM lines.
    let p = plan("FROM scratch\nARG IMG=busybox\nFROM ${IMG:-fallback}\n");
    assert_eq!(p.stages[1].base, Base::Image("fallback".into()));
}

#[test]
fn build_args_reach_run_but_env_wins() {
    let src = "FROM scratch\nARG A=1\nARG B\nARG C=3\nENV C=env\nRUN true\n";
    let p = plan_args(
        src,
        &[
            ("B", "two"),
            ("HTTP_PROXY", "http://proxy:3128"),
            ("no_proxy", "localhost"),
        ],
    );
    let r = run_step(&p, 0, 4);
    // Undeclared proxy args are not the step's (the executor hands them to every RUN, outside
    // its cache key).
    assert_eq!(
        r.build_args,
        vec![
            ("A".to_string(), "1".to_string()),
            ("B".to_string(), "two".to_string()),
        ]
    );
    // Never persisted: no ENV step, and the history leaves proxies out of RUN lines.
    assert!(p.stages[0].steps.iter().all(|s| !matches!(&s.kind, StepKind::Env(v) if v.iter().any(|(k, _)| k.contains("roxy") || k.contains("PROXY")))));
    assert_eq!(history(&p, 0)[4], "|3 A=1 B=two C=env /bin/sh -c true");
    assert_eq!(
        history(&p, 0)[0],
        "/bin/sh -c #(nop) ARG A HTTP_PROXY no_proxy"
    );
    assert_eq!(
        history(&p, 0)[1],
        "/bin/sh -c #(nop) ARG A B HTTP_PROXY no_proxy"
    );
    // A declared proxy ARG is an ordinary build arg: the RUN's, and in its history line (as the
    // Dockerfile reference says and buildah writes).
    let p = plan_args(
        "FROM scratch\nARG HTTPS_PROXY\nRUN true\n",
        &[("HTTPS_PROXY", "http://p")],
    );
    assert_eq!(
        run_step(&p, 0, 1).build_args,
        vec![("HTTPS_PROXY".to_string(), "http://p".to_string())]
    );
    assert_eq!(history(&p, 0)[1], "|1 HTTPS_PROXY=http://p /bin/sh -c true");
    // No proxies and no ARGs: nothing.
    let p = plan("FROM scratch\nRUN true\n");
    assert!(run_step(&p, 0, 0).build_args.is_empty());
}

#[test]
fn automatic_platform_args() {
    let src = "FROM --platform=$BUILDPLATFORM scratch AS build\nARG TARGETARCH\nARG TARGETOS\nENV T=$TARGETOS-$TARGETARCH U=${BUILDARCH:-undeclared}\n\
               FROM --platform=linux/arm64/v8 app-base\n";
    let o = Options {
        platform: "linux/riscv64".into(),
        ..Default::default()
    };
    let mut images = Images::default();
    let p = plan_with(src, &o, &mut images).unwrap();
    assert_eq!(p.stages[0].platform.as_deref(), Some("linux/riscv64"));
    assert_eq!(
        steps(&p, 0).lines().nth(2),
        Some("4:1 ENV [(\"T\", \"linux-riscv64\"), (\"U\", \"undeclared\")]")
    );
    assert_eq!(p.stages[1].platform.as_deref(), Some("linux/arm64/v8"));
    assert_eq!(
        images.calls,
        vec![("app-base".to_string(), "linux/arm64/v8".to_string())]
    );
}

#[test]
fn build_platform_comes_from_its_build_arg() {
    let src = "FROM --platform=$BUILDPLATFORM scratch\nARG BUILDARCH\nARG TARGETARCH\nARG TARGETVARIANT\nENV B=$BUILDARCH T=$TARGETARCH V=$TARGETVARIANT\n";
    let o = Options {
        platform: "linux/arm/v7".into(),
        build_args: vec![("BUILDPLATFORM".into(), "linux/amd64".into())],
        ..Default::default()
    };
    let mut images = Images::default();
    let p = plan_with(src, &o, &mut images).unwrap();
    assert_eq!(p.stages[0].platform.as_deref(), Some("linux/amd64"));
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    assert_eq!(
        steps(&p, 0).lines().nth(3),
        Some("5:1 ENV [(\"B\", \"amd64\"), (\"T\", \"arm\"), (\"V\", \"v7\")]")
    );
}

#[test]
fn base_image_config_feeds_env_and_workdir() {
    let mut images = Images::default();
    let src = "FROM app-base\nENV P2=$PATH:/x A2=$APP\nWORKDIR sub\nFROM scratch\nENV P=$PATH\nWORKDIR rel\nFROM nopath\nENV P=$PATH\nFROM app-base AS again\n";
    let p = plan_with(src, &opts(&[]), &mut images).unwrap();
    let s0 = steps(&p, 0);
    assert!(
        s0.contains("ENV [(\"P2\", \"/usr/bin:/bin:/x\"), (\"A2\", \"/srv/app\")]"),
        "{s0}"
    );
    assert!(s0.contains("WORKDIR /srv/sub"), "{s0}");
    assert_eq!(
        steps(&p, 1),
        format!("5:1 ENV [(\"P\", \"{STD_PATH}\")]\n6:1 WORKDIR /rel\n")
    );
    assert_eq!(steps(&p, 2), format!("8:1 ENV [(\"P\", \"{STD_PATH}\")]\n"));
    // Only real images are asked for, each once.
    assert_eq!(
        images.calls,
        vec![
            ("app-base".to_string(), "linux/amd64".to_string()),
            ("nopath".to_string(), "linux/amd64".to_string())
        ]
    );
}

#[test]
fn unknown_base_config_is_a_warning() {
    let p = plan("FROM example.com/unknown:1\nENV A=${HOME:-nohome}\n");
    assert_eq!(p.warnings.len(), 1);
    assert_eq!(p.warnings[0].severity, Severity::Warning);
    assert!(
        p.warnings[0]
            .message
            .contains("could not read the config of base image example.com/unknown:1")
    );
    assert_eq!(steps(&p, 0), "2:1 ENV [(\"A\", \"nohome\")]\n");
}

#[test]
fn onbuild_triggers_of_base_images_are_inlined() {
    let p = plan("# comment\nFROM app-base AS child\nRUN echo after\nONBUILD RUN echo mine\n");
    assert_eq!(
        steps(&p, 0),
        "2:1 COPY ctx [\".\"] -> /srv/app/\n\
         2:1 RUN sh \"make -C $APP\"\n\
         3:1 RUN sh \"echo after\"\n\
         4:1 ONBUILD RUN echo mine\n"
    );
    assert_eq!(
        history(&p, 0),
        [
            "/bin/sh -c #(nop) COPY . in $APP/ ",
            "/bin/sh -c make -C $APP",
            "/bin/sh -c echo after",
            "/bin/sh -c #(nop) ONBUILD RUN echo mine"
        ]
    );
    // A stage's own ONBUILD runs in a stage built FROM it (and not the base image's triggers again).
    let p =
        plan("FROM app-base AS a\nONBUILD RUN echo from-a\nONBUILD ENV X=1\nFROM a\nRUN true\n");
    assert_eq!(
        steps(&p, 1),
        "4:1 RUN sh \"echo from-a\"\n4:1 ENV [(\"X\", \"1\")]\n5:1 RUN sh \"true\"\n"
    );
    // ONBUILD itself substitutes nothing.
    let p = plan("FROM scratch\nENV A=1\nONBUILD RUN echo $A\n");
    assert_eq!(steps(&p, 0).lines().nth(1), Some("3:1 ONBUILD RUN echo $A"));
}

#[test]
fn invalid_onbuild_trigger_in_base_image() {
    let e = errors("FROM bad-trigger\n");
    assert_eq!(
        e,
        [
            "Dockerfile:1:1: error: ONBUILD trigger \"FROM other\" of base image bad-trigger: FROM is not allowed as an ONBUILD trigger"
        ]
    );
}

#[test]
fn workdir_resolution() {
    let p = plan(
        "FROM scratch\nWORKDIR a\nWORKDIR b/\nWORKDIR ../c/./d\nWORKDIR /abs//x/\nWORKDIR ..\nWORKDIR ../../..\nENV D=dir\nWORKDIR $D\n",
    );
    assert_eq!(
        steps(&p, 0),
        "2:1 WORKDIR /a\n3:1 WORKDIR /a/b\n4:1 WORKDIR /a/c/d\n5:1 WORKDIR /abs/x\n6:1 WORKDIR /abs\n7:1 WORKDIR /\n8:1 ENV [(\"D\", \"dir\")]\n9:1 WORKDIR /dir\n"
    );
    // A stage built FROM another continues from its WORKDIR.
    let p = plan("FROM scratch AS a\nWORKDIR /w\nFROM a\nWORKDIR x\n");
    assert_eq!(steps(&p, 1), "4:1 WORKDIR /w/x\n");
}

#[test]
fn stages_and_copy_from() {
    let src = "FROM scratch AS Build\nFROM build AS second\nCOPY --from=BUILD /a /a\nCOPY --from=0 /b /b\nCOPY --from=alpine:3 /c /c\nARG S=second\nFROM scratch\nCOPY --from=1 /e /e\n";
    let p = plan(src);
    assert_eq!(p.stages[1].base, Base::Stage(0));
    assert_eq!(
        steps(&p, 1),
        "3:1 COPY stage0 [\"/a\"] -> /a\n4:1 COPY stage0 [\"/b\"] -> /b\n5:1 COPY image:alpine:3 [\"/c\"] -> /c\n6:1 ARG [\"S\"]\n"
    );
    assert_eq!(steps(&p, 2), "8:1 COPY stage1 [\"/e\"] -> /e\n");
    // `S` was declared in another stage: not visible here, so --from is empty.
    let e = errors(&format!("{src}COPY --from=$S /d /d\n"));
    assert_eq!(e, ["Dockerfile:9:13: error: --from is empty"]);
    let p = plan(
        "FROM scratch AS a\nFROM scratch\nARG S=a\nCOPY --from=$S /d /d\nCOPY --from=0 /e /e\n",
    );
    assert_eq!(
        steps(&p, 1),
        "3:1 ARG [\"S\"]\n4:1 COPY stage0 [\"/d\"] -> /d\n5:1 COPY stage0 [\"/e\"] -> /e\n"
    );
}

#[test]
fn copy_from_errors() {
    assert_eq!(
        errors("FROM scratch AS a\nCOPY --from=b /x /x\nFROM scratch AS b\n"),
        [
            "Dockerfile:2:13: error: --from=b refers to a stage defined later (line 3); only earlier stages can be used"
        ]
    );
    assert_eq!(
        errors("FROM scratch AS a\nCOPY --from=a /x /x\n"),
        ["Dockerfile:2:13: error: --from=a refers to the stage it is used in"]
    );
    assert_eq!(
        errors("FROM scratch\nFROM scratch\nCOPY --from=1 /x /x\n"),
        [
            "Dockerfile:3:13: error: --from=1: a stage index must refer to an earlier stage (this is stage 1)"
        ]
    );
}

#[test]
fn from_resolution() {
    // A stage name shadows an image of the same name; a later stage name does not.
    let p = plan("FROM busybox AS busybox\nFROM busybox\nFROM later\nFROM scratch AS later\n");
    assert_eq!(p.stages[0].base, Base::Image("busybox".into()));
    assert_eq!(p.stages[1].base, Base::Stage(0));
    assert_eq!(p.stages[2].base, Base::Image("later".into()));
    assert_eq!(p.stages[3].base, Base::Scratch);
    assert_eq!(p.target, 3);
    assert_eq!(
        errors("FROM scratch AS a\nFROM scratch AS A\n"),
        ["Dockerfile:2:1: error: duplicate stage name \"a\" (first defined at line 1)"]
    );
    assert_eq!(
        errors("ARG E\nFROM $E\n"),
        ["Dockerfile:2:6: error: FROM: the base image name is empty after substituting \"$E\""]
    );
}

#[test]
fn target_selection() {
    let src = "FROM scratch AS build\nRUN make\nFROM scratch AS test\nFROM scratch\n";
    let mut o = opts(&[]);
    assert_eq!(
        plan_with(src, &o, &mut Images::default()).unwrap().target,
        2
    );
    o.target = Some("Build".into());
    let p = plan_with(src, &o, &mut Images::default()).unwrap();
    assert_eq!(p.target, 0);
    assert_eq!(p.stages.len(), 3, "no stage is dropped");
    o.target = Some("tset".into());
    assert_eq!(
        errors_with(src, &o),
        ["Dockerfile: error: --target \"tset\": no stage has this name (did you mean \"test\"?)"]
    );
    o.target = Some("zzz".into());
    assert_eq!(
        errors_with(src, &o),
        ["Dockerfile: error: --target \"zzz\": no stage has this name (named stages: build, test)"]
    );
}

#[test]
fn run_mounts() {
    let m = mounts(
        "--mount=type=bind,from=s,source=/src,target=/mnt,rw --mount=type=cache,target=/root/.cache,sharing=locked,mode=0700,uid=1000,gid=1000 \
         --mount=type=cache,id=apt,dst=/var/cache/apt,ro=true --mount=type=tmpfs,destination=/tmp,size=64m \
         --mount=type=secret,id=npm,env=NPM_TOKEN --mount=type=secret,target=/run/key,required --mount=type=ssh --mount=type=ssh,id=gh,required=true,mode=0600 \
         --mount=target=/ctx",
    );
    let base = RunMount {
        kind: MountType::Bind,
        target: None,
        source: None,
        from: None,
        id: None,
        read_write: false,
        required: false,
        mode: None,
        uid: None,
        gid: None,
        env: None,
        sharing: None,
        size: None,
    };
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        m,
        vec![
            RunMount {
                target: s("/mnt"),
                source: s("/src"),
                from: Some(CopyFrom::Stage(0)),
                read_write: true,
                ..base.clone()
            },
            RunMount {
                kind: MountType::Cache,
                target: s("/root/.cache"),
                id: s("/root/.cache"),
                read_write: true,
                mode: Some(0o700),
                uid: Some(1000),
                gid: Some(1000),
                sharing: s("locked"),
                ..base.clone()
            },
            RunMount {
                kind: MountType::Cache,
                target: s("/var/cache/apt"),
                id: s("apt"),
                read_write: false,
                ..base.clone()
            },
            RunMount {
                kind: MountType::Tmpfs,
                target: s("/tmp"),
                read_write: true,
                size: Some(64 << 20),
                ..base.clone()
            },
            RunMount {
                kind: MountType::Secret,
                id: s("npm"),
                env: s("NPM_TOKEN"),
                ..base.clone()
            },
            RunMount {
                kind: MountType::Secret,
                target: s("/run/key"),
                id: s("key"),
                required: true,
                ..base.clone()
            },
            RunMount {
                kind: MountType::Ssh,
                target: s("/run/buildkit/ssh_agent.0"),
                id: s("default"),
                ..base.clone()
            },
            RunMount {
                kind: MountType::Ssh,
                target: s("/run/buildkit/ssh_agent.1"),
                id: s("gh"),
                required: true,
                mode: Some(0o600),
                ..base.clone()
            },
            RunMount {
                target: s("/ctx"),
                ..base.clone()
            },
        ]
    );
    // Values are substituted; quoted CSV fields may hold commas.
    let p = plan(&format!(
        "FROM {BUSYBOX}\nARG CACHE=/c\nRUN --mount='type=cache,target=$CACHE,\"id=a,b\"' --network=none true\n"
    ));
    let r = run_step(&p, 0, 1);
    assert_eq!(r.mounts[0].target.as_deref(), Some("/c"));
    assert_eq!(r.mounts[0].id.as_deref(), Some("a,b"));
    assert_eq!(r.network.as_deref(), Some("none"));
}

#[test]
fn run_mount_errors() {
    assert!(mount_err("--mount=type=volume,target=/x").contains("unknown mount type \"volume\""));
    assert!(mount_err("--mount=type=bind").contains("type=bind needs a target"));
    assert!(
        mount_err("--mount=type=cache,target=/c,sharing=all")
            .contains("expected shared, private or locked")
    );
    assert!(
        mount_err("--mount=type=bind,target=/c,sharing=shared")
            .contains("sharing does not apply to type=bind")
    );
    assert!(
        mount_err("--mount=type=cache,target=/c,mode=999")
            .contains("mode=999 is not a valid number")
    );
    assert!(
        mount_err("--mount=type=cache,target=/c,trget=/d")
            .contains("unknown option \"trget\" (did you mean target?)")
    );
    assert!(mount_err("--mount=type=secret").contains("needs an id or a target"));
    assert!(mount_err("--mount=type=tmpfs,target=/t,size=lots").contains("expected a size"));
    assert!(mount_err("--mount=type=bind,target=/t,env=X").contains("env does not apply"));
    assert!(mount_err("--network=bridge").contains("--network expects default, none or host"));
    let e = mount_err("--mount=type=cache,target=/c,uid=x");
    assert!(e.starts_with("Dockerfile:2:13: error: --mount=type=cache,target=/c,uid=x: uid=x is not a valid number"), "{e}");
    assert_eq!(
        run_step(&plan("FROM scratch\nRUN --network=default true\n"), 0, 0).network,
        None
    );
    assert_eq!(
        run_step(&plan("FROM scratch\nRUN --network=host true\n"), 0, 0)
            .network
            .as_deref(),
        Some("host")
    );
}

#[test]
fn copy_and_add_rules() {
    let p = plan(
        "FROM scratch\nARG V=1.2\nADD --checksum=sha256:abc https://example.com/x-$V.tgz /x/\nADD git@github.com:a/b.git /src\n\
         COPY a b .\nCOPY a b dir/.\nCOPY --exclude=*.md --exclude=$V --parents --link src/ /dst/\nCOPY [\"with space\", \"/dst dir/\"]\n",
    );
    assert_eq!(
        steps(&p, 0),
        "2:1 ARG [\"V\"]\n\
         3:1 ADD ctx [\"url:https://example.com/x-1.2.tgz\"] -> /x/ checksum=sha256:abc\n\
         4:1 ADD ctx [\"url:git@github.com:a/b.git\"] -> /src\n\
         5:1 COPY ctx [\"a\", \"b\"] -> .\n\
         6:1 COPY ctx [\"a\", \"b\"] -> dir/.\n\
         7:1 COPY ctx [\"src/\"] -> /dst/ link parents exclude=[\"*.md\", \"1.2\"]\n\
         8:1 COPY ctx [\"with space\"] -> /dst dir/\n"
    );
    assert_eq!(
        errors("FROM scratch\nCOPY a b /file\n"),
        [
            "Dockerfile:2:10: error: COPY with several sources needs a directory destination ending in '/', not \"/file\""
        ]
    );
    assert_eq!(
        errors("FROM scratch\nADD --checksum=sha256:x local.tgz /\n"),
        ["Dockerfile:2:1: error: ADD --checksum applies only to URL sources"]
    );
    assert_eq!(
        errors("FROM scratch\nCOPY https://x/y /y\n"),
        ["Dockerfile:2:6: error: COPY cannot fetch URLs (https://x/y); use ADD"]
    );
    assert_eq!(
        errors("FROM scratch\nCOPY --chmod=u+q a /a\n"),
        [
            "Dockerfile:2:14: error: --chmod=u+q: expected an octal mode like 0644 or a symbolic one like u+x"
        ]
    );
    let e = errors("FROM scratch\nCOPY --chmown=1 a /a\n");
    assert_eq!(
        e,
        ["Dockerfile:2:6: error: unknown flag --chmown for COPY (did you mean --chown?)"]
    );
    // --keep-git-dir is accepted (with a warning: the plan has no field for it).
    let p = plan("FROM scratch\nADD --keep-git-dir https://github.com/a/b.git /src\n");
    assert!(
        p.warnings
            .iter()
            .any(|w| w.message.contains("--keep-git-dir"))
    );
}

#[test]
fn expose_volume_user_stopsignal() {
    let p = plan(
        "FROM scratch\nARG PORTS=\"80 443\"\nEXPOSE $PORTS 53/UDP 8000-8002/tcp 80\nVOLUME /a $PORTS\nVOLUME [\"/b\", \"/c d\"]\nARG U=app\nUSER ${U}:${U}\nSTOPSIGNAL 9\n",
    );
    assert_eq!(
        steps(&p, 0),
        "2:1 ARG [\"PORTS\"]\n\
         3:1 EXPOSE [\"80/tcp\", \"443/tcp\", \"53/udp\", \"8000/tcp\", \"8001/tcp\", \"8002/tcp\"]\n\
         4:1 VOLUME [\"/a\", \"80 443\"]\n\
         5:1 VOLUME [\"/b\", \"/c d\"]\n\
         6:1 ARG [\"U\"]\n\
         7:1 USER app:app\n\
         8:1 STOPSIGNAL 9\n"
    );
    assert_eq!(
        errors("FROM scratch\nEXPOSE 80/xtp\n"),
        ["Dockerfile:2:8: error: EXPOSE 80/xtp: unknown protocol \"xtp\" (tcp, udp, sctp)"]
    );
    assert_eq!(
        errors("FROM scratch\nEXPOSE http\n"),
        ["Dockerfile:2:8: error: EXPOSE http: \"http\" is not a port number"]
    );
    assert_eq!(
        errors("FROM scratch\nSTOPSIGNAL SIG TERM\n"),
        ["Dockerfile:2:12: error: STOPSIGNAL \"SIG TERM\" is not a signal name or number"]
    );
    // Names Linux knows, in any case, with or without SIG; real-time offsets in range.
    for bad in ["SIGFOO", "0", "RTMIN+16", "RTMAX-15", "SIGRTMIN+"] {
        let e = errors(&format!("FROM scratch\nSTOPSIGNAL {bad}\n"));
        assert_eq!(e.len(), 1, "{bad}: {e:?}");
    }
    for good in ["sigint", "TERM", "SIGRTMIN+3", "RTMAX-1", "99", "SIGWINCH"] {
        plan(&format!("FROM scratch\nSTOPSIGNAL {good}\n"));
    }
}

#[test]
fn healthcheck_entrypoint_cmd_shell_steps() {
    let p = plan(
        "FROM scratch\nHEALTHCHECK NONE\nSHELL [\"/bin/bash\", \"-c\"]\nENTRYPOINT exec app\nCMD [\"--flag\"]\nMAINTAINER Jo <jo@example.com>\n",
    );
    assert_eq!(
        steps(&p, 0),
        "2:1 HEALTHCHECK None\n\
         3:1 SHELL [\"/bin/bash\", \"-c\"]\n\
         4:1 ENTRYPOINT sh \"exec app\"\n\
         5:1 CMD exec [\"--flag\"]\n\
         6:1 MAINTAINER Jo <jo@example.com>\n"
    );
}

#[test]
fn diagnostics_name_line_and_column() {
    assert_eq!(
        errors("FROM scratch\n\n  RUNN echo\n"),
        ["Dockerfile:3:3: error: unknown instruction: RUNN (did you mean RUN?)"]
    );
    assert_eq!(
        errors("# just a comment\n"),
        [
            "Dockerfile:1:1: error: no FROM instruction: a Dockerfile needs FROM (only ARG may come before it)"
        ]
    );
    assert_eq!(
        errors("ARG A\nRUN x\n"),
        [
            "Dockerfile:1:1: error: no FROM instruction: a Dockerfile needs FROM (only ARG may come before it)"
        ]
    );
    assert_eq!(
        errors("ENV A=1\nFROM scratch\n"),
        ["Dockerfile:1:1: error: ENV before the first FROM: only ARG may come before FROM"]
    );
    assert_eq!(
        errors("FROM scratch\nSHELL [\"/bin/sh\" \"-c\"]\n"),
        [
            "Dockerfile:2:7: error: SHELL requires a JSON array of strings, for example SHELL [\"/bin/bash\", \"-c\"]"
        ]
    );
    assert_eq!(
        errors("FROM scratch\nARG =1\n"),
        ["Dockerfile:2:5: error: ARG \"=1\" has no name: ARG NAME[=default]"]
    );
    assert_eq!(
        errors("FROM scratch\nRUN --mount=type=cache,target=/x \\\n  --netwrk=none make\n"),
        ["Dockerfile:3:3: error: unknown flag --netwrk for RUN (did you mean --network?)"]
    );
    assert_eq!(
        errors("FROM scratch\nRUN \\\n"),
        [
            "Dockerfile:2:1: error: RUN: the line continuation runs into the end of the file and leaves no arguments"
        ]
    );
    // Several independent errors are reported together.
    let e = errors("FROM scratch\nCOPPY a b\nEXPOSE x\nWORKDIR\n");
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(
        e[0].starts_with("Dockerfile:2:1:")
            && e[1].starts_with("Dockerfile:3:8:")
            && e[2].starts_with("Dockerfile:4:1:"),
        "{e:?}"
    );
}

#[test]
fn warnings() {
    let p = plan_args(
        "FROM scratch\nARG USED\nRUN a \\\n\n  b\nENV K V\n",
        &[("USED", "1"), ("TYPO", "2"), ("FTP_PROXY", "x")],
    );
    let msgs: Vec<String> = p.warnings.iter().map(|d| d.render("Dockerfile")).collect();
    assert_eq!(
        msgs,
        [
            "Dockerfile:4:1: warning: empty continuation line: a blank line inside a continued instruction is deprecated",
            "Dockerfile:6:1: warning: legacy \"ENV name value\" form; prefer \"ENV name=value\"",
            "Dockerfile: warning: build argument TYPO was given but no ARG declares it",
        ]
    );
    let p = plan("FROM scratch\nRUN echo hi \\");
    assert_eq!(p.warnings.len(), 1);
    assert!(
        p.warnings[0]
            .message
            .contains("ends with a line continuation")
    );
}

#[test]
fn parser_directives() {
    // syntax= is accepted and ignored; unknown directives stop directive parsing.
    let p = plan("# syntax=docker/dockerfile:1.7\n# check=skip=all\nFROM scratch\nRUN a \\\n b\n");
    assert_eq!(run_step(&p, 0, 0).command, Command::Shell("a  b".into()));
    let p = plan("# foo=bar\n# escape=`\nFROM scratch\nRUN a `\n");
    assert_eq!(run_step(&p, 0, 0).command, Command::Shell("a `".into()));
}

#[test]
fn run_mount_key_aliases() {
    let m = mounts(
        "--mount=type=bind,src=/a,dst=/b,readonly=false --mount=type=cache,source=/s,destination=/c,from=s,readwrite=false,id=x \
         --mount=type=tmpfs,target=/t,size=1.5g,rw=false --mount=type=secret,id=s,target=/k,mode=0440,uid=1,gid=2,required=false",
    );
    let summary: Vec<String> = m
        .iter()
        .map(|m| {
            format!(
                "{:?} {:?} {:?} {:?} {:?} rw={} req={} {:?} {:?} {:?} {:?}",
                m.kind,
                m.target,
                m.source,
                m.from,
                m.id,
                m.read_write,
                m.required,
                m.mode,
                m.uid,
                m.gid,
                m.size
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            "Bind Some(\"/b\") Some(\"/a\") None None rw=true req=false None None None None",
            "Cache Some(\"/c\") Some(\"/s\") Some(Stage(0)) Some(\"x\") rw=false req=false None None None None",
            "Tmpfs Some(\"/t\") None None None rw=false req=false None None None Some(1610612736)",
            "Secret Some(\"/k\") None None Some(\"s\") rw=false req=false Some(288) Some(1) Some(2) None",
        ]
    );
}

#[test]
fn from_platform_and_stage_platform_lookup() {
    // A stage FROM another stage asks for no config; --platform of an image is passed on.
    let mut images = Images::default();
    let p = plan_with(
        &format!("ARG P=linux/arm64\nFROM --platform=$P {BUSYBOX} AS a\nFROM a\nFROM {BUSYBOX}\n"),
        &opts(&[]),
        &mut images,
    )
    .unwrap();
    assert_eq!(p.stages[0].platform.as_deref(), Some("linux/arm64"));
    assert_eq!(p.stages[1].platform, None);
    assert_eq!(
        images.calls,
        vec![
            (BUSYBOX.to_string(), "linux/arm64".to_string()),
            (BUSYBOX.to_string(), "linux/amd64".to_string())
        ]
    );
}
