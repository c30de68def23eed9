//! Packed weight layouts, built at compile time.

/// `OcBlocked { lanes: V }`: output channels interleaved in blocks of `V`.
/// For each block of V output channels, for each tap, for each word of the
/// tap: V consecutive `u64` words, word `w` of tap `tap` of channels
/// `V*blk .. V*blk + V`. So one aligned vector load gives one word of V
/// output channels, and a kernel walking the taps and words of one block
/// reads memory in order:
///
/// ```text
/// index(ch, tap, w) = ((ch / V * taps + tap) * words + w) * V + ch % V
/// ```
///
/// Tail channels (`o` not a multiple of V) are padded with zero words: their
/// lanes compute `popcount(x)`, a value no kernel stores (the `Acc` epilogue
/// stores only real channels, the `Bits` epilogue gives pad lanes a
/// threshold every value passes, so their bits are 0).
///
/// Per-channel constants (pad corrections per tap, thresholds) use the same
/// order with one `i64` per lane: [`OcBlocked::lanes_i64`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OcBlocked {
    pub lanes: usize,
    pub o: usize,
    pub taps: usize,
    pub words: usize,
}

impl OcBlocked {
    /// Blocks of `lanes` channels, the last one possibly partial.
    pub fn blocks(&self) -> usize {
        self.o.div_ceil(self.lanes)
    }

    /// The word holding word `w` of tap `tap` of output channel `ch`.
    pub fn index(&self, ch: usize, tap: usize, w: usize) -> usize {
        ((ch / self.lanes * self.taps + tap) * self.words + w) * self.lanes + ch % self.lanes
    }

    /// Packs ±1 weights `[o][taps][c]` (row-major, `c <= 64 * words`): bit
    /// `c % 64` of word `c / 64` set for -1, unused bits and pad channels 0.
    pub fn pack(&self, w: &[i32], c: usize) -> Vec<u64> {
        assert!(c <= 64 * self.words && w.len() == self.o * self.taps * c);
        let mut out = vec![0u64; self.blocks() * self.taps * self.words * self.lanes];
        for ch in 0..self.o {
            for tap in 0..self.taps {
                let row = &w[(ch * self.taps + tap) * c..][..c];
                for (k, &v) in row.iter().enumerate() {
                    if v < 0 {
                        out[self.index(ch, tap, k / 64)] |= 1u64 << (k % 64);
                    }
                }
            }
        }
        out
    }

    /// The same words as [`OcBlocked::pack`], from weights already packed
    /// by rows: `o * taps` rows (`[o][taps]`) of `words` words, each row `c`
    /// channels as a `b1` tensor's last axis is packed (bit `c % 64` of word
    /// `c / 64` set for -1, unused bits 0), so no weight is unpacked.
    pub fn pack_rows(&self, rows: &[u64]) -> Vec<u64> {
        assert_eq!(rows.len(), self.o * self.taps * self.words);
        let mut out = vec![0u64; self.blocks() * self.taps * self.words * self.lanes];
        if self.words == 0 {
            return out;
        }
        for (r, row) in rows.chunks_exact(self.words).enumerate() {
            let (ch, tap) = (r / self.taps, r % self.taps);
            for (w, &x) in row.iter().enumerate() {
                out[self.index(ch, tap, w)] = x;
            }
        }
        out
    }

    /// One `i64` per (channel, tap) in the block order, `[blk][tap][lane]`:
    /// `f(ch, tap)` for real channels, `pad` for the lanes past `o`.
    pub fn lanes_i64(&self, f: impl Fn(usize, usize) -> i64, pad: i64) -> Vec<i64> {
        let mut out = vec![pad; self.blocks() * self.taps * self.lanes];
        for ch in 0..self.o {
            for tap in 0..self.taps {
                out[(ch / self.lanes * self.taps + tap) * self.lanes + ch % self.lanes] =
                    f(ch, tap);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_interleave_channels_per_tap_and_word() {
        // 5 channels, V = 2: blocks {0,1}, {2,3}, {4,pad}; 2 taps of 70 bits.
        let l = OcBlocked {
            lanes: 2,
            o: 5,
            taps: 2,
            words: 2,
        };
        assert_eq!(l.blocks(), 3);
        assert_eq!(l.index(0, 0, 0), 0);
        assert_eq!(l.index(1, 0, 0), 1);
        assert_eq!(l.index(0, 0, 1), 2);
        assert_eq!(l.index(0, 1, 0), 4);
        assert_eq!(l.index(2, 0, 0), 8);
        assert_eq!(l.index(4, 1, 1), 2 * 8 + 6);
        let mut w = vec![1i32; 5 * 2 * 70];
        w[(3 * 2 + 1) * 70 + 65] = -1; // channel 3, tap 1, bit 65
        w[(4 * 2) * 70] = -1; // channel 4, tap 0, bit 0
        let p = l.pack(&w, 70);
        let rows = bnnc_ir::tensor::pack_b1_words(&[5, 2, 70], &w).unwrap();
        assert_eq!(l.pack_rows(&rows), p);
        assert_eq!(p.len(), 24);
        assert_eq!(p[l.index(3, 1, 1)], 1 << 1);
        assert_eq!(p[l.index(4, 0, 0)], 1);
        assert_eq!(p.iter().filter(|&&x| x != 0).count(), 2);
        let t = l.lanes_i64(|ch, tap| (10 * ch + tap) as i64, -7);
        assert_eq!(t.len(), 12);
        assert_eq!(&t[..4], &[0, 10, 1, 11]);
        assert_eq!(&t[8..], &[40, -7, 41, -7]);
    }
}
