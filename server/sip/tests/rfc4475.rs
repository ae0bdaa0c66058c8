//! RFC 4475 "SIP Torture Test Messages" against the message layer: every valid message
//! (§3.1.1) parses, validates and round-trips bit-exact; every invalid one (§3.1.2) is rejected
//! by `parse()` or `validate()` with the matching error and can still be answered with a 400
//! when its header lines exist; the semantic cases of §3.2-3.4 give the typed values the RFC
//! describes. The `.dat` files are the RFC's archive, byte for byte (see `rfc4475/README.md`).

use imsgw_sip::{
    Bytes, Contacts, HeaderName, Message, Method, NameAddr, ParseError, Splice, Uri, response_to,
};

fn load(name: &str) -> Bytes {
    let path = format!("{}/tests/rfc4475/{name}.dat", env!("CARGO_MANIFEST_DIR"));
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

fn parse(name: &str) -> Message {
    Message::parse(load(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn sip(na: &NameAddr) -> &imsgw_sip::SipUri {
    na.uri.as_sip().expect("a SIP URI")
}

fn contacts(m: &Message) -> Vec<NameAddr> {
    match m.contacts() {
        Ok(Contacts::List(l)) => l,
        other => panic!("contact list expected, got {other:?}"),
    }
}

/// Splicing nothing gives back every byte exactly (RFC 3261 §16.6: forward untouched).
fn assert_round_trip(m: &Message) {
    let out = Splice::new().apply(m.as_bytes()).expect("no edits");
    assert_eq!(&out[..], &m.as_bytes()[..]);
}

/// A 400 built from `m` parses and carries the request's Via values and identifiers.
fn assert_answerable(name: &str, m: &Message) {
    let resp = response_to(m, 400, "Bad Request", Some("gw400"), &[]);
    let r = Message::parse(resp).unwrap_or_else(|e| panic!("{name}: response: {e}"));
    assert_eq!(r.status(), Some(400), "{name}");
    let req_vias: Vec<&[u8]> = m
        .headers()
        .iter()
        .filter(|h| h.name == HeaderName::Via)
        .map(|h| m.value(h))
        .collect();
    let resp_vias: Vec<&[u8]> = r
        .headers()
        .iter()
        .filter(|h| h.name == HeaderName::Via)
        .map(|h| r.value(h))
        .collect();
    assert_eq!(req_vias, resp_vias, "{name}");
    if let Ok(id) = m.call_id() {
        assert_eq!(r.call_id(), Ok(id), "{name}");
    }
}

// RFC 4475 §3.1.1 valid messages, with the semantic cases of §3.2-3.4 that are syntactically
// valid too. `baddate` (§3.1.2.12) is here on purpose: a proxy never reads Date, so it forwards
// the message untouched rather than rejecting it.
const VALID: &[&str] = &[
    "wsinv",
    "intmeth",
    "esc01",
    "escnull",
    "esc02",
    "lwsdisp",
    "longreq",
    "dblreq",
    "semiuri",
    "transports",
    "mpart01",
    "unreason",
    "noreason",
    "badbranch",
    "unkscm",
    "novelsc",
    "unksm2",
    "bext01",
    "invut",
    "regaut01",
    "bcast",
    "zeromf",
    "cparam01",
    "cparam02",
    "regescrt",
    "sdp01",
    "inv2543",
    "baddate",
];

#[test]
fn valid_messages_parse_validate_and_round_trip_rfc4475_3_1_1() {
    for name in VALID {
        let m = parse(name);
        assert_eq!(m.validate(), Ok(()), "{name}");
        assert_round_trip(&m);
    }
}

/// RFC 4475 §3.1.2 (and §3.3.1, §3.3.8, §3.3.9) invalid messages rejected by `validate()`.
#[test]
fn invalid_messages_fail_validate_with_the_matching_error_rfc4475_3_1_2() {
    let cases: &[(&str, ParseError)] = &[
        ("badinv01", ParseError::BadVia),
        ("scalar02", ParseError::BadCSeq),
        ("scalarlg", ParseError::BadCSeq),
        ("quotbal", ParseError::BadNameAddr("To")),
        ("ltgtruri", ParseError::BadUri),
        ("lwsruri", ParseError::BadStartLine),
        ("lwsstart", ParseError::BadStartLine),
        ("trws", ParseError::BadStartLine),
        ("escruri", ParseError::BadUri),
        ("regbadct", ParseError::BadNameAddr("Contact")),
        ("badaspec", ParseError::BadNameAddr("To")),
        ("baddn", ParseError::BadNameAddr("From")),
        ("badvers", ParseError::BadVersion),
        ("mismatch01", ParseError::CSeqMethodMismatch),
        ("mismatch02", ParseError::CSeqMethodMismatch),
        ("insuf", ParseError::MissingHeader("From")),
        ("multi01", ParseError::DuplicateHeader("From")),
    ];
    for (name, want) in cases {
        let m = parse(name);
        assert_eq!(m.validate().as_ref(), Err(want), "{name}");
        assert_round_trip(&m);
        if m.is_request() {
            assert_answerable(name, &m);
        }
    }
}

/// Invalid bodies are rejected by `parse()`; `parse_lenient()` still reads the headers so the
/// proxy can answer 400 (RFC 4475 §3.1.2.2, §3.1.2.3, §3.3.9).
#[test]
fn bad_content_length_fails_parse_but_can_be_answered() {
    let cases: &[(&str, ParseError)] = &[
        ("clerr", ParseError::BodyTruncated),
        ("ncl", ParseError::BadContentLength),
        ("mcl01", ParseError::DuplicateHeader("Content-Length")),
    ];
    for (name, want) in cases {
        assert_eq!(
            Message::parse(load(name)).as_ref().err(),
            Some(want),
            "{name}"
        );
        let m = Message::parse_lenient(load(name)).expect("headers readable");
        assert_eq!(m.validate().as_ref(), Err(want), "{name}");
        assert_answerable(name, &m);
    }
}

#[test]
fn overlarge_status_code_is_dropped_rfc4475_3_1_2_19() {
    assert_eq!(
        Message::parse(load("bigcode")).err(),
        Some(ParseError::BadStatus)
    );
}

#[test]
fn undescribed_test_dat_is_rejected() {
    // No SIP-Version and a header line without a colon ("Foobar roobar").
    assert_eq!(
        Message::parse(load("test")).err(),
        Some(ParseError::BadHeaderLine)
    );
}

#[test]
fn wsinv_short_tortuous_invite_rfc4475_3_1_1_1() {
    let m = parse("wsinv");
    let to = m.to().expect("to");
    assert_eq!(sip(&to).to_string(), "sip:vivekg@chair-dnrc.example.com");
    assert_eq!(to.tag(), Some("1918181833n"));
    let from = m.from().expect("from");
    assert_eq!(from.display.as_deref(), Some("J Rosenberg \\\""));
    assert_eq!(from.tag(), Some("98asjd8"));
    assert_eq!(m.max_forwards().expect("mf").map(|(n, _)| n), Some(68));
    assert_eq!(m.call_id(), Ok("wsinv.ndaksdj@192.0.2.1"));
    assert_eq!(m.cseq().expect("cseq").seq, 9);
    assert_eq!(m.cseq().expect("cseq").method, Method::Invite);
    assert_eq!(m.content_length(), Ok(Some(150)));
    assert_eq!(m.body().len(), 150);
    let vias = m.vias().expect("vias");
    let got: Vec<(&str, &str, Option<&str>)> = vias
        .iter()
        .map(|v| (v.transport.as_str(), v.host.as_str(), v.branch.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            ("UDP", "192.0.2.2", Some("390skdjuw")),
            ("TCP", "spindle.example.com", Some("z9hG4bK9ikj8")),
            ("UDP", "192.168.255.111", Some("z9hG4bK30239")),
        ]
    );
    assert_eq!(m.top_via().expect("top"), vias[0]);
    let subject = m.header(&HeaderName::new("Subject")).expect("s :");
    assert_eq!(m.value(subject), b"");
    let nf = m
        .header(&HeaderName::new("newfangledheader"))
        .expect("folded header");
    assert_eq!(
        m.value(nf),
        b"newfangled value\r\n continued newfangled value"
    );
    let odd = m
        .header(&HeaderName::new("UnknownHeaderWithUnusualValue"))
        .expect("odd");
    assert_eq!(m.value(odd), b";;,,;;,;");
    let route = &m.routes().expect("route")[0];
    let ru = sip(route);
    assert_eq!(ru.param("lr"), Some(None));
    assert_eq!(ru.param("unknownwith"), Some(Some("value")));
    assert_eq!(ru.param("unknown-no-value"), Some(None));
    let c = &contacts(&m)[0];
    assert_eq!(c.display.as_deref(), Some("Quoted string \"\""));
    assert_eq!(c.param("newparam"), Some(Some("newvalue")));
    assert_eq!(c.param("secondparam"), Some(None));
    assert_eq!(c.param("q"), Some(Some("0.33")));
    let ruri = Uri::parse(m.request_uri().expect("ruri")).expect("parses");
    assert_eq!(
        ruri.as_sip().expect("sip").param("unknownparam"),
        Some(None)
    );
}

#[test]
fn wsinv_vias_can_be_removed_across_folded_lines() {
    let m = parse("wsinv");
    let r = m
        .remove_value_range(&HeaderName::Via, 1)
        .expect("second via");
    let mut s = Splice::new();
    s.delete(r);
    let out = Message::parse(s.apply(m.as_bytes()).expect("splice")).expect("still parses");
    let hosts: Vec<String> = out
        .vias()
        .expect("vias")
        .into_iter()
        .map(|v| v.host)
        .collect();
    assert_eq!(hosts, ["192.0.2.2", "192.168.255.111"]);
    assert_eq!(out.validate(), Ok(()));
}

#[test]
fn intmeth_wide_range_of_valid_characters_rfc4475_3_1_1_2() {
    let m = parse("intmeth");
    let method = "!interesting-Method0123456789_*+`.%indeed'~";
    assert_eq!(m.method(), Some(&Method::Other(method.into())));
    assert_eq!(m.cseq().expect("cseq").method.as_str(), method);
    assert_eq!(m.cseq().expect("cseq").seq, 139_122_385);
    let ruri = imsgw_sip::SipUri::parse(m.request_uri().expect("ruri")).expect("valid");
    assert_eq!(
        ruri.user.as_deref(),
        Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    );
    assert_eq!(
        ruri.password.as_deref(),
        Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
    );
    assert_eq!(ruri.host, "example.com");
    let to = m.to().expect("to");
    assert_eq!(to.display.as_deref(), Some("BEL:\x07 NUL:\x00 DEL:\x7f"));
    let from = m.from().expect("from");
    assert_eq!(
        from.display.as_deref(),
        Some("token1~` token2'+_ token3*%!.-")
    );
    assert_eq!(from.tag(), Some("_token~1'+`*%!-."));
    assert_eq!(from.params[0].unquoted().as_deref(), Some("работающий"));
    assert_eq!(
        m.call_id(),
        Ok("intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{")
    );
    let ext = m
        .header(&HeaderName::new("extensionHeader-!.%*+_`'~"))
        .expect("ext");
    assert_eq!(std::str::from_utf8(m.value(ext)), Ok("\u{feff}大停電"));
}

#[test]
fn esc01_valid_percent_escaping_rfc4475_3_1_1_3() {
    let m = parse("esc01");
    let ruri = imsgw_sip::SipUri::parse(m.request_uri().expect("ruri")).expect("valid");
    assert_eq!(ruri.user.as_deref(), Some("sips%3Auser%40example.com"));
    assert_eq!(ruri.host, "example.net");
    // Escaped reserved characters stay escaped in the AOR; they differ from their literals.
    assert_eq!(ruri.aor(), "sip:sips%3Auser%40example.com@example.net");
    assert_eq!(sip(&m.to().expect("to")).aor(), "sip:user@example.com");
    assert_eq!(
        sip(&m.from().expect("from")).aor(),
        "sip:I%20have%20spaces@example.net"
    );
    assert_eq!(m.call_id(), Ok("esc01.239409asdfakjkn23onasd0-3234"));
    assert!(m.header(&HeaderName::ContentType).is_some());
    let c = sip(&contacts(&m)[0]).clone();
    assert_eq!(c.aor(), "sip:caller@host5.example.net");
    assert_eq!(c.param("lr"), Some(None));
    assert_eq!(c.param("name"), Some(Some("v%61lue%25%34%31")));
}

#[test]
fn escnull_escaped_nulls_rfc4475_3_1_1_4() {
    let m = parse("escnull");
    assert_eq!(
        sip(&m.to().expect("to")).user.as_deref(),
        Some("null-%00-null")
    );
    let cs = contacts(&m);
    assert_eq!(cs.len(), 2);
    assert_eq!(sip(&cs[1]).user.as_deref(), Some("%00%00"));
    assert_eq!(sip(&cs[1]).aor(), "sip:%00%00@host5.example.com");
}

#[test]
fn esc02_percent_that_is_not_an_escape_rfc4475_3_1_1_5() {
    let m = parse("esc02");
    assert_eq!(m.method(), Some(&Method::Other("RE%47IST%45R".into())));
    assert_eq!(m.to().expect("to").display.as_deref(), Some("%Z%45"));
    assert_eq!(
        m.top_via().expect("via").branch.as_deref(),
        Some("z9hG4bK209%fzsnel234")
    );
    // "C%6Fntact" is an unknown header, not a Contact.
    assert_eq!(m.header_count(&HeaderName::Contact), 2);
    assert_eq!(m.header_count(&HeaderName::new("c%6Fntact")), 1);
    assert_eq!(contacts(&m).len(), 2);
}

#[test]
fn lwsdisp_no_lws_between_display_name_and_laquot_rfc4475_3_1_1_6() {
    let m = parse("lwsdisp");
    let from = m.from().expect("from");
    assert_eq!(from.display.as_deref(), Some("caller"));
    assert_eq!(sip(&from).to_string(), "sip:caller@example.com");
}

#[test]
fn longreq_long_values_rfc4475_3_1_1_7() {
    let m = parse("longreq");
    let to = m.to().expect("to");
    let display = to.display.clone().expect("display");
    assert!(display.starts_with("I have a user name of extremeextreme"));
    assert!(display.ends_with("extreme proportion"));
    let tu = sip(&to);
    assert_eq!(tu.port, Some(6000));
    assert_eq!(tu.params.len(), 3);
    assert_eq!(tu.param("longparamnamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamename"), Some(Some("shortvalue")));
    let from = m.from().expect("from");
    assert!(from.tag().expect("tag").starts_with("12982982982"));
    assert_eq!(from.params.len(), 3);
    assert!(
        sip(&from)
            .user
            .as_deref()
            .expect("user")
            .starts_with("amazinglylongcallername")
    );
    let vias = m.vias().expect("vias");
    assert_eq!(vias.len(), 34);
    assert_eq!(vias[0].host, "sip33.example.com");
    assert_eq!(vias[33].host, "host.example.com");
    assert_eq!(vias[33].received.as_deref(), Some("192.0.2.5"));
    let branch = vias[33].branch.as_deref().expect("branch");
    assert!(branch.starts_with("verylonglong") && branch.ends_with("branchvalue"));
    assert_eq!(m.header_count(&HeaderName::Via), 34);
    assert!(m.call_id().expect("call-id").ends_with("reallylongcallid"));
    assert_eq!(m.body().len(), 150);
}

#[test]
fn dblreq_extra_trailing_octets_ignored_rfc4475_3_1_1_8() {
    let m = parse("dblreq");
    assert_eq!(m.method(), Some(&Method::Register));
    assert_eq!(m.content_length(), Ok(Some(0)));
    assert_eq!(m.body(), b"");
    // The trailing INVITE is not part of the message: dropped, so no edit can forward it.
    assert_eq!(m.as_bytes().len(), m.body_range().end);
    assert!(!m.as_bytes().windows(6).any(|w| w == b"INVITE"));
    assert!(
        load("dblreq").windows(6).any(|w| w == b"INVITE"),
        "the file has it"
    );
}

#[test]
fn semiuri_semicolons_in_the_user_part_rfc4475_3_1_1_9() {
    let m = parse("semiuri");
    let ruri = imsgw_sip::SipUri::parse(m.request_uri().expect("ruri")).expect("valid");
    assert_eq!(ruri.user.as_deref(), Some("user;par=u%40example.net"));
    assert_eq!(ruri.host, "example.com");
    assert!(ruri.params.is_empty());
}

#[test]
fn transports_varied_and_unknown_rfc4475_3_1_1_10() {
    let m = parse("transports");
    let t: Vec<String> = m
        .vias()
        .expect("vias")
        .into_iter()
        .map(|v| v.transport)
        .collect();
    assert_eq!(t, ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);
}

#[test]
fn mpart01_multipart_binary_body_rfc4475_3_1_1_11() {
    let m = parse("mpart01");
    assert_eq!(m.body().len(), 553);
    assert_eq!(m.top_via().expect("via").rport, Some(None));
    assert_eq!(m.top_via().expect("via").port, Some(5070));
    let route = sip(&m.routes().expect("routes")[0]).clone();
    assert_eq!(
        (route.host.as_str(), route.port, route.user),
        ("127.0.0.1", Some(5080), None)
    );
}

#[test]
fn unusual_and_empty_reason_phrases_rfc4475_3_1_1_12_13() {
    let m = parse("unreason");
    assert_eq!(m.status(), Some(200));
    assert!(
        m.reason()
            .expect("utf-8")
            .starts_with("= 2**3 * 5**2 \u{043d}\u{043e}")
    );
    let m = parse("noreason");
    assert_eq!((m.status(), m.reason()), (Some(100), Some("")));
}

#[test]
fn scalar02_each_overlarge_value_is_reported_rfc4475_3_1_2_4() {
    let m = parse("scalar02");
    assert_eq!(m.cseq(), Err(ParseError::BadCSeq));
    assert_eq!(m.max_forwards(), Err(ParseError::BadMaxForwards));
    assert_eq!(m.expires(), Err(ParseError::BadExpires));
    assert_eq!(contacts(&m)[0].expires(), Err(ParseError::BadExpires));
}

#[test]
fn semantic_cases_give_the_values_the_rfc_describes_rfc4475_3_3() {
    assert_eq!(
        parse("badbranch").top_via().expect("via").branch.as_deref(),
        Some("z9hG4bK")
    );
    let unkscm = parse("unkscm");
    assert_eq!(
        Uri::parse(unkscm.request_uri().expect("ruri")),
        Ok(Uri::Other(
            "nobodyKnowsThisScheme:totallyopaquecontent".into()
        ))
    );
    let novelsc = parse("novelsc");
    assert!(matches!(
        Uri::parse(novelsc.request_uri().expect("ruri")),
        Ok(Uri::Other(_))
    ));
    let unksm2 = parse("unksm2");
    assert_eq!(
        unksm2.to().expect("to").uri,
        Uri::Other("isbn:2983792873".into())
    );
    assert_eq!(
        unksm2.from().expect("from").uri,
        Uri::Other("http://www.example.com".into())
    );
    assert_eq!(
        contacts(&unksm2)[0].uri,
        Uri::Other("name:John_Smith".into())
    );
    let bext = parse("bext01");
    assert_eq!(bext.header_count(&HeaderName::ProxyRequire), 1);
    assert_eq!(bext.header_count(&HeaderName::Require), 1);
    let regaut = parse("regaut01");
    assert!(regaut.header(&HeaderName::Authorization).is_some());
    let bcast = parse("bcast");
    assert_eq!(bcast.vias().expect("vias")[1].host, "255.255.255.255");
    assert_eq!(
        parse("zeromf").max_forwards().expect("mf").map(|(n, _)| n),
        Some(0)
    );
    let c1 = parse("cparam01");
    let c = &contacts(&c1)[0];
    assert_eq!(c.param("unknownparam"), Some(None));
    assert!(sip(c).params.is_empty());
    let c2 = parse("cparam02");
    let c = &contacts(&c2)[0];
    assert!(c.params.is_empty());
    assert_eq!(sip(c).param("unknownparam"), Some(None));
    let reg = parse("regescrt");
    assert_eq!(
        sip(&contacts(&reg)[0]).headers.as_deref(),
        Some("Route=%3Csip:sip.example.com%3E")
    );
}

#[test]
fn inv2543_rfc2543_syntax_is_accepted_rfc4475_3_4_1() {
    let m = parse("inv2543");
    assert_eq!(m.max_forwards(), Ok(None));
    assert_eq!(m.content_length(), Ok(None));
    assert_eq!(m.top_via().expect("via").branch, None);
    assert_eq!(m.body().len(), 105);
    let rr = &m.record_routes().expect("rr")[0];
    assert_eq!(sip(rr).param("maddr"), Some(Some("ss1.example.com")));
    // An addr-spec without angle brackets: `;user=phone` is a To parameter, not a URI parameter
    // (RFC 3261 §20.10), unlike in From where the URI is bracketed.
    let to = m.to().expect("to");
    assert_eq!(to.param("user"), Some(Some("phone")));
    assert!(sip(&to).params.is_empty());
    assert_eq!(
        sip(&m.from().expect("from")).param("user"),
        Some(Some("phone"))
    );
}
