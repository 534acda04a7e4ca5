//! The parts of a base image's OCI config the frontend needs: Env, WorkingDir, User, OnBuild.

use serde_json::Value;

/// What the frontend learns from a base image.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BaseConfig {
    /// `config.Env`, split at the first `=`, in order.
    pub env: Vec<(String, String)>,
    /// `config.WorkingDir` ("" when unset).
    pub working_dir: String,
    /// `config.User` ("" when unset).
    pub user: String,
    /// `config.OnBuild` triggers, in order.
    pub on_build: Vec<String>,
}

/// Parse an image config document (OCI or Docker): the `config` object, or the document itself
/// when it is already a container config (has `Env`, `WorkingDir`, ... at the top).
pub fn parse_image_config(json: &str) -> Result<BaseConfig, String> {
    let doc: Value =
        serde_json::from_str(json).map_err(|e| format!("image config is not valid JSON: {e}"))?;
    if !doc.is_object() {
        return Err("image config is not a JSON object".into());
    }
    let cfg = match doc.get("config") {
        Some(c @ Value::Object(_)) => c,
        Some(Value::Null) | None => {
            if doc.get("Env").is_some()
                || doc.get("OnBuild").is_some()
                || doc.get("WorkingDir").is_some()
            {
                &doc
            } else {
                return Ok(BaseConfig::default());
            }
        }
        Some(_) => return Err("image config field \"config\" is not an object".into()),
    };
    let strings = |key: &str| -> Result<Vec<String>, String> {
        match cfg.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| format!("image config {key} holds a non-string"))
                })
                .collect(),
            Some(_) => Err(format!("image config {key} is not a list")),
        }
    };
    let string = |key: &str| -> Result<String, String> {
        match cfg.get(key) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(format!("image config {key} is not a string")),
        }
    };
    let env = strings("Env")?
        .into_iter()
        .map(|e| match e.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (e, String::new()),
        })
        .collect();
    Ok(BaseConfig {
        env,
        working_dir: string("WorkingDir")?,
        user: string("User")?,
        on_build: strings("OnBuild")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oci_config() {
        let c = parse_image_config(
            r#"{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/bin:/bin","A=b=c","BARE"],
               "WorkingDir":"/srv","User":"app","OnBuild":["RUN echo hi","COPY . /app"]},"rootfs":{}}"#,
        )
        .unwrap();
        assert_eq!(
            c.env,
            vec![
                ("PATH".into(), "/usr/bin:/bin".into()),
                ("A".into(), "b=c".into()),
                ("BARE".into(), String::new())
            ]
        );
        assert_eq!(c.working_dir, "/srv");
        assert_eq!(c.user, "app");
        assert_eq!(c.on_build, ["RUN echo hi", "COPY . /app"]);
    }

    #[test]
    fn missing_and_null_fields() {
        assert_eq!(
            parse_image_config(r#"{"config":{"Env":null,"OnBuild":null}}"#).unwrap(),
            BaseConfig::default()
        );
        assert_eq!(
            parse_image_config(r#"{"architecture":"amd64"}"#).unwrap(),
            BaseConfig::default()
        );
        assert_eq!(
            parse_image_config(r#"{"WorkingDir":"/w"}"#)
                .unwrap()
                .working_dir,
            "/w"
        );
        assert!(parse_image_config("[1]").is_err());
        assert!(parse_image_config("{").is_err());
        assert!(parse_image_config(r#"{"config":{"Env":[1]}}"#).is_err());
    }
}
