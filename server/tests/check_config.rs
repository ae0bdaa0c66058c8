//! The real `imsgw check-config` binary on configs naming secret files: a secret file that group
//! or others can read is refused with exit status 2 and one line naming the key, the file, its
//! mode and the fix (the key directory's rule, for every secret); the same file at 0600 passes.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const SECRET: &str = "do-not-print-0123456789abcdef0123456789";

/// A fresh folder under the temp dir, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("imsgw-check-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        Dir(d)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `imsgw check-config --config <file>` without any IMSGW_* override; (status, stderr).
fn check_config(file: &Path) -> (Option<i32>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imsgw"));
    cmd.args(["check-config", "--config"]).arg(file);
    for (k, _) in std::env::vars() {
        if k.starts_with("IMSGW_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd.output().expect("imsgw runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const BASE: &str =
    "[sip]\ndomain = \"ims.example\"\nupstream = \"sip:127.0.0.1:5070;transport=udp\"\n";

#[test]
fn check_config_refuses_a_world_readable_secret_file_naming_key_file_and_mode() {
    let cases: [(&str, &str, String); 4] = [
        (
            "flow",
            "sip.flow_key_file",
            format!("{BASE}flow_key_file = \"s.secret\"\n"),
        ),
        (
            "hmac",
            "waf.hmac_secret_file",
            format!("{BASE}[waf]\nhmac_secret_file = \"s.secret\"\n"),
        ),
        (
            "client",
            "waf.clients[0].secret_file",
            format!("{BASE}[[waf.clients]]\nid = \"svc\"\nsecret_file = \"s.secret\"\n"),
        ),
        (
            "oidc",
            "oidc.providers[0].client_secret_file",
            format!(
                "{BASE}[[oidc.providers]]\nname = \"corp\"\nissuer = \"https://login.corp.example\"\n\
client_id = \"imsgw\"\nclient_secret_file = \"s.secret\"\n"
            ),
        ),
    ];
    for (name, key, text) in cases {
        let dir = Dir::new(name);
        let config = dir.0.join("imsgw.toml");
        std::fs::write(&config, text).expect("config");
        let secret = dir.0.join("s.secret");
        std::fs::write(&secret, format!("{SECRET}\n")).expect("secret");
        for mode in [0o644, 0o640, 0o604] {
            std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(mode))
                .expect("chmod");
            let (status, stderr) = check_config(&config);
            assert_eq!(status, Some(2), "{key} at {mode:o}: {stderr}");
            let line = stderr.trim();
            assert_eq!(line.lines().count(), 1, "one line: {stderr}");
            assert!(line.contains(&format!("`{key}`")), "names the key: {line}");
            assert!(
                line.contains(&format!("mode {mode:o}")),
                "names the mode: {line}"
            );
            let fix = format!("chmod 600 {}", secret.display());
            assert!(line.contains(&fix), "says how to fix it: {line}");
            assert!(
                !stderr.contains(SECRET),
                "never prints the secret: {stderr}"
            );
        }
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let (status, stderr) = check_config(&config);
        assert_eq!(status, Some(0), "{key} at 600: {stderr}");
    }
}

#[test]
fn check_config_names_the_media_key_that_is_wrong() {
    let dir = Dir::new("media");
    for (body, key) in [
        ("listen = \"0.0.0.0:10000\"", "media.public_addresses"),
        (
            "listen = \"127.0.0.1:10000\"\nrtp_ports = \"40000\"",
            "media.rtp_ports",
        ),
        (
            "listen = \"127.0.0.1:10000\"\nrtp_ports = \"40001-40001\"",
            "media.rtp_ports",
        ),
        (
            "listen = \"127.0.0.1:10000\"\ninactivity_secs = 0",
            "media.inactivity_secs",
        ),
        ("listen = \"127.0.0.1:10000\"\nbogus = 1", "bogus"),
    ] {
        let file = dir.0.join("m.toml");
        std::fs::write(&file, format!("{BASE}\n[media]\n{body}\n")).expect("write");
        let (code, err) = check_config(&file);
        assert_eq!(code, Some(2), "{body}: {err}");
        assert!(err.contains(key), "{body}: stderr names {key}: {err}");
    }
    let file = dir.0.join("ok.toml");
    let ok = "listen = \"127.0.0.1:10000\"\nrtp_ports = \"40000-40099\"";
    std::fs::write(&file, format!("{BASE}\n[media]\n{ok}\n")).expect("write");
    let (code, err) = check_config(&file);
    assert_eq!(code, Some(0), "{err}");
}
