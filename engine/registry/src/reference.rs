//! Reference helpers on top of `kiln_core::ImageReference`: where a registry's API lives, and
//! splitting short names for registries.conf resolution.

pub use kiln_core::ImageReference;

/// The registry Docker Hub references name (`docker.io`).
pub const DOCKER_HUB: &str = kiln_core::reference::DEFAULT_REGISTRY;
/// Where Docker Hub's API is served.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// The host the registry API is served from (`registry-1.docker.io` for `docker.io`).
pub fn api_host(registry: &str) -> &str {
    if registry == DOCKER_HUB {
        DOCKER_HUB_API
    } else {
        registry
    }
}

/// Split a name into its repository part and its `:tag`/`@digest` suffix (`a/b:1` → `a/b`, `:1`).
pub fn split_suffix(name: &str) -> (&str, &str) {
    let at = name.find('@').unwrap_or(name.len());
    let (head, _) = name.split_at(at);
    let last_slash = head.rfind('/').map(|i| i + 1).unwrap_or(0);
    let cut = head[last_slash..]
        .rfind(':')
        .map(|i| last_slash + i)
        .unwrap_or(at);
    (&name[..cut], &name[cut..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_suffixes() {
        assert_eq!(split_suffix("busybox"), ("busybox", ""));
        assert_eq!(split_suffix("ns/app:1"), ("ns/app", ":1"));
        let d = format!("@sha256:{}", "a".repeat(64));
        assert_eq!(
            split_suffix(&format!("app:v{d}")),
            ("app", &*format!(":v{d}"))
        );
        assert_eq!(split_suffix(&format!("app{d}")), ("app", d.as_str()));
    }

    #[test]
    fn docker_hub_api() {
        assert_eq!(api_host("docker.io"), DOCKER_HUB_API);
        assert_eq!(api_host("127.0.0.1:5000"), "127.0.0.1:5000");
    }
}
