//! Reverse-mode automatic differentiation over the graph IR: a [`Model`] as a
//! differentiable program.
//!
//! [`TrainModel`] evaluates the same graph the compiler builds, holding every
//! value as `f32` (a `b1` element as -1.0/+1.0, integers exactly while they stay
//! below 2^24 in magnitude, where the interpreter's `i32` arithmetic would only
//! differ past 2^31 by wrapping). In [`Mode::Eval`] the forward pass is the
//! interpreter's meaning: every op evaluates the same f32 operations in the same
//! order as `bnnc_runtime::ops` (quantize, dequantize, ternarize, threshold and
//! argmax are delegated to the interpreter's own functions), so results are bit
//! for bit those of [`bnnc_runtime::run`] with [`GradConfig::oracle_kernels`], and differ
//! only by float summation order in `f32 x f32` conv/dense otherwise. In
//! [`Mode::Train`], batch normalization uses batch statistics and updates the
//! running ones.
//!
//! The backward pass visits the nodes in reverse definition order (a topological
//! order) and accumulates `dL/dvalue` for every value that depends on a trainable
//! weight or on a sign estimator with learnable parameters. Conventions:
//!
//! - `sign` uses the node's [`SignEstimator`] (its `estimator=` attribute);
//! - piecewise ops take one side at their kinks: relu and prelu use the `x <= 0`
//!   branch at 0, rprelu the `u <= 0` branch, clip/hardtanh pass the gradient on
//!   the closed interval `[min, max]`, maxpool routes it to the first maximum of
//!   the window (the element the forward scan kept);
//! - `dequantize` is affine (`dx = scale g`); `quantize`, `ternarize`,
//!   `threshold` and `argmax` are step functions without a usable gradient: the
//!   forward pass evaluates them, and a backward pass that would have to go
//!   through one to reach a trainable value fails with
//!   [`GradError::NotDifferentiable`] naming the node (before any gradient is
//!   accumulated). Outputs with no gradient (`None`) are never differentiated, so
//!   a model may output `argmax` next to its logits.
//!
//! Weights: every `f32` `@key` is a [`Param`] (one per key, however many nodes
//! read it), except keys derived by a [`WeightTransform::XnorScale`]. Weights of
//! other element types and inline constants are fixed.

mod dot;
mod elementwise;
mod eval;
mod grad;
mod norm;
mod par;
mod pool;
mod shape;
mod transform;

use std::collections::{BTreeMap, HashMap};

use bnnc_ir::{ElemType, Model, Op, Tensor, TensorData, ValueId, Weights};

use crate::estimators::{EstimatorError, ParamRef, SignEstimator};
use bnnc_runtime::RunError;

use norm::BnStats;
use pool::PoolGeom;
use transform::Standardized;

/// How batch normalization behaves in a forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Batch statistics; running statistics updated by running averages.
    Train,
    /// Running statistics (the interpreter's meaning); nothing is updated.
    Eval,
}

/// The role of a trainable weight, for the optimizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    /// An f32 weight whose every use is `sign(...)`: a latent binary weight (Bop and latent clipping apply).
    Latent,
    /// Any other trainable f32 weight (float conv/dense weights, biases, BN gamma/beta, RSign beta, RPReLU, PReLU alpha).
    Float,
    /// Batch-norm running mean / var operands: updated by running averages in Train mode, never by the optimizer.
    RunningMean,
    RunningVar,
}

/// One `f32` weight of the model (all nodes reading `@key` share it).
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    /// The `@key` of the weight.
    pub key: String,
    pub kind: ParamKind,
    pub dims: Vec<usize>,
    /// Row-major values. With a [`WeightTransform::Standardize`] these are the
    /// latent values before the transform.
    pub value: Vec<f32>,
    /// Accumulated `dL/dvalue` (same layout as `value`).
    pub grad: Vec<f32>,
}

/// A reparameterisation applied to a weight before the graph uses it.
#[derive(Clone, Debug, PartialEq)]
pub enum WeightTransform {
    /// Per output channel (the first axis) standardisation of the latent weight,
    /// `w' = (w - mean_o) / sqrt(var_o + eps)` with the population variance:
    /// IR-Net's Libra-PB balancing (Qin et al., CVPR 2020), DIR-Net's IMB (Qin et
    /// al., IJCV 2023), AdaBin's weight equalisation (Tu et al., ECCV 2022). The
    /// gradient flows through the mean and variance.
    Standardize { eps: f32 },
    /// The key is not trained but derived at every forward pass as XNOR-Net's
    /// scale (Rastegari et al., ECCV 2016) of the weight `@of`:
    /// `alpha_o = (1/n) sum_i |W_{o,i}|` over each output channel `o` of `@of` as
    /// the graph uses it (after its own transform); its gradient flows into `@of`.
    /// The key must hold as many elements as `@of` has output channels.
    XnorScale { of: String },
}

/// Options of a [`TrainModel`].
#[derive(Clone, Debug, PartialEq)]
pub struct GradConfig {
    /// Batch-norm running averages, PyTorch's convention:
    /// `running = (1 - m) running + m batch`, the batch variance unbiased
    /// (`M/(M-1)` times the biased one used for normalization). Default 0.1.
    pub bn_momentum: f32,
    /// Seeds the learnable parameters of sign estimators (each sign node gets its
    /// own seed derived from this one and its position).
    pub seed: u64,
    /// Reparameterisations by weight key (each key at most once).
    pub transforms: Vec<(String, WeightTransform)>,
    /// Run conv/dense on the slow oracle kernels (`kernels::*_naive`, one
    /// thread): sums in the interpreter's order, so an Eval forward is bit-exact
    /// with [`bnnc_runtime::run`]. For differential tests; default false.
    pub oracle_kernels: bool,
}

impl Default for GradConfig {
    fn default() -> Self {
        GradConfig {
            bn_momentum: 0.1,
            seed: 0,
            transforms: Vec::new(),
            oracle_kernels: false,
        }
    }
}

/// Why a model could not be built, run or differentiated.
#[derive(Debug, thiserror::Error)]
pub enum GradError {
    /// The input tensors do not fit the model (boxed: keeps `GradError` small).
    #[error(transparent)]
    Input(Box<RunError>),
    /// The configuration is not usable.
    #[error("training configuration: {0}")]
    Config(String),
    /// A weight cannot be trained as the model uses it, or a transform does not
    /// apply to it.
    #[error("weight `@{key}`: {message}")]
    Weight { key: String, message: String },
    /// A node could not be evaluated (something a verified model does not
    /// produce, or a window lying in the padding).
    #[error("node `{node}` ({op}): {message}")]
    Node {
        node: String,
        op: &'static str,
        message: String,
    },
    /// The loss depends on trainable values only through an op without a
    /// gradient.
    #[error(
        "node `{node}` ({op}) has no gradient, but the loss depends through it on trainable \
         values (operand(s) {operands})"
    )]
    NotDifferentiable {
        node: String,
        op: &'static str,
        operands: String,
    },
    /// A `sign` node's estimator attribute is not usable.
    #[error("node `{node}` (sign): {source}")]
    Estimator {
        node: String,
        #[source]
        source: Box<EstimatorError>,
    },
    /// Train-mode batch normalization with at most one value per channel (no
    /// unbiased variance, as in PyTorch).
    #[error(
        "node `{node}` (batchnorm): train mode needs more than one value per channel, got {count}"
    )]
    BatchTooSmall { node: String, count: usize },
    /// [`TrainModel::backward`] before any forward pass.
    #[error("backward called before a forward pass")]
    NoForward,
    /// The number of output gradients differs from the number of outputs.
    #[error("{found} output gradient(s) given, but the model has {expected} output(s)")]
    OutputGradCount { expected: usize, found: usize },
    /// An output gradient of the wrong length.
    #[error("gradient of output {index} `{node}` has {found} elements, the output has {expected}")]
    OutputGradLen {
        index: usize,
        node: String,
        expected: usize,
        found: usize,
    },
    /// `progress` outside [0, 1].
    #[error("training progress {0} is not in [0, 1]")]
    Progress(f32),
}

impl From<RunError> for GradError {
    fn from(e: RunError) -> GradError {
        GradError::Input(Box::new(e))
    }
}

/// Where a node's value comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Leaf {
    Input,
    /// A trainable weight: index into `params`.
    Param(usize),
    /// A weight derived each forward: index into `derived`.
    Derived(usize),
    /// An inline constant or a non-`f32` weight: in `fixed`.
    Fixed,
    /// Computed by its op.
    Op,
}

/// A weight key derived by [`WeightTransform::XnorScale`] from a param.
#[derive(Clone, Debug)]
struct DerivedKey {
    key: String,
    src: usize,
    dims: Vec<usize>,
}

/// What a forward pass keeps for the backward pass.
struct Cache {
    mode: Mode,
    dims: Vec<Vec<usize>>,
    /// Values of inputs and computed nodes.
    values: Vec<Option<Vec<f32>>>,
    /// Per param, the standardised value when it has that transform.
    used: Vec<Option<Standardized>>,
    /// Per derived key, its value.
    derived: Vec<Vec<f32>>,
    /// Per train-mode batchnorm node, its batch statistics.
    bn: Vec<Option<BnStats>>,
}

/// A model as a differentiable program: forward in train or eval mode, backward
/// into every trainable weight and sign-estimator parameter.
pub struct TrainModel {
    model: Model,
    bn_momentum: f32,
    oracle: bool,
    params: Vec<Param>,
    leaves: Vec<Leaf>,
    /// Values of `Leaf::Fixed` nodes.
    fixed: Vec<Option<Vec<f32>>>,
    /// Non-`f32` weights, as loaded.
    frozen: BTreeMap<String, Tensor>,
    /// Per param, the `eps` of its standardisation.
    standardize: Vec<Option<f32>>,
    derived: Vec<DerivedKey>,
    estimators: Vec<Option<SignEstimator>>,
    needs_grad: Vec<bool>,
    cache: Option<Cache>,
}

/// splitmix64 of `seed` and `index`: the seed of one sign node's estimator.
fn node_seed(seed: u64, index: usize) -> u64 {
    let mut z = seed.wrapping_add((index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `acc += g`, or `acc = g` when empty.
fn add_into(acc: &mut Option<Vec<f32>>, g: Vec<f32>) {
    match acc {
        Some(a) => {
            for (x, y) in a.iter_mut().zip(&g) {
                *x += y;
            }
        }
        None => *acc = Some(g),
    }
}

/// A tensor of element type `elem` holding `vals` (integers converted exactly).
fn to_tensor(elem: ElemType, dims: Vec<usize>, vals: &[f32]) -> Tensor {
    let data = if elem == ElemType::F32 {
        TensorData::F32(vals.to_vec())
    } else {
        TensorData::Int(vals.iter().map(|&x| x as i32).collect())
    };
    Tensor { elem, dims, data }
}

/// The role of weight `key` from its uses `(user node, operand position)`.
fn param_kind(model: &Model, key: &str, uses: &[(usize, usize)]) -> Result<ParamKind, GradError> {
    let bn_slot = |slot: usize| {
        uses.iter()
            .filter(|&&(u, p)| matches!(model.graph.nodes[u].op, Op::BatchNorm { .. }) && p == slot)
            .count()
    };
    let (means, vars) = (bn_slot(3), bn_slot(4));
    if means + vars > 0 {
        return if means == uses.len() {
            Ok(ParamKind::RunningMean)
        } else if vars == uses.len() {
            Ok(ParamKind::RunningVar)
        } else {
            Err(GradError::Weight {
                key: key.to_string(),
                message: "is a batch-norm running statistic and also has other uses; \
                          running statistics are updated by running averages, so a key \
                          must be only running means or only running variances"
                    .into(),
            })
        };
    }
    let all_sign = uses
        .iter()
        .all(|&(u, _)| matches!(model.graph.nodes[u].op, Op::Sign { .. }));
    Ok(if !uses.is_empty() && all_sign {
        ParamKind::Latent
    } else {
        ParamKind::Float
    })
}

impl TrainModel {
    /// Builds the differentiable program of `model`: one [`Param`] per `f32`
    /// weight key (in order of first appearance; its kind from its uses), one
    /// [`SignEstimator`] per `sign` node, the transforms of `cfg` checked against
    /// the weights they name.
    pub fn new(model: &Model, cfg: &GradConfig) -> Result<TrainModel, GradError> {
        let g = &model.graph;
        let n = g.nodes.len();
        if model.types.len() != n || model.consts.len() != n {
            return Err(GradError::Config(format!(
                "model `{}` has {n} nodes but {} types and {} constants",
                g.name,
                model.types.len(),
                model.consts.len()
            )));
        }
        if !(0.0..=1.0).contains(&cfg.bn_momentum) {
            return Err(GradError::Config(format!(
                "bn_momentum {} is not in [0, 1]",
                cfg.bn_momentum
            )));
        }
        let mut transforms: HashMap<&str, &WeightTransform> = HashMap::new();
        for (key, t) in &cfg.transforms {
            if transforms.insert(key.as_str(), t).is_some() {
                return Err(GradError::Config(format!(
                    "weight `@{key}` has more than one transform"
                )));
            }
        }

        // Every use of every weight key.
        let mut uses: HashMap<&str, Vec<(usize, usize)>> = HashMap::new();
        for (u, node) in g.nodes.iter().enumerate() {
            for (pos, inp) in node.inputs.iter().enumerate() {
                if let Some(Op::Weight { key, .. }) = g.nodes.get(inp.index()).map(|n| &n.op) {
                    uses.entry(key.as_str()).or_default().push((u, pos));
                }
            }
        }

        let mut params: Vec<Param> = Vec::new();
        let mut derived: Vec<DerivedKey> = Vec::new();
        let mut derived_of: Vec<&str> = Vec::new();
        let mut by_key: HashMap<&str, Leaf> = HashMap::new();
        let mut leaves = Vec::with_capacity(n);
        let mut fixed = vec![None; n];
        let mut frozen = BTreeMap::new();
        for (v, node) in g.nodes.iter().enumerate() {
            let leaf = match &node.op {
                Op::Input(_) => Leaf::Input,
                Op::Const { .. } => {
                    let t = model.consts[v].as_ref().ok_or_else(|| {
                        GradError::Config(format!("constant `{}` was not resolved", node.name))
                    })?;
                    fixed[v] = Some(t.to_f32_vec());
                    Leaf::Fixed
                }
                Op::Weight { key, .. } => {
                    let t = model.consts[v].as_ref().ok_or_else(|| GradError::Weight {
                        key: key.clone(),
                        message: format!("node `{}` has no value (weights not loaded)", node.name),
                    })?;
                    if let Some(&leaf) = by_key.get(key.as_str()) {
                        if leaf == Leaf::Fixed {
                            fixed[v] = Some(t.to_f32_vec());
                        }
                        leaf
                    } else {
                        let leaf = match (t.elem, transforms.get(key.as_str())) {
                            (ElemType::F32, Some(WeightTransform::XnorScale { of })) => {
                                derived.push(DerivedKey {
                                    key: key.clone(),
                                    src: usize::MAX,
                                    dims: t.dims.clone(),
                                });
                                derived_of.push(of);
                                Leaf::Derived(derived.len() - 1)
                            }
                            (ElemType::F32, _) => {
                                let key_uses = uses.get(key.as_str()).map_or(&[][..], |u| u);
                                params.push(Param {
                                    key: key.clone(),
                                    kind: param_kind(model, key, key_uses)?,
                                    dims: t.dims.clone(),
                                    value: t.to_f32_vec(),
                                    grad: vec![0.0; t.numel()],
                                });
                                Leaf::Param(params.len() - 1)
                            }
                            _ => {
                                frozen.insert(key.clone(), t.clone());
                                fixed[v] = Some(t.to_f32_vec());
                                Leaf::Fixed
                            }
                        };
                        by_key.insert(key, leaf);
                        leaf
                    }
                }
                _ => Leaf::Op,
            };
            leaves.push(leaf);
        }

        // Transforms: each names an f32 weight of a fitting role.
        let mut standardize = vec![None; params.len()];
        for (key, t) in &cfg.transforms {
            let bad = |message: String| GradError::Weight {
                key: key.clone(),
                message,
            };
            let leaf = by_key
                .get(key.as_str())
                .ok_or_else(|| bad("has a transform but is not a weight of the model".into()))?;
            match (t, *leaf) {
                (WeightTransform::Standardize { eps }, Leaf::Param(p)) => {
                    if !(eps.is_finite() && *eps >= 0.0) {
                        return Err(bad(format!("standardize eps {eps} is not finite and >= 0")));
                    }
                    if !matches!(params[p].kind, ParamKind::Latent | ParamKind::Float) {
                        return Err(bad(
                            "is a batch-norm running statistic and cannot be standardized".into(),
                        ));
                    }
                    standardize[p] = Some(*eps);
                }
                (WeightTransform::XnorScale { .. }, Leaf::Derived(_)) => {}
                _ => {
                    return Err(bad(
                        "the transform needs a trainable f32 weight (not fixed, not derived)"
                            .into(),
                    ))
                }
            }
        }
        for (d, of) in derived.iter_mut().zip(&derived_of) {
            let bad = |message: String| GradError::Weight {
                key: d.key.clone(),
                message,
            };
            let Some(&Leaf::Param(src)) = by_key.get(of) else {
                return Err(bad(format!(
                    "xnor_scale of `@{of}`, which is not a trainable f32 weight of the model"
                )));
            };
            let p = &params[src];
            if !matches!(p.kind, ParamKind::Latent | ParamKind::Float) {
                return Err(bad(format!("xnor_scale of `@{of}`, a running statistic")));
            }
            let rows = p.dims.first().copied().unwrap_or(1);
            let numel: usize = d.dims.iter().product();
            if numel != rows {
                return Err(bad(format!(
                    "holds {numel} elements, but `@{of}` {:?} has {rows} output channels",
                    p.dims
                )));
            }
            d.src = src;
        }

        // One estimator per sign node; which values need a gradient.
        let mut estimators = Vec::with_capacity(n);
        let mut needs_grad = vec![false; n];
        for (v, node) in g.nodes.iter().enumerate() {
            let mut est = None;
            let mut learnable = false;
            if let Op::Sign { estimator } = &node.op {
                let channels = node
                    .inputs
                    .first()
                    .and_then(|i| model.types.get(i.index()))
                    .and_then(|t| t.channels())
                    .unwrap_or(1);
                let mut e =
                    SignEstimator::new(estimator.as_ref(), channels, node_seed(cfg.seed, v))
                        .map_err(|source| GradError::Estimator {
                            node: node.name.clone(),
                            source: Box::new(source),
                        })?;
                learnable = !e.params().is_empty();
                est = Some(e);
            }
            estimators.push(est);
            needs_grad[v] = match leaves[v] {
                Leaf::Param(_) | Leaf::Derived(_) => true,
                Leaf::Input | Leaf::Fixed => false,
                Leaf::Op => {
                    learnable
                        || node
                            .inputs
                            .iter()
                            .any(|i| i.index() < v && needs_grad[i.index()])
                }
            };
        }

        Ok(TrainModel {
            model: model.clone(),
            bn_momentum: cfg.bn_momentum,
            oracle: cfg.oracle_kernels,
            params,
            leaves,
            fixed,
            frozen,
            standardize,
            derived,
            estimators,
            needs_grad,
            cache: None,
        })
    }

    /// The model this program evaluates.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Runs the model on `inputs` (checked as [`bnnc_runtime::run`] checks them) and
    /// returns its outputs in model order, as `f32` tensors (integer outputs
    /// converted exactly). Train mode: batch-norm uses batch statistics and
    /// updates the running ones; Eval: running ones (= the interpreter's meaning).
    /// Keeps what [`TrainModel::backward`] needs; parameter values must not change
    /// between a forward pass and its backward pass.
    pub fn forward(&mut self, inputs: &[Tensor], mode: Mode) -> Result<Vec<Tensor>, GradError> {
        self.cache = None;
        self.check_params()?;
        let batch = bnnc_runtime::check_inputs(&self.model, inputs)?;
        let n = self.model.graph.nodes.len();
        let mut dims = Vec::with_capacity(n);
        for (v, ty) in self.model.types.iter().enumerate() {
            let d = ty.dims(batch);
            if d.iter()
                .try_fold(1usize, |a, &x| a.checked_mul(x))
                .is_none()
            {
                return Err(self.node_err(v, format!("{ty} at batch {batch} overflows")));
            }
            dims.push(d);
        }
        let used: Vec<Option<Standardized>> = self
            .standardize
            .iter()
            .zip(&self.params)
            .map(|(s, p)| s.map(|eps| transform::standardize_forward(&p.value, rows(p), eps)))
            .collect();
        let derived = self
            .derived
            .iter()
            .map(|d| {
                let src = &self.params[d.src];
                let w = used[d.src]
                    .as_ref()
                    .map_or(&src.value[..], |s| &s.value[..]);
                transform::xnor_scale_forward(w, rows(src))
            })
            .collect();
        let mut cache = Cache {
            mode,
            dims,
            values: vec![None; n],
            used,
            derived,
            bn: vec![None; n],
        };
        let mut next_input = inputs.iter();
        for v in 0..n {
            match self.leaves[v] {
                Leaf::Input => {
                    let t = next_input
                        .next()
                        .ok_or_else(|| self.node_err(v, "missing input".into()))?;
                    cache.values[v] = Some(t.to_f32_vec());
                }
                Leaf::Op => {
                    let (mut out, stats) = self.eval_node(&cache, v)?;
                    if self.model.types[v].elem.is_integer() {
                        // An integer 0 computed in f32 may be -0.0 (e.g. -1 * 0);
                        // adding +0.0 makes it +0.0, the integer's f32 value.
                        out.iter_mut().for_each(|e| *e += 0.0);
                    }
                    let want: usize = cache.dims[v].iter().product();
                    if out.len() != want {
                        return Err(self.node_err(
                            v,
                            format!(
                                "computed {} elements, the type {} needs {want}",
                                out.len(),
                                self.model.types[v]
                            ),
                        ));
                    }
                    if let Some(st) = &stats {
                        self.update_running(v, st);
                    }
                    cache.values[v] = Some(out);
                    cache.bn[v] = stats;
                }
                Leaf::Param(_) | Leaf::Derived(_) | Leaf::Fixed => {}
            }
        }
        let mut outs = Vec::with_capacity(self.model.graph.outputs.len());
        for &o in &self.model.graph.outputs {
            let vals = self.value(&cache, o)?.to_vec();
            outs.push(Tensor {
                elem: ElemType::F32,
                dims: cache.dims[o.index()].clone(),
                data: TensorData::F32(vals),
            });
        }
        self.cache = Some(cache);
        Ok(outs)
    }

    /// Back-propagates `dL/d(output_i)` (`None` = output not in the loss) from
    /// the last Train/Eval forward; ACCUMULATES into [`Param::grad`] and the
    /// estimator parameter grads. `progress` in `[0, 1]` is passed to sign
    /// estimators.
    ///
    /// Before anything is accumulated, checks that no op without a gradient lies
    /// between the loss and a trainable value ([`GradError::NotDifferentiable`]).
    /// May be called several times after one forward pass (gradients add up).
    /// After an Eval forward, batchnorm also differentiates its mean and variance
    /// operands, so running-statistic params get a `grad` too (optimizers leave
    /// [`ParamKind::RunningMean`]/[`ParamKind::RunningVar`] alone); after a Train
    /// forward they get none.
    pub fn backward(
        &mut self,
        output_grads: &[Option<Vec<f32>>],
        progress: f32,
    ) -> Result<(), GradError> {
        if !(0.0..=1.0).contains(&progress) {
            return Err(GradError::Progress(progress));
        }
        self.check_params()?;
        let cache = self.cache.take().ok_or(GradError::NoForward)?;
        let r = self.backward_with(&cache, output_grads, progress);
        self.cache = Some(cache);
        r
    }

    /// Every `f32` weight, one per `@key`, in order of first appearance.
    pub fn params(&self) -> &[Param] {
        &self.params
    }

    /// The params, for an optimizer step. Their lengths must stay those of their
    /// dims (checked by the next forward or backward).
    pub fn params_mut(&mut self) -> &mut [Param] {
        &mut self.params
    }

    /// Learnable parameters of the sign estimators (learned binarizer etc.), named `"<sign node name>.<param>"`.
    pub fn estimator_params(&mut self) -> Vec<(String, ParamRef<'_>)> {
        let nodes = &self.model.graph.nodes;
        let mut out = Vec::new();
        for (node, est) in nodes.iter().zip(self.estimators.iter_mut()) {
            if let Some(e) = est {
                for p in e.params() {
                    out.push((format!("{}.{}", node.name, p.name), p));
                }
            }
        }
        out
    }

    /// The estimator of the `sign` node named `node` (`None` for another name).
    pub fn estimator(&self, node: &str) -> Option<&SignEstimator> {
        let v = self.model.graph.find(node)?;
        self.estimators.get(v.index())?.as_ref()
    }

    /// Sets every parameter gradient (weights and estimators) to zero.
    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.grad.fill(0.0);
        }
        for e in self.estimators.iter_mut().flatten() {
            e.zero_grad();
        }
    }

    /// All weights of the model (keys as in the .ir `@key`), with current
    /// values, in their declared element types, ready to save
    /// ([`bnnc_ir::Weights`]).
    ///
    /// A transformed weight is saved as the graph uses it (standardised, or the
    /// derived XNOR scale computed from the current weights), so the saved model
    /// computes in eval mode what this program computes. Standardisation is
    /// idempotent up to `eps`, so a model built from the saved file computes the
    /// same; the latent values before standardisation (their scale) are only in
    /// [`TrainModel::params`].
    pub fn weights(&self) -> Weights {
        let mut w = Weights::new();
        for (key, t) in &self.frozen {
            w.insert(key.clone(), t.clone());
        }
        let used: Vec<Vec<f32>> = self
            .params
            .iter()
            .zip(&self.standardize)
            .map(|(p, s)| match s {
                Some(eps) => transform::standardize_forward(&p.value, rows(p), *eps).value,
                None => p.value.clone(),
            })
            .collect();
        for d in &self.derived {
            let alpha = transform::xnor_scale_forward(&used[d.src], rows(&self.params[d.src]));
            w.insert(
                d.key.clone(),
                to_tensor(ElemType::F32, d.dims.clone(), &alpha),
            );
        }
        for (p, value) in self.params.iter().zip(used) {
            w.insert(
                p.key.clone(),
                to_tensor(ElemType::F32, p.dims.clone(), &value),
            );
        }
        w
    }

    // -----------------------------------------------------------------------
    // Forward helpers.

    fn node_err(&self, v: usize, message: String) -> GradError {
        let node = &self.model.graph.nodes[v];
        GradError::Node {
            node: node.name.clone(),
            op: node.op.name(),
            message,
        }
    }

    /// Fails unless every param holds as many values and gradients as its dims
    /// say (they are public and may have been resized).
    fn check_params(&self) -> Result<(), GradError> {
        for p in &self.params {
            let want: usize = p.dims.iter().product();
            if p.value.len() != want || p.grad.len() != want {
                return Err(GradError::Weight {
                    key: p.key.clone(),
                    message: format!(
                        "holds {} values and {} gradients, but its dims {:?} need {want}",
                        p.value.len(),
                        p.grad.len(),
                        p.dims
                    ),
                });
            }
        }
        Ok(())
    }

    /// The value of `v` in the pass recorded by `cache`, checked against the
    /// length its dims give.
    fn value<'a>(&'a self, cache: &'a Cache, v: ValueId) -> Result<&'a [f32], GradError> {
        let i = v.index();
        let vals = leaf_value(&self.leaves, &self.params, &self.fixed, cache, v)
            .ok_or_else(|| self.node_err(i, "value is not available".into()))?;
        let want: usize = cache.dims.get(i).map_or(0, |d| d.iter().product());
        if vals.len() != want {
            return Err(self.node_err(
                i,
                format!("holds {} values, its type needs {want}", vals.len()),
            ));
        }
        Ok(vals)
    }

    /// Moves the running statistics of train-mode batchnorm node `v` towards its
    /// batch statistics `st` (only operands that are running-statistic weights).
    fn update_running(&mut self, v: usize, st: &BnStats) {
        let m = self.bn_momentum;
        let inputs = &self.model.graph.nodes[v].inputs;
        let unbias = st.count as f32 / (st.count - 1).max(1) as f32;
        for (slot, kind) in [(3, ParamKind::RunningMean), (4, ParamKind::RunningVar)] {
            let Some(&Leaf::Param(p)) = inputs.get(slot).and_then(|i| self.leaves.get(i.index()))
            else {
                continue;
            };
            let param = &mut self.params[p];
            if param.kind != kind {
                continue;
            }
            let batch = if kind == ParamKind::RunningMean {
                &st.mean
            } else {
                &st.var
            };
            let scale = if kind == ParamKind::RunningVar {
                unbias
            } else {
                1.0
            };
            for (r, &b) in param.value.iter_mut().zip(batch) {
                *r = (1.0 - m) * *r + m * (b * scale);
            }
        }
    }
}

/// Output channels (rows) of a weight: its first dimension (1 for a scalar).
fn rows(p: &Param) -> usize {
    p.dims.first().copied().unwrap_or(1)
}

/// The value of `v`: a param (as used, after its transform), a derived key, a
/// fixed constant, or a value computed in the pass recorded by `cache`.
fn leaf_value<'a>(
    leaves: &'a [Leaf],
    params: &'a [Param],
    fixed: &'a [Option<Vec<f32>>],
    cache: &'a Cache,
    v: ValueId,
) -> Option<&'a [f32]> {
    let i = v.index();
    match *leaves.get(i)? {
        Leaf::Param(p) => Some(match cache.used.get(p)? {
            Some(s) => &s.value,
            None => &params.get(p)?.value,
        }),
        Leaf::Derived(d) => cache.derived.get(d).map(|x| &x[..]),
        Leaf::Fixed => fixed.get(i)?.as_deref(),
        Leaf::Input | Leaf::Op => cache.values.get(i)?.as_deref(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn grad_error_stays_small() {
        // Callers wrap it in their own errors; clippy's `result_large_err` limit
        // is 128 bytes.
        assert!(std::mem::size_of::<super::GradError>() <= 80);
    }
}
