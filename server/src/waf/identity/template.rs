//! `[identity]` templates: parsed once from the config into text and placeholders, filled in at
//! each sign-in, and checked at start-up against the one rule that matters for them: no two web
//! accounts may ever map to one IMS identity.
//!
//! OpenID Connect Core §5.7 says `preferred_username` (like `email`, `name` and every other
//! profile claim) is neither unique nor stable, and §2 makes `sub` unique only at its issuer. So
//! a template may read a name claim only for a provider the operator marks as controlling names
//! (`identity.providers.<name>.controls_usernames`), and templates of two providers must provably
//! never produce the same string: their fixed text before the first claim, or after the last,
//! must differ in a place neither can fill with a claim (see [`disjoint`]).
//!
//! Owns: template syntax, the escaping of `{sub}`, the start-up checks. Must not touch: claims
//! validation, the static table, HTTP.

use std::fmt;

use imsgw_sip::Impu;
use serde_json::{Map, Value};

/// The default IMPU template: provider and subject, the only stable key (OIDC Core §5.7).
pub const DEFAULT_IMPU: &str = "sip:{provider}.{sub}@{sip.domain}";
/// The default IMPI template.
pub const DEFAULT_IMPI: &str = "{provider}.{sub}@{sip.domain}";

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    /// `{sip.domain}`
    Domain,
    /// `{provider}`: the provider's `name` (letters, digits, `-`, `_`).
    Provider,
    /// `{sub}`: the subject at the provider, escaped by [`escape_sub`].
    Sub,
    /// `{claim}`: any other claim, exactly as the provider wrote it.
    Claim(String),
}

impl Piece {
    /// Text known at start-up for `provider`; `None` for what each account fills in.
    fn fixed(&self, domain: &str, provider: &str) -> Option<String> {
        match self {
            Piece::Text(t) => Some(t.clone()),
            Piece::Domain => Some(domain.to_string()),
            Piece::Provider => Some(provider.to_string()),
            Piece::Sub | Piece::Claim(_) => None,
        }
    }
}

/// A parsed `identity.impu` / `identity.impi` template.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct Template {
    source: String,
    pieces: Vec<Piece>,
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Template({:?})", self.source)
    }
}

impl TryFrom<String> for Template {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        Template::parse(&s)
    }
}

impl Template {
    /// Parses `{name}` placeholders and text. `{` and `}` only delimit placeholders; a name is
    /// not empty and has no whitespace.
    pub fn parse(s: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut rest = s;
        while let Some(open) = rest.find(['{', '}']) {
            if rest[open..].starts_with('}') {
                return Err(format!("unbalanced `}}` in the template `{s}`"));
            }
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find(['{', '}'])
                .filter(|&c| after[c..].starts_with('}'))
                .ok_or_else(|| format!("unbalanced `{{` in the template `{s}`"))?;
            let name = &after[..close];
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(format!(
                    "`{{{name}}}` in the template `{s}` is not a claim name"
                ));
            }
            pieces.push(match name {
                "sip.domain" => Piece::Domain,
                "provider" => Piece::Provider,
                "sub" => Piece::Sub,
                other => Piece::Claim(other.to_string()),
            });
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        Ok(Template {
            source: s.to_string(),
            pieces,
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The claims other than `sub` it reads: names, never stable keys (OIDC Core §5.7).
    pub fn name_claims(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Claim(c) => Some(c.as_str()),
            _ => None,
        })
    }

    /// Fills in the template for one account; `Err(claim)` names a claim the account lacks.
    pub fn fill(
        &self,
        domain: &str,
        provider: &str,
        sub: &str,
        claims: &Map<String, Value>,
    ) -> Result<String, String> {
        let mut out = String::with_capacity(self.source.len() + 32);
        for p in &self.pieces {
            match p {
                Piece::Sub => out.push_str(&escape_sub(sub)),
                Piece::Claim(name) => match claims.get(name) {
                    Some(Value::String(s)) if !s.is_empty() => out.push_str(s),
                    Some(Value::Number(n)) => out.push_str(&n.to_string()),
                    _ => return Err(name.clone()),
                },
                fixed => {
                    if let Some(t) = fixed.fixed(domain, provider) {
                        out.push_str(&t);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Whether each account gets its own value (the template reads `{sub}` or a claim).
    fn per_account(&self) -> bool {
        self.pieces
            .iter()
            .any(|p| matches!(p, Piece::Sub | Piece::Claim(_)))
    }

    /// The fixed text before the first and after the last per-account piece, for `provider`.
    fn fixed_ends(&self, domain: &str, provider: &str) -> (String, String) {
        let fixed = |it: &mut dyn Iterator<Item = &Piece>| {
            it.map_while(|p| p.fixed(domain, provider))
                .collect::<Vec<_>>()
        };
        let head = fixed(&mut self.pieces.iter()).concat();
        let mut tail = fixed(&mut self.pieces.iter().rev());
        tail.reverse();
        (head, tail.concat())
    }
}

/// Static-table entries (`identity.static`) whose IMPU or IMPI a provider's template could also
/// give to one of that provider's own accounts: each a warning for the operator (an entry may
/// rightly give one person's second account their first identity, so this does not stop the
/// start). `entries` are (key `provider:sub`, IMPU, IMPI).
pub fn static_overlaps(
    domain: &str,
    providers: &[ProviderTemplates<'_>],
    entries: &[(&str, &str, &str)],
) -> Vec<String> {
    let mut out = Vec::new();
    for (key, impu, impi) in entries {
        let owner = key.split_once(':').map_or(*key, |(p, _)| p);
        for p in providers.iter().filter(|p| p.provider != owner) {
            for (t, literal, what, tkey) in [
                (p.impu, *impu, "IMPU", &p.impu_key),
                (p.impi, *impi, "IMPI", &p.impi_key),
            ] {
                let (head, tail) = t.fixed_ends(domain, p.provider);
                let could = literal.len() > head.len() + tail.len()
                    && literal.starts_with(&head)
                    && literal.ends_with(&tail);
                if could {
                    out.push(format!(
                        "identity.static \"{key}\" gives the {what} `{literal}`, which {tkey} (`{}`) could also give to an account at provider \"{}\": make sure they are the same person, or choose an identity no template produces",
                        t.as_str(),
                        p.provider
                    ));
                }
            }
        }
    }
    out
}

/// `{sub}` in a user part: letters, digits, `-`, `_` and `.` as they are, every other byte as
/// `=` and two uppercase hex digits. Injective (`=` itself is escaped), and the result is always
/// a canonical SIP user part, so any subject maps and two subjects never map to one identity
/// (`auth0|42` becomes `auth0=7C42`).
pub fn escape_sub(sub: &str) -> String {
    let mut out = String::with_capacity(sub.len());
    for b in sub.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    out
}

/// The templates one provider maps with, and the config keys they come from.
#[derive(Debug, Clone)]
pub struct ProviderTemplates<'a> {
    /// The provider's `name`.
    pub provider: &'a str,
    /// `identity.providers.<name>.controls_usernames`.
    pub controls_usernames: bool,
    pub impu: &'a Template,
    /// `identity.impu` or `identity.providers.<name>.impu`.
    pub impu_key: String,
    pub impi: &'a Template,
    pub impi_key: String,
}

/// A template that could hand one identity to two accounts, with the key to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub key: String,
    pub message: String,
}

/// The start-up checks of every configured provider's templates.
pub fn check(domain: &str, providers: &[ProviderTemplates<'_>]) -> Result<(), TemplateError> {
    for p in providers {
        for (t, key, what) in [(p.impu, &p.impu_key, "IMPU"), (p.impi, &p.impi_key, "IMPI")] {
            check_one(domain, p, t, key, what)?;
        }
    }
    for (i, p) in providers.iter().enumerate() {
        for q in &providers[i + 1..] {
            for (tp, tq, key, what) in [
                (p.impu, q.impu, &q.impu_key, "IMPU"),
                (p.impi, q.impi, &q.impi_key, "IMPI"),
            ] {
                if !disjoint(domain, (p.provider, tp), (q.provider, tq)) {
                    return Err(TemplateError {
                        key: key.to_string(),
                        message: format!(
                            "providers \"{}\" and \"{}\" could map two accounts to the same {what}: \
their templates (`{}`, `{}`) have the same text around the claims, so one name (or sub) at both \
providers gives one identity, and whoever signs up with it at one takes over the other's. Give \
each provider its own prefix or domain: put {{provider}} first (the default \
`{DEFAULT_IMPU}`), or set identity.providers.<name>.{} per provider, e.g. \
`sip:{{preferred_username}}@corp.{{sip.domain}}`",
                            p.provider,
                            q.provider,
                            tp.as_str(),
                            tq.as_str(),
                            what.to_ascii_lowercase(),
                        ),
                    });
                }
            }
        }
    }
    Ok(())
}

fn check_one(
    domain: &str,
    p: &ProviderTemplates<'_>,
    t: &Template,
    key: &str,
    what: &str,
) -> Result<(), TemplateError> {
    let err = |message: String| TemplateError {
        key: key.to_string(),
        message,
    };
    if let Some(claim) = t.name_claims().next()
        && !p.controls_usernames
    {
        return Err(err(format!(
            "`{{{claim}}}` is not a stable identifier (OpenID Connect Core §5.7: only sub is), \
and provider \"{name}\" is not marked as controlling it: whoever takes that name there would \
become its owner's {what}. Use {{provider}} and {{sub}} (the default `{DEFAULT_IMPU}`), map the \
accounts in identity.static, or, only if \"{name}\" is your own directory whose names are unique \
and never reassigned, set identity.providers.{name}.controls_usernames = true",
            name = p.provider
        )));
    }
    if !t.per_account() {
        return Err(err(format!(
            "`{}` gives every account at \"{}\" the same {what}: it needs {{sub}} (or a claim)",
            t.as_str(),
            p.provider
        )));
    }
    // Every account fills in the same shape: a probe shows whether it can ever be usable.
    let probe: Map<String, Value> = t
        .name_claims()
        .map(|c| (c.to_string(), Value::String("1".into())))
        .collect();
    let filled = t
        .fill(domain, p.provider, "1", &probe)
        .map_err(|c| err(format!("claim `{c}` missing from the probe")))?;
    let usable = if what == "IMPU" {
        Impu::parse(&filled)
            .map_err(|e| e.to_string())
            .and_then(|i| {
                if i.as_str() == filled {
                    Ok(())
                } else {
                    Err(format!("it is not written in canonical form (`{i}`)"))
                }
            })
    } else if filled.contains(|c: char| c.is_whitespace() || "\"<>".contains(c)) {
        Err("an IMPI has no whitespace, quotes or angle brackets".to_string())
    } else {
        Ok(())
    };
    usable.map_err(|why| {
        err(format!(
            "`{}` cannot give a usable {what} (for claims \"1\" it gives `{filled}`: {why})",
            t.as_str()
        ))
    })
}

/// Whether no account of provider `a` and no account of provider `b` can ever get the same
/// string: the fixed text before the first per-account piece of one is not a prefix of the
/// other's (so they differ at a position both fix), or likewise the fixed text after the last.
/// Claims can hold anything, so nothing weaker is a proof.
fn disjoint(domain: &str, a: (&str, &Template), b: (&str, &Template)) -> bool {
    let (ah, at) = a.1.fixed_ends(domain, a.0);
    let (bh, bt) = b.1.fixed_ends(domain, b.0);
    let heads_differ = !(ah.starts_with(&bh) || bh.starts_with(&ah));
    let tails_differ = !(at.ends_with(&bt) || bt.ends_with(&at));
    heads_differ || tails_differ
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Template {
        Template::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn pt<'a>(provider: &'a str, controls: bool, impu: &'a Template) -> ProviderTemplates<'a> {
        ProviderTemplates {
            provider,
            controls_usernames: controls,
            impu,
            impu_key: "identity.impu".into(),
            impi: impu,
            impi_key: "identity.impi".into(),
        }
    }

    #[test]
    fn parse_splits_text_and_placeholders_and_refuses_broken_braces() {
        let x = t("sip:{provider}.{sub}@{sip.domain}");
        assert_eq!(
            x.pieces,
            [
                Piece::Text("sip:".into()),
                Piece::Provider,
                Piece::Text(".".into()),
                Piece::Sub,
                Piece::Text("@".into()),
                Piece::Domain
            ]
        );
        for bad in [
            "sip:{sub@x",
            "sip:sub}@x",
            "sip:{}@x",
            "sip:{a b}@x",
            "sip:{a{b}}@x",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sub_escaping_is_injective_and_always_a_canonical_user_part() {
        let subs = [
            "248289761001",
            "auth0|42",
            "auth0=7C42",
            "a:b",
            "a@b",
            "a;b?c",
            "a%3Ab",
            "ü",
            "x y",
        ];
        let mut seen = std::collections::BTreeSet::new();
        for s in subs {
            let e = escape_sub(s);
            assert!(seen.insert(e.clone()), "{s} collides as {e}");
            let impu = format!("sip:demo.{e}@ims.example");
            let parsed = Impu::parse(&impu).unwrap_or_else(|err| panic!("{s}: {err}"));
            assert_eq!(parsed.as_str(), impu, "{s}");
        }
        assert_eq!(escape_sub("auth0|42"), "auth0=7C42");
        assert_eq!(escape_sub("sub-alice.1_x"), "sub-alice.1_x");
    }

    #[test]
    fn default_template_maps_provider_and_sub() {
        let x = t(DEFAULT_IMPU);
        let claims = Map::new();
        assert_eq!(
            x.fill("ims.example", "corp", "auth0|42", &claims),
            Ok("sip:corp.auth0=7C42@ims.example".into())
        );
        assert_eq!(x.name_claims().count(), 0);
    }

    #[test]
    fn a_name_claim_needs_a_provider_marked_as_controlling_it_oidc_core_5_7() {
        let x = t("sip:{preferred_username}@{sip.domain}");
        let e = check("ims.example", &[pt("corp", false, &x)]).expect_err("unmarked");
        assert_eq!(e.key, "identity.impu");
        assert!(e.message.contains("preferred_username"), "{}", e.message);
        assert!(e.message.contains("§5.7"), "{}", e.message);
        assert!(
            e.message
                .contains("identity.providers.corp.controls_usernames"),
            "{}",
            e.message
        );
        check("ims.example", &[pt("corp", true, &x)]).expect("marked");
        let email = t("sip:{sub}.{email}@{sip.domain}");
        assert!(check("ims.example", &[pt("corp", false, &email)]).is_err());
    }

    #[test]
    fn one_template_for_two_providers_must_separate_them() {
        let names = t("sip:{preferred_username}@{sip.domain}");
        let e = check(
            "ims.example",
            &[pt("corp", true, &names), pt("partner", true, &names)],
        )
        .expect_err("same name at both -> one IMPU");
        assert_eq!(e.key, "identity.impu");
        assert!(
            e.message.contains("\"corp\"") && e.message.contains("\"partner\""),
            "{}",
            e.message
        );
        let subs = t("sip:{sub}@{sip.domain}");
        assert!(
            check(
                "ims.example",
                &[pt("corp", false, &subs), pt("partner", false, &subs)]
            )
            .is_err(),
            "sub is unique per issuer only (OIDC Core §2)"
        );
        let d = t(DEFAULT_IMPU);
        check(
            "ims.example",
            &[pt("corp", false, &d), pt("corp-2", false, &d)],
        )
        .expect("the default separates providers");
    }

    #[test]
    fn disjointness_is_proven_by_a_fixed_difference_or_refused() {
        let d = "ims.example";
        let yes = |a: &str, pa: &str, b: &str, pb: &str| disjoint(d, (pa, &t(a)), (pb, &t(b)));
        // different domains: the suffixes differ where neither can hold a claim
        assert!(yes(
            "sip:{preferred_username}@{sip.domain}",
            "corp",
            "sip:{preferred_username}@partner.{sip.domain}",
            "partner"
        ));
        // prefixes `sip:corp.` and `sip:` overlap: a corp.x name at the other would collide
        assert!(!yes(
            "sip:{provider}.{sub}@{sip.domain}",
            "corp",
            "sip:{preferred_username}@{sip.domain}",
            "partner"
        ));
        // no separator: "de" + sub "mo1" and "demo" + sub "1" would meet
        assert!(!yes(
            "sip:{provider}{sub}@x",
            "demo",
            "sip:{provider}{sub}@x",
            "de"
        ));
        assert!(yes(
            "sip:{provider}{sub}@x",
            "mo",
            "sip:{provider}{sub}@x",
            "de"
        ));
        assert!(!yes(
            "sip:{sub}{provider}@x",
            "mo",
            "sip:{sub}{provider}@x",
            "demo"
        ));
        assert!(yes(
            "sip:{sub}.{provider}@x",
            "mo",
            "sip:{sub}.{provider}@x",
            "demo"
        ));
    }

    #[test]
    fn templates_that_cannot_give_a_usable_identity_are_refused() {
        for (bad, why) in [
            ("sip:alice@{sip.domain}", "same IMPU"),
            ("{provider}.{sub}@{sip.domain}", "usable"),
            ("sip:{provider}.{sub}@IMS.example", "canonical"),
            ("sips:{provider}.{sub}@{sip.domain}", "usable"),
        ] {
            let x = t(bad);
            let e = check("ims.example", &[pt("corp", false, &x)]).expect_err(bad);
            assert!(e.message.contains(why), "{bad}: {}", e.message);
        }
    }
}
