//! Where a configured secret comes from, and the one way it is read.
//!
//! Every secret in the config (the flow-token key, the HMAC key, OAuth client secrets, OpenID
//! provider client secrets) is three keys, `<name>`, `<name>_file` and `<name>_env`, of which at
//! most one is given: [`SecretSource::from_keys`] turns them into a [`SecretSource`], and
//! [`SecretSource::resolve`] reads it into a [`Secret`]: a file only when group and others
//! cannot read or write it (the key directory's rule, `imsgw_token::check_secret_file`), any
//! value trimmed of surrounding whitespace, an empty one refused, every error naming the key and
//! never the value.
//!
//! Owns: secret sources and their resolution. Must not touch: what a secret is used for.

use std::path::{Path, PathBuf};

pub use imsgw_token::Secret;

/// Where the config says a secret is.
#[derive(Debug, Clone)]
pub enum SecretSource {
    /// `<name> = "..."`, written in the config (redacted from `Debug`).
    Value(Secret),
    /// `<name>_file`: a file, mode 0600 or stricter; relative paths are beside the config file.
    File(PathBuf),
    /// `<name>_env`: an environment variable.
    Env(String),
}

/// Why a secret could not be read; names the key, never the value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("config key `{key}`: give the secret once: {key}, {key}_file or {key}_env")]
    MoreThanOne { key: String },
    #[error("config key `{key}`: cannot read {path}: {source}")]
    Read {
        key: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config key `{key}`: {source}")]
    Permissions {
        key: String,
        source: imsgw_token::KeyError,
    },
    #[error("config key `{key}`: the environment variable {var} is not set")]
    EnvUnset { key: String, var: String },
    #[error("config key `{key}`: the secret is empty")]
    Empty { key: String },
    #[error("config key `{key}`: {message}")]
    Unusable { key: String, message: String },
}

/// What resolving needs besides the source: how relative paths resolve (beside the config
/// file) and the environment (passed in, so tests never touch the process environment).
pub struct Resolver<'a> {
    /// Makes a configured path absolute.
    pub path: &'a dyn Fn(&Path) -> PathBuf,
    /// Looks up an environment variable.
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

impl SecretSource {
    /// The source `key`, `key_file` and `key_env` name, if any; more than one is an error.
    pub fn from_keys(
        key: &str,
        value: Option<&Secret>,
        file: Option<&PathBuf>,
        env: Option<&String>,
    ) -> Result<Option<SecretSource>, SecretError> {
        match (value, file, env) {
            (None, None, None) => Ok(None),
            (Some(v), None, None) => Ok(Some(SecretSource::Value(v.clone()))),
            (None, Some(f), None) => Ok(Some(SecretSource::File(f.clone()))),
            (None, None, Some(e)) => Ok(Some(SecretSource::Env(e.clone()))),
            _ => Err(SecretError::MoreThanOne {
                key: key.to_string(),
            }),
        }
    }

    /// Reads the secret of `key` (the base name: errors say `key_file` or `key_env` for those).
    pub fn resolve(&self, key: &str, r: &Resolver<'_>) -> Result<Secret, SecretError> {
        let (bytes, key) = match self {
            SecretSource::Value(v) => (v.expose().to_vec(), key.to_string()),
            SecretSource::File(p) => {
                let key = format!("{key}_file");
                let path = (r.path)(p);
                // Checked on the file opened, before reading: a secret others could read may
                // already be known, and no other file can be swapped in between.
                let bytes =
                    imsgw_token::read_secret_file(&path).map_err(|source| match source {
                        imsgw_token::KeyError::Io { path, source } => SecretError::Read {
                            key: key.clone(),
                            path,
                            source,
                        },
                        source => SecretError::Permissions {
                            key: key.clone(),
                            source,
                        },
                    })?;
                (bytes, key)
            }
            SecretSource::Env(var) => {
                let key = format!("{key}_env");
                let v = (r.env)(var).ok_or_else(|| SecretError::EnvUnset {
                    key: key.clone(),
                    var: var.clone(),
                })?;
                (v.into_bytes(), key)
            }
        };
        // Both buffers are Secrets, so both are zeroed when dropped.
        let raw = Secret::new(bytes);
        let secret = Secret::new(raw.expose().trim_ascii());
        if secret.is_empty() {
            return Err(SecretError::Empty { key });
        }
        Ok(secret)
    }
}

/// Resolves the secret `key` names and checks it has at least `min` bytes (a MAC key).
pub fn resolve_key(
    key: &str,
    source: Option<SecretSource>,
    min: usize,
    why: &str,
    r: &Resolver<'_>,
) -> Result<Option<Secret>, SecretError> {
    let Some(source) = source else {
        return Ok(None);
    };
    let secret = source.resolve(key, r)?;
    if secret.len() < min {
        return Err(SecretError::Unusable {
            key: key_of(key, &source),
            message: format!("needs at least {min} bytes of secret ({why})"),
        });
    }
    Ok(Some(secret))
}

/// The key a source was given with.
pub fn key_of(key: &str, source: &SecretSource) -> String {
    match source {
        SecretSource::Value(_) => key.to_string(),
        SecretSource::File(_) => format!("{key}_file"),
        SecretSource::Env(_) => format!("{key}_env"),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// A fresh folder under the temp dir, removed on drop.
    struct Dir(PathBuf);
    impl Dir {
        fn new(name: &str) -> Dir {
            let d =
                std::env::temp_dir().join(format!("imsgw-secret-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).expect("temp dir");
            Dir(d)
        }
        fn file(&self, name: &str, text: &str, mode: u32) -> PathBuf {
            let p = self.0.join(name);
            std::fs::write(&p, text).expect("write");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
            p
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn a_file_others_can_read_is_refused_naming_the_key_and_mode_0600_is_read_and_trimmed() {
        let d = Dir::new("mode");
        let beside = |p: &Path| d.0.join(p);
        let r = Resolver {
            path: &beside,
            env: &no_env,
        };
        for mode in [0o644, 0o640, 0o604, 0o660, 0o602] {
            d.file("svc.secret", "s3cr3t-value\n", mode);
            let src = SecretSource::File("svc.secret".into());
            let e = src
                .resolve("waf.clients[0].secret", &r)
                .expect_err("open to others");
            let msg = e.to_string();
            assert!(msg.contains("`waf.clients[0].secret_file`"), "{msg}");
            assert!(msg.contains(&format!("mode {mode:o}")), "{msg}");
            assert!(
                msg.contains("svc.secret") && msg.contains("chmod 600"),
                "{msg}"
            );
            assert!(!msg.contains("s3cr3t-value"), "{msg}");
        }
        for mode in [0o600, 0o400] {
            d.file("svc.secret", "  s3cr3t-value\n", mode);
            let s = SecretSource::File("svc.secret".into())
                .resolve("waf.clients[0].secret", &r)
                .expect("private file");
            assert_eq!(s.expose(), b"s3cr3t-value");
        }
    }

    #[test]
    fn a_missing_file_names_the_key_and_path() {
        let d = Dir::new("missing");
        let beside = |p: &Path| d.0.join(p);
        let r = Resolver {
            path: &beside,
            env: &no_env,
        };
        let e = SecretSource::File("nope.secret".into())
            .resolve("waf.hmac_secret", &r)
            .expect_err("missing");
        let msg = e.to_string();
        assert!(
            msg.contains("`waf.hmac_secret_file`") && msg.contains("nope.secret"),
            "{msg}"
        );
    }

    #[test]
    fn env_is_resolved_through_the_given_lookup_and_unset_or_empty_is_refused() {
        let env = |v: &str| match v {
            "SVC_SECRET" => Some(" from-env\n".to_string()),
            "BLANK" => Some(" \n".to_string()),
            _ => None,
        };
        let r = Resolver {
            path: &|p| p.to_path_buf(),
            env: &env,
        };
        let s = SecretSource::Env("SVC_SECRET".into())
            .resolve("oidc.providers[0].client_secret", &r)
            .expect("set");
        assert!(s.ct_eq("from-env"));
        let e = SecretSource::Env("NOT_SET".into())
            .resolve("oidc.providers[0].client_secret", &r)
            .expect_err("unset");
        let msg = e.to_string();
        assert!(
            msg.contains("`oidc.providers[0].client_secret_env`") && msg.contains("NOT_SET"),
            "{msg}"
        );
        let e = SecretSource::Env("BLANK".into())
            .resolve("oidc.providers[0].client_secret", &r)
            .expect_err("empty");
        assert!(
            matches!(e, SecretError::Empty { ref key } if key == "oidc.providers[0].client_secret_env"),
            "{e}"
        );
    }

    #[test]
    fn empty_values_and_more_than_one_source_are_refused() {
        let r = Resolver {
            path: &|p| p.to_path_buf(),
            env: &no_env,
        };
        let e = SecretSource::Value(Secret::new("  "))
            .resolve("waf.clients[1].secret", &r)
            .expect_err("empty");
        assert_eq!(
            e.to_string(),
            "config key `waf.clients[1].secret`: the secret is empty"
        );
        let d = Dir::new("empty");
        d.file("e.secret", "\n", 0o600);
        let beside = |p: &Path| d.0.join(p);
        let r = Resolver {
            path: &beside,
            env: &no_env,
        };
        assert!(matches!(
            SecretSource::File("e.secret".into()).resolve("sip.flow_key", &r),
            Err(SecretError::Empty { .. })
        ));
        let e = SecretSource::from_keys(
            "sip.flow_key",
            Some(&Secret::new("x")),
            None,
            Some(&"V".to_string()),
        )
        .expect_err("two");
        assert!(e.to_string().contains("sip.flow_key_file"), "{e}");
        assert!(
            SecretSource::from_keys("k", None, None, None)
                .expect("none")
                .is_none()
        );
    }

    #[test]
    fn a_mac_key_shorter_than_the_minimum_is_refused_naming_the_key() {
        let r = Resolver {
            path: &|p| p.to_path_buf(),
            env: &|_| Some("short".to_string()),
        };
        let e = resolve_key(
            "sip.flow_key",
            Some(SecretSource::Env("FLOW".into())),
            32,
            "RFC 5626 §5.2",
            &r,
        )
        .expect_err("short");
        let msg = e.to_string();
        assert!(
            msg.contains("`sip.flow_key_env`") && msg.contains("32 bytes"),
            "{msg}"
        );
        assert!(!msg.contains("short"), "{msg}");
    }
}
