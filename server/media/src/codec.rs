//! Payload-type mapping between the legs, and the seam where a transcoder will later sit.
//!
//! Owns: the per-call table that turns a browser-side payload type into the IMS-side one and
//! back (the legs may number the same codec differently), and [`Relay`], the per-packet step
//! between legs. Today the only relay is [`PassThrough`] (TS 23.334 §5.20 transcoding is the
//! next step: an AMR-WB decoder/encoder pair would implement [`Relay`]).
//! Must not touch: sockets, SDP text, str0m.

use crate::sdp::RtpMap;

/// Which way a packet goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    ToIms,
    ToBrowser,
}

/// Payload type tables for one call, both ways; 0xFF is "not negotiated" (dropped).
/// Fixed arrays: no allocation and one index per packet.
#[derive(Clone)]
pub struct PtMap {
    to_ims: [u8; 128],
    to_browser: [u8; 128],
}

const NONE: u8 = 0xFF;

impl Default for PtMap {
    fn default() -> Self {
        PtMap {
            to_ims: [NONE; 128],
            to_browser: [NONE; 128],
        }
    }
}

impl std::fmt::Debug for PtMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pairs: Vec<(u8, u8)> = (0u8..128)
            .filter(|b| self.to_ims[*b as usize] != NONE)
            .map(|b| (b, self.to_ims[b as usize]))
            .collect();
        f.debug_struct("PtMap")
            .field("browser_to_ims", &pairs)
            .finish()
    }
}

impl PtMap {
    /// Pairs each browser-side codec with the IMS-side one of the same name and clock rate.
    pub fn new(browser: &[RtpMap], ims: &[RtpMap]) -> PtMap {
        let mut map = PtMap::default();
        for b in browser {
            if let Some(i) = ims.iter().find(|i| i.same_codec(b)) {
                if map.to_ims[usize::from(b.pt & 0x7f)] == NONE {
                    map.to_ims[usize::from(b.pt & 0x7f)] = i.pt;
                }
                if map.to_browser[usize::from(i.pt & 0x7f)] == NONE {
                    map.to_browser[usize::from(i.pt & 0x7f)] = b.pt;
                }
            }
        }
        map
    }

    /// The payload type on the other leg, or None when that codec was not negotiated.
    #[inline]
    pub fn map(&self, way: Way, pt: u8) -> Option<u8> {
        let table = match way {
            Way::ToIms => &self.to_ims,
            Way::ToBrowser => &self.to_browser,
        };
        let out = table[usize::from(pt & 0x7f)];
        (out != NONE).then_some(out)
    }
}

/// One RTP packet between legs, borrowed: the header fields and the payload.
#[derive(Debug)]
pub struct Frame<'a> {
    pub pt: u8,
    pub seq: u16,
    pub timestamp: u32,
    pub marker: bool,
    pub payload: &'a [u8],
}

/// The per-packet step between legs. A transcoder implements this (decode one codec, encode
/// the other, rewrite timestamps for the new clock); it writes into `out` and returns the new
/// frame's payload type and length, or None to drop the packet.
pub trait Relay: Send {
    fn relay(&mut self, way: Way, frame: &Frame<'_>, out: &mut [u8]) -> Option<(u8, usize)>;
}

/// No transcoding: the payload is copied unchanged and only the payload type is renumbered.
#[derive(Debug, Clone, Default)]
pub struct PassThrough {
    pub pts: PtMap,
}

impl Relay for PassThrough {
    #[inline]
    fn relay(&mut self, way: Way, frame: &Frame<'_>, out: &mut [u8]) -> Option<(u8, usize)> {
        let pt = self.pts.map(way, frame.pt)?;
        let n = frame.payload.len();
        out.get_mut(..n)?.copy_from_slice(frame.payload);
        Some((pt, n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rm(pt: u8, enc: &str, clock: u32) -> RtpMap {
        RtpMap {
            pt,
            encoding: enc.into(),
            clock,
            channels: None,
            fmtp: None,
        }
    }

    #[test]
    fn pt_map_pairs_same_codec_by_name_and_clock_rfc3264_6_1() {
        // The browser numbers opus 111 and events 126 / 110; the IMS answer uses 96 / 101.
        let browser = [
            rm(111, "opus", 48000),
            rm(0, "PCMU", 8000),
            rm(126, "telephone-event", 8000),
            rm(110, "telephone-event", 48000),
        ];
        let ims = [rm(0, "pcmu", 8000), rm(101, "telephone-event", 8000)];
        let m = PtMap::new(&browser, &ims);
        assert_eq!(m.map(Way::ToIms, 0), Some(0));
        assert_eq!(m.map(Way::ToIms, 126), Some(101));
        assert_eq!(m.map(Way::ToBrowser, 101), Some(126));
        // Not chosen by the IMS: dropped, never relayed with a number the peer does not know.
        assert_eq!(m.map(Way::ToIms, 111), None);
        assert_eq!(m.map(Way::ToIms, 110), None);
        assert_eq!(m.map(Way::ToBrowser, 96), None);
    }

    #[test]
    fn pass_through_copies_payload_and_renumbers_pt() {
        let mut r = PassThrough {
            pts: PtMap::new(&[rm(111, "opus", 48000)], &[rm(96, "opus", 48000)]),
        };
        let mut out = [0u8; 16];
        let f = Frame {
            pt: 111,
            seq: 1,
            timestamp: 2,
            marker: false,
            payload: &[1, 2, 3],
        };
        assert_eq!(r.relay(Way::ToIms, &f, &mut out), Some((96, 3)));
        assert_eq!(&out[..3], &[1, 2, 3]);
        let big = [0u8; 32];
        let f = Frame { payload: &big, ..f };
        assert_eq!(
            r.relay(Way::ToIms, &f, &mut out),
            None,
            "never overruns the buffer"
        );
    }
}
