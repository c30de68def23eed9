//! Constant folding.

use egg::Id;

use super::Build;
use crate::opt::analysis::BnnGraph;
use crate::opt::lang::{ENode, NodeOp};

/// `op(c1, .., cn) -> c` when every operand is a constant.
///
/// Derivation: the analysis computes the class's tensor as
/// `bnnc_runtime::ops::eval(op, [c1, .., cn])`, the reference interpreter on the
/// same operands, which is by definition what the op computes at run time (its
/// operands do not depend on the inputs). So the class also holds the constant
/// leaf `c`. In particular `sign(@w)` over latent f32 weights becomes a `b1`
/// constant (32x smaller, and the packed kernels read it directly).
///
/// Applies to op nodes of a class that has a known tensor but no constant leaf
/// yet; the extraction then prefers the leaf (its cost is the bytes it occupies).
pub fn fold_constant(egraph: &BnnGraph, class: Id, node: &ENode) -> Option<Build> {
    if !matches!(node.op, NodeOp::Op(_)) {
        return None;
    }
    let c = &egraph[class];
    let t = c.data.konst.as_ref()?;
    if c.nodes.iter().any(|n| matches!(n.op, NodeOp::Const(_))) {
        return None;
    }
    Some(Build::Const((**t).clone()))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::opt::lang::NodeOp;
    use bnnc_ir::{ElemType, Op, Tensor, TensorType};

    #[test]
    fn fold_constant() {
        let mut eg = egraph(&[TensorType::fixed(ElemType::F32, &[2])]);
        let w = konst(
            &mut eg,
            Tensor::f32(vec![2, 3], vec![0.5, -0.0, -1.0, 0.0, f32::NAN, -2.0]),
        );
        let s = op(&mut eg, Op::Sign { estimator: None }, &[w]);
        let x = input(&mut eg, 0);
        let y = op(&mut eg, Op::Sign { estimator: None }, &[x]);
        let eg = run_rule(eg, "fold_constant");
        let leaf = eg[eg.find(s)]
            .nodes
            .iter()
            .find_map(|n| match n.op {
                NodeOp::Const(c) => Some(eg.analysis.tensor(c).clone()),
                _ => None,
            })
            .expect("sign(@w) holds a constant leaf");
        assert_eq!(leaf.elem, ElemType::B1);
        assert_eq!(leaf.as_int().unwrap()[..], [1, 1, -1, 1, 1, -1]);
        // A value that depends on an input is left alone.
        assert!(eg[eg.find(y)].data.konst.is_none());
        assert_eq!(eg[eg.find(y)].nodes.len(), 1);
    }
}
