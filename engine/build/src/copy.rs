//! COPY and ADD: expanding sources (context paths and globs filtered by the ignore file, files
//! of another stage, heredoc files, URLs, local archives), hashing them for the build cache, and
//! writing them into a step's upper directory with the destination resolved through the stage's
//! merged filesystem (so `/bin -> usr/bin` and existing directories are honoured).

use crate::error::{BuildError, Result};
use crate::ignore::{self, IgnoreRules};
use crate::layers::{LayerStack, Lookup, components, is_metacopy};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

/// Where sources are read from.
pub enum SourceRoot<'a> {
    /// The build context, filtered by its ignore rules.
    Context {
        dir: &'a Path,
        ignore: &'a IgnoreRules,
    },
    /// A flattened stage or image filesystem.
    Rootfs(&'a Path),
}

/// One thing to copy.
#[derive(Debug)]
pub struct Item {
    /// Host path of the source (file, dir or symlink).
    pub host: PathBuf,
    /// Name under the destination when the destination is a directory.
    pub name: String,
    /// Copy a directory's contents rather than the directory.
    pub contents_of_dir: bool,
    /// Context-relative path (for ignore checks inside directories).
    pub rel: String,
    /// Extract this archive (ADD).
    pub extract: bool,
    /// The path kept below the destination by `COPY --parents`: the source path, or what follows
    /// a `/./` pivot in it.
    pub tree_path: String,
}

/// Sources expanded for one step, with a digest of everything they contain.
pub struct Expanded {
    /// Items in order.
    pub items: Vec<Item>,
    /// sha256 over names, modes, owners, sizes, link targets and content.
    pub digest: String,
    /// Temp files (heredocs, downloads) to remove after the copy.
    pub _temps: Vec<tempfile::TempPath>,
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> BuildError {
    move |source| BuildError::Io { what, source }
}

fn clean_rel(p: &str) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            c => out.push(c),
        }
    }
    Some(out.join("/"))
}

/// Expand `sources` of a COPY/ADD.
pub fn expand(
    root: &SourceRoot<'_>,
    sources: &[kiln_plugin_host::plan::CopySource],
    is_add: bool,
    checksum: Option<&str>,
    location: &str,
    scratch: &Path,
) -> Result<Expanded> {
    use kiln_plugin_host::plan::CopySource;
    let step_err = |m: String| BuildError::Step {
        location: location.to_string(),
        message: m,
    };
    let mut items = Vec::new();
    let mut temps = Vec::new();
    for s in sources {
        match s {
            CopySource::Inline((name, content)) => {
                let mut t = tempfile::NamedTempFile::new_in(scratch)
                    .map_err(io("creating heredoc file".into()))?;
                t.write_all(content)
                    .map_err(io("writing heredoc file".into()))?;
                let p = t.into_temp_path();
                fs::set_permissions(&p, fs::Permissions::from_mode(0o644))
                    .map_err(io("chmod heredoc file".into()))?;
                items.push(Item {
                    host: p.to_path_buf(),
                    name: name.clone(),
                    contents_of_dir: false,
                    rel: name.clone(),
                    extract: false,
                    tree_path: name.clone(),
                });
                temps.push(p);
            }
            CopySource::Url(url) => {
                if !is_add {
                    return Err(step_err(format!("COPY cannot fetch URLs ({url}); use ADD")));
                }
                let (p, name) =
                    download(url, scratch).map_err(|e| step_err(format!("ADD {url}: {e}")))?;
                if let Some(want) = checksum {
                    let got = format!("sha256:{}", file_sha256(&p)?);
                    if !want.eq_ignore_ascii_case(&got) {
                        return Err(step_err(format!(
                            "ADD {url}: --checksum={want} but the download is {got}"
                        )));
                    }
                }
                items.push(Item {
                    host: p.to_path_buf(),
                    tree_path: name.clone(),
                    name,
                    contents_of_dir: false,
                    rel: String::new(),
                    extract: false,
                });
                temps.push(p);
            }
            CopySource::Path(p) => {
                let matches = match root {
                    SourceRoot::Context { dir, ignore } => {
                        context_matches(dir, ignore, p, location)?
                    }
                    SourceRoot::Rootfs(dir) => rootfs_matches(dir, p, location)?,
                };
                if matches.is_empty() {
                    let why = match root {
                        SourceRoot::Context { dir, .. }
                            if !context_matches(dir, &IgnoreRules::default(), p, location)?
                                .is_empty() =>
                        {
                            "excluded by the build context's ignore file"
                        }
                        SourceRoot::Context { .. } => {
                            "no such file or directory in the build context"
                        }
                        SourceRoot::Rootfs(_) => "no such file or directory in the source stage",
                    };
                    return Err(step_err(format!("COPY source {p:?}: {why}")));
                }
                // `a/./b/c` keeps `b/c` under the destination with --parents.
                let pivot = p
                    .split_once("/./")
                    .and_then(|(before, _)| clean_rel(before))
                    .filter(|b| !b.is_empty());
                for (host, rel) in matches {
                    let md =
                        fs::metadata(&host).map_err(io(format!("reading {}", host.display())))?;
                    let name = rel.rsplit('/').next().unwrap_or("").to_string();
                    let extract = is_add && md.is_file() && is_archive(&host);
                    let tree_path = match &pivot {
                        Some(b) => rel
                            .strip_prefix(b.as_str())
                            .map(|r| r.trim_start_matches('/'))
                            .unwrap_or(&rel)
                            .to_string(),
                        None => rel.clone(),
                    };
                    items.push(Item {
                        host,
                        name,
                        contents_of_dir: md.is_dir(),
                        rel,
                        extract,
                        tree_path,
                    });
                }
            }
        }
    }
    let mut h = Sha256::new();
    for it in &items {
        h.update(it.name.as_bytes());
        h.update([0, it.contents_of_dir as u8, it.extract as u8]);
        hash_tree(&it.host, &mut h, root, &it.rel)?;
    }
    Ok(Expanded {
        items,
        digest: hex::encode(h.finalize()),
        _temps: temps,
    })
}

/// Hex SHA-256 of a file's content.
fn file_sha256(p: &Path) -> Result<String> {
    let mut f = fs::File::open(p).map_err(io(format!("reading {}", p.display())))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(io(format!("reading {}", p.display())))?;
    Ok(hex::encode(h.finalize()))
}

/// `COPY --from=STAGE` sources that are all plain paths naming regular files (symlinks
/// followed inside the stage), found through the stage's layer `stack` so that no flattened copy
/// of the stage is needed. `None` when any source is something else (a glob, a directory, a
/// missing path, a metadata-only overlay copy-up): the caller then flattens the stage.
pub fn expand_from_stack(
    stack: &LayerStack,
    sources: &[kiln_plugin_host::plan::CopySource],
    location: &str,
) -> Result<Option<Expanded>> {
    use kiln_plugin_host::plan::CopySource;
    let mut items = Vec::new();
    for s in sources {
        let CopySource::Path(p) = s else {
            return Ok(None);
        };
        if p.contains("/./") {
            return Ok(None);
        }
        let Some(rel) = clean_rel(p).filter(|r| !r.is_empty() && !ignore::has_glob(r)) else {
            return Ok(None);
        };
        let (_, found) = stack.resolve(&rel, true).map_err(|e| BuildError::Step {
            location: location.into(),
            message: format!("COPY --from source {rel:?}: {e}"),
        })?;
        match found {
            Lookup::Found(host, md) if md.is_file() && !is_metacopy(&host) => {
                let name = rel.rsplit('/').next().unwrap_or("").to_string();
                items.push(Item {
                    host,
                    name,
                    contents_of_dir: false,
                    tree_path: rel.clone(),
                    rel,
                    extract: false,
                });
            }
            _ => return Ok(None),
        }
    }
    let mut h = Sha256::new();
    for it in &items {
        h.update(it.name.as_bytes());
        h.update([0, 0, 0]);
        hash_tree(&it.host, &mut h, &SourceRoot::Rootfs(&it.host), &it.rel)?;
    }
    Ok(Some(Expanded {
        items,
        digest: hex::encode(h.finalize()),
        _temps: Vec::new(),
    }))
}

fn excluded(root: &SourceRoot<'_>, rel: &str) -> bool {
    match root {
        SourceRoot::Context { ignore, .. } => ignore.excluded(rel),
        SourceRoot::Rootfs(_) => false,
    }
}

/// A digest of everything below `p` (names, modes, owners, link targets, content), for cache keys.
pub fn tree_digest(p: &Path) -> Result<String> {
    let mut h = Sha256::new();
    hash_tree(p, &mut h, &SourceRoot::Rootfs(p), "")?;
    Ok(hex::encode(h.finalize()))
}

/// Copy `src` (file, symlink or directory tree) to the new path `dst`, keeping modes, owners and
/// times.
pub fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    let root = SourceRoot::Rootfs(src);
    Copier::new(
        Attrs {
            owner: None,
            chmod: None,
            strip_setid: false,
        },
        &root,
        None,
    )
    .entry(src, dst, "")
}

/// Whether an excluded context directory must still be walked for re-included paths.
fn walk_excluded(root: &SourceRoot<'_>, rel: &str) -> bool {
    matches!(root, SourceRoot::Context { ignore, .. } if ignore.may_reinclude_below(rel))
}

fn hash_tree(p: &Path, h: &mut Sha256, root: &SourceRoot<'_>, rel: &str) -> Result<()> {
    let md = fs::symlink_metadata(p).map_err(io(format!("reading {}", p.display())))?;
    h.update(rel.as_bytes());
    h.update(md.mode().to_le_bytes());
    if matches!(root, SourceRoot::Rootfs(_)) {
        h.update(md.uid().to_le_bytes());
        h.update(md.gid().to_le_bytes());
    }
    if md.file_type().is_symlink() {
        h.update(
            fs::read_link(p)
                .map_err(io(format!("reading {}", p.display())))?
                .as_os_str()
                .as_encoded_bytes(),
        );
    } else if md.is_file() {
        let mut f = fs::File::open(p).map_err(io(format!("reading {}", p.display())))?;
        let mut fh = Sha256::new();
        std::io::copy(&mut f, &mut fh).map_err(io(format!("reading {}", p.display())))?;
        h.update(fh.finalize());
    } else if md.is_dir() {
        let mut names: Vec<_> = fs::read_dir(p)
            .map_err(io(format!("listing {}", p.display())))?
            .flatten()
            .map(|e| e.file_name())
            .collect();
        names.sort();
        for n in names {
            let child_rel = if rel.is_empty() {
                n.to_string_lossy().to_string()
            } else {
                format!("{rel}/{}", n.to_string_lossy())
            };
            if excluded(root, &child_rel)
                && !(walk_excluded(root, &child_rel) && p.join(&n).is_dir())
            {
                continue;
            }
            hash_tree(&p.join(&n), h, root, &child_rel)?;
        }
    }
    Ok(())
}

/// Context paths matching `pattern` (a path or glob), as (host path, context-relative path).
fn context_matches(
    dir: &Path,
    ig: &IgnoreRules,
    pattern: &str,
    location: &str,
) -> Result<Vec<(PathBuf, String)>> {
    let Some(rel) = clean_rel(pattern) else {
        return Err(BuildError::Step {
            location: location.into(),
            message: format!("COPY source {pattern:?} is outside the build context"),
        });
    };
    let canon_root =
        fs::canonicalize(dir).map_err(io(format!("reading build context {}", dir.display())))?;
    let mut out = Vec::new();
    for rel in glob_paths(dir, &rel)? {
        let host = dir.join(&rel);
        let canon = fs::canonicalize(&host).map_err(io(format!("reading {}", host.display())))?;
        if !canon.starts_with(&canon_root) {
            return Err(BuildError::Step {
                location: location.into(),
                message: format!(
                    "COPY source {rel:?} is a symlink pointing outside the build context ({})",
                    canon.display()
                ),
            });
        }
        // An excluded directory stays a source when a `!` rule may re-include something below
        // it: the copy walks in and takes only what is re-included (Docker's semantics).
        if !rel.is_empty() && ig.excluded(&rel) && !(canon.is_dir() && ig.may_reinclude_below(&rel))
        {
            continue;
        }
        out.push((canon, rel));
    }
    Ok(out)
}

/// Paths of a flattened rootfs matching `pattern`, symlinks resolved inside it.
fn rootfs_matches(dir: &Path, pattern: &str, location: &str) -> Result<Vec<(PathBuf, String)>> {
    let stack = LayerStack {
        dirs: vec![dir.to_path_buf()],
    };
    let rel = clean_rel(pattern).unwrap_or_default();
    let mut out = Vec::new();
    let candidates = if ignore::has_glob(&rel) {
        glob_paths(dir, &rel)?
    } else {
        vec![rel]
    };
    for rel in candidates {
        let (resolved, found) = stack.resolve(&rel, true).map_err(|e| BuildError::Step {
            location: location.into(),
            message: format!("COPY --from source {rel:?}: {e}"),
        })?;
        if let Lookup::Found(host, _) = found {
            let _ = resolved;
            out.push((host, rel));
        }
    }
    Ok(out)
}

/// Expand a path with glob characters against the entries below `dir` (one component at a time).
fn glob_paths(dir: &Path, rel: &str) -> Result<Vec<String>> {
    if !ignore::has_glob(rel) {
        return Ok(if fs::symlink_metadata(dir.join(rel)).is_ok() {
            vec![rel.to_string()]
        } else {
            vec![]
        });
    }
    let mut current = vec![String::new()];
    for comp in components(rel) {
        let mut next = Vec::new();
        for base in &current {
            if ignore::has_glob(&comp) {
                let d = dir.join(base);
                let Ok(rd) = fs::read_dir(&d) else { continue };
                let mut names: Vec<String> = rd
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .collect();
                names.sort();
                for n in names {
                    if ignore::glob(comp.as_bytes(), n.as_bytes()) {
                        next.push(if base.is_empty() {
                            n
                        } else {
                            format!("{base}/{n}")
                        });
                    }
                }
            } else {
                let p = if base.is_empty() {
                    comp.clone()
                } else {
                    format!("{base}/{comp}")
                };
                if fs::symlink_metadata(dir.join(&p)).is_ok() {
                    next.push(p);
                }
            }
        }
        current = next;
    }
    Ok(current)
}

/// Whether ADD extracts `p`: what it holds, decompressed (gzip, bzip2, xz, zstd or none), starts
/// with a valid tar header — as Docker decides; a compressed file that is no tar is copied as it is.
fn is_archive(p: &Path) -> bool {
    let Ok(f) = fs::File::open(p) else {
        return false;
    };
    let Ok(mut r) = decompress_any(f) else {
        return false;
    };
    let mut head = [0u8; 512];
    let mut n = 0;
    while n < head.len() {
        match r.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(_) => return false,
        }
    }
    n == head.len() && is_tar_header(&head)
}

/// A tar header block: its checksum field (octal) equals the sum of its bytes with that field
/// counted as spaces. An all-zero block (the end of an archive) is not one.
fn is_tar_header(h: &[u8; 512]) -> bool {
    let field = &h[148..156];
    let digits: String = field
        .iter()
        .map(|&b| b as char)
        .take_while(|c| *c != '\0')
        .collect::<String>()
        .trim()
        .to_string();
    let Ok(stored) = u32::from_str_radix(&digits, 8) else {
        return false;
    };
    let sum: u32 = h
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                b as u32
            }
        })
        .sum();
    stored == sum && h.iter().any(|&b| b != 0)
}

fn download(
    url: &str,
    scratch: &Path,
) -> std::result::Result<(tempfile::TempPath, String), String> {
    let mut resp = ureq::get(url).call().map_err(|e| e.to_string())?;
    // The file's time is the server's Last-Modified, as the Dockerfile reference says; without
    // one, the epoch (as buildah), so the layer does not change with the time of the build.
    let modified = resp
        .headers()
        .get("last-modified")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
        .map(|t| t.timestamp());
    let mut t = tempfile::NamedTempFile::new_in(scratch).map_err(|e| e.to_string())?;
    let mut body = resp.body_mut().as_reader();
    std::io::copy(&mut body, &mut t).map_err(|e| e.to_string())?;
    let p = t.into_temp_path();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).map_err(|e| e.to_string())?;
    set_mtime(&p, modified.unwrap_or(0), 0);
    Ok((p, url_file_name(url)))
}

/// The name ADD gives a download: the last element of the URL's path (`…/sub/` → `sub`), or
/// `download` when the path has none.
fn url_file_name(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let path = path.split_once("://").map_or(path, |(_, rest)| rest);
    path.split_once('/')
        .map(|(_, p)| p)
        .unwrap_or("")
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty())
        .unwrap_or("download")
        .to_string()
}

/// How copied files are owned and moded.
#[derive(Clone, Copy, Debug)]
pub struct Attrs {
    /// Owner for everything copied (`None`: keep the source's).
    pub owner: Option<(u32, u32)>,
    /// Mode bits for everything copied (`None`: keep the source's).
    pub chmod: Option<crate::mode::ModeSpec>,
    /// Drop the setuid and setgid bits of the sources (not of an explicit `chmod`): what
    /// `buildah bud` does to build-context files, which it treats as untrusted.
    pub strip_setid: bool,
}

/// Write `items` into `upper` at `dest` (absolute, resolved through `stack` = the stage's
/// filesystem before the step). `root` decides ignore filtering inside directories and owners;
/// `excludes` (`COPY --exclude`) leaves out paths below each source; with `parents`
/// (`COPY --parents`) each item keeps its [`Item::tree_path`] below `dest`.
#[allow(clippy::too_many_arguments)]
pub fn write_items(
    items: &[Item],
    dest: &str,
    stack: &LayerStack,
    upper: &Path,
    attrs: Attrs,
    root: &SourceRoot<'_>,
    excludes: Option<&IgnoreRules>,
    parents: bool,
    location: &str,
) -> Result<()> {
    let step_err = |m: String| BuildError::Step {
        location: location.to_string(),
        message: m,
    };
    let dest_is_dir_syntax = dest.ends_with('/')
        || dest.ends_with("/.")
        || dest.ends_with("/..")
        || dest == "."
        || dest == "..";
    let (resolved, found) = stack
        .resolve(dest, true)
        .map_err(|e| step_err(format!("destination {dest}: {e}")))?;
    // A directory of the image, or one this step made already (the working directory).
    let dest_exists_dir = matches!(&found, Lookup::Found(_, m) if m.is_dir())
        || fs::symlink_metadata(resolved.iter().fold(upper.to_path_buf(), |p, c| p.join(c)))
            .is_ok_and(|m| m.is_dir());
    let many = items.len() > 1;
    if many && !dest_is_dir_syntax && !dest_exists_dir {
        return Err(step_err(format!(
            "when copying several sources, the destination {dest:?} must be a directory and end with /"
        )));
    }
    let mut copier = Copier::new(attrs, root, excludes);
    if parents {
        // COPY --parents: every source keeps its path below the destination directory.
        for it in items {
            copier.start_source(&it.rel);
            let mut comps = resolved.clone();
            comps.extend(components(&it.tree_path));
            if it.contents_of_dir {
                let dir = ensure_dir(stack, upper, &comps, attrs.owner, location)?;
                copier.dir_contents(&it.host, &dir, &it.rel)?;
            } else {
                let Some((name, parent)) = comps.split_last() else {
                    return Err(step_err(format!(
                        "COPY --parents source {:?} has no name",
                        it.rel
                    )));
                };
                let dir = ensure_dir(stack, upper, parent, attrs.owner, location)?;
                copier.entry(&it.host, &dir.join(name), &it.rel)?;
            }
        }
        return Ok(());
    }
    for it in items {
        copier.start_source(&it.rel);
        let into_dir =
            it.contents_of_dir || it.extract || many || dest_is_dir_syntax || dest_exists_dir;
        if into_dir {
            let dir = ensure_dir(stack, upper, &resolved, attrs.owner, location)?;
            if it.extract {
                let f = fs::File::open(&it.host)
                    .map_err(io(format!("reading {}", it.host.display())))?;
                let tar = decompress_any(f)
                    .map_err(io(format!("decompressing {}", it.host.display())))?;
                // As BuildKit (0.23+): --chown applies to the archive's own entries as they are
                // written, never to what the destination already held.
                let opts = kiln_layer::ApplyOptions {
                    clean_names: true,
                    owner: attrs.owner,
                    ..Default::default()
                };
                kiln_layer::apply_layer(tar, &dir, &opts).map_err(|e| BuildError::Layer {
                    what: format!("extracting {}", it.name),
                    source: e,
                })?;
            } else if it.contents_of_dir {
                copier.dir_contents(&it.host, &dir, &it.rel)?;
            } else {
                copier.entry(&it.host, &dir.join(&it.name), &it.rel)?;
            }
        } else {
            let (parent, name) = match resolved.split_last() {
                Some((n, p)) => (p.to_vec(), n.clone()),
                None => {
                    return Err(step_err(format!(
                        "destination {dest:?} is the root directory"
                    )));
                }
            };
            let dir = ensure_dir(stack, upper, &parent, attrs.owner, location)?;
            copier.entry(&it.host, &dir.join(name), &it.rel)?;
        }
    }
    Ok(())
}

fn decompress_any(f: fs::File) -> std::io::Result<Box<dyn Read>> {
    let mut r = std::io::BufReader::new(f);
    let head = std::io::BufRead::fill_buf(&mut r)?.to_vec();
    if head.starts_with(b"BZh") {
        return Ok(Box::new(bzip2::read::MultiBzDecoder::new(r)));
    }
    if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        return Ok(Box::new(xz2::read::XzDecoder::new_multi_decoder(r)));
    }
    kiln_layer::decompress(r)
}

/// Make sure directory `comps` exists in `upper`, creating parents with the attributes they have
/// in the lower layers. Directories that exist nowhere are made 0755 and owned by `owner` (the
/// `--chown` user, else root), as buildah and BuildKit do; `--chmod` never applies to them.
pub(crate) fn ensure_dir(
    stack: &LayerStack,
    upper: &Path,
    comps: &[String],
    owner: Option<(u32, u32)>,
    location: &str,
) -> Result<PathBuf> {
    let mut host = upper.to_path_buf();
    for (i, c) in comps.iter().enumerate() {
        host.push(c);
        if fs::symlink_metadata(&host)
            .map(|m| m.is_dir())
            .unwrap_or(false)
        {
            continue;
        }
        let lower = stack
            .lstat(&comps[..=i])
            .map_err(io(format!("looking up /{}", comps[..=i].join("/"))))?;
        if fs::symlink_metadata(&host).is_ok()
            || matches!(&lower, Lookup::Found(_, m) if !m.is_dir())
        {
            // A file (or a link the destination resolved past) is not replaced by a directory,
            // as with buildah and BuildKit.
            return Err(BuildError::Step {
                location: location.into(),
                message: format!(
                    "/{} already exists and is not a directory",
                    comps[..=i].join("/")
                ),
            });
        }
        fs::create_dir(&host).map_err(|e| BuildError::Step {
            location: location.into(),
            message: format!("creating /{}: {e}", comps[..=i].join("/")),
        })?;
        let (mode, uid, gid, mtime) = match &lower {
            Lookup::Found(_, m) if m.is_dir() => (
                m.mode() & 0o7777,
                m.uid(),
                m.gid(),
                Some((m.mtime(), m.mtime_nsec())),
            ),
            _ => {
                let (u, g) = owner.unwrap_or((0, 0));
                (0o755, u, g, None)
            }
        };
        lchown(&host, uid, gid)?;
        fs::set_permissions(&host, fs::Permissions::from_mode(mode))
            .map_err(io(format!("chmod {}", host.display())))?;
        if let Some((s, ns)) = mtime {
            set_mtime(&host, s, ns);
        }
    }
    Ok(host)
}

/// Copies one step's sources: the attributes to give, where the sources come from (ownership
/// and ignore rules), `--exclude` patterns, and the hardlinks seen so far, so files linked in the
/// source stay linked.
struct Copier<'r, 's> {
    attrs: Attrs,
    root: &'r SourceRoot<'s>,
    /// `COPY --exclude` patterns, matched against paths below the source being copied.
    excludes: Option<&'r IgnoreRules>,
    /// The [`Item::rel`] of the source being copied (what `excludes` match below).
    source_rel: String,
    /// Regular files with several links already copied: (device, inode) → their copy.
    links: HashMap<(u64, u64), PathBuf>,
}

impl<'r, 's> Copier<'r, 's> {
    fn new(attrs: Attrs, root: &'r SourceRoot<'s>, excludes: Option<&'r IgnoreRules>) -> Self {
        Copier {
            attrs,
            root,
            excludes,
            source_rel: String::new(),
            links: HashMap::new(),
        }
    }

    /// Begin copying the source whose [`Item::rel`] is `rel`: files linked in it stay linked,
    /// but not to files of other sources (each source is copied on its own, as BuildKit does).
    fn start_source(&mut self, rel: &str) {
        self.source_rel = rel.to_string();
        self.links.clear();
    }

    /// Whether `--exclude` leaves out `rel` (below the current source).
    fn excluded_by_flag(&self, rel: &str) -> bool {
        let Some(ex) = self.excludes else {
            return false;
        };
        let below = if self.source_rel.is_empty() {
            rel
        } else {
            rel.strip_prefix(self.source_rel.as_str())
                .and_then(|r| r.strip_prefix('/'))
                .unwrap_or(rel)
        };
        ex.excluded(below)
    }

    fn dir_contents(&mut self, src: &Path, dst: &Path, rel: &str) -> Result<()> {
        let mut names: Vec<_> = fs::read_dir(src)
            .map_err(io(format!("listing {}", src.display())))?
            .flatten()
            .map(|e| e.file_name())
            .collect();
        names.sort();
        for n in names {
            let child_rel = if rel.is_empty() {
                n.to_string_lossy().to_string()
            } else {
                format!("{rel}/{}", n.to_string_lossy())
            };
            if self.excluded_by_flag(&child_rel) {
                continue;
            }
            if excluded(self.root, &child_rel) {
                if walk_excluded(self.root, &child_rel) && src.join(&n).is_dir() {
                    // A re-included path may be below: walk in, creating the directory only if needed.
                    let sub = dst.join(&n);
                    let before = sub.exists();
                    self.dir_filtered(&src.join(&n), &sub, &child_rel)?;
                    if !before {
                        let _ = fs::remove_dir(&sub);
                    }
                }
                continue;
            }
            self.entry(&src.join(&n), &dst.join(&n), &child_rel)?;
        }
        Ok(())
    }

    fn dir_filtered(&mut self, src: &Path, dst: &Path, rel: &str) -> Result<()> {
        if !dst.exists() {
            fs::create_dir(dst).map_err(io(format!("creating {}", dst.display())))?;
            apply_attrs(src, dst, self.attrs, self.root)?;
        }
        self.dir_contents(src, dst, rel)
    }

    fn entry(&mut self, src: &Path, dst: &Path, rel: &str) -> Result<()> {
        let md = fs::symlink_metadata(src).map_err(io(format!("reading {}", src.display())))?;
        if let Ok(existing) = fs::symlink_metadata(dst)
            && !(existing.is_dir() && md.is_dir())
        {
            if existing.is_dir() {
                fs::remove_dir_all(dst).map_err(io(format!("replacing {}", dst.display())))?;
            } else {
                fs::remove_file(dst).map_err(io(format!("replacing {}", dst.display())))?;
            }
            self.links.retain(|_, p| !p.starts_with(dst));
        }
        let ft = md.file_type();
        if ft.is_symlink() {
            let target = fs::read_link(src).map_err(io(format!("reading {}", src.display())))?;
            symlink(&target, dst).map_err(io(format!("creating {}", dst.display())))?;
            let (uid, gid) = owner_for(&md, self.attrs, self.root);
            lchown(dst, uid, gid)?;
            set_mtime(dst, md.mtime(), md.mtime_nsec());
        } else if ft.is_dir() {
            if !dst.exists() {
                fs::create_dir(dst).map_err(io(format!("creating {}", dst.display())))?;
            }
            self.dir_contents(src, dst, rel)?;
            apply_attrs(src, dst, self.attrs, self.root)?;
        } else if ft.is_file() {
            let inode = (md.dev(), md.ino());
            if md.nlink() > 1
                && let Some(first) = self.links.get(&inode)
                && fs::hard_link(first, dst).is_ok()
            {
                return Ok(());
            }
            fs::copy(src, dst).map_err(io(format!(
                "copying {} to {}",
                src.display(),
                dst.display()
            )))?;
            apply_attrs(src, dst, self.attrs, self.root)?;
            if md.nlink() > 1 {
                self.links.insert(inode, dst.to_path_buf());
            }
        } else if ft.is_fifo() {
            use std::os::unix::ffi::OsStrExt;
            let c = std::ffi::CString::new(dst.as_os_str().as_bytes())
                .map_err(|e| io(format!("creating {}", dst.display()))(e.into()))?;
            // SAFETY: mkfifo on a NUL-terminated path.
            if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
                return Err(io(format!("creating {}", dst.display()))(
                    std::io::Error::last_os_error(),
                ));
            }
            apply_attrs(src, dst, self.attrs, self.root)?;
        }
        Ok(())
    }
}

fn owner_for(md: &fs::Metadata, attrs: Attrs, root: &SourceRoot<'_>) -> (u32, u32) {
    attrs.owner.unwrap_or(match root {
        SourceRoot::Context { .. } => (0, 0),
        SourceRoot::Rootfs(_) => (md.uid(), md.gid()),
    })
}

fn apply_attrs(src: &Path, dst: &Path, attrs: Attrs, root: &SourceRoot<'_>) -> Result<()> {
    let md = fs::symlink_metadata(src).map_err(io(format!("reading {}", src.display())))?;
    let (uid, gid) = owner_for(&md, attrs, root);
    lchown(dst, uid, gid)?;
    let kept = if attrs.strip_setid { 0o1777 } else { 0o7777 };
    let mode = match attrs.chmod {
        Some(spec) => spec.apply(md.mode() & kept, md.is_dir()),
        None => md.mode() & kept,
    };
    fs::set_permissions(dst, fs::Permissions::from_mode(mode))
        .map_err(io(format!("chmod {}", dst.display())))?;
    // After the chown, which clears security.capability.
    copy_xattrs(src, dst);
    set_mtime(dst, md.mtime(), md.mtime_nsec());
    Ok(())
}

/// Copy the extended attributes of `src` to `dst` (`user.*` and `security.capability`, as BuildKit
/// keeps them; not overlayfs bookkeeping, SELinux labels or ACLs). Best effort: an attribute the
/// destination refuses is left out.
fn copy_xattrs(src: &Path, dst: &Path) {
    use kiln_layer::xattr;
    use std::os::unix::ffi::OsStrExt;
    let (Ok(s), Ok(d)) = (
        std::ffi::CString::new(src.as_os_str().as_bytes()),
        std::ffi::CString::new(dst.as_os_str().as_bytes()),
    ) else {
        return;
    };
    let Ok(names) = xattr::llistxattr(&s) else {
        return;
    };
    for name in names {
        let n = name.as_bytes();
        let keep = (n.starts_with(b"user.") && !n.starts_with(b"user.overlay."))
            || n == b"security.capability";
        if !keep {
            continue;
        }
        let Ok(Some(value)) = xattr::lgetxattr(&s, &name) else {
            continue;
        };
        if let Err(e) = xattr::lsetxattr(&d, &name, &value) {
            tracing::debug!("{}: xattr {name:?} not kept: {e}", dst.display());
        }
    }
}

fn lchown(p: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid))
        .map_err(io(format!("chown {uid}:{gid} {}", p.display())))
}

fn set_mtime(p: &Path, secs: i64, nsec: i64) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_bytes()) else {
        return;
    };
    let ts = [
        libc::timespec {
            tv_sec: secs,
            tv_nsec: nsec,
        },
        libc::timespec {
            tv_sec: secs,
            tv_nsec: nsec,
        },
    ];
    // SAFETY: valid path and two timespecs; AT_SYMLINK_NOFOLLOW sets the link's own times.
    unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_names_come_from_the_url_path() {
        for (url, name) in [
            ("http://h:1/a/file.tgz", "file.tgz"),
            ("http://h:1/a/file.tgz?x=1#y", "file.tgz"),
            ("http://h:1/sub/", "sub"),
            ("http://h:1/", "download"),
            ("http://h:1", "download"),
        ] {
            assert_eq!(url_file_name(url), name, "{url}");
        }
    }

    #[test]
    fn tar_headers_are_told_by_their_checksum() {
        let mut h = tar::Header::new_gnu();
        h.set_path("f").unwrap();
        h.set_size(0);
        h.set_cksum();
        assert!(is_tar_header(h.as_bytes()));
        let mut bad = *h.as_bytes();
        bad[0] ^= 1;
        assert!(!is_tar_header(&bad));
        assert!(!is_tar_header(&[0u8; 512]));
        assert!(!is_tar_header(&[b'x'; 512]));
    }
}
