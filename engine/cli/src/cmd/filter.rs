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
/// `label=KEY[=VALUE]`, `before=IMAGE`, `since=IMAGE` (or `after=`), `id=ID`,
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
                ImageCheck::Id => {
                    let hex = img.id.hex();
                    f.value == hex || f.value == img.id.to_string() || f.value == img.short_id()
                }
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

/// Go's `path.Match`: `*` and `?` do not match `/`; `[…]` classes with ranges and `^`/`!`
/// negation; `\` escapes.
fn glob(p: &[u8], s: &[u8]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(b'*') => {
            let rest = &p[1..];
            for i in 0..=s.len() {
                if glob(rest, &s[i..]) {
                    return true;
                }
                if i < s.len() && s[i] == b'/' {
                    break;
                }
            }
            false
        }
        Some(b'?') => !s.is_empty() && s[0] != b'/' && glob(&p[1..], &s[1..]),
        Some(b'[') => {
            let Some(&c) = s.first() else { return false };
            let mut i = 1;
            let negate = matches!(p.get(1), Some(b'^') | Some(b'!'));
            if negate {
                i += 1;
            }
            let mut hit = false;
            let mut first = true;
            while i < p.len() && (first || p[i] != b']') {
                first = false;
                let lo = if p[i] == b'\\' && i + 1 < p.len() {
                    i += 1;
                    p[i]
                } else {
                    p[i]
                };
                i += 1;
                let hi = if p.get(i) == Some(&b'-') && p.get(i + 1).is_some_and(|x| *x != b']') {
                    i += 2;
                    p[i - 1]
                } else {
                    lo
                };
                if lo <= c && c <= hi {
                    hit = true;
                }
            }
            if i >= p.len() {
                return false; // unclosed class: Go's ErrBadPattern, no match
            }
            hit != negate && c != b'/' && glob(&p[i + 1..], &s[1..])
        }
        Some(b'\\') if p.len() > 1 => !s.is_empty() && s[0] == p[1] && glob(&p[2..], &s[1..]),
        Some(&c) => !s.is_empty() && s[0] == c && glob(&p[1..], &s[1..]),
    }
}

/// The working containers `kiln containers --filter` keeps: `id=PREFIX`, `name=PART` (the name
/// contains it), `ancestor=IMAGE` (made from that image: its name, with or without registry and
/// tag, or an ID prefix).
pub fn containers<T>(
    store: &Store,
    list: Vec<T>,
    record: impl Fn(&T) -> &ContainerRecord,
    specs: &[String],
) -> Result<Vec<T>> {
    let filters = parse(specs, false, "container")?;
    let mut ancestors = Vec::new();
    for f in &filters {
        match f.key.as_str() {
            "id" | "name" => {}
            // The image the store resolves the name to, when it has one.
            "ancestor" => ancestors.push(store.resolve_image(&f.value).ok().map(|i| i.id)),
            other => bail!("invalid container filter {other:?}: use id, name or ancestor"),
        }
    }
    Ok(list
        .into_iter()
        .filter(|item| {
            let c = record(item);
            let mut ancestor = ancestors.iter();
            filters.iter().all(|f| match f.key.as_str() {
                "id" => c.id.starts_with(&f.value),
                "name" => c.name.contains(&f.value),
                _ => {
                    let resolved = ancestor.next().copied().flatten();
                    let image_hex = c.image_id.map(|d| d.hex()).unwrap_or_default();
                    (resolved.is_some() && resolved == c.image_id)
                        || (f.value.len() >= 3
                            && !image_hex.is_empty()
                            && image_hex.starts_with(&f.value))
                        || ancestor_name_matches(&c.image_name, &f.value)
                }
            })
        })
        .collect())
}

/// buildah's ancestor match on the name a container was made from: the repository ends with the
/// filter's (at a path boundary), and the tags agree when the filter has one.
fn ancestor_name_matches(name: &str, filter: &str) -> bool {
    let split = |s: &str| -> (String, Option<String>) {
        let slash = s.rfind('/').map_or(0, |i| i + 1);
        match s[slash..].rfind(':') {
            Some(i) => (
                s[..slash + i].to_string(),
                Some(s[slash + i + 1..].to_string()),
            ),
            None => (s.to_string(), None),
        }
    };
    let (repo, tag) = split(name);
    let (want_repo, want_tag) = split(filter);
    let repo_ok = repo == want_repo || repo.ends_with(&format!("/{want_repo}"));
    let tag_ok = match (&want_tag, &tag) {
        (None, _) => true,
        (Some(w), Some(t)) => w == t,
        (Some(w), None) => w == "latest",
    };
    !want_repo.is_empty() && repo_ok && tag_ok
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
        for p in ["box", "busybox:1", "*box:latest", "other/busybox", "*/*/*/*"] {
            assert!(!reference_matches(n, p), "{p}");
        }
        assert!(reference_matches("localhost/plain:latest", "plain"));
        assert!(reference_matches(
            "localhost/plain:latest",
            "localhost/plain"
        ));
    }

    #[test]
    fn ancestors_match_by_repository_suffix_and_tag() {
        let n = "127.0.0.1:5055/busybox:latest";
        assert!(ancestor_name_matches(n, "busybox"));
        assert!(ancestor_name_matches(n, "busybox:latest"));
        assert!(ancestor_name_matches(n, "127.0.0.1:5055/busybox"));
        assert!(!ancestor_name_matches(n, "box"));
        assert!(!ancestor_name_matches(n, "busybox:1"));
        assert!(ancestor_name_matches("busybox", "busybox:latest"));
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
