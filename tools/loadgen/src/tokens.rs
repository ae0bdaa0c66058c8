//! Per-user Bearer tokens (`--mint-key-dir`): loads the gateway's key directory without ever
//! creating a key, and mints one ES256 token per client with `imsgw-token`'s [`Minter`], the
//! same code the gateway's WAF mints with. Runs before any client connects, so minting costs the
//! tool, never the server; the run reports its time separately.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use imsgw_token::{KeyRing, MintRequest, Minter, MinterConfig};

use crate::cli::MintOptions;
use crate::procfs;
use crate::sip::Bearer;

/// The tokens of a run, one per client index, and what minting them cost the tool.
pub struct Minted {
    pub bearers: Vec<Bearer>,
    /// `kid` of the key that signed them (not secret: it is in every token's header).
    pub kid: String,
    pub elapsed: Duration,
    pub tool_cpu_s: f64,
}

/// Loads the ring from `opts.key_dir` and mints a token for each of `users` in `domain`.
pub fn mint_all(opts: &MintOptions, domain: &str, users: &[String]) -> Result<Minted> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_secs();
    let ring = load_existing(&opts.key_dir)?;
    let config = MinterConfig {
        default_ttl: opts.ttl_s,
        max_ttl: opts.ttl_s,
        ..MinterConfig::new(opts.issuer.clone(), opts.audience.clone())
    };
    let minter = Minter::new(config, &ring);
    let (started, cpu_started) = (Instant::now(), procfs::self_cpu_s());
    let mut bearers = Vec::with_capacity(users.len());
    for user in users {
        let (token, _claims) = minter
            .mint(now, request(user, domain, &opts.scope))
            .with_context(|| format!("minting a token for {user}"))?;
        let bearer = Bearer::new(token.expose())
            .map_err(|_| anyhow::anyhow!("the minted token for {user} is not a b64token"))?;
        bearers.push(bearer);
    }
    Ok(Minted {
        bearers,
        kid: ring.signing_kid().to_owned(),
        elapsed: started.elapsed(),
        tool_cpu_s: procfs::self_cpu_s() - cpu_started,
    })
}

/// What user `user` gets: sub = user, impu = `sip:user@domain`, impi = `user@domain`.
fn request(user: &str, domain: &str, scope: &str) -> MintRequest {
    MintRequest {
        sub: user.to_owned(),
        impu: format!("sip:{user}@{domain}"),
        impi: format!("{user}@{domain}"),
        scope: scope.to_owned(),
        client_id: "imsgw-loadgen".to_owned(),
        ttl: None,
    }
}

/// The gateway's keys, never new ones: a key made here would sign tokens the gateway has never
/// heard of.
fn load_existing(dir: &Path) -> Result<KeyRing> {
    KeyRing::load(dir).map_err(|e| match e {
        imsgw_token::KeyError::NoKeys => anyhow::anyhow!(
            "--mint-key-dir {}: no key (<kid>.pem) in it; start the gateway first, it creates \
             its waf.key_dir (this tool never creates keys)",
            dir.display()
        ),
        e => anyhow::Error::new(e).context(format!(
            "--mint-key-dir {}: cannot read the gateway's keys; start the gateway first, it \
             creates its waf.key_dir",
            dir.display()
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use imsgw_token::{Verifier, VerifierConfig};
    use std::path::PathBuf;

    /// A scratch directory removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let p = std::env::temp_dir().join(format!(
                "imsgw-loadgen-{name}-{}-{}",
                std::process::id(),
                rand::random::<u32>()
            ));
            std::fs::create_dir(&p).expect("mkdir");
            Scratch(p)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn opts(dir: &Path) -> MintOptions {
        MintOptions {
            key_dir: dir.to_path_buf(),
            issuer: "http://127.0.0.1:8380".into(),
            audience: "sip:ims.example".into(),
            scope: "sip".into(),
            ttl_s: 600,
        }
    }

    fn is_empty(dir: &Path) -> bool {
        std::fs::read_dir(dir).expect("ls").next().is_none()
    }

    #[test]
    fn keyless_or_missing_dir_is_refused_and_left_untouched() {
        let s = Scratch::new("empty");
        let users = ["load0".to_owned()];
        let err = mint_all(&opts(&s.0), "ims.example", &users)
            .err()
            .expect("refused");
        assert!(err.to_string().contains("no key"), "{err:#}");
        assert!(is_empty(&s.0), "no key was created");
        std::fs::write(s.0.join(".tmp.pem"), "x").expect("write");
        assert!(mint_all(&opts(&s.0), "ims.example", &users).is_err());

        let missing = s.0.join("absent");
        assert!(mint_all(&opts(&missing), "ims.example", &users).is_err());
        assert!(!missing.exists(), "the directory was not created");
    }

    #[test]
    fn one_distinct_token_per_user_signed_by_the_dir_key() {
        let s = Scratch::new("keys");
        let dir = s.0.join("keys");
        // The gateway's side: what `waf.key_dir` holds after it started.
        let gw = KeyRing::load_or_create(&dir, 1_700_000_000).expect("gateway creates");
        let users: Vec<String> = (0..3).map(|i| format!("load{i}")).collect();
        let m = mint_all(&opts(&dir), "ims.example", &users).expect("mint");
        assert_eq!(m.kid, gw.signing_kid());
        assert_eq!(m.bearers.len(), 3);
        let lines: std::collections::BTreeSet<&str> = m.bearers.iter().map(Bearer::line).collect();
        assert_eq!(lines.len(), 3, "distinct per user");
        // The gateway's own verifier accepts each, for the user it was minted for.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let mut config = VerifierConfig::new("http://127.0.0.1:8380", "sip:ims.example");
        config.required_scope = Some("sip".into());
        let mut v = Verifier::new(config, &gw).expect("verifier");
        for (b, user) in m.bearers.iter().zip(&users) {
            let token = b
                .line()
                .strip_prefix("Authorization: Bearer ")
                .expect("prefix");
            let c = v.verify(now, token).expect("valid").claims;
            assert_eq!(c.sub, *user);
            assert_eq!(c.impu.as_str(), format!("sip:{user}@ims.example"));
            assert_eq!(c.exp - c.iat, 600);
        }
    }

    #[test]
    fn request_names_the_user_in_sub_impu_and_impi() {
        let r = request("load7", "ims.example", "sip");
        assert_eq!(
            (r.sub.as_str(), r.impu.as_str(), r.impi.as_str()),
            ("load7", "sip:load7@ims.example", "load7@ims.example")
        );
        assert_eq!((r.scope.as_str(), r.ttl), ("sip", None));
    }
}
