//! Rewrite rules, one module per family.
//!
//! - [`constant`]: constant folding (`fold_constant`);
//! - [`sign`]: sign algebra (`sign_of_binary`, `sign_of_nonnegative`,
//!   `sign_maxpool_commute`, `threshold_maxpool_commute`);
//! - [`threshold`]: integer-domain folding into thresholds or tables
//!   (`bn_to_threshold`, `fold_chain_to_threshold`, `fold_chain_to_table`);
//! - [`scale`]: scale folding (`sign_scale_to_threshold`, `sign_positive_scale`,
//!   `collapse_int_affine`, `collapse_affine_epilogue`);
//! - [`repconv`]: RepConv replication (`repconv_combine_weights`);
//! - [`adabin`]: AdaBin affine binary values in float dots, proven exact, as
//!   binary dots plus integer corrections (`affine_binary_dot`);
//! - [`movement`]: sign and threshold across data movement
//!   (`sign_through_movement`, `threshold_through_concat`,
//!   `threshold_through_shuffle`, `threshold_through_replicate`);
//! - [`pool`]: sign across a float max-pool whose input is proven never NaN
//!   (`sign_maxpool_never_nan`);
//! - [`reshape`]: sign and threshold through `reshape` and `flatten`
//!   (`sign_through_reshape`, `threshold_through_reshape`).
//!
//! A rule is a named function that looks at one e-node of one e-class and, when
//! its condition holds, returns a [`Build`]: the equivalent form to add to that
//! class. Every rule's doc comment derives why the two forms are the same tensor
//! under the exact contracts of `bnnc_ir::op`; every rule has a unit test of the
//! same name that runs it alone. Rules never grow without bound: none is
//! commutativity or associativity, every right-hand side is built from existing
//! classes plus at most a few new nodes, and the runner has fixed iteration and
//! node limits.
//!
//! Adding a rule: write the function (derivation above it), list it in
//! [`all_rules`], add a unit test of the same name, and run the differential test.

pub mod adabin;
pub mod constant;
pub mod movement;
pub mod pool;
pub mod repconv;
pub mod reshape;
pub mod scale;
pub mod sign;
pub mod threshold;

use std::sync::{Arc, Mutex};

use bnnc_ir::{Op, Tensor, TensorType};
use egg::{Applier, Id, PatternAst, Rewrite, SearchMatches, Searcher, Subst, Symbol, Var};

use super::analysis::{infer_type, BnnAnalysis, BnnGraph, ConstOrigin};
use super::lang::ENode;

/// A term to add to the e-graph: existing classes, new constants and new ops.
#[derive(Clone, Debug)]
pub enum Build {
    Class(Id),
    Const(Tensor),
    Node(Op, Vec<Build>),
}

/// The signature of a rule: given the e-graph, an e-class and one of its e-nodes,
/// the equivalent form, or `None` when the rule does not apply.
pub type RuleFn = fn(&BnnGraph, Id, &ENode) -> Option<Build>;

/// A named rule.
#[derive(Clone, Copy)]
pub struct Rule {
    pub name: &'static str,
    pub find: RuleFn,
}

/// Every rule of the optimizer, in application order.
pub fn all_rules() -> Vec<Rule> {
    vec![
        Rule {
            name: "fold_constant",
            find: constant::fold_constant,
        },
        Rule {
            name: "sign_of_binary",
            find: sign::sign_of_binary,
        },
        Rule {
            name: "sign_of_nonnegative",
            find: sign::sign_of_nonnegative,
        },
        Rule {
            name: "sign_maxpool_commute",
            find: sign::sign_maxpool_commute,
        },
        Rule {
            name: "threshold_maxpool_commute",
            find: sign::threshold_maxpool_commute,
        },
        Rule {
            name: "sign_maxpool_never_nan",
            find: pool::sign_maxpool_never_nan,
        },
        Rule {
            name: "bn_to_threshold",
            find: threshold::bn_to_threshold,
        },
        Rule {
            name: "sign_scale_to_threshold",
            find: scale::sign_scale_to_threshold,
        },
        Rule {
            name: "fold_chain_to_threshold",
            find: threshold::fold_chain_to_threshold,
        },
        Rule {
            name: "fold_chain_to_table",
            find: threshold::fold_chain_to_table,
        },
        Rule {
            name: "sign_positive_scale",
            find: scale::sign_positive_scale,
        },
        Rule {
            name: "collapse_int_affine",
            find: scale::collapse_int_affine,
        },
        Rule {
            name: "collapse_affine_epilogue",
            find: scale::collapse_affine_epilogue,
        },
        Rule {
            name: "repconv_combine_weights",
            find: repconv::repconv_combine_weights,
        },
        Rule {
            name: "affine_binary_dot",
            find: adabin::affine_binary_dot,
        },
        Rule {
            name: "sign_through_movement",
            find: movement::sign_through_movement,
        },
        Rule {
            name: "threshold_through_concat",
            find: movement::threshold_through_concat,
        },
        Rule {
            name: "threshold_through_shuffle",
            find: movement::threshold_through_shuffle,
        },
        Rule {
            name: "threshold_through_replicate",
            find: movement::threshold_through_replicate,
        },
        Rule {
            name: "sign_through_reshape",
            find: reshape::sign_through_reshape,
        },
        Rule {
            name: "threshold_through_reshape",
            find: reshape::threshold_through_reshape,
        },
    ]
}

/// The rule named `name`.
pub fn rule(name: &str) -> Option<Rule> {
    all_rules().into_iter().find(|r| r.name == name)
}

/// A [`Rule`] as an egg searcher + applier. The search runs the rule's function
/// and keeps each result; the match's substitution holds its index, and the
/// applier builds that result and unions it with the matched class.
struct RuleImpl {
    rule: Rule,
    found: Mutex<Vec<Build>>,
}

#[derive(Clone)]
struct Shared(Arc<RuleImpl>);

fn var() -> Var {
    "?build".parse().expect("var")
}

impl Searcher<ENode, BnnAnalysis> for Shared {
    fn search_eclass_with_limit(
        &self,
        egraph: &BnnGraph,
        eclass: Id,
        limit: usize,
    ) -> Option<SearchMatches<'_, ENode>> {
        let class = &egraph[eclass];
        let mut substs = Vec::new();
        for node in class.iter() {
            if substs.len() >= limit {
                break;
            }
            if let Some(b) = (self.0.rule.find)(egraph, class.id, node) {
                let mut found = self.0.found.lock().expect("lock");
                let mut s = Subst::with_capacity(1);
                s.insert(var(), Id::from(found.len()));
                found.push(b);
                substs.push(s);
            }
        }
        (!substs.is_empty()).then_some(SearchMatches {
            eclass,
            substs,
            ast: None,
        })
    }

    fn search_with_limit(&self, egraph: &BnnGraph, limit: usize) -> Vec<SearchMatches<'_, ENode>> {
        self.0.found.lock().expect("lock").clear();
        let mut out = Vec::new();
        let mut left = limit;
        for class in egraph.classes() {
            if left == 0 {
                break;
            }
            if let Some(m) = self.search_eclass_with_limit(egraph, class.id, left) {
                left = left.saturating_sub(m.substs.len());
                out.push(m);
            }
        }
        out
    }

    fn vars(&self) -> Vec<Var> {
        vec![var()]
    }
}

impl Applier<ENode, BnnAnalysis> for Shared {
    fn apply_one(
        &self,
        egraph: &mut BnnGraph,
        eclass: Id,
        subst: &Subst,
        _ast: Option<&PatternAst<ENode>>,
        _rule_name: Symbol,
    ) -> Vec<Id> {
        let k = usize::from(subst[var()]);
        let b = self.0.found.lock().expect("lock")[k].clone();
        let Some(id) = materialize(egraph, &b) else {
            return vec![];
        };
        let (want, got) = (&egraph[eclass].data.ty, &egraph[id].data.ty);
        assert_eq!(
            want, got,
            "rule {} built a {got} for a class of type {want}",
            self.0.rule.name
        );
        if egraph.union(eclass, id) {
            vec![eclass]
        } else {
            vec![]
        }
    }
}

/// Adds `b` to the e-graph; `None` when a new op does not type-check (then
/// nothing of it that was not already there is left behind but constants).
pub fn materialize(egraph: &mut BnnGraph, b: &Build) -> Option<Id> {
    Some(match b {
        Build::Class(id) => egraph.find(*id),
        Build::Const(t) => {
            let c = egraph.analysis.intern(t.clone(), ConstOrigin::Computed);
            egraph.add(ENode::constant(c))
        }
        Build::Node(op, kids) => {
            let ids: Vec<Id> = kids
                .iter()
                .map(|k| materialize(egraph, k))
                .collect::<Option<_>>()?;
            let tys: Vec<&TensorType> = ids.iter().map(|&i| &egraph[i].data.ty).collect();
            infer_type(op, &tys).ok()?;
            egraph.add(ENode::op(op.clone(), ids))
        }
    })
}

/// The rule as an egg rewrite.
pub fn rewrite(rule: Rule) -> Rewrite<ENode, BnnAnalysis> {
    let imp = Shared(Arc::new(RuleImpl {
        rule,
        found: Mutex::new(Vec::new()),
    }));
    Rewrite::new(rule.name, imp.clone(), imp).expect("rule vars")
}

// ---------------------------------------------------------------------------
// Helpers shared by the rule families.

/// The graph op and children of `n`, if `n` is an op node.
pub fn op_of(n: &ENode) -> Option<(&Op, &[Id])> {
    n.graph_op().map(|op| (op, n.children.as_slice()))
}

/// The e-nodes of class `id` (canonicalised).
pub fn nodes(egraph: &BnnGraph, id: Id) -> &[ENode] {
    &egraph[id].nodes
}

#[cfg(test)]
pub mod testing {
    //! Small e-graphs for the rule tests: build a graph, run one rule alone,
    //! look for the expected form.

    use super::*;
    use crate::opt::analysis::BnnAnalysis;
    use crate::opt::lang::NodeOp;
    use bnnc_ir::TensorType;
    use egg::Runner;

    /// An e-graph with model inputs of the given types.
    pub fn egraph(inputs: &[TensorType]) -> BnnGraph {
        let analysis = BnnAnalysis::new(inputs.to_vec());
        BnnGraph::new(analysis)
    }

    pub fn input(eg: &mut BnnGraph, i: u32) -> Id {
        eg.add(ENode {
            op: NodeOp::Input(i),
            children: vec![],
        })
    }

    pub fn konst(eg: &mut BnnGraph, t: Tensor) -> Id {
        let c = eg.analysis.intern(t, ConstOrigin::Computed);
        eg.add(ENode::constant(c))
    }

    pub fn op(eg: &mut BnnGraph, op: Op, kids: &[Id]) -> Id {
        eg.add(ENode::op(op, kids.to_vec()))
    }

    /// Runs only the rule `name` to saturation (at most 8 iterations).
    pub fn run_rule(eg: BnnGraph, name: &str) -> BnnGraph {
        let r = rule(name).expect("rule exists");
        let runner: Runner<ENode, BnnAnalysis> = Runner::new(BnnAnalysis::default())
            .with_egraph(eg)
            .with_iter_limit(8)
            .with_node_limit(10_000)
            .with_time_limit(std::time::Duration::from_secs(3600))
            .with_scheduler(egg::SimpleScheduler)
            .run(&[rewrite(r)]);
        runner.egraph
    }

    /// The e-nodes of class `id` whose op is named `name`.
    pub fn find_op<'a>(eg: &'a BnnGraph, id: Id, name: &str) -> Vec<&'a ENode> {
        eg[eg.find(id)]
            .nodes
            .iter()
            .filter(|n| n.graph_op().is_some_and(|o| o.name() == name))
            .collect()
    }

    /// The constant tensor of class `id`, if known.
    pub fn const_of(eg: &BnnGraph, id: Id) -> Option<Tensor> {
        eg[eg.find(id)].data.konst.as_deref().cloned()
    }
}
