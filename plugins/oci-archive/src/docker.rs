//! The metadata of a `docker save` archive: `manifest.json`, `repositories` and the legacy per-layer
//! `json` files, laid out as skopeo's docker-archive writer lays them out.

use crate::json::{self, JsonError, quote};
use crate::reference::DockerTag;

/// Image config members copied into the top layer's legacy `json`.
const TOP_LAYER_KEYS: [&str; 7] = ["architecture", "config", "container", "container_config", "created", "docker_version", "os"];

/// Archive path of the uncompressed layer whose diff ID has hex `diff_hex`.
pub fn layer_path(diff_hex: &str) -> String {
    format!("{diff_hex}.tar")
}

/// Archive path of the config whose digest has hex `config_hex`.
pub fn config_path(config_hex: &str) -> String {
    format!("{config_hex}.json")
}

/// `manifest.json`: one image with its config, tags and layer paths.
pub fn manifest_json(config: &str, repo_tags: &[String], layers: &[String]) -> String {
    let list = |items: &[String]| items.iter().map(|s| quote(s)).collect::<Vec<_>>().join(",");
    format!("[{{\"Config\":{},\"RepoTags\":[{}],\"Layers\":[{}]}}]", quote(config), list(repo_tags), list(layers))
}

/// `repositories`: `{name: {tag: top layer id}}`, empty when there is no tag or no layer.
pub fn repositories_json(tags: &[DockerTag], top_layer_id: Option<&str>) -> String {
    let Some(id) = top_layer_id else { return "{}".to_string() };
    // Keys sorted, as Go writes maps; a repeated name:tag is written once.
    let mut pairs: Vec<(&str, &str)> = tags.iter().map(|t| (t.name.as_str(), t.tag.as_str())).collect();
    pairs.sort_unstable();
    pairs.dedup();
    let mut out = String::from("{");
    for (i, (name, tag)) in pairs.iter().enumerate() {
        let same_repo = i > 0 && pairs[i - 1].0 == *name;
        if same_repo {
            out.push(',');
        } else {
            if i > 0 {
                out.push_str("},");
            }
            out.push_str(&quote(name));
            out.push_str(":{");
        }
        out.push_str(&quote(tag));
        out.push(':');
        out.push_str(&quote(id));
    }
    if !pairs.is_empty() {
        out.push('}');
    }
    out.push('}');
    out
}

/// One legacy layer directory: `<id>/layer.tar`, `<id>/VERSION`, `<id>/json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyLayer {
    /// 64 hex digits naming the directory.
    pub id: String,
    /// Content of `<id>/json`.
    pub json: String,
}

/// Legacy layer IDs and configs for layers with diff IDs `diff_ids` (base first): each ID is the
/// sha256 of the layer's config with its chain ID, so equal layers in different positions differ.
/// The top layer's config carries the image's architecture, config, created and os.
pub fn legacy_layers(
    diff_ids: &[&str],
    config_json: &str,
    sha256_hex: &mut dyn FnMut(&[u8]) -> String,
) -> Result<Vec<LegacyLayer>, JsonError> {
    let config = json::members(config_json)?;
    let mut out: Vec<LegacyLayer> = Vec::with_capacity(diff_ids.len());
    let mut chain = String::new();
    for (i, diff_id) in diff_ids.iter().enumerate() {
        let mut fields: Vec<(&str, String)> = Vec::with_capacity(10);
        if let Some(parent) = out.last() {
            fields.push(("parent", quote(&parent.id)));
        }
        if i + 1 == diff_ids.len() {
            for key in TOP_LAYER_KEYS {
                fields.push((key, json::member(&config, key).map_or_else(|| "null".to_string(), json::compact)));
            }
        }
        chain = if i == 0 { diff_id.to_string() } else { format!("sha256:{}", sha256_hex(format!("{chain} {diff_id}").as_bytes())) };
        fields.push(("layer_id", quote(&chain)));
        let id = sha256_hex(object(&mut fields).as_bytes());
        fields.retain(|(k, _)| *k != "layer_id");
        fields.push(("id", quote(&id)));
        out.push(LegacyLayer { json: object(&mut fields), id });
    }
    Ok(out)
}

/// A JSON object from already-encoded values (distinct keys), keys in byte order as Go writes maps.
fn object(fields: &mut [(&str, String)]) -> String {
    fields.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let body = fields.iter().map(|(k, v)| format!("{}:{v}", quote(k))).collect::<Vec<_>>().join(",");
    format!("{{{body}}}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    fn sha(data: &[u8]) -> String {
        sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
    }

    // The image skopeo 1.9 wrote as docker-archive:d.tar:docker.io/library/myimg:v1 from an umoci image.
    const CONFIG: &str = concat!(
        r#"{"created":"2026-11-22T06:01:17.436076021Z","architecture":"amd64","os":"linux","config":{},"#,
        r#""rootfs":{"type":"layers","diff_ids":["sha256:ee082cc4014b39218ee288f2760c94fe57bfefa860105a2fc526d6833ee2d2c5","#,
        r#""sha256:c9e5c2a296748f4cae1199df48db9de04b5758ef9d011a4f4ba1c81bde84a3d0"]},"#,
        r#""history":[{"created":"2026-11-22T06:01:17.472990916Z","created_by":"umoci insert"},"#,
        r#"{"created":"2026-11-22T06:01:17.482115564Z","created_by":"umoci insert"}]}"#
    );
    const DIFF_IDS: [&str; 2] = [
        "sha256:ee082cc4014b39218ee288f2760c94fe57bfefa860105a2fc526d6833ee2d2c5",
        "sha256:c9e5c2a296748f4cae1199df48db9de04b5758ef9d011a4f4ba1c81bde84a3d0",
    ];

    #[test]
    fn legacy_ids_match_skopeo() {
        let layers = legacy_layers(&DIFF_IDS, CONFIG, &mut sha).unwrap();
        assert_eq!(layers[0].id, "b5025e48bc8b52ac2cd2a78b1c5a6c57477490a15a45e5b7d2efff4ee6ea1654");
        assert_eq!(layers[0].json, r#"{"id":"b5025e48bc8b52ac2cd2a78b1c5a6c57477490a15a45e5b7d2efff4ee6ea1654"}"#);
        assert_eq!(layers[1].id, "286766356b37dd3de18d409ae9614fb3b9201136f000882c6ac39a191fa63124");
        assert_eq!(
            layers[1].json,
            concat!(
                r#"{"architecture":"amd64","config":{},"container":null,"container_config":null,"#,
                r#""created":"2026-11-22T06:01:17.436076021Z","docker_version":null,"#,
                r#""id":"286766356b37dd3de18d409ae9614fb3b9201136f000882c6ac39a191fa63124","os":"linux","#,
                r#""parent":"b5025e48bc8b52ac2cd2a78b1c5a6c57477490a15a45e5b7d2efff4ee6ea1654"}"#
            )
        );
    }

    #[test]
    fn repeated_layers_get_distinct_ids() {
        let ids = [DIFF_IDS[0], DIFF_IDS[0], DIFF_IDS[0]];
        let layers = legacy_layers(&ids, CONFIG, &mut sha).unwrap();
        assert_ne!(layers[0].id, layers[1].id);
        assert_ne!(layers[1].id, layers[2].id);
        assert!(legacy_layers(&[], CONFIG, &mut sha).unwrap().is_empty());
        assert!(legacy_layers(&ids, "{not json", &mut sha).is_err());
    }

    #[test]
    fn top_layer_config_is_compacted_and_escaped() {
        let cfg = "{ \"config\" : { \"Env\" : [\"A=<b>\"] } , \"os\":\"linux\" }";
        let layers = legacy_layers(&DIFF_IDS[..1], cfg, &mut sha).unwrap();
        assert!(layers[0].json.contains(r#""config":{"Env":["A=\u003cb\u003e"]}"#), "{}", layers[0].json);
        assert!(layers[0].json.contains(r#""architecture":null"#));
    }

    #[test]
    fn manifest_and_repositories_match_skopeo() {
        let tag = DockerTag { name: "docker.io/library/myimg".into(), tag: "v1".into() };
        assert_eq!(
            manifest_json("c.json", &[tag.repo_tag()], &["a.tar".into(), "b.tar".into()]),
            r#"[{"Config":"c.json","RepoTags":["docker.io/library/myimg:v1"],"Layers":["a.tar","b.tar"]}]"#
        );
        assert_eq!(manifest_json("c.json", &[], &[]), r#"[{"Config":"c.json","RepoTags":[],"Layers":[]}]"#);
        assert_eq!(repositories_json(std::slice::from_ref(&tag), Some("top")), r#"{"docker.io/library/myimg":{"v1":"top"}}"#);
        assert_eq!(repositories_json(&[tag], None), "{}");
        assert_eq!(repositories_json(&[], Some("top")), "{}");
        let t = |n: &str, t: &str| DockerTag { name: n.into(), tag: t.into() };
        assert_eq!(
            repositories_json(&[t("b/x", "2"), t("a/y", "1"), t("b/x", "1"), t("b/x", "2")], Some("id")),
            r#"{"a/y":{"1":"id"},"b/x":{"1":"id","2":"id"}}"#
        );
    }
}
