//! The graph: named values defined in order, each by one op over earlier values.

use std::collections::HashMap;
use std::fmt::Write as _;

use petgraph::graph::{DiGraph, NodeIndex};

use crate::op::Op;

/// A position in a model file: 1-based line and column. `Loc::NONE` (0:0) marks
/// nodes built in code rather than parsed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Loc {
    pub line: u32,
    pub col: u32,
}

impl Loc {
    pub const NONE: Loc = Loc { line: 0, col: 0 };

    pub fn new(line: u32, col: u32) -> Loc {
        Loc { line, col }
    }
}

/// Index of a value (= the node defining it) in [`Graph::nodes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub u32);

impl ValueId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Where the pieces of one node's line are, for diagnostics.
#[derive(Clone, Debug, Default)]
pub struct NodeLocs {
    /// The defined name.
    pub name: Loc,
    /// The op name (or the `@key` / literal of a weight / constant).
    pub op: Loc,
    /// Each operand, in order.
    pub operands: Vec<Loc>,
    /// Each attribute key as written.
    pub attrs: Vec<(String, Loc)>,
}

impl NodeLocs {
    /// The location of operand `i`, falling back to the op.
    pub fn operand(&self, i: usize) -> Loc {
        self.operands.get(i).copied().unwrap_or(self.op)
    }

    /// The location of attribute `key`, falling back to the op.
    pub fn attr(&self, key: &str) -> Loc {
        self.attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, l)| *l)
            .unwrap_or(self.op)
    }
}

/// One definition: `name = op(inputs..)`.
#[derive(Clone, Debug)]
pub struct Node {
    pub name: String,
    pub op: Op,
    pub inputs: Vec<ValueId>,
    /// Source positions; ignored by equality.
    pub locs: NodeLocs,
}

impl PartialEq for Node {
    fn eq(&self, other: &Node) -> bool {
        self.name == other.name && self.op == other.op && self.inputs == other.inputs
    }
}

/// A model: a name, an optional weights file, and nodes in definition order.
/// Every node's inputs precede it, so the order is topological.
#[derive(Clone, Debug)]
pub struct Graph {
    pub name: String,
    /// Location of the name on the `model` line; ignored by equality.
    pub name_loc: Loc,
    /// The weights file, relative to the model file's folder.
    pub weights: Option<String>,
    /// Location of the quoted path on the `weights` line; ignored by equality.
    pub weights_loc: Loc,
    pub nodes: Vec<Node>,
    pub outputs: Vec<ValueId>,
    /// Location of each output name; ignored by equality.
    pub output_locs: Vec<Loc>,
}

impl PartialEq for Graph {
    fn eq(&self, other: &Graph) -> bool {
        self.name == other.name
            && self.weights == other.weights
            && self.nodes == other.nodes
            && self.outputs == other.outputs
    }
}

impl Graph {
    pub fn new(name: impl Into<String>) -> Graph {
        Graph {
            name: name.into(),
            name_loc: Loc::NONE,
            weights: None,
            weights_loc: Loc::NONE,
            nodes: Vec::new(),
            outputs: Vec::new(),
            output_locs: Vec::new(),
        }
    }

    /// Appends a node and returns its value. The caller keeps names unique and
    /// inputs earlier; [`crate::verify`] checks both.
    pub fn add(&mut self, name: impl Into<String>, op: Op, inputs: Vec<ValueId>) -> ValueId {
        let id = ValueId(self.nodes.len() as u32);
        self.nodes.push(Node {
            name: name.into(),
            op,
            inputs,
            locs: NodeLocs::default(),
        });
        id
    }

    /// Marks `v` as a model output.
    pub fn output(&mut self, v: ValueId) {
        self.outputs.push(v);
        self.output_locs.push(Loc::NONE);
    }

    pub fn node(&self, v: ValueId) -> &Node {
        &self.nodes[v.index()]
    }

    /// The model inputs, in order.
    pub fn inputs(&self) -> Vec<ValueId> {
        self.ids()
            .filter(|&v| matches!(self.node(v).op, Op::Input(_)))
            .collect()
    }

    pub fn ids(&self) -> impl Iterator<Item = ValueId> {
        (0..self.nodes.len() as u32).map(ValueId)
    }

    /// Looks a value up by name.
    pub fn find(&self, name: &str) -> Option<ValueId> {
        self.nodes
            .iter()
            .position(|n| n.name == name)
            .map(|i| ValueId(i as u32))
    }

    /// For each value, the nodes that use it (in order, repeated per use).
    pub fn users(&self) -> Vec<Vec<ValueId>> {
        let mut users = vec![Vec::new(); self.nodes.len()];
        for v in self.ids() {
            for &i in &self.node(v).inputs {
                if let Some(u) = users.get_mut(i.index()) {
                    u.push(v);
                }
            }
        }
        users
    }

    /// The graph as a petgraph `DiGraph` (edge operand -> user, weighted by the
    /// operand position), with node indices equal to value indices. Operand ids
    /// out of range are skipped (the verifier reports them).
    pub fn to_petgraph(&self) -> DiGraph<&Node, usize> {
        let mut g = DiGraph::with_capacity(self.nodes.len(), self.nodes.len());
        for n in &self.nodes {
            g.add_node(n);
        }
        for (i, n) in self.nodes.iter().enumerate() {
            for (pos, &inp) in n.inputs.iter().enumerate() {
                if inp.index() < self.nodes.len() {
                    g.add_edge(NodeIndex::new(inp.index()), NodeIndex::new(i), pos);
                }
            }
        }
        g
    }

    /// Graphviz source: one box per op labelled with its name and op, inputs and
    /// outputs highlighted; edges carry the operand position when it matters.
    pub fn to_dot(&self, types: Option<&[crate::TensorType]>) -> String {
        let pg = self.to_petgraph();
        let outputs: HashMap<usize, usize> = self
            .outputs
            .iter()
            .enumerate()
            .map(|(k, v)| (v.index(), k))
            .collect();
        let mut s = String::new();
        let _ = writeln!(s, "digraph \"{}\" {{", escape(&self.name));
        let _ = writeln!(s, "  rankdir=TB;");
        let _ = writeln!(s, "  node [shape=box, fontname=\"monospace\"];");
        for idx in pg.node_indices() {
            let n = pg[idx];
            let mut label = format!("{} = {}", n.name, n.op.name());
            if let Op::Weight { key, .. } = &n.op {
                label = format!("{} = @{}", n.name, key);
            }
            if let Some(t) = types.and_then(|t| t.get(idx.index())) {
                let _ = write!(label, "\\n{t}");
            }
            let style = match &n.op {
                Op::Input(_) => ", style=filled, fillcolor=\"#d0e8ff\"",
                Op::Weight { .. } | Op::Const { .. } => ", style=filled, fillcolor=\"#eeeeee\"",
                _ if outputs.contains_key(&idx.index()) => ", style=filled, fillcolor=\"#d8f5d0\"",
                _ => "",
            };
            let _ = writeln!(
                s,
                "  n{} [label=\"{}\"{}];",
                idx.index(),
                escape(&label),
                style
            );
        }
        for e in pg.edge_indices() {
            let (a, b) = pg.edge_endpoints(e).expect("edge");
            let pos = pg[e];
            if pg[b].inputs.len() > 1 {
                let _ = writeln!(s, "  n{} -> n{} [label=\"{}\"];", a.index(), b.index(), pos);
            } else {
                let _ = writeln!(s, "  n{} -> n{};", a.index(), b.index());
            }
        }
        s.push_str("}\n");
        s
    }
}

fn escape(s: &str) -> String {
    // Keep `\n` line breaks we inserted; escape quotes only.
    s.replace('"', "\\\"")
}
