//! A panic in the engine (a bug in the WebRTC stack on input nobody expected) ends the call it
//! happened on and nothing else: the media thread carries every call (feature
//! `fault-injection`, which the crate's tests turn on).

mod common;

use std::time::Duration;

use common::*;
use imsgw_media::{Command, EndReason, Event};

#[test]
fn a_panic_on_one_call_ends_that_call_only_and_the_engine_goes_on() {
    let mut gw = Gw::start(config(46000..=46009));
    let (mut a, mut b) = (Browser::new(), Browser::new());
    let (ims_a, ims_b) = (Ims::new(), Ims::new());
    connect_from_browser(&mut gw, &mut a, &ims_a, 1, "0 PCMU/8000");
    let port_b = connect_from_browser(&mut gw, &mut b, &ims_b, 2, "0 PCMU/8000");

    gw.media.send(Command::Fault { call: 1 });
    let e = next_event(&mut gw, Some(&mut b), Duration::from_secs(3));
    assert_eq!(
        e,
        Event::Ended {
            call: 1,
            reason: EndReason::Failed
        }
    );
    let st = gw.media.stats();
    assert_eq!(
        (st.sessions, st.ports_in_use, st.failed),
        (1, 1, 1),
        "{st:?}"
    );

    // The other call still carries media both ways.
    b.send_rtp(0, 160, b"after-the-panic");
    let pkt = ims_b
        .recv_rtp(&mut b, Duration::from_secs(2))
        .expect("browser b's RTP still reaches the IMS");
    assert_eq!(&pkt[12..], b"after-the-panic");
    ims_b.send_rtp(ims_to(port_b), 0, 9, 320, b"still-here");
    assert!(
        pump(&mut b, Duration::from_secs(2), |b| b
            .rtp
            .iter()
            .any(|p| &p.payload[..] == b"still-here")),
        "IMS RTP still reaches browser b"
    );

    // A panic with no session behind it ends nothing; new calls are still made (call 2 is
    // released first: nobody steps its browser from here on).
    gw.media.send(Command::Release { call: 2 });
    gw.media.send(Command::Fault { call: 99 });
    let mut c = Browser::new();
    let ims_c = Ims::new();
    connect_from_browser(&mut gw, &mut c, &ims_c, 3, "0 PCMU/8000");
    let st = gw.media.stats();
    assert_eq!((st.sessions, st.failed), (1, 2), "{st:?}");
}
