//! `--filter` for `kiln images` and `kiln containers`, with buildah's keys and matching rules.
//! Every filter given must match (they AND together); an unknown key is an error naming it.

use anyhow::{Context, Result, bail};
use chrono::{DateTime, FixedOffset};
use kiln_core::ImageConfig;
use kiln_store::{ContainerRecord, ImageRecord, Store};

/// One `KEY=VALUE` (or, for images, `KEY!=VALUE`: the opposite) filter.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub key: String,
    pub value: String,
    pub negate: bool,
}

/// Parse `KEY=VALUE` / `KEY!=VALUE` filters (`what` names the verb's filters in errors).
fn parse(specs: &[String], allow_negation: bool, what: &str) -> Result<Vec<Filter>> {
    specs
        .iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            let Some((key, value)) = s.split_once('=') else {
                bail!("invalid {what} filter {s:?}: must be in the format \"filter=value\"");
            };
            let (key, negate) = match key.strip_suffix('!') {
                Some(k) if allow_negation => (k, true),
                Some(_) => bail!("invalid {what} filter {s:?}: `!=` is not supported here"),
                None => (key, false),
            };
            Ok(Filter {
                key: key.trim().to_string(),
                value: value.to_string(),
                negate,
            })
        })
        .collect()
}

fn created(s: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(s).ok()
}

/// The images `kiln images --filter` keeps: `dangling=true|false`, `reference=PATTERN`,
/// `label=KEY[=VALUE]`, `before=IMAGE`, `since=IMAGE` (or `after=`), `id=ID` (the whole hex ID,
/// as buildah compares it: no prefix, no `sha256:`),
/// `readonly=true|false`, `intermediate=true|false`; each may be written `KEY!=VALUE` for its
/// opposite.
pub fn images(store: &Store, list: Vec<ImageRecord>, specs: &[String]) -> Result<Vec<ImageRecord>> {
    let filters = parse(specs, true, "image")?;
    // Check every key (and resolve every image a filter names) before matching any image.
    let mut checks = Vec::new();
    for f in &filters {
        let check = match f.key.as_str() {
            "dangling" | "readonly" | "intermediate" => ImageCheck::Bool(bool_value(f)?),
            "reference" => ImageCheck::Reference,
            "label" => ImageCheck::Label,
            "id" => ImageCheck::Id,
            "before" | "since" | "after" => {
                let img = store
                    .resolve_image(&f.value)
                    .with_context(|| format!("filter {}={}", f.key, f.value))?;
                let Some(t) = created(&img.created) else {
                    bail!(
                        "filter {}={}: the image has no creation time",
                        f.key,
                        f.value
                    );
                };
                ImageCheck::Time(t)
            }
            other => bail!("unsupported image filter {other:?}"),
        };
        checks.push((f, check));
    }
    let mut out = Vec::new();
    for img in list {
        let mut labels = None;
        let mut keep = true;
        for (f, check) in &checks {
            let hit = match check {
                ImageCheck::Bool(want) if f.key == "dangling" => img.names.is_empty() == *want,
                // kiln's store is read-write: no image is read-only; and kiln keeps no
                // intermediate images (an image without names that another image is built on).
                ImageCheck::Bool(want) => !*want,
                ImageCheck::Reference => img.names.iter().any(|n| reference_matches(n, &f.value)),
                ImageCheck::Id => f.value == img.id.hex(),
                ImageCheck::Time(t) => match created(&img.created) {
                    Some(c) if f.key == "before" => c < *t,
                    Some(c) => c > *t,
                    None => false,
                },
                ImageCheck::Label => {
                    if labels.is_none() {
                        let cfg = store
                            .image_config_bytes(&img)
                            .ok()
                            .and_then(|b| ImageConfig::from_slice(&b).ok());
                        labels = Some(cfg.and_then(|c| c.config.labels).unwrap_or_default());
                    }
                    let labels = labels.as_ref().expect("loaded above");
                    match f.value.split_once('=') {
                        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
                        None => labels.contains_key(&f.value),
                    }
                }
            };
            if hit == f.negate {
                keep = false;
                break;
            }
        }
        if keep {
            out.push(img);
        }
    }
    Ok(out)
}

enum ImageCheck {
    Bool(bool),
    Reference,
    Label,
    Id,
    Time(DateTime<FixedOffset>),
}

fn bool_value(f: &Filter) -> Result<bool> {
    // Go's strconv.ParseBool, as buildah reads these values.
    match f.value.as_str() {
        "true" | "1" | "t" | "T" | "TRUE" | "True" => Ok(true),
        "false" | "0" | "f" | "F" | "FALSE" | "False" => Ok(false),
        v => bail!("filter {}={v}: use true or false", f.key),
    }
}

/// The spellings of stored name `name` a `reference=` pattern is matched against, as buildah's
/// libimage makes them: the full name, without the registry, the last path component, each
/// with and without the tag or digest.
fn reference_candidates(name: &str) -> Vec<String> {
    let (trimmed, suffix) = match name.find('@') {
        Some(i) => (&name[..i], &name[i..]),
        None => {
            let slash = name.rfind('/').map_or(0, |i| i + 1);
            match name[slash..].rfind(':') {
                Some(i) => (&name[..slash + i], &name[slash + i..]),
                None => (name, ""),
            }
        }
    };
    let path = match trimmed.split_once('/') {
        Some((domain, rest))
            if domain.contains('.') || domain.contains(':') || domain == "localhost" =>
        {
            rest
        }
        _ => trimmed,
    };
    let last = trimmed.rsplit('/').next().unwrap_or(trimmed);
    let mut c = vec![
        name.to_string(),
        path.to_string(),
        format!("{last}{suffix}"),
        trimmed.to_string(),
        format!("{path}{suffix}"),
        last.to_string(),
    ];
    c.dedup();
    c
}

fn reference_matches(name: &str, pattern: &str) -> bool {
    reference_candidates(name)
        .iter()
        .any(|c| glob(pattern.as_bytes(), c.as_bytes()))
}

/// Go's `path.Match` (as buildah's reference filter uses it): `*` is any run of characters but
/// `/`, `?` one character but `/`; `[…]` a class of characters and ranges (`a-z`), negated by a
/// leading `^` only, which may match `/`; `\` escapes. A malformed pattern (an unclosed or empty
/// class, a range without an end, a trailing `\`) matches nothing.
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    let pattern: Vec<char> = String::from_utf8_lossy(pattern).chars().collect();
    let name: Vec<char> = String::from_utf8_lossy(name).chars().collect();
    let (mut pattern, mut name) = (&pattern[..], &name[..]);
    'chunks: while !pattern.is_empty() {
        let (star, chunk, rest) = scan_chunk(pattern);
        pattern = rest;
        if star && chunk.is_empty() {
            // A trailing `*` takes the rest of the name unless it has a `/`.
            return !name.contains(&'/');
        }
        // The chunk right here (when it is the last one, only if it ends the name).
        let at = match_chunk(chunk, name);
        if let Ok(Some(t)) = at
            && (t.is_empty() || !pattern.is_empty())
        {
            name = t;
            continue;
        }
        if at.is_err() {
            return false;
        }
        if star {
            // After a `*`: the first place further on (not past a `/`) where it matches.
            let mut i = 0;
            while i < name.len() && name[i] != '/' {
                match match_chunk(chunk, &name[i + 1..]) {
                    Ok(Some(t)) if pattern.is_empty() && !t.is_empty() => {}
                    Ok(Some(t)) => {
                        name = t;
                        continue 'chunks;
                    }
                    Ok(None) => {}
                    Err(()) => return false,
                }
                i += 1;
            }
        }
        return false;
    }
    name.is_empty()
}

/// Go's `scanChunk`: the leading `*`s, then the text up to the next `*` outside a class.
fn scan_chunk(p: &[char]) -> (bool, &[char], &[char]) {
    let stars = p.iter().take_while(|c| **c == '*').count();
    let p = &p[stars..];
    let mut in_class = false;
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '\\' if i + 1 < p.len() => i += 1,
            '[' => in_class = true,
            ']' => in_class = false,
            '*' if !in_class => break,
            _ => {}
        }
        i += 1;
    }
    (stars > 0, &p[..i], &p[i..])
}

/// Go's `matchChunk`: what is left of `s` after `chunk` matches its start (`None`: no match),
/// or `Err` for a malformed chunk.
fn match_chunk<'s>(chunk: &[char], mut s: &'s [char]) -> Result<Option<&'s [char]>, ()> {
    let mut chunk = chunk;
    // Once the match failed the chunk is still read through, to find it malformed.
    let mut failed = false;
    while let Some(&c) = chunk.first() {
        if !failed && s.is_empty() {
            failed = true;
        }
        match c {
            '[' => {
                let r = if failed {
                    '\0'
                } else {
                    let r = s[0];
                    s = &s[1..];
                    r
                };
                chunk = &chunk[1..];
                let negated = chunk.first() == Some(&'^');
                if negated {
                    chunk = &chunk[1..];
                }
                let mut hit = false;
                let mut ranges = 0;
                loop {
                    if chunk.first() == Some(&']') && ranges > 0 {
                        chunk = &chunk[1..];
                        break;
                    }
                    let lo = class_char(&mut chunk)?;
                    let mut hi = lo;
                    if chunk.first() == Some(&'-') {
                        chunk = &chunk[1..];
                        hi = class_char(&mut chunk)?;
                    }
                    if lo <= r && r <= hi {
                        hit = true;
                    }
                    ranges += 1;
                }
                if hit == negated {
                    failed = true;
                }
            }
            '?' => {
                if !failed {
                    if s[0] == '/' {
                        failed = true;
                    }
                    s = &s[1..];
                }
                chunk = &chunk[1..];
            }
            _ => {
                let lit = if c == '\\' {
                    chunk = &chunk[1..];
                    *chunk.first().ok_or(())?
                } else {
                    c
                };
                if !failed {
                    if s[0] != lit {
                        failed = true;
                    }
                    s = &s[1..];
                }
                chunk = &chunk[1..];
            }
        }
    }
    Ok((!failed).then_some(s))
}

/// Go's `getEsc`: one (possibly escaped) character of a class; `-`, `]` or the pattern's end
/// here, or nothing after it, is a malformed class.
fn class_char(chunk: &mut &[char]) -> Result<char, ()> {
    let mut c = *chunk;
    match c.first() {
        None | Some('-') | Some(']') => return Err(()),
        Some('\\') => {
            c = &c[1..];
            if c.is_empty() {
                return Err(());
            }
        }
        _ => {}
    }
    let r = c[0];
    *chunk = &c[1..];
    if chunk.is_empty() {
        return Err(());
    }
    Ok(r)
}

/// The working containers `kiln containers --filter` keeps: `id=PREFIX`, `name=PART` (the name
/// contains it), `ancestor=IMAGE` (made from that image: a prefix of its ID, or its name as
/// buildah matches it, see [`ancestor_name_matches`]).
pub fn containers<T>(
    store: &Store,
    list: Vec<T>,
    record: impl Fn(&T) -> &ContainerRecord,
    specs: &[String],
) -> Result<Vec<T>> {
    let filters = parse(specs, false, "container")?;
    for f in &filters {
        match f.key.as_str() {
            "id" | "name" | "ancestor" => {}
            other => bail!("invalid container filter {other:?}: use id, name or ancestor"),
        }
    }
    let images = if filters.iter().any(|f| f.key == "ancestor") {
        store.list_images()?
    } else {
        Vec::new()
    };
    // As buildah: the name of a container's image is the image's first name now ("scratch" for
    // none, empty when the image is gone or has no names), as `kiln containers` shows it.
    let image_name = |c: &ContainerRecord| -> String {
        match c.image_id {
            None if c.image_name.is_empty() => "scratch".into(),
            None => c.image_name.clone(),
            Some(id) => images
                .iter()
                .find(|i| i.id == id)
                .and_then(|i| i.names.first().cloned())
                .unwrap_or_default(),
        }
    };
    Ok(list
        .into_iter()
        .filter(|item| {
            let c = record(item);
            filters.iter().all(|f| match f.key.as_str() {
                "id" => c.id.starts_with(&f.value),
                "name" => c.name.contains(&f.value),
                _ => {
                    let image_hex = c.image_id.map(|d| d.hex()).unwrap_or_default();
                    image_hex.starts_with(&f.value)
                        || ancestor_name_matches(&image_name(c), &f.value)
                }
            })
        })
        .collect())
}

/// buildah's ancestor match on the name of a container's image: both are cut at their first
/// `:` (so a registry's port ends the name's first part); the name's first part ends with the
/// filter's (a plain suffix: `box` matches `localhost/busybox:latest`), and when the filter has
/// a `:`, the parts after it agree.
fn ancestor_name_matches(name: &str, filter: &str) -> bool {
    if filter.is_empty() {
        return true;
    }
    let name: Vec<&str> = name.split(':').collect();
    match filter.split_once(':') {
        Some((repo, rest)) => {
            let tag = rest.split(':').next().unwrap_or(rest);
            name[0].ends_with(repo) && name.get(1) == Some(&tag)
        }
        None => name[0].ends_with(filter),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_follow_go_path_match() {
        assert!(glob(b"busy*", b"busybox"));
        assert!(glob(b"*box:latest", b"busybox:latest"));
        assert!(!glob(b"*box", b"lib/busybox"), "* stops at /");
        assert!(glob(b"b?sy[a-z]ox", b"busybox"));
        assert!(!glob(b"b[^u]sybox", b"busybox"));
        assert!(glob(b"a\\*", b"a*"));
        assert!(!glob(b"a[", b"a["));
    }

    /// Outputs as buildah 1.28's `--filter reference=` gives them (Go's `path.Match`).
    #[test]
    fn globs_as_go_path_match() {
        // `!` is no negation; `^` is, and a class may match `/`.
        assert!(glob(b"repo:[!2]", b"repo:2"));
        assert!(!glob(b"repo:[!a]", b"repo:2"));
        assert!(glob(b"repo:[^a]", b"repo:2"));
        assert!(glob(b"localhost[/]repo:2", b"localhost/repo:2"));
        assert!(glob(b"localhost[^a]repo:2", b"localhost/repo:2"));
        assert!(!glob(b"localhost?repo:2", b"localhost/repo:2"));
        assert!(glob(b"repo:[\\2]", b"repo:2"));
        assert!(glob(b"[a-c]x", b"bx"));
        // Malformed: an empty class, a range without an end, a trailing `\\`.
        assert!(!glob(b"repo:[]2]", b"repo:2"));
        assert!(!glob(b"repo:[]2]", b"repo:]"));
        assert!(!glob(b"repo:[2-]", b"repo:2"));
        assert!(!glob(b"repo:[2-]", b"repo:-"));
        assert!(!glob(b"repo:2\\", b"repo:2\\"));
        assert!(glob(b"r*:2", b"repo:2"));
        assert!(glob(b"*/repo:2", b"localhost/repo:2"));
        assert!(!glob(b"*:2", b"localhost/repo:2"));
        assert!(glob(b"*a*b", b"xaybzb"));
        assert!(!glob(b"*a", b"ab/a"));
    }

    #[test]
    fn references_match_as_buildah_does() {
        let n = "127.0.0.1:5055/lib/busybox:1.36";
        for p in [
            "127.0.0.1:5055/lib/busybox:1.36",
            "lib/busybox",
            "busybox:1.36",
            "busybox",
            "lib/busybox:1.36",
            "127.0.0.1:5055/lib/*",
            "busy*",
            "*:1.36",
        ] {
            assert!(reference_matches(n, p), "{p}");
        }
        for p in [
            "box",
            "busybox:1",
            "*box:latest",
            "other/busybox",
            "*/*/*/*",
        ] {
            assert!(!reference_matches(n, p), "{p}");
        }
        assert!(reference_matches("localhost/plain:latest", "plain"));
        assert!(reference_matches(
            "localhost/plain:latest",
            "localhost/plain"
        ));
    }

    /// Outputs as buildah 1.28's `containers --filter ancestor=` gives them.
    #[test]
    fn ancestors_match_as_buildah() {
        let n = "localhost/busybox:latest";
        for f in [
            "busybox",
            "box",
            "ybox",
            "busybox:latest",
            "box:latest",
            "host/busybox",
            "",
        ] {
            assert!(ancestor_name_matches(n, f), "{f}");
        }
        for f in ["bus", "busybox:lat", "busybox:1", "other"] {
            assert!(!ancestor_name_matches(n, f), "{f}");
        }
        // A registry's port: the name's first part ends before it.
        let n = "127.0.0.1:5055/busybox:latest";
        for f in ["0.1:5055/busybox", "127.0.0.1:5055/busybox", "1"] {
            assert!(ancestor_name_matches(n, f), "{f}");
        }
        for f in ["busybox", "box", "busybox:latest", "5055/busybox"] {
            assert!(!ancestor_name_matches(n, f), "{f}");
        }
        assert!(ancestor_name_matches("localhost/repo:2", "po:2"));
        assert!(!ancestor_name_matches("localhost/repo", "repo:latest"));
        assert!(ancestor_name_matches("scratch", "scratch"));
    }

    #[test]
    fn filter_syntax() {
        let f = parse(
            &["label=a=b".into(), "dangling!=true".into()],
            true,
            "image",
        )
        .unwrap();
        assert_eq!(
            (f[0].key.as_str(), f[0].value.as_str(), f[0].negate),
            ("label", "a=b", false)
        );
        assert!(f[1].negate);
        assert!(parse(&["dangling".into()], true, "image").is_err());
        assert!(parse(&["name!=x".into()], false, "container").is_err());
    }
}
