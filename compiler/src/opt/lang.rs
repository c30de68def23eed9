//! The graph IR as an egg language.
//!
//! An e-node is an operation plus its operand classes. Attributes stay inside the
//! op (the graph IR's [`Op`], compared through a canonical text key so floats
//! compare by value and `-0.0 != 0.0`). Leaves are model inputs (by position) and
//! constants, which refer to the constant table of the analysis
//! ([`super::analysis::BnnAnalysis::consts`]) by [`ConstId`]: every weight,
//! inline constant and tensor the optimizer computes lives there once.

use std::cmp::Ordering;
use std::hash::{Hash, Hasher};

use bnnc_ir::Op;
use egg::{Id, Language};

/// Index of a tensor in the constant table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConstId(pub u32);

/// A non-leaf graph op with a total order and hash: two keys are equal iff the
/// ops print the same (`{:?}`), which distinguishes every attribute value the
/// interpreter can tell apart.
#[derive(Clone, Debug)]
pub struct OpKey {
    pub op: Op,
    repr: Box<str>,
}

impl OpKey {
    pub fn new(op: Op) -> OpKey {
        debug_assert!(!op.is_leaf(), "leaves are NodeOp::Input / NodeOp::Const");
        let repr = format!("{op:?}").into_boxed_str();
        OpKey { op, repr }
    }
}

impl PartialEq for OpKey {
    fn eq(&self, other: &Self) -> bool {
        self.repr == other.repr
    }
}
impl Eq for OpKey {}
impl Hash for OpKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.repr.hash(state)
    }
}
impl PartialOrd for OpKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for OpKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.repr.cmp(&other.repr)
    }
}

/// What an e-node computes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodeOp {
    /// Model input number `i` (in declaration order).
    Input(u32),
    /// A constant tensor of the constant table.
    Const(ConstId),
    /// A computing op over its children.
    Op(OpKey),
}

/// An e-node: an op and its operand classes, in the op's operand order.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ENode {
    pub op: NodeOp,
    pub children: Vec<Id>,
}

impl ENode {
    pub fn op(op: Op, children: Vec<Id>) -> ENode {
        ENode {
            op: NodeOp::Op(OpKey::new(op)),
            children,
        }
    }

    pub fn constant(c: ConstId) -> ENode {
        ENode {
            op: NodeOp::Const(c),
            children: vec![],
        }
    }

    /// The graph op, for computing nodes.
    pub fn graph_op(&self) -> Option<&Op> {
        match &self.op {
            NodeOp::Op(k) => Some(&k.op),
            _ => None,
        }
    }
}

impl Language for ENode {
    type Discriminant = NodeOp;

    fn discriminant(&self) -> NodeOp {
        self.op.clone()
    }

    fn matches(&self, other: &Self) -> bool {
        self.op == other.op && self.children.len() == other.children.len()
    }

    fn children(&self) -> &[Id] {
        &self.children
    }

    fn children_mut(&mut self) -> &mut [Id] {
        &mut self.children
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_floats_compare_by_value() {
        let a = OpKey::new(Op::Clip { min: 0.0, max: 1.0 });
        let b = OpKey::new(Op::Clip {
            min: -0.0,
            max: 1.0,
        });
        let c = OpKey::new(Op::Clip { min: 0.0, max: 1.0 });
        assert_ne!(a, b);
        assert_eq!(a, c);
    }
}
