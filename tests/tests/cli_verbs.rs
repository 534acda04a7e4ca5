//! buildah's store and working-container verbs as scripts use them: `--format` Go templates
//! (zero values for unset fields, `index`, `len`, `if`, `range`), `containers` columns and IDs,
//! `build -q --iidfile`, `rmi -f` with working containers, `images`/`containers` `--filter`, and
//! errors printed once. Images are built `FROM scratch`, so no registry is needed.

use kiln_tests::Kiln;

/// A build context with file `f` and Containerfile `text`.
fn context(text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp context");
    std::fs::write(dir.path().join("f"), "hi\n").unwrap();
    std::fs::write(dir.path().join("Containerfile"), text).unwrap();
    dir
}

/// Build `text` as `name` (FROM scratch); returns the image ID.
fn build(kiln: &Kiln, name: &str, text: &str) -> String {
    let ctx = context(text);
    let out = kiln.run(["build", "-q", "-t", name, &ctx.path().display().to_string()]);
    out.trim().to_string()
}

fn inspect(kiln: &Kiln, format: &str, image: &str) -> String {
    kiln.run(["inspect", "--format", format, image])
}

// A field buildah's structs have but this image leaves unset renders as Go's zero value (empty,
// `[]`, `map[]`) with status 0; index, len, if/else and range work on what is set.
#[test]
fn inspect_format_zero_values_and_actions() {
    let kiln = Kiln::new();
    build(&kiln, "plain", "FROM scratch\nCOPY f /f\n");
    build(
        &kiln,
        "labelled",
        "FROM scratch\nLABEL a=b c=d\nUSER 7\nENTRYPOINT [\"/f\", \"x\"]\nCOPY f /f\n",
    );

    assert_eq!(inspect(&kiln, "{{.OCIv1.Config.User}}", "plain"), "\n");
    assert_eq!(inspect(&kiln, "{{.OCIv1.Config.User}}", "labelled"), "7\n");
    assert_eq!(
        inspect(&kiln, "{{.OCIv1.Config.Entrypoint}}", "plain"),
        "[]\n"
    );
    assert_eq!(inspect(&kiln, "{{.OCIv1.Config.Cmd}}", "plain"), "[]\n");
    assert_eq!(
        inspect(&kiln, "{{.OCIv1.Config.Labels}}", "plain"),
        "map[]\n"
    );
    assert_eq!(
        inspect(&kiln, "{{.OCIv1.Config.Entrypoint}}", "labelled"),
        "[/f x]\n"
    );
    assert_eq!(
        inspect(&kiln, "{{.OCIv1.Config.Labels}}", "labelled"),
        "map[a:b c:d]\n"
    );
    assert_eq!(
        inspect(&kiln, r#"{{index .OCIv1.Config.Labels "c"}}"#, "labelled"),
        "d\n"
    );
    assert_eq!(
        inspect(&kiln, r#"{{index .OCIv1.Config.Labels "c"}}"#, "plain"),
        "\n"
    );
    assert_eq!(
        inspect(&kiln, "{{index .OCIv1.Config.Entrypoint 1}}", "labelled"),
        "x\n"
    );
    assert_eq!(
        inspect(
            &kiln,
            "{{len .OCIv1.Config.Labels}}/{{len .OCIv1.Config.Cmd}}",
            "labelled"
        ),
        "2/0\n"
    );
    let cond = "{{if .OCIv1.Config.User}}user {{.OCIv1.Config.User}}{{else}}root{{end}}";
    assert_eq!(inspect(&kiln, cond, "plain"), "root\n");
    assert_eq!(inspect(&kiln, cond, "labelled"), "user 7\n");
    assert_eq!(
        inspect(
            &kiln,
            "{{range .OCIv1.Config.Entrypoint}}<{{.}}>{{end}}",
            "labelled"
        ),
        "</f><x>\n"
    );
    assert_eq!(
        inspect(
            &kiln,
            "{{range $k, $v := .OCIv1.Config.Labels}}{{$k}}={{$v}};{{end}}",
            "labelled"
        ),
        "a=b;c=d;\n"
    );
    assert_eq!(
        inspect(&kiln, "{{json .OCIv1.Config.Labels}}", "labelled"),
        "{\"a\":\"b\",\"c\":\"d\"}\n"
    );
    // Not a field of buildah's inspect output at all: an error naming it.
    let err = kiln.run_fail(["inspect", "--format", "{{.Nope}}", "plain"]);
    assert!(err.contains("Nope"), "{err}");

    // `kiln images --format` takes the same templates.
    let out = kiln.run([
        "images",
        "--format",
        r#"{{.Name}}{{if eq .Name "localhost/plain"}} is plain{{end}}"#,
    ]);
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    assert_eq!(lines, ["localhost/labelled", "localhost/plain is plain"]);
}

/// Working containers as `kiln containers --json` lists them: (id, image id, container name).
fn containers_json(kiln: &Kiln) -> Vec<(String, String, String)> {
    let v: serde_json::Value =
        serde_json::from_str(&kiln.run(["containers", "--json"])).expect("JSON list");
    v.as_array()
        .expect("a JSON array")
        .iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
            (s("id"), s("imageid"), s("containername"))
        })
        .collect()
}

// Every column of `kiln containers` is followed by a space, in every mode, even when a value
// (a full ID, a long image name) fills its width; `-q` prints full IDs, as buildah does.
#[test]
fn containers_columns_and_quiet_ids() {
    let kiln = Kiln::new();
    let long = "localhost/a-repository-name-longer-than-the-column:latest";
    build(&kiln, long, "FROM scratch\nCOPY f /f\n");
    kiln.run(["from", "--name", "c1", long]);
    kiln.run(["from", "--name", "c2", "scratch"]);
    let listed = containers_json(&kiln);
    assert_eq!(listed.len(), 2);
    let (id1, img1, _) = &listed[0];
    assert_eq!(id1.len(), 64, "{id1}");

    for quiet in [
        vec!["containers", "-q"],
        vec!["containers", "-q", "--notruncate"],
    ] {
        let out = kiln.run(&quiet);
        let ids: Vec<&str> = out.lines().collect();
        assert_eq!(
            ids,
            [listed[0].0.as_str(), listed[1].0.as_str()],
            "{quiet:?}"
        );
    }

    let out = kiln.run(["containers", "--noheading", "--notruncate"]);
    let first: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        first,
        [id1.as_str(), "*", img1.as_str(), long, "c1"],
        "{out}"
    );
    let out = kiln.run(["containers", "--noheading"]);
    let first: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(first, [&id1[..12], "*", &img1[..12], long, "c1"], "{out}");
    let out = kiln.run(["containers", "--notruncate"]);
    let heading: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        heading,
        [
            "CONTAINER",
            "ID",
            "BUILDER",
            "IMAGE",
            "ID",
            "IMAGE",
            "NAME",
            "CONTAINER",
            "NAME"
        ]
    );
    let second: Vec<&str> = out.lines().nth(2).unwrap().split_whitespace().collect();
    assert_eq!(
        second,
        [listed[1].0.as_str(), "*", "scratch", "c2"],
        "{out}"
    );
}

// `kiln build -q` prints the image ID only when no `--iidfile` takes it, as buildah does.
#[test]
fn build_quiet_with_iidfile_prints_nothing() {
    let kiln = Kiln::new();
    let ctx = context("FROM scratch\nCOPY f /f\n");
    let dir = ctx.path().display().to_string();
    let iid = ctx.path().join("iid");
    let out = kiln.output([
        "build",
        "-q",
        "--iidfile",
        &iid.display().to_string(),
        "-t",
        "one",
        &dir,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "",
        "stdout stays empty"
    );
    let written = std::fs::read_to_string(&iid).expect("the iidfile");
    let id = written.strip_prefix("sha256:").expect("sha256:ID");
    assert_eq!(id.len(), 64, "{written}");
    // Without --iidfile the ID is the one line on stdout.
    let printed = kiln.run(["build", "-q", "-t", "two", &dir]);
    assert_eq!(printed, format!("{id}\n"));
}

// `kiln rmi -f IMAGE` also removes the working containers made from IMAGE (buildah's `-f`);
// without `-f` an image in use is refused and nothing changes.
#[test]
fn rmi_force_removes_working_containers() {
    let kiln = Kiln::new();
    let used = build(&kiln, "used", "FROM scratch\nCOPY f /f\n");
    build(&kiln, "other", "FROM scratch\nLABEL o=1\nCOPY f /f\n");
    kiln.run(["from", "--name", "u1", "used"]);
    kiln.run(["from", "--name", "u2", "used"]);
    kiln.run(["from", "--name", "o1", "other"]);

    let err = kiln.run_fail(["rmi", "used"]);
    assert!(err.contains("u1"), "names a container using it: {err}");
    let names =
        |kiln: &Kiln| -> Vec<String> { containers_json(kiln).into_iter().map(|c| c.2).collect() };
    assert_eq!(names(&kiln), ["u1", "u2", "o1"]);

    let out = kiln.run(["rmi", "-f", "used"]);
    assert!(
        out.lines().any(|l| l == used),
        "prints the removed ID: {out}"
    );
    assert_eq!(names(&kiln), ["o1"], "the users of `used` are gone");
    let images = kiln.run(["images", "--format", "{{.Name}}"]);
    assert_eq!(images.trim(), "localhost/other");
    let left = std::fs::read_dir(kiln.root().join("containers"))
        .unwrap()
        .flatten()
        .count();
    assert_eq!(left, 1, "only o1's directory is left");
}

/// `kiln images --filter …` as sorted `NAME:TAG` lines (`<none>` for a dangling image).
fn images_filtered(kiln: &Kiln, filters: &[&str]) -> Vec<String> {
    let mut args = vec!["images", "--format", "{{.Name}}:{{.Tag}}"];
    for f in filters {
        args.extend(["--filter", f]);
    }
    let mut out: Vec<String> = kiln.run(&args).lines().map(String::from).collect();
    out.sort();
    out
}

// `kiln images --filter`: dangling, reference (glob, with or without registry), label (key or
// key=value), before/since, id; several filters AND; an unknown key is an error naming it.
#[test]
fn images_filters() {
    let kiln = Kiln::new();
    let ctx = context("FROM scratch\nCOPY f /f\n");
    let build_at = |name: &str, time: &str, extra: &str| {
        std::fs::write(
            ctx.path().join("Containerfile"),
            format!("FROM scratch\n{extra}COPY f /f\n"),
        )
        .unwrap();
        let mut args = vec!["build", "-q", "--timestamp", time];
        if !name.is_empty() {
            args.extend(["-t", name]);
        }
        let dir = ctx.path().display().to_string();
        args.push(&dir);
        kiln.run(&args).trim().to_string()
    };
    build_at("old", "1000", "LABEL tier=base\n");
    let middle = build_at("middle", "2000", "LABEL tier=app team=x\n");
    build_at("new", "3000", "LABEL other=1\n");
    build_at("", "4000", "");

    let all = images_filtered(&kiln, &[]);
    assert_eq!(all.len(), 4, "{all:?}");
    assert_eq!(
        images_filtered(&kiln, &["dangling=true"]),
        ["<none>:<none>"]
    );
    assert_eq!(images_filtered(&kiln, &["dangling=false"]).len(), 3);
    assert_eq!(
        images_filtered(&kiln, &["reference=mid*"]),
        ["localhost/middle:latest"]
    );
    assert_eq!(
        images_filtered(&kiln, &["reference=localhost/new:latest"]),
        ["localhost/new:latest"]
    );
    assert_eq!(
        images_filtered(&kiln, &["reference=*:latest"]).len(),
        3,
        "every named image"
    );
    assert!(images_filtered(&kiln, &["reference=localhost/mid"]).is_empty());
    assert_eq!(
        images_filtered(&kiln, &["label=tier"]),
        ["localhost/middle:latest", "localhost/old:latest"]
    );
    assert_eq!(
        images_filtered(&kiln, &["label=tier=app"]),
        ["localhost/middle:latest"]
    );
    assert_eq!(
        images_filtered(&kiln, &["before=middle"]),
        ["localhost/old:latest"]
    );
    assert_eq!(
        images_filtered(&kiln, &["since=middle"]),
        ["<none>:<none>", "localhost/new:latest"]
    );
    assert_eq!(
        images_filtered(&kiln, &["since=old", "before=new"]),
        ["localhost/middle:latest"],
        "filters AND"
    );
    assert_eq!(
        images_filtered(&kiln, &["since=old,label=other"]),
        ["localhost/new:latest"],
        "comma-separated filters AND"
    );
    assert_eq!(
        images_filtered(&kiln, &[&format!("id={middle}")]),
        ["localhost/middle:latest"]
    );
    // As buildah 1.28: only the whole hex ID, not a short one.
    assert!(images_filtered(&kiln, &[&format!("id={}", &middle[..12])]).is_empty());
    // -f is --filter, and -q lists only what matches.
    let ids = kiln.run(["images", "-q", "--no-trunc", "-f", "label=team=x"]);
    assert_eq!(ids.trim(), format!("sha256:{middle}"));
    let err = kiln.run_fail(["images", "--filter", "colour=red"]);
    assert!(err.contains("colour"), "{err}");
    let err = kiln.run_fail(["images", "--filter", "dangling"]);
    assert!(err.contains("dangling"), "{err}");
}

// `kiln containers --filter`: id (prefix), name (part of it), ancestor (the image, by name or
// ID); several filters AND; an unknown key is an error naming it.
#[test]
fn containers_filters() {
    let kiln = Kiln::new();
    let base = build(&kiln, "base", "FROM scratch\nCOPY f /f\n");
    build(&kiln, "other", "FROM scratch\nLABEL o=1\nCOPY f /f\n");
    kiln.run(["from", "--name", "web-1", "base"]);
    kiln.run(["from", "--name", "web-2", "other"]);
    kiln.run(["from", "--name", "db", "localhost/base:latest"]);
    let listed = containers_json(&kiln);
    let names = |filters: &[&str]| -> Vec<String> {
        let mut args = vec!["containers", "--format", "{{.ContainerName}}"];
        for f in filters {
            args.extend(["--filter", f]);
        }
        kiln.run(&args).lines().map(String::from).collect()
    };
    assert_eq!(names(&[]), ["web-1", "web-2", "db"]);
    assert_eq!(names(&["name=web"]), ["web-1", "web-2"]);
    assert_eq!(names(&[&format!("id={}", &listed[1].0[..10])]), ["web-2"]);
    assert_eq!(names(&["ancestor=base"]), ["web-1", "db"]);
    assert_eq!(names(&["ancestor=localhost/base:latest"]), ["web-1", "db"]);
    assert_eq!(
        names(&[&format!("ancestor={}", &base[..12])]),
        ["web-1", "db"]
    );
    assert_eq!(
        names(&["ancestor=base", "name=web"]),
        ["web-1"],
        "filters AND"
    );
    assert_eq!(names(&["ancestor=other,name=db"]), Vec::<String>::new());
    let quiet = kiln.run(["containers", "-q", "-f", "name=db"]);
    assert_eq!(quiet.trim(), listed[2].0);
    let err = kiln.run_fail(["containers", "--filter", "status=running"]);
    assert!(err.contains("status"), "{err}");
}

/// Whether no part of `msg` repeats the part before it (`A: B: B`).
fn said_once(msg: &str) -> bool {
    msg.match_indices(": ").all(|(i, _)| {
        let (head, tail) = (&msg[..i], &msg[i + 2..]);
        !head.ends_with(tail)
    })
}

// The errors of `kiln rm` and `kiln run` are printed once each.
#[test]
fn rm_and_run_errors_are_printed_once() {
    let kiln = Kiln::new();
    build(&kiln, "numeric-user", "FROM scratch\nUSER 0:0\nCOPY f /f\n");
    kiln.run(["from", "--name", "w", "numeric-user"]);

    let err = kiln.run_fail(["rm", "nosuch1"]);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(err.matches("nosuch1").count(), 1, "{err}");
    let err = kiln.run_fail(["rm", "nosuch1", "w", "nosuch2"]);
    assert_eq!(err.lines().count(), 2, "{err}");
    assert_eq!(err.matches("nosuch1").count(), 1, "{err}");
    assert_eq!(err.matches("nosuch2").count(), 1, "{err}");
    assert!(containers_json(&kiln).is_empty(), "w was removed");

    kiln.run(["from", "--name", "w", "numeric-user"]);
    let out = kiln.output(["run", "w", "--", "/nonexistent-command"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(err.matches("nonexistent-command").count(), 1, "{err}");
    assert!(said_once(err.trim()), "{err}");
    let err = kiln.run_fail(["run", "nosuch", "--", "true"]);
    assert_eq!(err.matches("nosuch").count(), 1, "{err}");
}

// As in Go, a key a map lacks, read as a field, is `<no value>`; through `index` it is empty.
#[test]
fn inspect_format_missing_map_key() {
    let kiln = Kiln::new();
    build(&kiln, "labelled", "FROM scratch\nLABEL a=b\nCOPY f /f\n");
    assert_eq!(
        inspect(&kiln, "{{.OCIv1.Config.Labels.a}}", "labelled"),
        "b\n"
    );
    assert_eq!(
        inspect(&kiln, "{{.OCIv1.Config.Labels.zz}}", "labelled"),
        "<no value>\n"
    );
    assert_eq!(
        inspect(&kiln, r#"{{index .OCIv1.Config.Labels "zz"}}"#, "labelled"),
        "\n"
    );
}

// `printf` in `--format` is Go's fmt: widths, flags, precision, the numeric verbs, `%T`, `%q` of
// a list, and Go's `%!verb(type=value)` forms for mistakes (outputs as buildah 1.28 prints them).
#[test]
fn format_printf_is_gos_fmt() {
    let kiln = Kiln::new();
    build(
        &kiln,
        "pf",
        "FROM scratch\nCMD [\"sh\", \"-c\", \"echo\"]\nCOPY f /f\n",
    );
    let cases = [
        (r#"{{printf "%5d|%-5d|%05d" 3 4 5}}"#, "    3|4    |00005"),
        (r#"{{printf "%.3s" .OCIv1.OS}}"#, "lin"),
        (r#"{{printf "%6.2f" 3.14159}}"#, "  3.14"),
        (r#"{{printf "%x %X %o" 255 255 8}}"#, "ff FF 10"),
        (r#"{{printf "%T" .OCIv1.OS}}"#, "string"),
        (
            r#"{{printf "%q" .OCIv1.Config.Cmd}}"#,
            r#"["sh" "-c" "echo"]"#,
        ),
        (r#"{{printf "%-8s|" .OCIv1.OS}}"#, "linux   |"),
        (
            r#"{{printf "%s|%d|%s" 5 "x" "a" 1}}"#,
            "%!s(int=5)|%!d(string=x)|a%!(EXTRA int=1)",
        ),
        (r#"{{printf "%s %s" "a"}}"#, "a %!s(MISSING)"),
        (
            r#"{{printf "%+.2e|%g|%v" 1234.5 1e6 2.0}}"#,
            "+1.23e+03|1e+06|2",
        ),
        (r#"{{printf "%*d|%t" 4 7 true}}"#, "   7|true"),
        (r#"{{slice .OCIv1.Config.Cmd 1}}"#, "[-c echo]"),
    ];
    for (t, want) in cases {
        assert_eq!(inspect(&kiln, t, "pf"), format!("{want}\n"), "{t}");
    }
}

// Times print as Go prints a time.Time (`inspect {{.OCIv1.Created}}`, `images {{.CreatedAtRaw}}`),
// `images {{.Created}}` is Unix seconds, and JSON keeps RFC 3339.
#[test]
fn format_times_as_buildah() {
    let kiln = Kiln::new();
    let ctx = context("FROM scratch\nCOPY f /f\n");
    kiln.run([
        "build",
        "-q",
        "--timestamp",
        "1700000000",
        "-t",
        "stamped",
        &ctx.path().display().to_string(),
    ]);
    let go = "2023-11-14 22:13:20 +0000 UTC\n";
    assert_eq!(inspect(&kiln, "{{.OCIv1.Created}}", "stamped"), go);
    assert_eq!(
        inspect(&kiln, "{{json .OCIv1.Created}}", "stamped"),
        "\"2023-11-14T22:13:20Z\"\n"
    );
    let out = kiln.run([
        "images",
        "--format",
        "{{.Created}}|{{.CreatedAtRaw}}",
        "stamped",
    ]);
    assert_eq!(out, format!("1700000000|{go}"));
}

// `--format 'table …'` drops the prefix and prints buildah's header row first (a field without
// a header is `<no value>`), with the columns (tabs, and the template's spaces) aligned as Go's
// tabwriter does; `containers` names an image by its full name and prints `.Builder` as `   *`.
#[test]
fn format_tables_and_container_fields() {
    let kiln = Kiln::new();
    let id = build(&kiln, "h5/tp", "FROM scratch\nCOPY f /f\n");
    let id = id.trim_start_matches("sha256:");
    let short = &id[..12];
    let out = kiln.run([
        "images",
        "--format",
        "table {{.Name}}\\t{{.Tag}}\\t{{.ID}}\\t{{.Digest}}|{{.ReadOnly}}",
    ]);
    assert_eq!(
        out,
        format!(
            "REPOSITORY        TAG      IMAGE ID       <no value>|R/O\n\
             localhost/h5/tp   latest   {short}   {}|false\n",
            kiln.run(["images", "--format", "{{.Digest}}"]).trim()
        )
    );
    let out = kiln.run([
        "images",
        "--noheading",
        "--format",
        "table {{.Tag}} {{.Size}}",
    ]);
    assert!(
        out.starts_with("latest   ") && out.lines().count() == 1,
        "{out:?}"
    );

    kiln.run(["from", "--name", "wc", "h5/tp"]);
    kiln.run(["from", "--name", "scratchy", "scratch"]);
    let out = kiln.run([
        "containers",
        "--format",
        "{{.ContainerName}}|{{.ImageName}}|{{.Builder}}|",
    ]);
    assert_eq!(
        out,
        "wc|localhost/h5/tp:latest|   *|\nscratchy|scratch|   *|\n"
    );
    let out = kiln.run([
        "containers",
        "--format",
        "table {{.ContainerName}}\\t{{.Builder}}\\t{{.ImageName}}\\t{{.ImageID}}",
    ]);
    assert_eq!(
        out,
        format!(
            "CONTAINER NAME   BUILDER   IMAGE NAME               IMAGE ID\n\
             wc                  *      localhost/h5/tp:latest   {id}\n\
             scratchy            *      scratch                  \n"
        )
    );
    assert!(
        kiln.run(["containers", "--format", "table {{.ContainerID}}"])
            .starts_with("CONTAINER ID\n")
    );
    // The container's image is named by its full name in inspect, too.
    assert_eq!(
        kiln.run(["inspect", "--format", "{{.FromImage}}", "wc"]),
        "localhost/h5/tp:latest\n"
    );
}

// kiln keeps no intermediate images: intermediate=false lists all, true (with --all) none;
// without --all, true conflicts with the intermediate=false buildah implies, as in buildah.
#[test]
fn images_intermediate_filter() {
    let kiln = Kiln::new();
    build(&kiln, "one", "FROM scratch\nCOPY f /f\n");
    assert_eq!(
        images_filtered(&kiln, &["intermediate=false"]),
        ["localhost/one:latest"]
    );
    let none = kiln.run(["images", "-a", "--filter", "intermediate=true", "-q"]);
    assert_eq!(none, "");
    let none = kiln.run(["images", "-a", "--filter", "intermediate!=false", "-q"]);
    assert_eq!(none, "");
    let err = kiln.run_fail(["images", "--filter", "intermediate=true"]);
    assert!(err.contains("intermediate"), "{err}");
    let err = kiln.run_fail(["images", "-a", "--filter", "intermediate=maybe"]);
    assert!(err.contains("maybe"), "{err}");
}

// `{{$x = …}}` sets the variable declared before (in an enclosing scope), `{{$x := …}}` declares
// a new one in the current scope, as in Go's text/template.
#[test]
fn format_variable_assignment() {
    let kiln = Kiln::new();
    build(&kiln, "vars", "FROM scratch\nENV A=1 B=2\nCOPY f /f\n");
    assert_eq!(
        inspect(
            &kiln,
            r#"{{$f := "no"}}{{if true}}{{$f = "yes"}}{{end}}{{$f}}"#,
            "vars"
        ),
        "yes\n"
    );
    assert_eq!(
        inspect(
            &kiln,
            r#"{{$f := "no"}}{{if true}}{{$f := "yes"}}{{end}}{{$f}}"#,
            "vars"
        ),
        "no\n"
    );
    assert_eq!(
        inspect(
            &kiln,
            "{{$last := 0}}{{range .OCIv1.Config.Env}}{{$last = .}}{{end}}{{$last}}",
            "vars"
        ),
        "B=2\n"
    );
    let err = kiln.run_fail(["inspect", "--format", "{{$nope = 1}}", "vars"]);
    assert!(err.contains("undefined variable: $nope"), "{err}");
}

// Keys of what are Go maps in buildah's structs (labels, annotations, ports, volumes) match
// exactly; field names of its structs still match kiln's JSON keys loosely.
#[test]
fn format_map_keys_match_exactly() {
    let kiln = Kiln::new();
    build(
        &kiln,
        "keys",
        "FROM scratch\nLABEL Foo=upper a_b=under\nEXPOSE 80\nVOLUME /Data\nCOPY f /f\n",
    );
    let cases = [
        ("{{.OCIv1.Config.Labels.Foo}}", "upper"),
        ("{{.OCIv1.Config.Labels.foo}}", "<no value>"),
        ("{{.OCIv1.Config.Labels.a_b}}", "under"),
        ("{{.OCIv1.Config.Labels.ab}}", "<no value>"),
        ("{{.Docker.Config.Labels.foo}}", "<no value>"),
        (
            "{{with .OCIv1.Config.Labels}}{{.foo}}|{{.Foo}}{{end}}",
            "<no value>|upper",
        ),
        ("{{len .OCIv1.Config.ExposedPorts}}", "1"),
        ("{{.oCIv1.os}}", "linux"),
        ("{{.OCIv1.config.labels.Foo}}", "upper"),
    ];
    for (t, want) in cases {
        assert_eq!(inspect(&kiln, t, "keys"), format!("{want}\n"), "{t}");
    }
}

// `kiln images NAME` lists the image NAME resolves to (under each of its names), as buildah
// 1.28 does: `repo` is `repo:latest`, so the other tags of the repository are not listed.
#[test]
fn images_name_lists_the_image_it_resolves_to() {
    let kiln = Kiln::new();
    build(&kiln, "repo:1", "FROM scratch\nCOPY f /f\n");
    kiln.run(["tag", "repo:1", "repo:latest"]);
    build(&kiln, "repo:2", "FROM scratch\nLABEL two=2\nCOPY f /f\n");
    let listed = |name: &str| -> Vec<String> {
        let out = kiln.run(["images", "--format", "{{.Name}}:{{.Tag}}", name]);
        let mut v: Vec<String> = out.lines().map(String::from).collect();
        v.sort();
        v
    };
    assert_eq!(
        listed("repo"),
        ["localhost/repo:1", "localhost/repo:latest"]
    );
    assert_eq!(listed("repo:2"), ["localhost/repo:2"]);
}

// `containers --filter ancestor=` matches the image's name as buildah does (a plain suffix of
// the name before its tag, or an ID prefix); `images --filter reference=` is Go's `path.Match`.
#[test]
fn filters_match_as_buildah() {
    let kiln = Kiln::new();
    let id = build(&kiln, "busybox", "FROM scratch\nCOPY f /f\n");
    let other = build(&kiln, "gl:2", "FROM scratch\nLABEL g=1\nCOPY f /f\n");
    // The shortest prefix (two characters at least) of the first ID the other does not share.
    let unique = (2..=id.len())
        .find(|&n| !other.starts_with(&id[..n]))
        .unwrap();
    kiln.run(["from", "--name", "bb", "busybox"]);
    kiln.run(["from", "--name", "g", "gl:2"]);
    let names = |filter: &str| -> Vec<String> {
        let out = kiln.run([
            "containers",
            "--format",
            "{{.ContainerName}}",
            "--filter",
            filter,
        ]);
        out.lines().map(String::from).collect()
    };
    assert_eq!(names("ancestor=box"), ["bb"]);
    assert_eq!(names("ancestor=box:latest"), ["bb"]);
    assert_eq!(names("ancestor=l:2"), ["g"]);
    assert!(names("ancestor=bus").is_empty());
    assert!(names("ancestor=busybox:lat").is_empty());
    assert_eq!(names(&format!("ancestor={}", &id[..unique])), ["bb"]);

    // `!` does not negate a class; a class may match `/`.
    assert_eq!(
        images_filtered(&kiln, &["reference=gl:[!2]"]),
        ["localhost/gl:2"]
    );
    assert!(images_filtered(&kiln, &["reference=gl:[!a]"]).is_empty());
    assert_eq!(
        images_filtered(&kiln, &["reference=localhost[/]gl:2"]),
        ["localhost/gl:2"]
    );
    assert!(images_filtered(&kiln, &["reference=gl:[2-]"]).is_empty());
    assert!(images_filtered(&kiln, &[&format!("id=sha256:{id}")]).is_empty());
    assert_eq!(
        images_filtered(&kiln, &[&format!("id={id}")]),
        ["localhost/busybox:latest"]
    );
}

// `rmi -f NAME` that only untags (the image keeps other names) leaves the image's working
// containers alone, even when NAME looks like the image's ID; one that deletes the image (here
// by REPO@DIGEST, of an image with two names) removes them first.
#[test]
fn rmi_force_removes_containers_only_with_the_image() {
    let kiln = Kiln::new();
    let id = build(&kiln, "kept", "FROM scratch\nCOPY f /f\n");
    let id_like = &id[..10];
    kiln.run(["tag", "kept", id_like]);
    kiln.run(["from", "--name", "k1", "kept"]);
    let out = kiln.run(["rmi", "-f", id_like]);
    assert_eq!(out, format!("untagged: localhost/{id_like}:latest\n"));
    let names =
        |kiln: &Kiln| -> Vec<String> { containers_json(kiln).into_iter().map(|c| c.2).collect() };
    assert_eq!(names(&kiln), ["k1"], "untagging keeps the containers");

    let gone = build(&kiln, "gone", "FROM scratch\nLABEL g=1\nCOPY f /f\n");
    kiln.run(["tag", "gone", "gone:two"]);
    kiln.run(["from", "--name", "g1", "gone"]);
    let digest = kiln.run(["images", "--format", "{{.Digest}}", "gone"]);
    let by_digest = format!("localhost/gone@{}", digest.lines().next().unwrap());
    let err = kiln.run_fail(["rmi", &by_digest]);
    assert!(!err.is_empty());
    assert_eq!(names(&kiln), ["k1", "g1"], "refused without -f");
    let out = kiln.run(["rmi", "-f", &by_digest]);
    assert!(out.lines().any(|l| l == gone), "{out}");
    assert_eq!(names(&kiln), ["k1"], "the image's container went with it");
}
