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
