//! Unit tests of [`Impu`](super::Impu): parsing, canonical form and the From/To match.

use super::*;

fn impu(s: &str) -> Impu {
    Impu::parse(s).expect(s)
}

fn uri(s: &str) -> Uri {
    Uri::parse(s).expect(s)
}

fn bob() -> Impu {
    impu("sip:bob@ims.example")
}

#[test]
fn password_is_refused_not_read_as_the_user_rfc3261_19_1_1() {
    assert_eq!(
        Impu::parse("sip:bob:x@ims.example"),
        Err(ImpuError::Password)
    );
    assert_eq!(
        Impu::parse("sip:bob:@ims.example"),
        Err(ImpuError::Password)
    );
    assert_eq!(Impu::parse("sip::x@ims.example"), Err(ImpuError::Password));
    assert_eq!(
        Impu::parse("sip:bob%3Ax@ims.example"),
        Err(ImpuError::BadUser(
            "must not carry ':', '@', ';' or '?', not even escaped"
        ))
    );
}

#[test]
fn params_headers_and_port_are_refused() {
    assert_eq!(
        Impu::parse("sip:bob@ims.example;user=phone"),
        Err(ImpuError::Params)
    );
    assert_eq!(
        Impu::parse("sip:bob@ims.example;lr"),
        Err(ImpuError::Params)
    );
    assert_eq!(
        Impu::parse("sip:bob@ims.example?subject=x"),
        Err(ImpuError::Headers)
    );
    assert_eq!(
        Impu::parse("sip:bob@ims.example:5060"),
        Err(ImpuError::Port)
    );
    assert_eq!(Impu::parse("sip:bob@[::1]:5060"), Err(ImpuError::Port));
    assert_eq!(Impu::parse("sip:bob@ims.example:"), Err(ImpuError::BadHost));
    assert!(matches!(
        Impu::parse("sip:bob;x=1@ims.example"),
        Err(ImpuError::BadUser(_))
    ));
    assert!(matches!(
        Impu::parse("sip:bob?x@ims.example"),
        Err(ImpuError::BadUser(_))
    ));
}

#[test]
fn scheme_is_sip_or_tel_and_sips_is_refused_rfc3261_19_1_4() {
    assert_eq!(impu("SIP:bob@ims.example").as_str(), "sip:bob@ims.example");
    for bad in [
        "sips:bob@ims.example",
        "mailto:bob@ims.example",
        "bob@ims.example",
        "sip",
    ] {
        assert_eq!(Impu::parse(bad), Err(ImpuError::Scheme), "{bad}");
    }
}

#[test]
fn canonical_form_decodes_unreserved_escapes_and_lowercases_host_rfc3261_19_1_4() {
    assert_eq!(impu("sip:%62ob@IMS.example"), bob());
    assert_eq!(
        impu("sip:%62ob@IMS.example").as_str(),
        "sip:bob@ims.example"
    );
    assert_eq!(impu("sip:a%2fb@h.example").as_str(), "sip:a%2Fb@h.example");
    // An escaped reserved character is not its literal form.
    assert_ne!(impu("sip:a%2Fb@h.example"), impu("sip:a/b@h.example"));
    assert_ne!(impu("sip:Bob@ims.example"), bob());
    assert_eq!(
        impu("sip:+1-555&x=y$,@h.example").as_str(),
        "sip:+1-555&x=y$,@h.example"
    );
    assert_eq!(
        impu("sip:bob@ims.example").to_string(),
        "sip:bob@ims.example"
    );
    assert_eq!("sip:bob@ims.example".parse::<Impu>(), Ok(bob()));
    let mut set = std::collections::HashSet::new();
    set.insert(impu("sip:b%6Fb@Ims.Example"));
    assert!(set.contains(&bob()));
}

#[test]
fn user_part_must_be_present_and_of_rfc3261_25_1_characters() {
    assert_eq!(Impu::parse("sip:ims.example"), Err(ImpuError::NoUser));
    assert!(matches!(
        Impu::parse("sip:@ims.example"),
        Err(ImpuError::BadUser(_))
    ));
    assert!(matches!(
        Impu::parse("sip:a@b@ims.example"),
        Err(ImpuError::BadUser(_))
    ));
    assert!(matches!(
        Impu::parse("sip:a%40b@ims.example"),
        Err(ImpuError::BadUser(_))
    ));
    assert!(matches!(
        Impu::parse("sip:a%00b@ims.example"),
        Err(ImpuError::BadUser(_))
    ));
    assert!(matches!(
        Impu::parse("sip:a%0Db@ims.example"),
        Err(ImpuError::BadUser(_))
    ));
    assert!(matches!(
        Impu::parse("sip:a%zzb@ims.example"),
        Err(ImpuError::BadUser(_))
    ));
    assert!(matches!(
        Impu::parse("sip:a%4@ims.example"),
        Err(ImpuError::BadUser(_))
    ));
    assert!(matches!(
        Impu::parse("sip:a\"b@ims.example"),
        Err(ImpuError::BadUser(_))
    ));
    assert!(matches!(
        Impu::parse("sip:a<b@ims.example"),
        Err(ImpuError::BadUser(_))
    ));
    assert_eq!(
        impu("sip:a%20b@ims.example").as_str(),
        "sip:a%20b@ims.example"
    );
}

#[test]
fn whitespace_control_and_non_ascii_are_refused() {
    for bad in [
        " sip:bob@ims.example",
        "sip:bob@ims.example ",
        "sip:bob@ims.example\r\n",
        "sip: bob@ims.example",
        "sip:bob\t@ims.example",
        "sip:bob\0@ims.example",
        "sip:bob@ims.example\u{7f}",
        "sip:böb@ims.example",
        "sip:bob@ims.example\u{a0}",
    ] {
        assert_eq!(Impu::parse(bad), Err(ImpuError::BadChar), "{bad:?}");
    }
    assert_eq!(Impu::parse(""), Err(ImpuError::Empty));
}

#[test]
fn hosts_are_hostnames_ipv4_or_bracketed_ipv6() {
    assert_eq!(impu("sip:bob@10.0.0.1").as_str(), "sip:bob@10.0.0.1");
    assert_eq!(
        impu("sip:bob@[2001:DB8:0:0::1]").as_str(),
        "sip:bob@[2001:db8::1]"
    );
    assert_eq!(
        impu("sip:bob@[2001:db8::1]"),
        impu("sip:bob@[2001:0db8::0:1]")
    );
    assert_eq!(
        impu("sip:bob@a-b.c9.example").as_str(),
        "sip:bob@a-b.c9.example"
    );
    for bad in [
        "sip:bob@",
        "sip:bob@ims.example.",
        "sip:bob@.example",
        "sip:bob@ims..example",
        "sip:bob@-ims.example",
        "sip:bob@ims-.example",
        "sip:bob@ims_x.example",
        "sip:bob@host.123",
        "sip:bob@010.0.0.1",
        "sip:bob@1.2.3",
        "sip:bob@256.0.0.1",
        "sip:bob@[::1",
        "sip:bob@[fe80::1%25eth0]",
        "sip:bob@[10.0.0.1]",
        "sip:bob@[]",
        "sip:bob@[::1]x",
    ] {
        assert_eq!(Impu::parse(bad), Err(ImpuError::BadHost), "{bad}");
    }
    let label = "a".repeat(64);
    assert_eq!(
        Impu::parse(&format!("sip:bob@{label}.example")),
        Err(ImpuError::BadHost)
    );
}

#[test]
fn tel_is_a_global_number_without_params_rfc3966_5_1_4() {
    assert_eq!(impu("tel:+1-201-555-0123").as_str(), "tel:+12015550123");
    assert_eq!(impu("TEL:+1.(201)555.0123"), impu("tel:+12015550123"));
    assert!(impu("tel:+15551234").is_tel());
    assert_eq!(impu("tel:+15551234").user_at_host(), None);
    assert_eq!(
        Impu::parse("tel:+1555;phone-context=x"),
        Err(ImpuError::Params)
    );
    assert_eq!(Impu::parse("tel:+1555;ext=1"), Err(ImpuError::Params));
    for bad in [
        "tel:5551234",
        "tel:+",
        "tel:+-",
        "tel:+1555a",
        "tel:+1 555",
        "tel:+1234567890123456",
    ] {
        assert!(Impu::parse(bad).is_err(), "{bad}");
    }
    assert_eq!(Impu::parse("tel:+1234567890123456"), Err(ImpuError::BadTel));
    assert_eq!(
        impu("tel:+123456789012345").as_str(),
        "tel:+123456789012345"
    );
}

#[test]
fn very_long_inputs_are_refused_cheaply() {
    let long = format!("sip:{}@ims.example", "a".repeat(MAX_IMPU_LEN));
    assert_eq!(Impu::parse(&long), Err(ImpuError::TooLong));
    assert_eq!(Impu::parse(&"x".repeat(1 << 20)), Err(ImpuError::TooLong));
    let fits = format!("sip:{}@ims.example", "a".repeat(MAX_IMPU_LEN - 16));
    assert_eq!(
        Impu::parse(&fits).map(|i| i.as_str().len()),
        Ok(MAX_IMPU_LEN)
    );
}

#[test]
fn from_to_with_password_or_headers_is_an_error_never_equal_rfc3261_19_1_4() {
    assert_eq!(
        bob().matches(&uri("sip:bob:x@ims.example")),
        Err(ImpuError::Password)
    );
    assert_eq!(
        bob().matches(&uri("sip:bob:@ims.example")),
        Err(ImpuError::Password)
    );
    assert_eq!(
        bob().matches(&uri("sip:bob@ims.example?subject=x")),
        Err(ImpuError::Headers)
    );
}

#[test]
fn from_to_compare_as_whole_uris_rfc3261_19_1_4() {
    let b = bob();
    assert_eq!(b.matches(&uri("sip:bob@ims.example")), Ok(true));
    assert_eq!(b.matches(&uri("sip:%62ob@IMS.example")), Ok(true));
    assert_eq!(
        b.matches(&uri("SIP:bob@ims.EXAMPLE;transport=tcp")),
        Ok(true)
    );
    assert_eq!(b.matches(&uri("sip:bob@ims.example;lr;foo=bar")), Ok(true));
    assert_eq!(b.matches(&uri("sip:Bob@ims.example")), Ok(false));
    assert_eq!(b.matches(&uri("sip:bob@ims.example:5060")), Ok(false));
    assert_eq!(b.matches(&uri("sips:bob@ims.example")), Ok(false));
    assert_eq!(b.matches(&uri("sip:ims.example")), Ok(false));
    assert_eq!(b.matches(&uri("sip:bob@other.example")), Ok(false));
    assert_eq!(b.matches(&uri("sip:bobby@ims.example")), Ok(false));
    assert_eq!(b.matches(&uri("sip:bo@bims.example")), Ok(false));
    assert_eq!(b.matches(&uri("sip:bob;x=1@ims.example")), Ok(false));
    assert_eq!(b.matches(&uri("sip:bob@ims_x.example")), Ok(false));
    assert_eq!(b.matches(&uri("tel:+15551234")), Ok(false));
    for p in [
        "user=phone",
        "ttl=1",
        "method=INVITE",
        "maddr=10.0.0.1",
        "%75ser=ip",
    ] {
        let s = format!("sip:bob@ims.example;{p}");
        assert_eq!(b.matches(&uri(&s)), Ok(false), "{s}");
    }
    let v6 = impu("sip:bob@[2001:db8::1]");
    assert_eq!(v6.matches(&uri("sip:bob@[2001:DB8:0::1]")), Ok(true));
}

#[test]
fn tel_from_to_compare_ignoring_visual_separators_rfc3966_4() {
    let t = impu("tel:+12015550123");
    assert_eq!(t.matches(&uri("tel:+1-201-555-0123")), Ok(true));
    assert_eq!(t.matches(&uri("TEL:+1(201)555.0123")), Ok(true));
    assert_eq!(t.matches(&uri("tel:+12015550124")), Ok(false));
    assert_eq!(t.matches(&uri("tel:+12015550123;ext=1")), Ok(false));
    assert_eq!(
        t.matches(&uri("tel:2015550123;phone-context=+1")),
        Ok(false)
    );
    assert_eq!(
        t.matches(&uri("sip:+12015550123@ims.example;user=phone")),
        Ok(false)
    );
    assert_eq!(t.matches(&uri("urn:x:+12015550123")), Ok(false));
}
