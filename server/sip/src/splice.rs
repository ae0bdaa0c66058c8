//! Edits to a message as a list of byte-range replacements on the original buffer, so every byte
//! the proxy does not change goes out exactly as it came in (RFC 3261 §16.6: a proxy forwards
//! what it does not understand untouched). Knows nothing about SIP.

use std::ops::Range;

use bytes::Bytes;

use crate::error::SpliceError;

/// A set of edits to one buffer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Splice {
    edits: Vec<(Range<usize>, Bytes)>,
}

impl Splice {
    /// No edits.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts `bytes` before offset `at`. Several inserts at one offset keep call order and go
    /// before a delete or replace starting at the same offset.
    pub fn insert(&mut self, at: usize, bytes: impl Into<Bytes>) {
        self.edits.push((at..at, bytes.into()));
    }

    /// Deletes `r`.
    pub fn delete(&mut self, r: Range<usize>) {
        self.edits.push((r, Bytes::new()));
    }

    /// Replaces `r` with `bytes`.
    pub fn replace(&mut self, r: Range<usize>, bytes: impl Into<Bytes>) {
        self.edits.push((r, bytes.into()));
    }

    /// Whether there are no edits.
    pub fn is_empty(&self) -> bool {
        self.edits.is_empty()
    }

    /// Applies the edits to `src` in position order. Edits whose ranges overlap (an insert
    /// strictly inside a deleted range included) are an error; so is a range outside `src`.
    pub fn apply(&self, src: &[u8]) -> Result<Bytes, SpliceError> {
        let mut order: Vec<&(Range<usize>, Bytes)> = self.edits.iter().collect();
        // Stable: equal keys keep call order; inserts (empty ranges) sort before the non-empty
        // edit starting at the same offset.
        order.sort_by_key(|(r, _)| (r.start, !r.is_empty()));
        let grow: usize = self.edits.iter().map(|(_, b)| b.len()).sum();
        let mut out = Vec::with_capacity(src.len() + grow);
        let mut cursor = 0;
        for (r, bytes) in order {
            if r.start > r.end || r.end > src.len() {
                return Err(SpliceError::OutOfBounds {
                    start: r.start,
                    end: r.end,
                    len: src.len(),
                });
            }
            if r.start < cursor {
                return Err(SpliceError::Overlap(r.start));
            }
            out.extend_from_slice(&src[cursor..r.start]);
            out.extend_from_slice(bytes);
            cursor = r.end;
        }
        out.extend_from_slice(&src[cursor..]);
        Ok(Bytes::from(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_edits_round_trips() {
        assert_eq!(Splice::new().apply(b"abc"), Ok(Bytes::from_static(b"abc")));
    }

    #[test]
    fn inserts_deletes_and_replaces_apply_in_position_order() {
        let mut s = Splice::new();
        s.replace(6..9, "XYZ");
        s.insert(0, "<");
        s.delete(3..4);
        s.insert(10, ">");
        assert_eq!(s.apply(b"abc-def-ghi").as_deref(), Ok(&b"<abcdeXYZh>i"[..]));
    }

    #[test]
    fn inserts_at_one_point_keep_call_order_and_precede_a_delete_there() {
        let mut s = Splice::new();
        s.delete(1..2);
        s.insert(1, "1");
        s.insert(1, "2");
        s.insert(2, "3");
        assert_eq!(s.apply(b"abc").as_deref(), Ok(&b"a123c"[..]));
    }

    #[test]
    fn overlapping_edits_are_rejected() {
        let mut s = Splice::new();
        s.delete(1..4);
        s.delete(3..5);
        assert_eq!(s.apply(b"abcdef"), Err(SpliceError::Overlap(3)));
        let mut s = Splice::new();
        s.delete(1..4);
        s.insert(2, "x");
        assert_eq!(s.apply(b"abcdef"), Err(SpliceError::Overlap(2)));
    }

    #[test]
    fn out_of_bounds_is_rejected() {
        let mut s = Splice::new();
        s.insert(4, "x");
        assert!(matches!(
            s.apply(b"abc"),
            Err(SpliceError::OutOfBounds { .. })
        ));
        let mut s = Splice::new();
        let (start, end) = (2, 1);
        s.delete(start..end);
        assert!(matches!(
            s.apply(b"abc"),
            Err(SpliceError::OutOfBounds { .. })
        ));
    }
}
