//! Integration tests of kiln-store on real directories: crash safety, digest checks, concurrency
//! (threads and processes), image names, snapshots, cache, containers, prune and fsck.

use kiln_core::{Descriptor, Digest, ImageConfig, Manifest, Platform, media_types};
use kiln_store::{NewContainer, PruneOptions, Removed, Store, StoreError};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

fn tmp_entries(store: &Store) -> Vec<String> {
    std::fs::read_dir(store.tmp_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Store a one-layer image (layer content `layer`) and return (manifest bytes, config digest, layer digest).
fn make_image(store: &Store, layer: &[u8], names: &[&str]) -> (Vec<u8>, Digest, Digest) {
    let layer_d = store.put_blob_bytes(layer).unwrap();
    let mut cfg = ImageConfig::new(&Platform::parse("linux/amd64").unwrap());
    cfg.created = Some("2024-01-02T03:04:05Z".into());
    cfg.rootfs.diff_ids.push(layer_d);
    let cfg_bytes = cfg.to_vec();
    let cfg_d = store.put_blob_bytes(&cfg_bytes).unwrap();
    let m = Manifest::new_oci(
        Descriptor::new(media_types::OCI_CONFIG, cfg_d, cfg_bytes.len() as u64),
        vec![Descriptor::new(
            media_types::OCI_LAYER_TAR,
            layer_d,
            layer.len() as u64,
        )],
    );
    let mb = m.to_vec();
    store.put_image(&mb, names).unwrap();
    (mb, cfg_d, layer_d)
}

fn no_grace() -> PruneOptions {
    PruneOptions {
        grace: Duration::ZERO,
        ..Default::default()
    }
}

#[test]
fn dropped_writer_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let data = vec![7u8; 300_000];
    {
        let mut w = store.blob_writer().unwrap();
        w.write_all(&data).unwrap();
        assert_eq!(w.size(), data.len() as u64);
        assert_eq!(
            tmp_entries(&store).len(),
            1,
            "the writer's temp file exists while writing"
        );
    }
    assert!(!store.has_blob(&Digest::of_bytes(&data)));
    assert!(store.list_blobs().unwrap().is_empty());
    assert!(
        tmp_entries(&store).is_empty(),
        "temp file removed: {:?}",
        tmp_entries(&store)
    );
}

#[test]
fn a_layer_blob_is_stored_whole_under_the_digest_its_writer_computed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // Large enough for whole direct-I/O chunks and an unaligned tail; and one under a chunk.
    for size in [9 * 1024 * 1024 + 1234, 5000] {
        let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let digest = Digest::of_bytes(&data);
        let mut w = store.layer_blob_writer().unwrap();
        for piece in data.chunks(65_537) {
            w.write_all(piece).unwrap();
        }
        assert_eq!(w.commit(&digest).unwrap(), (digest, size as u64));
        assert!(
            store.read_blob(&digest).unwrap() == data,
            "{size} bytes read back"
        );
        assert!(tmp_entries(&store).is_empty(), "{:?}", tmp_entries(&store));
    }
    // Dropped before its commit: nothing stays.
    {
        let mut w = store.layer_blob_writer().unwrap();
        w.write_all(&vec![1u8; 5 * 1024 * 1024]).unwrap();
    }
    assert_eq!(store.list_blobs().unwrap().len(), 2);
    assert!(tmp_entries(&store).is_empty(), "{:?}", tmp_entries(&store));
}

#[test]
fn digest_mismatch_names_both_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let wrong = Digest::of_bytes(b"something else");
    let err = store
        .put_blob_reader(&b"hello"[..], Some(&wrong))
        .unwrap_err();
    let actual = Digest::of_bytes(b"hello");
    match &err {
        StoreError::DigestMismatch {
            expected,
            actual: a,
            size,
        } => {
            assert_eq!((*expected, *a, *size), (wrong, actual, 5));
        }
        other => panic!("unexpected error {other}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(&wrong.to_string()) && msg.contains(&actual.to_string()),
        "{msg}"
    );
    assert!(!store.has_blob(&wrong) && !store.has_blob(&actual));
    assert!(tmp_entries(&store).is_empty());
    // The right digest is accepted and readable.
    let (d, n) = store.put_blob_reader(&b"hello"[..], Some(&actual)).unwrap();
    assert_eq!((d, n), (actual, 5));
    assert_eq!(store.read_blob(&d).unwrap(), b"hello");
    assert_eq!(store.blob_size(&d).unwrap(), 5);
    assert!(matches!(store.open_blob(&wrong), Err(StoreError::BlobNotFound(x)) if x == wrong));
}

#[test]
fn concurrent_writers_of_the_same_blob() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let data: Vec<u8> = (0..2_000_000u32).map(|i| (i * 31 % 253) as u8).collect();
    let want = Digest::of_bytes(&data);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|_| {
                s.spawn(|| {
                    let mut w = store.blob_writer().unwrap();
                    for c in data.chunks(65_536) {
                        w.write_all(c).unwrap();
                    }
                    w.commit(Some(&want)).unwrap()
                })
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), (want, data.len() as u64));
        }
    });
    assert_eq!(store.list_blobs().unwrap(), vec![want]);
    assert_eq!(store.read_blob(&want).unwrap(), data);
    assert!(tmp_entries(&store).is_empty());
}

/// Child half of `concurrent_processes`: runs only when spawned with KILN_STORE_CHILD set.
#[test]
#[ignore = "helper run by concurrent_processes"]
fn child_process_helper() {
    let Ok(root) = std::env::var("KILN_STORE_CHILD") else {
        return;
    };
    let n: usize = std::env::var("KILN_STORE_CHILD_N")
        .unwrap()
        .parse()
        .unwrap();
    let store = Store::open(&root).unwrap();
    for i in 0..10 {
        let name = format!("proc{n}/img:{i}");
        // Same layer in every process, a distinct config per image.
        let layer = vec![42u8; 100_000];
        let layer_d = store.put_blob_reader(&layer[..], None).unwrap().0;
        let mut cfg = ImageConfig::new(&Platform::parse("linux/amd64").unwrap());
        cfg.author = Some(name.clone());
        cfg.rootfs.diff_ids.push(layer_d);
        let cb = cfg.to_vec();
        let cd = store.put_blob_bytes(&cb).unwrap();
        let m = Manifest::new_oci(
            Descriptor::new(media_types::OCI_CONFIG, cd, cb.len() as u64),
            vec![Descriptor::new(
                media_types::OCI_LAYER_TAR,
                layer_d,
                layer.len() as u64,
            )],
        );
        store.put_image(&m.to_vec(), &[name.as_str()]).unwrap();
    }
}

#[test]
fn concurrent_processes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..4)
        .map(|n| {
            std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "child_process_helper",
                    "--ignored",
                    "--test-threads=1",
                ])
                .env("KILN_STORE_CHILD", dir.path())
                .env("KILN_STORE_CHILD_N", n.to_string())
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    // No lost index update: all 40 names are there, each on its own image.
    let images = store.list_images().unwrap();
    assert_eq!(images.len(), 40);
    for n in 0..4 {
        for i in 0..10 {
            let r = store.resolve_image(&format!("proc{n}/img:{i}")).unwrap();
            assert_eq!(r.names, vec![format!("localhost/proc{n}/img:{i}")]);
        }
    }
    // One shared layer blob + 40 configs + 40 manifests.
    assert_eq!(store.list_blobs().unwrap().len(), 81);
    assert!(store.fsck(false).unwrap().is_clean());
}

#[test]
fn names_ids_and_resolution() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (mb, id_a, _) = make_image(&store, b"layer-a", &["foo", "quay.io/x/bar:1"]);
    let (_, id_b, _) = make_image(
        &store,
        b"layer-b",
        &[
            "docker.io/library/busybox:latest",
            "127.0.0.1:5000/debian:bookworm",
        ],
    );
    let a = store.resolve_image("foo").unwrap();
    assert_eq!(a.id, id_a);
    assert_eq!(a.names, vec!["localhost/foo:latest", "quay.io/x/bar:1"]);
    assert_eq!(a.created, "2024-01-02T03:04:05Z");
    assert_eq!(a.manifest_digest, Digest::of_bytes(&mb));
    assert_eq!(a.manifest_media_type, media_types::OCI_MANIFEST);
    // Lookup table: query → image.
    let table: &[(&str, Digest)] = &[
        ("foo", id_a),
        ("foo:latest", id_a),
        ("localhost/foo", id_a),
        ("localhost/foo:latest", id_a),
        ("quay.io/x/bar:1", id_a),
        ("bar:1", id_a),
        ("x/bar:1", id_a),
        ("busybox", id_b),
        ("library/busybox", id_b),
        ("docker.io/busybox:latest", id_b),
        ("127.0.0.1:5000/debian:bookworm", id_b),
        ("debian:bookworm", id_b),
    ];
    for (q, want) in table {
        assert_eq!(
            store
                .resolve_image(q)
                .unwrap_or_else(|e| panic!("{q}: {e}"))
                .id,
            *want,
            "{q}"
        );
    }
    assert_eq!(store.resolve_image(&id_a.to_string()).unwrap().id, id_a);
    assert_eq!(store.resolve_image(&id_a.hex()).unwrap().id, id_a);
    assert_eq!(store.resolve_image(&id_a.short()).unwrap().id, id_a);
    assert_eq!(
        store
            .resolve_image(&a.manifest_digest.to_string())
            .unwrap()
            .id,
        id_a
    );
    assert_eq!(
        store
            .resolve_image(&format!("localhost/foo@{}", a.manifest_digest))
            .unwrap()
            .id,
        id_a
    );
    for missing in ["bar", "foo:2", "debian", "nothere", "abcdef0"] {
        assert!(
            matches!(
                store.resolve_image(missing),
                Err(StoreError::ImageNotFound(_))
            ),
            "{missing}"
        );
    }

    // tag moves names; untag; rmi semantics.
    store
        .tag_image("busybox", &["foo:2", "quay.io/x/bar:1"])
        .unwrap();
    assert_eq!(store.resolve_image("quay.io/x/bar:1").unwrap().id, id_b);
    assert_eq!(store.resolve_image("foo:2").unwrap().names.len(), 4);
    let err = store.remove_image(&id_b.hex(), false).unwrap_err();
    assert!(matches!(err, StoreError::ImageInUse { .. }), "{err}");
    assert_eq!(
        store.remove_image("foo:2", false).unwrap(),
        Removed::Untagged {
            id: id_b,
            name: "localhost/foo:2".into()
        }
    );
    let after = store.untag_image("debian:bookworm").unwrap();
    assert!(!after.names.iter().any(|n| n.contains("debian")));
    match store.remove_image("foo", false).unwrap() {
        Removed::Deleted(r) => assert_eq!(r.id, id_a),
        other => panic!("{other:?}"),
    }
    assert!(store.resolve_image("foo").is_err());
    assert!(matches!(
        store.remove_image(&id_b.short(), true).unwrap(),
        Removed::Deleted(_)
    ));
    assert!(store.list_images().unwrap().is_empty());
    assert!(store.put_image(b"{", &[]).is_err());
    assert!(store.tag_image("nothing", &["x"]).is_err());
}

#[test]
fn put_image_requires_blobs_and_ambiguous_prefixes_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let ghost = Digest::of_bytes(b"not stored");
    let m = Manifest::new_oci(Descriptor::new(media_types::OCI_CONFIG, ghost, 10), vec![]);
    match store.put_image(&m.to_vec(), &["x"]) {
        Err(StoreError::MissingBlobs { missing, .. }) => assert_eq!(missing, vec![ghost]),
        other => panic!("{other:?}"),
    }
    // A 3-character ID prefix shared by two images is ambiguous: find two configs whose digests
    // share one, then store both.
    let layer = store.put_blob_bytes(b"l").unwrap();
    let config = |i: u32| {
        let mut c = ImageConfig::new(&Platform::parse("linux/amd64").unwrap());
        c.author = Some(i.to_string());
        c.rootfs.diff_ids.push(layer);
        c.to_vec()
    };
    let mut seen = std::collections::HashMap::new();
    let (a, b) = (0u32..)
        .find_map(|i| {
            let d = Digest::of_bytes(&config(i)).hex();
            seen.insert(d[..3].to_string(), i).map(|j| (j, i))
        })
        .unwrap();
    for i in [a, b] {
        let cb = config(i);
        let cd = store.put_blob_bytes(&cb).unwrap();
        let m = Manifest::new_oci(
            Descriptor::new(media_types::OCI_CONFIG, cd, cb.len() as u64),
            vec![Descriptor::new(media_types::OCI_LAYER_TAR, layer, 1)],
        );
        store.put_image(&m.to_vec(), &[]).unwrap();
    }
    let prefix = Digest::of_bytes(&config(a)).hex()[..3].to_string();
    match store.resolve_image(&prefix) {
        Err(StoreError::AmbiguousImage { candidates, .. }) => assert_eq!(candidates.len(), 2),
        other => panic!("{other:?}"),
    }
    let longer = Digest::of_bytes(&config(a)).hex()[..12].to_string();
    assert_eq!(store.resolve_image(&longer).unwrap().id.hex()[..12], longer);
    assert_eq!(store.list_images().unwrap().len(), 2);
    let pruned = store
        .prune(&PruneOptions {
            dangling_images: true,
            ..no_grace()
        })
        .unwrap();
    assert_eq!(pruned.images.len(), 2);
    assert!(store.list_blobs().unwrap().is_empty());
}

#[test]
fn snapshots_publish_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let key = "sha256:abc";
    {
        let st = store.snapshot_staging().unwrap();
        std::fs::write(st.path().join("f"), b"x").unwrap();
        assert!(store.snapshot(key).is_none());
    }
    assert!(
        tmp_entries(&store).is_empty(),
        "unpublished staging is removed"
    );

    let st = store.snapshot_staging().unwrap();
    std::fs::create_dir(st.path().join("ro")).unwrap();
    std::fs::write(st.path().join("ro/file"), b"one").unwrap();
    let p = store.publish_snapshot(key, st).unwrap();
    assert_eq!(store.snapshot(key), Some(p.clone()));
    assert_eq!(std::fs::read(p.join("ro/file")).unwrap(), b"one");

    // A second publisher of the same key loses quietly; the first content stays.
    let st2 = store.snapshot_staging().unwrap();
    std::fs::write(st2.path().join("other"), b"two").unwrap();
    assert_eq!(store.publish_snapshot(key, st2).unwrap(), p);
    assert!(!p.join("other").exists());
    assert!(tmp_entries(&store).is_empty());
    assert_eq!(store.list_snapshots().unwrap(), vec![key.to_string()]);

    // Removal copes with read-only directories.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p.join("ro"), std::fs::Permissions::from_mode(0o555)).unwrap();
    assert!(store.remove_snapshot(key).unwrap());
    assert!(store.snapshot(key).is_none() && !p.exists());
    assert!(!store.remove_snapshot(key).unwrap());
    for bad in ["", "../x", ".hidden", "a/b", "sp ace"] {
        assert!(
            store
                .publish_snapshot(bad, store.snapshot_staging().unwrap())
                .is_err(),
            "{bad:?}"
        );
    }
}

#[test]
fn cache_roundtrip() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let key = "RUN apt-get update\nparent=sha256:…";
    assert_eq!(store.cache_get(key), None);
    store
        .cache_put(key, &serde_json::json!({"layer": "sha256:1"}))
        .unwrap();
    store
        .cache_put(key, &serde_json::json!({"layer": "sha256:2"}))
        .unwrap();
    assert_eq!(
        store.cache_get(key),
        Some(serde_json::json!({"layer": "sha256:2"}))
    );
    assert_eq!(store.cache_entries().unwrap().len(), 1);
    assert!(store.cache_remove(key).unwrap());
    assert_eq!(store.cache_get(key), None);
}

#[test]
fn working_containers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (_, id, _) = make_image(&store, b"l", &["docker.io/library/busybox:latest"]);
    let img = store.resolve_image("busybox").unwrap();
    let new = |name: Option<&str>| NewContainer {
        name: name.map(str::to_string),
        image: Some(img.clone()),
        image_name: "busybox".into(),
        config: serde_json::json!({"config": {"Env": ["A=1"]}}),
        ..Default::default()
    };
    let c1 = store.create_container(new(None)).unwrap();
    let c2 = store.create_container(new(None)).unwrap();
    assert_eq!(c1.name, "busybox-working-container");
    assert_eq!(c2.name, "busybox-working-container-1");
    assert!(c1.rootfs.is_dir() && c1.upper.as_ref().unwrap().is_dir());
    assert_eq!(c1.id.len(), 64);
    assert!(matches!(
        store.create_container(new(Some(&c1.name))),
        Err(StoreError::ContainerNameInUse(_))
    ));
    let scratch = store
        .create_container(NewContainer {
            image_name: "scratch".into(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(scratch.name, "working-container");
    assert_eq!(store.get_container(&c2.id[..8]).unwrap().name, c2.name);
    let mut edited = store.get_container(&c1.name).unwrap();
    edited.config = serde_json::json!({"config": {"Cmd": ["sh"]}});
    store.update_container(&edited).unwrap();
    assert_eq!(store.get_container(&c1.id).unwrap().config, edited.config);
    assert_eq!(store.list_containers().unwrap().len(), 3);

    // An image used by a container is not removed without force, and prune keeps it.
    assert!(matches!(
        store.remove_image("busybox", false),
        Err(StoreError::ImageInUse { .. })
    ));
    store.untag_image("busybox").unwrap();
    let r = store
        .prune(&PruneOptions {
            dangling_images: true,
            ..no_grace()
        })
        .unwrap();
    assert!(r.images.is_empty());
    assert!(store.resolve_image(&id.to_string()).is_ok());

    std::fs::write(c1.rootfs.join("x"), b"y").unwrap();
    let gone = store.remove_container(&c1.name).unwrap();
    assert!(!gone.rootfs.exists());
    assert!(store.get_container(&c1.name).is_err());
}

#[test]
fn prune_keeps_reachable_and_drops_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (mb, cfg_d, layer_d) = make_image(&store, b"kept layer", &["keep"]);
    let stray = store.put_blob_bytes(b"stray").unwrap();
    let cached = store.put_blob_bytes(b"cached layer").unwrap();
    store
        .cache_put("k", &serde_json::json!({"blob": cached.to_string()}))
        .unwrap();
    for key in [
        layer_d.to_string(),
        "sha256:unreferenced".to_string(),
        "cached-snap".to_string(),
    ] {
        let st = store.snapshot_staging().unwrap();
        store.publish_snapshot(&key, st).unwrap();
    }
    store
        .cache_put("snap", &serde_json::json!(["cached-snap"]))
        .unwrap();
    // A crashed process's temp file.
    std::fs::write(store.tmp_dir().join("999999999-leftover"), b"junk").unwrap();

    // Within the grace period nothing unreferenced goes.
    let r = store.prune(&PruneOptions::default()).unwrap();
    assert!(r.blobs.is_empty() && r.snapshots.is_empty());
    assert_eq!(
        r.kept_young, 2,
        "the stray blob and the unreferenced snapshot"
    );
    assert_eq!(r.temp_entries, 1);

    let r = store.prune(&no_grace()).unwrap();
    assert_eq!(r.blobs, vec![stray]);
    assert_eq!(r.bytes_freed, 5);
    assert_eq!(r.snapshots, vec!["sha256:unreferenced".to_string()]);
    for d in [Digest::of_bytes(&mb), cfg_d, layer_d, cached] {
        assert!(store.has_blob(&d), "{d} kept");
    }
    assert!(
        store.snapshot(&layer_d.to_string()).is_some() && store.snapshot("cached-snap").is_some()
    );

    // Once the image and cache go, everything goes.
    store.remove_image("keep", false).unwrap();
    let r = store
        .prune(&PruneOptions {
            clear_cache: true,
            ..no_grace()
        })
        .unwrap();
    assert_eq!(r.cache_entries, 2);
    assert_eq!(r.blobs.len(), 4);
    assert!(store.list_blobs().unwrap().is_empty());
    assert!(store.list_snapshots().unwrap().is_empty());
}

fn flip_byte(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut b = std::fs::read(path).unwrap();
    b[3] ^= 0x01;
    std::fs::write(path, b).unwrap();
}

#[test]
fn fsck_finds_a_flipped_byte_and_repairs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (_, _, layer_d) = make_image(&store, b"0123456789 layer bytes", &["broken"]);
    let (_, good_id, _) = make_image(&store, b"another layer", &["fine"]);
    let clean = store.fsck(false).unwrap();
    assert!(clean.is_clean());
    assert_eq!(clean.checked, 6);

    flip_byte(&store.blob_path(&layer_d));
    let r = store.fsck(false).unwrap();
    assert!(!r.is_clean());
    assert_eq!(r.bad_blobs.len(), 1);
    assert_eq!(r.bad_blobs[0].digest, layer_d);
    assert!(r.bad_blobs[0].actual.is_some_and(|a| a != layer_d));
    assert_eq!(r.broken_images.len(), 1);
    assert_eq!(r.broken_images[0].0.names, vec!["localhost/broken:latest"]);
    assert_eq!(r.broken_images[0].1, vec![layer_d]);
    assert!(store.has_blob(&layer_d), "no repair: nothing removed");

    let r = store.fsck(true).unwrap();
    assert_eq!(r.removed_blobs, vec![layer_d]);
    assert_eq!(r.removed_images.len(), 1);
    assert!(!store.has_blob(&layer_d));
    assert!(store.resolve_image("broken").is_err());
    assert_eq!(store.resolve_image("fine").unwrap().id, good_id);
    assert!(store.fsck(false).unwrap().is_clean());
}

#[test]
fn sync_batch_publishes_at_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let blobs_on_disk = || {
        std::fs::read_dir(dir.path().join("blobs/sha256"))
            .unwrap()
            .count()
    };
    let cache_on_disk = || std::fs::read_dir(dir.path().join("cache")).unwrap().count();
    let batch = store.sync_batch();
    let data = vec![3u8; 50_000];
    let d = store.put_blob_reader(&data[..], None).unwrap().0;
    // Readable by this process (also through another Store on the same root) at once...
    assert!(store.has_blob(&d));
    assert_eq!(store.read_blob(&d).unwrap(), data);
    assert!(Store::open(dir.path()).unwrap().has_blob(&d));
    assert_eq!(
        store.put_blob_bytes(&data).unwrap(),
        d,
        "same content again"
    );
    // ...but not published under its digest before the batch ends.
    assert_eq!(blobs_on_disk(), 0);
    store
        .cache_put("k", &serde_json::json!({"layer": d.to_string()}))
        .unwrap();
    assert_eq!(
        store.cache_get("k"),
        Some(serde_json::json!({"layer": d.to_string()}))
    );
    assert_eq!(store.cache_entries().unwrap().len(), 1);
    assert_eq!(cache_on_disk(), 0, "cache entries wait for the batch's end");
    // Trees handed to remove_later vanish from their place at once.
    let doomed = dir.path().join("doomed");
    std::fs::create_dir_all(doomed.join("a/b")).unwrap();
    std::fs::write(doomed.join("a/b/f"), b"x").unwrap();
    store.remove_later(&doomed).unwrap();
    assert!(!doomed.exists());
    batch.finish().unwrap();
    assert_eq!(store.list_blobs().unwrap(), vec![d]);
    assert_eq!(store.read_blob(&d).unwrap(), data);
    assert_eq!(cache_on_disk(), 1);
    let fresh = Store::open(dir.path()).unwrap();
    assert_eq!(
        fresh.cache_get("k"),
        Some(serde_json::json!({"layer": d.to_string()}))
    );
    assert!(tmp_entries(&store).is_empty(), "{:?}", tmp_entries(&store));
    assert!(store.fsck(false).unwrap().is_clean());
}

#[test]
fn an_image_record_in_a_batch_publishes_its_blobs_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let batch = store.sync_batch();
    let (_, cfg_d, layer_d) = make_image(&store, b"layer bytes", &["batched:1"]);
    // images.json names them: they are in blobs/sha256/ already.
    let listed = store.list_blobs().unwrap();
    assert!(
        listed.contains(&cfg_d) && listed.contains(&layer_d),
        "{listed:?}"
    );
    drop(batch);
    assert!(store.fsck(false).unwrap().is_clean());
}

/// Child half of `a_batch_cut_short_leaves_no_trace`: writes in a batch and exits without ending it.
#[test]
#[ignore = "helper run by a_batch_cut_short_leaves_no_trace"]
fn batch_crash_helper() {
    let Ok(root) = std::env::var("KILN_STORE_BATCH_CHILD") else {
        return;
    };
    let store = Store::open(&root).unwrap();
    let _batch = store.sync_batch();
    let d = store.put_blob_bytes(b"never published").unwrap();
    store
        .cache_put("k", &serde_json::json!({"layer": d.to_string()}))
        .unwrap();
    std::process::exit(0);
}

#[test]
fn a_batch_cut_short_leaves_no_trace() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "batch_crash_helper", "--ignored"])
        .env("KILN_STORE_BATCH_CHILD", dir.path())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    // Neither the blob nor the cache entry naming it exists; only a temp file, which prune removes.
    assert!(!store.has_blob(&Digest::of_bytes(b"never published")));
    assert_eq!(store.cache_get("k"), None);
    assert!(store.list_blobs().unwrap().is_empty());
    assert_eq!(tmp_entries(&store).len(), 1, "{:?}", tmp_entries(&store));
    store.prune(&no_grace()).unwrap();
    assert!(tmp_entries(&store).is_empty());
}
