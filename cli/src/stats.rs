//! The one-line model summary of `bnnc check`: ops, parameters, bits of weights.

use std::collections::BTreeMap;
use std::fmt;

use bnnc_ir::{ElemType, Graph, Op};

/// Counts describing a verified graph.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelStats {
    pub name: String,
    /// Computing ops: every node but inputs, `@weights` and inline constants.
    pub ops: usize,
    pub inputs: usize,
    pub outputs: usize,
    /// Number of `@key` weight tensors.
    pub weights: usize,
    /// Elements of all `@key` weight tensors (inline constants are not parameters).
    pub params: usize,
    /// Parameters that are binarized by `sign(@w)` at every use, so the compiler
    /// stores them as packed `b1` constants.
    pub folded_b1: usize,
    /// The other parameters, by their declared element type.
    pub stored: BTreeMap<ElemType, usize>,
    /// Storage of all weights in bits: 1 per folded parameter, the declared
    /// element width for the others.
    pub bits: u64,
}

/// Gathers [`ModelStats`] from a graph. A weight counts as 1 bit per element
/// when every use of it is a `sign`; an unused weight counts at its width.
pub fn model_stats(graph: &Graph) -> ModelStats {
    let users = graph.users();
    let mut s = ModelStats {
        name: graph.name.clone(),
        ops: 0,
        inputs: 0,
        outputs: graph.outputs.len(),
        weights: 0,
        params: 0,
        folded_b1: 0,
        stored: BTreeMap::new(),
        bits: 0,
    };
    for v in graph.ids() {
        match &graph.node(v).op {
            Op::Input(_) => s.inputs += 1,
            Op::Const { .. } => {}
            Op::Weight { ty, .. } => {
                let n = ty.numel(1);
                s.weights += 1;
                s.params += n;
                let uses = &users[v.index()];
                let all_sign = !uses.is_empty()
                    && uses
                        .iter()
                        .all(|&u| matches!(graph.node(u).op, Op::Sign { .. }));
                if all_sign {
                    s.folded_b1 += n;
                    s.bits += n as u64;
                } else {
                    *s.stored.entry(ty.elem).or_default() += n;
                    s.bits += n as u64 * u64::from(ty.elem.bits());
                }
            }
            _ => s.ops += 1,
        }
    }
    s
}

impl fmt::Display for ModelStats {
    /// `name: 13 ops, 1 input, 1 output, 1,869,864 params in 15 weights, 2.1 Mbit
    /// (1,861,632 b1 after folding sign(@w), 8,232 f32)`, on one line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}, {}, {}, {} in {}, {}",
            self.name,
            plural(self.ops, "op"),
            plural(self.inputs, "input"),
            plural(self.outputs, "output"),
            plural(self.params, "param"),
            plural(self.weights, "weight"),
            format_bits(self.bits),
        )?;
        let mut parts = Vec::new();
        if self.folded_b1 > 0 {
            parts.push(format!(
                "{} b1 after folding sign(@w)",
                thousands(self.folded_b1 as u64)
            ));
        }
        for (elem, n) in &self.stored {
            parts.push(format!("{} {elem}", thousands(*n as u64)));
        }
        if !parts.is_empty() {
            write!(f, " ({})", parts.join(", "))?;
        }
        Ok(())
    }
}

/// `1 op`, `13 ops`, `1,024 params`.
pub fn plural(n: usize, word: &str) -> String {
    let s = if n == 1 { "" } else { "s" };
    format!("{} {word}{s}", thousands(n as u64))
}

/// `1234567` -> `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// A bit count with a decimal unit: `812 bit`, `45.3 kbit`, `2.1 Mbit`, `1.2 Gbit`.
pub fn format_bits(bits: u64) -> String {
    const UNITS: [(f64, &str); 3] = [(1e9, "Gbit"), (1e6, "Mbit"), (1e3, "kbit")];
    for (scale, unit) in UNITS {
        if bits as f64 >= scale {
            return format!("{:.1} {unit}", bits as f64 / scale);
        }
    }
    format!("{bits} bit")
}

#[cfg(test)]
mod tests {
    use super::*;
    use bnnc_ir::{TensorType, ValueId};

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_863_690), "1,863,690");
    }

    #[test]
    fn bits_units() {
        assert_eq!(format_bits(812), "812 bit");
        assert_eq!(format_bits(45_300), "45.3 kbit");
        assert_eq!(format_bits(2_100_000), "2.1 Mbit");
    }

    fn weight(g: &mut Graph, name: &str, elem: ElemType, dims: &[usize]) -> ValueId {
        g.add(
            name,
            Op::Weight {
                key: name.into(),
                ty: TensorType::fixed(elem, dims),
            },
            vec![],
        )
    }

    #[test]
    fn weights_used_only_by_sign_count_one_bit() {
        let mut g = Graph::new("t");
        let x = g.add(
            "x",
            Op::Input(TensorType::new(
                ElemType::F32,
                vec![bnnc_ir::Dim::Batch, bnnc_ir::Dim::Fixed(4)],
            )),
            vec![],
        );
        let w = weight(&mut g, "w", ElemType::F32, &[3, 4]);
        let k = weight(&mut g, "k", ElemType::F32, &[3]);
        let xb = g.add("xb", Op::Sign { estimator: None }, vec![x]);
        let wb = g.add("wb", Op::Sign { estimator: None }, vec![w]);
        let h = g.add("h", Op::Dense, vec![xb, wb]);
        let y = g.add("y", Op::Mul, vec![h, k]);
        g.output(y);
        let s = model_stats(&g);
        assert_eq!(s.ops, 4);
        assert_eq!(s.params, 15);
        assert_eq!(s.folded_b1, 12);
        assert_eq!(s.bits, 12 + 3 * 32);
        assert_eq!(
            s.to_string(),
            "t: 4 ops, 1 input, 1 output, 15 params in 2 weights, 108 bit \
             (12 b1 after folding sign(@w), 3 f32)"
        );
    }
}
