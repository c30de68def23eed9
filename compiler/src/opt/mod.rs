//! The e-graph optimizer: equality saturation over the graph IR with egg.
//!
//! [`optimize`] turns a verified [`Model`] into an equivalent one that computes
//! every output bit for bit as the reference interpreter does on the original
//! (integer, binary and float outputs alike: no rule changes float arithmetic):
//!
//! 1. the graph becomes an e-graph ([`lang`]): one e-node per op, constants as
//!    leaves referring to one constant table;
//! 2. the analysis ([`analysis`]) gives every class its type, its constant tensor
//!    when it has one (computed by the interpreter) and, for integer values, the
//!    exact per-channel range;
//! 3. the rules ([`rules`], one module per family) add equivalent forms:
//!    constant folding, sign algebra, batchnorm and any elementwise chain
//!    between an integer accumulator and a `sign` into integer thresholds, scale
//!    folding (an affine f32 epilogue collapses only where the interpreter
//!    gives the same bits on the accumulator's whole range), RepConv weight
//!    combination, sign and threshold moved across data movement;
//! 4. the cheapest form of every output is extracted with the cost model
//!    ([`cost`]) and written back as a graph, which is verified.
//!
//! Runs are deterministic: egg's `deterministic` feature, fixed iteration and
//! node limits, no time limit ([`Options`]).
//!
//! **Constants in the output.** Weights that survive keep their `@key`; inline
//! `const`s stay inline; every tensor the optimizer computes (a folded `b1`
//! weight, thresholds, directions, combined offsets) becomes a *new weight* with
//! the fresh key `opt.<value name>` (suffixed `_2`, `_3`.. if taken). The
//! returned [`Optimized::weights`] holds exactly the tensors the optimized graph
//! reads, and the graph names `<stem>.opt.safetensors` as its weights file
//! (`stem` from the original weights file, else the model name): write both with
//! [`Optimized::write`] to get a model bnnc loads again.

pub mod analysis;
pub mod cost;
pub mod lang;
pub mod rules;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use bnnc_ir::{Graph, Model, Op, TensorType, ValueId, Weights};
use egg::{Extractor, Id, Runner};

use analysis::{BnnAnalysis, BnnGraph, ConstOrigin};
use cost::BnnCost;
use lang::{ENode, NodeOp};

/// Limits of one optimization run.
#[derive(Clone, Debug)]
pub struct Options {
    /// At most this many rounds of search + apply.
    pub iter_limit: usize,
    /// Stop growing once the e-graph has this many e-nodes.
    pub node_limit: usize,
    /// Only these rules (by name); `None` for all of [`rules::all_rules`].
    pub rules: Option<Vec<String>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            iter_limit: 30,
            node_limit: 50_000,
            rules: None,
        }
    }
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct Report {
    /// Per rule (in rule order): how many times it changed the e-graph.
    pub fired: Vec<(String, usize)>,
    /// E-graph size at the end.
    pub nodes: usize,
    pub classes: usize,
    pub iterations: usize,
    /// Why saturation stopped (`Saturated`, `IterationLimit`, `NodeLimit`).
    pub stop_reason: String,
    /// Cost (see [`cost`]) of the original and the optimized graph, each node
    /// counted once.
    pub cost_before: u64,
    pub cost_after: u64,
    /// Wall time of the whole run (import, saturation, extraction, verification).
    pub time: Duration,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "e-graph: {} nodes, {} classes after {} iterations ({}); cost {} -> {}; {:.1} ms",
            self.nodes,
            self.classes,
            self.iterations,
            self.stop_reason,
            self.cost_before,
            self.cost_after,
            self.time.as_secs_f64() * 1e3
        )?;
        for (name, n) in &self.fired {
            if *n > 0 {
                writeln!(f, "  {name}: {n}")?;
            }
        }
        Ok(())
    }
}

/// The optimized model, its weights and what the run did.
#[derive(Clone, Debug)]
pub struct Optimized {
    /// A verified model (same inputs and outputs, same names and types).
    pub model: Model,
    /// Every tensor the optimized graph reads by `@key`.
    pub weights: Weights,
    pub report: Report,
}

impl Optimized {
    /// The model text.
    pub fn text(&self) -> String {
        bnnc_ir::text::print(&self.model.graph)
    }

    /// Writes the weights under the name the graph gives (relative to
    /// `path`'s folder), then the model text to `path`, each atomically
    /// ([`bnnc_ir::files::write_atomic`]).
    pub fn write(&self, path: &Path) -> Result<(), bnnc_ir::Error> {
        if let Some(wp) = Model::weights_path(&self.model.graph, path) {
            self.weights.save(&wp)?;
        }
        bnnc_ir::files::write_atomic(path, self.text().as_bytes()).map_err(|source| {
            bnnc_ir::Error::Write {
                path: path.to_path_buf(),
                source,
            }
        })
    }
}

/// Why optimization failed. Every variant is a bug in the optimizer: a model
/// that verifies always optimizes.
#[derive(Debug, thiserror::Error)]
pub enum OptError {
    /// A rule name in [`Options::rules`] that does not exist.
    #[error("unknown rule `{0}`")]
    UnknownRule(String),
    /// The graph written back does not verify.
    #[error("the optimized graph of `{model}` does not verify: {message}\n{text}")]
    Invalid {
        model: String,
        message: String,
        text: String,
    },
}

/// Optimizes `model` with the default [`Options`].
pub fn optimize(model: &Model) -> Result<Optimized, OptError> {
    optimize_with(model, &Options::default())
}

/// Optimizes `model` with the given limits and rules.
pub fn optimize_with(model: &Model, opts: &Options) -> Result<Optimized, OptError> {
    let start = Instant::now();
    let all = rules::all_rules();
    let chosen: Vec<rules::Rule> = match &opts.rules {
        None => all,
        Some(names) => names
            .iter()
            .map(|n| rules::rule(n).ok_or_else(|| OptError::UnknownRule(n.clone())))
            .collect::<Result<_, _>>()?,
    };
    let (egraph, orig) = import(model);
    let rewrites: Vec<_> = chosen.iter().map(|r| rules::rewrite(*r)).collect();
    let runner: Runner<ENode, BnnAnalysis> = Runner::new(BnnAnalysis::default())
        .with_egraph(egraph)
        .with_iter_limit(opts.iter_limit)
        .with_node_limit(opts.node_limit)
        .with_time_limit(Duration::from_secs(365 * 24 * 3600))
        .with_scheduler(egg::SimpleScheduler)
        .run(&rewrites);
    let mut fired: Vec<(String, usize)> = chosen.iter().map(|r| (r.name.to_string(), 0)).collect();
    for it in &runner.iterations {
        for (name, n) in &it.applied {
            if let Some(e) = fired.iter_mut().find(|(k, _)| k.as_str() == name.as_str()) {
                e.1 += n;
            }
        }
    }
    let stop_reason = match &runner.stop_reason {
        Some(egg::StopReason::Saturated) => "saturated".to_string(),
        Some(egg::StopReason::IterationLimit(n)) => format!("iteration limit {n}"),
        Some(egg::StopReason::NodeLimit(n)) => format!("node limit {n}"),
        Some(r) => format!("{r:?}"),
        None => "not run".to_string(),
    };
    let egraph = runner.egraph;
    let (graph, weights) = export(&egraph, model, &orig);
    let text = bnnc_ir::text::print(&graph);
    let optimized =
        Model::from_graph(graph, Some(&weights), &model.path).map_err(|e| OptError::Invalid {
            model: model.graph.name.clone(),
            message: e.to_string(),
            text,
        })?;
    let report = Report {
        fired,
        nodes: egraph.total_number_of_nodes(),
        classes: egraph.number_of_classes(),
        iterations: runner.iterations.len(),
        stop_reason,
        cost_before: graph_cost(model),
        cost_after: graph_cost(&optimized),
        time: start.elapsed(),
    };
    Ok(Optimized {
        model: optimized,
        weights,
        report,
    })
}

/// The cost of a graph, each node counted once.
pub fn graph_cost(model: &Model) -> u64 {
    let mut total = 0u64;
    for (i, n) in model.graph.nodes.iter().enumerate() {
        let ty = &model.types[i];
        let words = (ty.numel(1) as u64)
            .saturating_mul(ty.elem.bits() as u64)
            .div_ceil(32);
        let c = match &n.op {
            Op::Input(_) => 0,
            Op::Weight { .. } | Op::Const { .. } => words,
            op => {
                let args: Vec<&TensorType> =
                    n.inputs.iter().map(|v| &model.types[v.index()]).collect();
                cost::op_work(op, ty, &args)
                    .saturating_add(words)
                    .saturating_add(1)
            }
        };
        total = total.saturating_add(c);
    }
    total
}

/// The e-graph of `model` and the class of every node.
fn import(model: &Model) -> (BnnGraph, Vec<Id>) {
    let inputs = model
        .graph
        .inputs()
        .iter()
        .map(|&v| model.ty(v).clone())
        .collect();
    let mut eg = BnnGraph::new(BnnAnalysis::new(inputs));
    let elems = model
        .consts
        .iter()
        .flatten()
        .fold(0u64, |a, t| a.saturating_add(t.numel() as u64));
    eg.analysis.budget = BnnAnalysis::budget_for(elems);
    let mut ids = Vec::with_capacity(model.graph.nodes.len());
    let mut next_input = 0u32;
    for (i, n) in model.graph.nodes.iter().enumerate() {
        let node = match &n.op {
            Op::Input(_) => {
                next_input += 1;
                ENode {
                    op: NodeOp::Input(next_input - 1),
                    children: vec![],
                }
            }
            Op::Weight { key, .. } => {
                let t = model.consts[i].clone().expect("resolved weight");
                ENode::constant(eg.analysis.intern(t, ConstOrigin::Weight(key.clone())))
            }
            Op::Const { .. } => {
                let t = model.consts[i].clone().expect("resolved constant");
                ENode::constant(eg.analysis.intern(t, ConstOrigin::Inline))
            }
            op => ENode::op(
                op.clone(),
                n.inputs.iter().map(|v| ids[v.index()]).collect(),
            ),
        };
        ids.push(eg.add(node));
    }
    eg.rebuild();
    (eg, ids)
}

/// Writes the cheapest form of every output back as a graph.
struct Exporter<'a> {
    egraph: &'a BnnGraph,
    ext: Extractor<'a, BnnCost<'a>, ENode, BnnAnalysis>,
    names: HashMap<Id, String>,
    taken: HashSet<String>,
    keys: HashSet<String>,
    emitted: HashMap<Id, ValueId>,
    graph: Graph,
    weights: Weights,
}

impl Exporter<'_> {
    fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut k = 2;
        while self.taken.contains(&name) {
            name = format!("{base}_{k}");
            k += 1;
        }
        self.taken.insert(name.clone());
        name
    }

    fn fresh_key(&mut self, base: &str) -> String {
        let mut key = base.to_string();
        let mut k = 2;
        while self.keys.contains(&key) {
            key = format!("{base}_{k}");
            k += 1;
        }
        self.keys.insert(key.clone());
        key
    }

    fn emit(&mut self, class: Id, hint: &str) -> ValueId {
        let class = self.egraph.find(class);
        if let Some(&v) = self.emitted.get(&class) {
            return v;
        }
        let name = match self.names.get(&class) {
            Some(n) => n.clone(),
            None => self.fresh(hint),
        };
        let node = self.ext.find_best_node(class).clone();
        let v = match &node.op {
            NodeOp::Input(_) => unreachable!("inputs are emitted first"),
            NodeOp::Const(c) => {
                let entry = self.egraph.analysis.consts[c.0 as usize].clone();
                let t = &*entry.tensor;
                let ty = TensorType::fixed(t.elem, &t.dims);
                let op = match entry.origin {
                    ConstOrigin::Inline => Op::Const {
                        ty,
                        data: t.data.clone(),
                    },
                    ConstOrigin::Weight(key) => {
                        self.weights.insert(key.clone(), t.clone());
                        Op::Weight { key, ty }
                    }
                    ConstOrigin::Computed => {
                        let key = self.fresh_key(&format!("opt.{name}"));
                        self.weights.insert(key.clone(), t.clone());
                        Op::Weight { key, ty }
                    }
                };
                self.graph.add(name, op, vec![])
            }
            NodeOp::Op(k) => {
                let names = k.op.operand_names();
                let mut inputs = Vec::with_capacity(node.children.len());
                for (i, &ch) in node.children.iter().enumerate() {
                    let operand = names
                        .and_then(|ns| ns.get(i).copied())
                        .map_or_else(|| format!("in{i}"), str::to_string);
                    inputs.push(self.emit(ch, &format!("{name}.{operand}")));
                }
                self.graph.add(name, k.op.clone(), inputs)
            }
        };
        self.emitted.insert(class, v);
        v
    }
}

fn export(egraph: &BnnGraph, model: &Model, orig: &[Id]) -> (Graph, Weights) {
    let g = &model.graph;
    let mut names: HashMap<Id, String> = HashMap::new();
    for (i, n) in g.nodes.iter().enumerate() {
        names.insert(egraph.find(orig[i]), n.name.clone());
    }
    for &o in g.outputs.iter().rev() {
        names.insert(egraph.find(orig[o.index()]), g.node(o).name.clone());
    }
    let input_ids = g.inputs();
    for &v in &input_ids {
        names.insert(egraph.find(orig[v.index()]), g.node(v).name.clone());
    }
    let taken: HashSet<String> = g.nodes.iter().map(|n| n.name.clone()).collect();
    let keys: HashSet<String> = g
        .nodes
        .iter()
        .filter_map(|n| match &n.op {
            Op::Weight { key, .. } => Some(key.clone()),
            _ => None,
        })
        .collect();
    let mut out = Graph::new(g.name.clone());
    let stem = g
        .weights
        .as_deref()
        .map(|w| w.strip_suffix(".safetensors").unwrap_or(w).to_string())
        .unwrap_or_else(|| g.name.clone());
    out.weights = Some(format!("{stem}.opt.safetensors"));
    let mut ex = Exporter {
        egraph,
        ext: Extractor::new(egraph, BnnCost { egraph }),
        names,
        taken,
        keys,
        emitted: HashMap::new(),
        graph: out,
        weights: Weights::new(),
    };
    for &v in &input_ids {
        let n = g.node(v);
        let id = ex.graph.add(n.name.clone(), n.op.clone(), vec![]);
        ex.emitted.insert(egraph.find(orig[v.index()]), id);
    }
    let mut outputs = Vec::new();
    for &o in &g.outputs {
        let want = g.node(o).name.clone();
        let v = ex.emit(orig[o.index()], &want);
        let v = if ex.graph.node(v).name != want || outputs.contains(&v) {
            // The output aliases an input or another output: an identity reshape
            // keeps its name and its own slot.
            let ty = model.ty(o).clone();
            let name = if ex.graph.find(&want).is_none() {
                want.clone()
            } else {
                ex.fresh(&want)
            };
            ex.graph.add(name, Op::Reshape { shape: ty.shape }, vec![v])
        } else {
            v
        };
        outputs.push(v);
    }
    let Exporter {
        mut graph, weights, ..
    } = ex;
    for v in outputs {
        graph.output(v);
    }
    if weights.tensors.is_empty() {
        graph.weights = None;
    }
    (graph, weights)
}
