//! The training loop: epochs of mini-batch gradient descent over an IDX dataset
//! (MNIST, Fashion-MNIST), with the model's own graph as the network.
//!
//! One step: the next `batch` images in the order [`epoch_order`] gives for
//! `(seed, epoch)`; forward in [`Mode::Train`] (batch statistics; the forward pass
//! updates batch-norm running statistics); softmax cross-entropy of the first
//! output against the labels, plus, if configured, knowledge distillation from a
//! teacher (Hinton et al., 2015) and a Lipschitz penalty (LCR, Shang et al.,
//! 2022); backward with `progress = step / total_steps` (scheduled estimators such
//! as DTE read it); then one optimizer step per parameter kind:
//!
//! - [`ParamKind::Latent`] (f32 weights used only through `sign`): Adam followed
//!   by clipping to `[-clip, clip]` (BinaryConnect's latent clipping), or Bop
//!   (Helwegen et al., 2019), which flips signs and has no latent magnitudes;
//! - [`ParamKind::Float`] (float convolutions, batch-norm gamma and beta,
//!   slopes) and learnable estimator parameters: Adam(W) or SGD with momentum;
//! - running statistics are not optimised.
//!
//! The learning rate follows [`TrainConfig::schedule`] over all steps of all
//! epochs. After each epoch ([`Trainer::finish_epoch`]) the test set is evaluated
//! in [`Mode::Eval`] (running statistics, the fast training kernels);
//! [`Trainer::evaluate_interpreter`] evaluates through [`bnnc_runtime::run`], the
//! reference interpreter, on the model with the trained weights: the accuracy of
//! the model the compiler builds.
//!
//! Everything is a function of the model, its weights, the data and the
//! [`TrainConfig`]: the same inputs give bit-identical weights.

use std::time::Instant;

use bnnc_ir::{Dim, ElemType, Estimator, Model, Op, Tensor, Weights};

use crate::autodiff::{GradConfig, GradError, Mode, ParamKind, TrainModel, WeightTransform};
use crate::data::{epoch_order, DataError, Dataset};
use crate::loss::{distillation_loss, softmax_cross_entropy, spectral_penalty, LossError, LossOut};
use crate::optim::{
    clip_latent, Adam, AdamState, Bop, BopState, LrSchedule, OptimError, Sgd, SgdState,
};
use bnnc_runtime::RunError;

/// How the learning rate changes over the steps of all epochs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// [`TrainConfig::lr`] at every step.
    Constant,
    /// Cosine annealing from [`TrainConfig::lr`] at the first step to 0 after the
    /// last ([`LrSchedule::Cosine`] without warm-up).
    Cosine,
}

/// The optimizer of [`ParamKind::Float`] parameters and of learnable estimator
/// parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FloatOptimizer {
    /// [`Adam`] with decoupled weight decay (AdamW), default betas.
    Adam,
    /// [`Sgd`] with heavy-ball momentum and L2 weight decay.
    Sgd { momentum: f32 },
}

/// The optimizer of [`ParamKind::Latent`] parameters (f32 weights used only
/// through `sign`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LatentOptimizer {
    /// [`Adam`] on the latent values (no weight decay), then [`clip_latent`] to
    /// `[-clip, clip]`.
    Adam { clip: f32 },
    /// [`Bop`]: flip a weight's sign when the moving average of its gradient
    /// (rate `gamma`) exceeds `threshold` and agrees in sign with the weight.
    Bop { threshold: f32, gamma: f32 },
}

/// Knowledge distillation from a teacher model: the loss becomes
/// `(1 - alpha) CE + alpha T^2 KL(softmax(t/T) || softmax(s/T))`
/// ([`distillation_loss`]), the teacher run in [`Mode::Eval`] on the same batch.
#[derive(Clone, Debug)]
pub struct Distillation {
    /// Fits the dataset as the student does ([`check_model_fits`]; its input may
    /// be shaped differently, e.g. `f32[N, 28, 28, 1]` for an `f32[N, 784]`
    /// student) and has as many logits as the student.
    pub teacher: Model,
    pub temperature: f32,
    pub alpha: f32,
}

/// Everything a training run is a function of, besides the model, its initial
/// weights and the data.
#[derive(Clone, Debug)]
pub struct TrainConfig {
    /// Passes over the training set.
    pub epochs: usize,
    /// Images per step. An epoch is `max(1, n / batch)` steps; the `n % batch`
    /// images left over by an epoch's order are not visited in that epoch (other
    /// epochs' orders differ), so every step has the same size.
    pub batch: usize,
    /// The peak learning rate of both Adam/SGD optimizers.
    pub lr: f32,
    pub schedule: Schedule,
    pub float_optimizer: FloatOptimizer,
    pub latent_optimizer: LatentOptimizer,
    /// Weight decay (AdamW's decoupled, SGD's L2) of float parameters with at
    /// least two dimensions (float conv/dense weights); vectors (batch-norm,
    /// biases, slopes) and latent weights are not decayed.
    pub weight_decay: f32,
    /// If set, replaces the estimator of every `sign` whose operand is not a
    /// `@weight` (the signs of activations).
    pub activation_estimator: Option<Estimator>,
    /// If set, replaces the estimator of every `sign` of a `@weight`.
    pub weight_estimator: Option<Estimator>,
    /// Seeds the visiting order ([`epoch_order`]) and learnable estimator
    /// parameters.
    pub seed: u64,
    pub distillation: Option<Distillation>,
    /// Weight `lambda` of the Lipschitz penalty `sum_l (lambda/2) sigma(sign(W_l))^2`
    /// over latent weights of at least two dimensions ([`spectral_penalty`], one
    /// power-iteration round per step with persistent vectors); 0 turns it off.
    /// Its gradient with respect to the binary weight is added to the latent
    /// weight's gradient unchanged: the straight-through rule, exact for STE with
    /// clip >= 1 on latent weights clipped to [-1, 1].
    pub lipschitz: f32,
    /// Batch-norm running-average momentum ([`GradConfig::bn_momentum`]).
    pub bn_momentum: f32,
    /// Images per forward pass when evaluating.
    pub eval_batch: usize,
    /// Weight reparameterisations ([`GradConfig::transforms`]).
    pub transforms: Vec<(String, WeightTransform)>,
}

impl Default for TrainConfig {
    /// One epoch, batch 64, Adam at lr 1e-3 with cosine decay for float and
    /// latent weights (latent clipped to [-1, 1]), no weight decay, the model's
    /// own estimators, seed 0, no distillation, no Lipschitz penalty, batch-norm
    /// momentum 0.1, evaluation in batches of 500.
    fn default() -> Self {
        TrainConfig {
            epochs: 1,
            batch: 64,
            lr: 1e-3,
            schedule: Schedule::Cosine,
            float_optimizer: FloatOptimizer::Adam,
            latent_optimizer: LatentOptimizer::Adam { clip: 1.0 },
            weight_decay: 0.0,
            activation_estimator: None,
            weight_estimator: None,
            seed: 0,
            distillation: None,
            lipschitz: 0.0,
            bn_momentum: 0.1,
            eval_batch: 500,
            transforms: Vec::new(),
        }
    }
}

/// Why training could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The model's input or output does not fit the dataset.
    #[error("model `{model}` does not fit the dataset: {message}")]
    Fit { model: String, message: String },
    /// A [`TrainConfig`] value is unusable.
    #[error("training configuration: {0}")]
    Config(String),
    /// Building, running or differentiating the model failed.
    #[error(transparent)]
    Grad(#[from] GradError),
    /// Building or running the teacher failed.
    #[error("teacher `{model}`: {source}")]
    Teacher {
        model: String,
        #[source]
        source: GradError,
    },
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Loss(#[from] LossError),
    #[error(transparent)]
    Optim(#[from] OptimError),
    /// The model with the trained weights does not load (a weight became a value
    /// its declared type cannot hold).
    #[error("the trained weights do not fit the model: {0}")]
    Weights(#[source] bnnc_ir::Error),
    /// The reference interpreter failed on the trained model.
    #[error("the reference interpreter failed: {0}")]
    Run(#[from] RunError),
    /// The loss became NaN or infinite.
    #[error(
        "the loss became {loss} at epoch {epoch}, step {step}: training diverged \
         (a lower learning rate may help)"
    )]
    Diverged {
        epoch: usize,
        step: usize,
        loss: f32,
    },
    /// [`Trainer::train_epoch`] after the configured number of epochs, or with a
    /// training set of another size than the first call's.
    #[error("{0}")]
    State(String),
}

/// What the trainer needs to know about a model that fits a dataset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fit {
    /// The input's dims without the batch, e.g. `[784]` or `[28, 28, 1]`.
    pub input_dims: Vec<usize>,
    /// The number of logits of the first output (at least the dataset's classes).
    pub classes: usize,
}

/// Checks that `model` can be trained on `data`: exactly one input, `f32`, with
/// a leading batch dim `N` and fixed dims after it whose product is one image
/// (`rows * cols`); a first output `f32[N, C]` with `C >= data.classes`.
pub fn check_model_fits(model: &Model, data: &Dataset) -> Result<Fit, TrainError> {
    let g = &model.graph;
    let fail = |message: String| TrainError::Fit {
        model: g.name.clone(),
        message,
    };
    let inputs = g.inputs();
    let [input] = inputs[..] else {
        return Err(fail(format!(
            "it has {} inputs; training feeds exactly one (the images)",
            inputs.len()
        )));
    };
    let ty = model.ty(input);
    let name = &g.node(input).name;
    let image = data.rows * data.cols;
    let (first, rest) = ty.shape.split_first().unzip();
    let fixed: Option<Vec<usize>> = rest.unwrap_or(&[]).iter().map(|d| d.fixed()).collect();
    match (ty.elem, first, fixed) {
        (ElemType::F32, Some(Dim::Batch), Some(dims))
            if dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) == Some(image) =>
        {
            let outputs = &g.outputs;
            let Some(&out) = outputs.first() else {
                return Err(fail("it has no output".into()));
            };
            let oty = model.ty(out);
            let oname = &g.node(out).name;
            match (oty.elem, &oty.shape[..]) {
                (ElemType::F32, [Dim::Batch, Dim::Fixed(c)]) if *c >= data.classes => Ok(Fit {
                    input_dims: dims,
                    classes: *c,
                }),
                _ => Err(fail(format!(
                    "its first output `{oname}` is {oty}; training needs logits f32[N, C] \
                     with C >= {} classes",
                    data.classes
                ))),
            }
        }
        _ => Err(fail(format!(
            "input `{name}` is {ty}; the dataset's images are {}x{} pixels, so the input must \
             be f32[N, ...] with fixed dims multiplying to {image} (e.g. f32[N, {image}] or \
             f32[N, {}, {}, 1])",
            data.rows, data.cols, data.rows, data.cols
        ))),
    }
}

/// A copy of `model` whose `sign` ops use the given estimators: `weights` for
/// signs of a `@weight`, `activations` for every other sign (`None` keeps the
/// model's own).
pub fn with_estimators(
    model: &Model,
    activations: Option<&Estimator>,
    weights: Option<&Estimator>,
) -> Model {
    let mut m = model.clone();
    let is_weight: Vec<bool> = m
        .graph
        .nodes
        .iter()
        .map(|n| matches!(n.op, Op::Weight { .. }))
        .collect();
    for node in &mut m.graph.nodes {
        if let Op::Sign { estimator } = &mut node.op {
            let of_weight = node.inputs.first().is_some_and(|v| is_weight[v.index()]);
            let replacement = if of_weight { weights } else { activations };
            if let Some(e) = replacement {
                *estimator = Some(e.clone());
            }
        }
    }
    m
}

/// Loss and accuracy of a model on a dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    /// Mean softmax cross-entropy over all items.
    pub loss: f64,
    /// Items whose first arg-max logit is the label.
    pub correct: usize,
    pub total: usize,
    /// The predicted class (first arg-max) of every item, in dataset order.
    pub predictions: Vec<u32>,
}

impl Evaluation {
    /// `correct / total` (0 for an empty set).
    pub fn accuracy(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.correct as f64 / self.total as f64
        }
    }
}

/// One training step, reported to the progress callback.
#[derive(Clone, Debug, PartialEq)]
pub struct StepReport {
    /// The epoch, counted from 0.
    pub epoch: usize,
    /// Steps done in this epoch (1 after the first).
    pub step: usize,
    /// Steps per epoch.
    pub steps: usize,
    /// The loss of this step's batch (task loss: CE, or the CE/KD mix).
    pub batch_loss: f32,
    /// Mean task loss over this epoch's steps so far.
    pub loss: f64,
    /// Training accuracy over this epoch's steps so far (forward in train mode).
    pub accuracy: f64,
    /// The learning rate of this step.
    pub lr: f32,
    /// Training images per second in this epoch so far (wall clock).
    pub images_per_second: f64,
}

/// What [`Trainer::fit`] and [`Trainer::train_epoch`] report as they go.
#[derive(Clone, Debug, PartialEq)]
pub enum Progress {
    /// A step finished.
    Step(StepReport),
    /// An epoch finished and was evaluated (from [`Trainer::fit`]).
    Epoch(EpochRecord),
}

/// The training part of one epoch, from [`Trainer::train_epoch`].
#[derive(Clone, Debug, PartialEq)]
pub struct EpochStats {
    /// The epoch, counted from 0.
    pub epoch: usize,
    pub loss: f64,
    pub accuracy: f64,
    /// The learning rate of the epoch's last step.
    pub lr: f32,
    /// Wall time of the training steps.
    pub seconds: f64,
    pub images: usize,
}

/// One row of the training curve.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochRecord {
    /// The epoch, counted from 1.
    pub epoch: usize,
    /// The learning rate of the epoch's last step.
    pub lr: f64,
    /// Mean task loss of the epoch's steps (train mode, weights changing).
    pub train_loss: f64,
    /// Training accuracy of the epoch's steps (train mode, weights changing).
    pub train_accuracy: f64,
    /// Test loss and accuracy in eval mode after the epoch.
    pub test_loss: f64,
    pub test_accuracy: f64,
    /// Wall time of the epoch: training and evaluation.
    pub seconds: f64,
    /// Training images per second (training steps only).
    pub images_per_second: f64,
}

/// The result of [`Trainer::fit`].
#[derive(Clone, Debug, PartialEq)]
pub struct TrainReport {
    pub epochs: Vec<EpochRecord>,
    /// The test set through the reference interpreter with the trained weights.
    pub interpreter: Evaluation,
}

/// The optimizer of one parameter and its state.
#[derive(Clone, Debug)]
enum OptState {
    /// Adam; latent weights are clipped to `[-clip, clip]` after each step.
    Adam(Adam, AdamState, Option<f32>),
    Sgd(Sgd, SgdState),
    Bop(Bop, BopState),
    /// Running statistics: not optimised.
    None,
}

impl OptState {
    /// The optimizer of a parameter of `kind` with `dims` under `cfg`.
    fn for_param(kind: ParamKind, dims: &[usize], cfg: &TrainConfig) -> OptState {
        let decay = if kind == ParamKind::Float && dims.len() >= 2 {
            cfg.weight_decay
        } else {
            0.0
        };
        match (kind, cfg.latent_optimizer) {
            (ParamKind::RunningMean | ParamKind::RunningVar, _) => OptState::None,
            (ParamKind::Latent, LatentOptimizer::Adam { clip }) => {
                OptState::Adam(Adam::default(), AdamState::default(), Some(clip))
            }
            (ParamKind::Latent, LatentOptimizer::Bop { threshold, gamma }) => OptState::Bop(
                Bop {
                    gamma,
                    tau: threshold,
                },
                BopState::default(),
            ),
            (ParamKind::Float, _) => match cfg.float_optimizer {
                FloatOptimizer::Adam => OptState::Adam(
                    Adam {
                        weight_decay: decay,
                        ..Adam::default()
                    },
                    AdamState::default(),
                    None,
                ),
                FloatOptimizer::Sgd { momentum } => OptState::Sgd(
                    Sgd {
                        momentum,
                        weight_decay: decay,
                        nesterov: false,
                    },
                    SgdState::default(),
                ),
            },
        }
    }

    /// One step of `value` along `grad` at learning rate `lr`.
    fn step(&mut self, value: &mut [f32], grad: &[f32], lr: f32) -> Result<(), OptimError> {
        match self {
            OptState::None => {}
            OptState::Adam(opt, state, clip) => {
                opt.step(state, value, grad, lr)?;
                if let Some(c) = clip {
                    clip_latent(value, *c)?;
                }
            }
            OptState::Sgd(opt, state) => opt.step(state, value, grad, lr)?,
            OptState::Bop(opt, state) => {
                opt.step(state, value, grad)?;
            }
        }
        Ok(())
    }
}

/// A model being trained: the differentiable program, the optimizer states and
/// the step counter. See the module doc for what one step does.
pub struct Trainer {
    /// The model as trained (estimators replaced as configured); its graph is
    /// what [`Trainer::weights`] belong to.
    model: Model,
    net: TrainModel,
    teacher: Option<(TrainModel, f32, f32)>,
    cfg: TrainConfig,
    states: Vec<OptState>,
    estimator_states: Vec<OptState>,
    /// Power-iteration vectors of the Lipschitz penalty, per parameter.
    spectral: Vec<Vec<f32>>,
    /// Epochs trained so far.
    epoch: usize,
    /// Steps taken so far (over all epochs).
    step: usize,
    /// `(training set size, total steps)`, fixed by the first epoch.
    plan: Option<(usize, usize)>,
}

impl Trainer {
    /// Builds the trainer for `model` (with its loaded weights as the starting
    /// point). Errors: an unusable configuration, a model the autodiff cannot
    /// train, an estimator that cannot be built, a teacher that does not build.
    pub fn new(model: &Model, cfg: TrainConfig) -> Result<Trainer, TrainError> {
        let bad = |m: String| Err(TrainError::Config(m));
        if cfg.epochs == 0 {
            return bad("epochs must be at least 1".into());
        }
        if cfg.batch == 0 || cfg.eval_batch == 0 {
            return bad("batch sizes must be at least 1".into());
        }
        if !(cfg.lr.is_finite() && cfg.lr > 0.0) {
            return bad(format!("learning rate {} is not positive", cfg.lr));
        }
        if !(cfg.weight_decay.is_finite() && cfg.weight_decay >= 0.0) {
            return bad(format!("weight decay {} is not >= 0", cfg.weight_decay));
        }
        if !(cfg.lipschitz.is_finite() && cfg.lipschitz >= 0.0) {
            return bad(format!("Lipschitz weight {} is not >= 0", cfg.lipschitz));
        }
        match cfg.latent_optimizer {
            LatentOptimizer::Adam { clip } if clip.is_nan() || clip <= 0.0 => {
                return bad(format!("latent clip {clip} is not positive"))
            }
            LatentOptimizer::Bop { threshold, gamma } => Bop {
                gamma,
                tau: threshold,
            }
            .validate()?,
            LatentOptimizer::Adam { .. } => {}
        }
        if let FloatOptimizer::Sgd { momentum } = cfg.float_optimizer {
            Sgd {
                momentum,
                weight_decay: cfg.weight_decay,
                nesterov: false,
            }
            .validate()?;
        }
        let model = with_estimators(
            model,
            cfg.activation_estimator.as_ref(),
            cfg.weight_estimator.as_ref(),
        );
        let grad_cfg = GradConfig {
            bn_momentum: cfg.bn_momentum,
            seed: cfg.seed,
            transforms: cfg.transforms.clone(),
            oracle_kernels: false,
        };
        let mut net = TrainModel::new(&model, &grad_cfg)?;
        let teacher = match &cfg.distillation {
            Some(d) => {
                if !(d.temperature.is_finite() && d.temperature > 0.0) {
                    return bad(format!("temperature {} is not positive", d.temperature));
                }
                if !(0.0..=1.0).contains(&d.alpha) {
                    return bad(format!("distillation alpha {} is not in [0, 1]", d.alpha));
                }
                let t = TrainModel::new(&d.teacher, &GradConfig::default()).map_err(|source| {
                    TrainError::Teacher {
                        model: d.teacher.graph.name.clone(),
                        source,
                    }
                })?;
                Some((t, d.temperature, d.alpha))
            }
            None => None,
        };
        let states = net
            .params()
            .iter()
            .map(|p| OptState::for_param(p.kind, &p.dims, &cfg))
            .collect();
        let estimator_states = net
            .estimator_params()
            .iter()
            .map(|_| OptState::for_param(ParamKind::Float, &[], &cfg))
            .collect();
        let spectral = vec![Vec::new(); net.params().len()];
        let mut cfg = cfg;
        cfg.distillation = None; // the teacher now lives in `teacher`
        Ok(Trainer {
            model,
            net,
            teacher,
            cfg,
            states,
            estimator_states,
            spectral,
            epoch: 0,
            step: 0,
            plan: None,
        })
    }

    /// Steps per epoch for a training set of `n` items: `max(1, n / batch)`.
    pub fn steps_per_epoch(&self, n: usize) -> usize {
        (n / self.cfg.batch).max(1)
    }

    /// Epochs trained so far.
    pub fn epochs_done(&self) -> usize {
        self.epoch
    }

    /// The model as trained (with estimators replaced as configured).
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The current weights of every `@key` (trained values, running
    /// statistics, fixed non-f32 weights), ready to save.
    pub fn weights(&self) -> Weights {
        self.net.weights()
    }

    /// The learning rate of global step `step`.
    fn lr_at(&self, step: usize, total: usize) -> f32 {
        let schedule = match self.cfg.schedule {
            Schedule::Constant => LrSchedule::Constant,
            Schedule::Cosine => LrSchedule::Cosine {
                total_steps: total,
                warmup_steps: 0,
                min_lr: 0.0,
            },
        };
        schedule.lr_at(step, self.cfg.lr)
    }

    /// Trains one epoch on `train`, calling `progress` after every step.
    /// Errors: more epochs than configured, a training set of another size than
    /// the first epoch's, a model that does not fit the data, and any failure of
    /// a step (the weights then hold the last completed step).
    pub fn train_epoch(
        &mut self,
        train: &Dataset,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<EpochStats, TrainError> {
        if self.epoch >= self.cfg.epochs {
            return Err(TrainError::State(format!(
                "all {} configured epochs are done",
                self.cfg.epochs
            )));
        }
        let fit = check_model_fits(&self.model, train)?;
        if train.n == 0 {
            return Err(TrainError::Fit {
                model: self.model.graph.name.clone(),
                message: "the training set is empty".into(),
            });
        }
        let steps = self.steps_per_epoch(train.n);
        let (n0, total) = *self.plan.get_or_insert((train.n, steps * self.cfg.epochs));
        if n0 != train.n {
            return Err(TrainError::State(format!(
                "the training set has {} items, but earlier epochs had {n0}",
                train.n
            )));
        }
        let teacher_dims = match &self.teacher {
            Some((t, _, _)) => {
                let tf = check_model_fits(t.model(), train)?;
                if tf.classes != fit.classes {
                    return Err(TrainError::Fit {
                        model: t.model().graph.name.clone(),
                        message: format!(
                            "the teacher has {} logits, the student {}",
                            tf.classes, fit.classes
                        ),
                    });
                }
                Some(tf.input_dims)
            }
            None => None,
        };
        let order = epoch_order(train.n, self.cfg.seed, self.epoch);
        let batch = self.cfg.batch.min(train.n);
        let started = Instant::now();
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        let mut lr = self.cfg.lr;
        for s in 0..steps {
            let idx = &order[s * batch..(s + 1) * batch];
            lr = self.lr_at(self.step, total);
            let progress_frac = (self.step as f64 / total as f64).min(1.0) as f32;
            let out = self.step(train, idx, &fit, teacher_dims.as_deref(), lr, progress_frac)?;
            if !out.loss.is_finite() {
                return Err(TrainError::Diverged {
                    epoch: self.epoch + 1,
                    step: s + 1,
                    loss: out.loss,
                });
            }
            self.step += 1;
            loss_sum += f64::from(out.loss) * idx.len() as f64;
            correct += out.correct;
            seen += idx.len();
            let elapsed = started.elapsed().as_secs_f64();
            progress(&Progress::Step(StepReport {
                epoch: self.epoch,
                step: s + 1,
                steps,
                batch_loss: out.loss,
                loss: loss_sum / seen as f64,
                accuracy: correct as f64 / seen as f64,
                lr,
                images_per_second: seen as f64 / elapsed.max(1e-9),
            }));
        }
        let stats = EpochStats {
            epoch: self.epoch,
            loss: loss_sum / seen.max(1) as f64,
            accuracy: correct as f64 / seen.max(1) as f64,
            lr,
            seconds: started.elapsed().as_secs_f64(),
            images: seen,
        };
        self.epoch += 1;
        Ok(stats)
    }

    /// One optimisation step on the items `idx` of `train`; returns the task
    /// loss, its gradient and the number of correct predictions. `teacher_dims`
    /// are the teacher's input dims without the batch.
    fn step(
        &mut self,
        train: &Dataset,
        idx: &[usize],
        fit: &Fit,
        teacher_dims: Option<&[usize]>,
        lr: f32,
        progress: f32,
    ) -> Result<LossOut, TrainError> {
        let mut dims = vec![idx.len()];
        dims.extend(&fit.input_dims);
        let x = train.batch(idx, &dims)?;
        let labels = train.labels_of(idx)?;
        self.net.zero_grad();
        let outs = self.net.forward(std::slice::from_ref(&x), Mode::Train)?;
        let logits = logits_of(&outs)?;
        let out = match &mut self.teacher {
            Some((t, temperature, alpha)) => {
                // The same pixels in the teacher's input shape.
                let mut tdims = vec![idx.len()];
                tdims.extend(teacher_dims.unwrap_or(&fit.input_dims));
                let tx = Tensor::f32(tdims, x.to_f32_vec());
                let touts = t
                    .forward(std::slice::from_ref(&tx), Mode::Eval)
                    .map_err(|source| TrainError::Teacher {
                        model: t.model().graph.name.clone(),
                        source,
                    })?;
                let tl = logits_of(&touts)?;
                distillation_loss(logits, tl, fit.classes, &labels, *alpha, *temperature)?
            }
            None => softmax_cross_entropy(logits, fit.classes, &labels)?,
        };
        if !out.loss.is_finite() {
            return Ok(out);
        }
        let mut grads: Vec<Option<Vec<f32>>> = vec![None; outs.len()];
        grads[0] = Some(out.grad.clone());
        self.net.backward(&grads, progress)?;
        if self.cfg.lipschitz > 0.0 {
            self.add_lipschitz()?;
        }
        self.apply_optimizers(lr)?;
        Ok(out)
    }

    /// Adds the gradient of the Lipschitz penalty (see [`TrainConfig::lipschitz`])
    /// to the latent weights' gradients.
    fn add_lipschitz(&mut self) -> Result<(), TrainError> {
        let lambda = self.cfg.lipschitz;
        for (p, u) in self.net.params_mut().iter_mut().zip(&mut self.spectral) {
            if p.kind != ParamKind::Latent || p.dims.len() < 2 {
                continue;
            }
            let rows = p.dims[0];
            let cols = p.value.len() / rows.max(1);
            let wb: Vec<f32> = p
                .value
                .iter()
                .map(|&w| if w < 0.0 { -1.0 } else { 1.0 })
                .collect();
            let (_, g) = spectral_penalty(&wb, rows, cols, u, 1, lambda)?;
            for (a, b) in p.grad.iter_mut().zip(&g) {
                *a += b;
            }
        }
        Ok(())
    }

    /// One optimizer step of every parameter at learning rate `lr`.
    fn apply_optimizers(&mut self, lr: f32) -> Result<(), TrainError> {
        for (p, state) in self.net.params_mut().iter_mut().zip(&mut self.states) {
            state.step(&mut p.value, &p.grad, lr)?;
        }
        for ((_, p), state) in self
            .net
            .estimator_params()
            .into_iter()
            .zip(&mut self.estimator_states)
        {
            state.step(p.value, p.grad, lr)?;
        }
        Ok(())
    }

    /// Evaluates `data` in [`Mode::Eval`] (running statistics; the fast training
    /// kernels, which differ from the interpreter only in the summation order of
    /// `f32 x f32` convolutions and dense layers).
    pub fn evaluate(&mut self, data: &Dataset) -> Result<Evaluation, TrainError> {
        let fit = check_model_fits(&self.model, data)?;
        let batch = self.cfg.eval_batch;
        let net = &mut self.net;
        evaluate_with(data, &fit, batch, |x| {
            Ok(net.forward(std::slice::from_ref(x), Mode::Eval)?)
        })
    }

    /// Evaluates `data` through [`bnnc_runtime::run`], the reference interpreter, on
    /// the model with the current weights: the exact meaning of the model the
    /// compiler builds from the saved files.
    pub fn evaluate_interpreter(&self, data: &Dataset) -> Result<Evaluation, TrainError> {
        let fit = check_model_fits(&self.model, data)?;
        let weights = self.weights();
        let model = Model::from_graph(self.model.graph.clone(), Some(&weights), &self.model.path)
            .map_err(TrainError::Weights)?;
        evaluate_with(data, &fit, self.cfg.eval_batch, |x| {
            Ok(bnnc_runtime::run(&model, std::slice::from_ref(x))?)
        })
    }

    /// Evaluates `test` after [`Trainer::train_epoch`] and makes the epoch's
    /// record.
    pub fn finish_epoch(
        &mut self,
        stats: EpochStats,
        test: &Dataset,
    ) -> Result<EpochRecord, TrainError> {
        let started = Instant::now();
        let eval = self.evaluate(test)?;
        Ok(EpochRecord {
            epoch: stats.epoch + 1,
            lr: f64::from(stats.lr),
            train_loss: stats.loss,
            train_accuracy: stats.accuracy,
            test_loss: eval.loss,
            test_accuracy: eval.accuracy(),
            seconds: stats.seconds + started.elapsed().as_secs_f64(),
            images_per_second: stats.images as f64 / stats.seconds.max(1e-9),
        })
    }

    /// Trains the remaining configured epochs, evaluating `test` after each, and
    /// finally evaluates `test` through the reference interpreter.
    pub fn fit(
        &mut self,
        train: &Dataset,
        test: &Dataset,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<TrainReport, TrainError> {
        let mut epochs = Vec::new();
        while self.epoch < self.cfg.epochs {
            let stats = self.train_epoch(train, progress)?;
            let record = self.finish_epoch(stats, test)?;
            progress(&Progress::Epoch(record.clone()));
            epochs.push(record);
        }
        let interpreter = self.evaluate_interpreter(test)?;
        Ok(TrainReport {
            epochs,
            interpreter,
        })
    }
}

/// The first output's values (the logits).
fn logits_of(outs: &[Tensor]) -> Result<&[f32], TrainError> {
    outs.first()
        .and_then(Tensor::as_f32)
        .ok_or_else(|| TrainError::Config("the model's first output is not f32 logits".into()))
}

/// Loss, accuracy and predictions of `run` over `data` in batches of `batch`.
fn evaluate_with(
    data: &Dataset,
    fit: &Fit,
    batch: usize,
    mut run: impl FnMut(&Tensor) -> Result<Vec<Tensor>, TrainError>,
) -> Result<Evaluation, TrainError> {
    let (mut loss, mut correct) = (0.0f64, 0usize);
    let mut predictions = Vec::with_capacity(data.n);
    let all: Vec<usize> = (0..data.n).collect();
    for idx in all.chunks(batch.max(1)) {
        let mut dims = vec![idx.len()];
        dims.extend(&fit.input_dims);
        let x = data.batch(idx, &dims)?;
        let labels = data.labels_of(idx)?;
        let outs = run(&x)?;
        let t = outs
            .first()
            .cloned()
            .unwrap_or_else(|| Tensor::f32(vec![0], vec![]));
        let logits = t.to_f32_vec();
        let out = softmax_cross_entropy(&logits, fit.classes, &labels)?;
        loss += f64::from(out.loss) * idx.len() as f64;
        correct += out.correct;
        predictions.extend(logits.chunks(fit.classes).map(|row| {
            let mut best = 0;
            for (j, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = j;
                }
            }
            best as u32
        }));
    }
    Ok(Evaluation {
        loss: loss / data.n.max(1) as f64,
        correct,
        total: data.n,
        predictions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A binary MLP on 4x4 images: 16 -> 8 (binary weights, BN, sign) -> 2
    /// (binary weights, BN logits).
    const TINY: &str = "\
model tiny
input x: f32[N, 16]
w1 = @fc1.weight: f32[8, 16]
wb1 = sign(w1, estimator=ste, clip=1)
h1 = dense(x, wb1)
g1 = @bn1.gamma: f32[8]
b1 = @bn1.beta: f32[8]
m1 = @bn1.mean: f32[8]
v1 = @bn1.var: f32[8]
n1 = batchnorm(h1, g1, b1, m1, v1, eps=0.00001)
a1 = sign(n1, estimator=ste, clip=1)
w2 = @fc2.weight: f32[2, 8]
wb2 = sign(w2, estimator=ste, clip=1)
h2 = dense(a1, wb2)
g2 = @bn2.gamma: f32[2]
b2 = @bn2.beta: f32[2]
m2 = @bn2.mean: f32[2]
v2 = @bn2.var: f32[2]
logits = batchnorm(h2, g2, b2, m2, v2, eps=0.00001)
output logits
";

    /// A deterministic pseudo-random sequence in [0, 1) (64-bit LCG).
    fn lcg(state: &mut u64) -> f32 {
        *state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*state >> 40) as f32 / (1u64 << 24) as f32
    }

    fn tiny_model(src: &str) -> Model {
        let graph = bnnc_ir::text::parse(src).expect("parses");
        let mut w = Weights::new();
        let mut s = 7u64;
        let mut uniform = |n: usize, scale: f32| -> Vec<f32> {
            (0..n).map(|_| (lcg(&mut s) * 2.0 - 1.0) * scale).collect()
        };
        w.insert("fc1.weight", Tensor::f32(vec![8, 16], uniform(128, 0.25)));
        w.insert("fc2.weight", Tensor::f32(vec![2, 8], uniform(16, 0.35)));
        for (bn, c) in [("bn1", 8), ("bn2", 2)] {
            w.insert(format!("{bn}.gamma"), Tensor::f32(vec![c], vec![1.0; c]));
            w.insert(format!("{bn}.beta"), Tensor::f32(vec![c], vec![0.0; c]));
            w.insert(format!("{bn}.mean"), Tensor::f32(vec![c], vec![0.0; c]));
            w.insert(format!("{bn}.var"), Tensor::f32(vec![c], vec![1.0; c]));
        }
        Model::from_graph(graph, Some(&w), Path::new("tiny.ir")).expect("verifies")
    }

    /// `n` 4x4 images in two linearly separable classes: class 0 bright on the
    /// top half and dark below, class 1 the other way round, with noise.
    fn separable(n: usize, seed: u64) -> Dataset {
        let mut s = seed;
        let mut images = Vec::with_capacity(n * 16);
        let mut labels = Vec::with_capacity(n);
        for _ in 0..n {
            let label = u8::from(lcg(&mut s) < 0.5);
            for p in 0..16 {
                let top = p < 8;
                let bright = top == (label == 0);
                let noise = (lcg(&mut s) * 90.0) as u8;
                images.push(if bright { 165 + noise } else { noise });
            }
            labels.push(label);
        }
        Dataset {
            images,
            labels,
            n,
            rows: 4,
            cols: 4,
            classes: 2,
        }
    }

    fn cfg() -> TrainConfig {
        TrainConfig {
            epochs: 3,
            batch: 32,
            lr: 0.02,
            eval_batch: 100,
            ..TrainConfig::default()
        }
    }

    #[test]
    fn loss_falls_and_accuracy_rises_on_separable_data() {
        let model = tiny_model(TINY);
        let (train, test) = (separable(256, 1), separable(200, 2));
        let mut t = Trainer::new(&model, cfg()).unwrap();
        let before = t.evaluate(&test).unwrap();
        let mut batch_losses = Vec::new();
        let report = t
            .fit(&train, &test, &mut |p| {
                if let Progress::Step(s) = p {
                    batch_losses.push(s.batch_loss);
                }
            })
            .unwrap();
        assert_eq!(batch_losses.len(), 3 * 8);
        assert_eq!(report.epochs.len(), 3);
        let first = batch_losses[0];
        let last_epoch = &report.epochs[2];
        assert!(
            last_epoch.train_loss < 0.5 * f64::from(first),
            "loss did not fall: first batch {first}, last epoch {}",
            last_epoch.train_loss
        );
        assert!(report.epochs[0].train_loss > last_epoch.train_loss);
        assert!(
            before.accuracy() < 0.8,
            "untrained accuracy {}",
            before.accuracy()
        );
        assert!(
            last_epoch.test_accuracy > 0.95,
            "test accuracy {} after training (before: {})",
            last_epoch.test_accuracy,
            before.accuracy()
        );
        // The interpreter's accuracy on the saved weights is the eval-mode one
        // (here up to float summation order in the first layer).
        let agree = report
            .interpreter
            .predictions
            .iter()
            .zip(&t.evaluate(&test).unwrap().predictions)
            .filter(|(a, b)| a == b)
            .count();
        assert!(
            agree >= 198,
            "interpreter and eval mode agree on {agree}/200"
        );
        assert!(report.interpreter.accuracy() > 0.95);
    }

    fn train_weights(cfg: TrainConfig) -> Weights {
        let model = tiny_model(TINY);
        let train = separable(128, 3);
        let mut t = Trainer::new(&model, cfg).unwrap();
        while t.epochs_done() < 2 {
            t.train_epoch(&train, &mut |_| {}).unwrap();
        }
        t.weights()
    }

    #[test]
    fn same_seed_same_weights_other_seed_other_weights() {
        let c = TrainConfig { epochs: 2, ..cfg() };
        let a = train_weights(c.clone());
        let b = train_weights(c.clone());
        assert_eq!(a, b, "two runs with the same configuration differ");
        let other = train_weights(TrainConfig {
            seed: 1,
            ..c.clone()
        });
        assert_ne!(a, other, "the seed does not change the visiting order");
    }

    #[test]
    fn every_optimizer_and_loss_option_trains() {
        let model = tiny_model(TINY);
        let (train, test) = (separable(256, 4), separable(100, 5));
        // A teacher that takes the same pixels as [N, 4, 4, 1] images.
        let image_teacher = TINY.replace(
            "input x: f32[N, 16]",
            "input xi: f32[N, 4, 4, 1]\nx = flatten(xi)",
        );
        let teacher = Distillation {
            teacher: tiny_model(&image_teacher),
            temperature: 2.0,
            alpha: 0.5,
        };
        let configs = [
            TrainConfig {
                latent_optimizer: LatentOptimizer::Bop {
                    threshold: 1e-6,
                    gamma: 1e-2,
                },
                ..cfg()
            },
            TrainConfig {
                float_optimizer: FloatOptimizer::Sgd { momentum: 0.9 },
                schedule: Schedule::Constant,
                weight_decay: 1e-4,
                ..cfg()
            },
            TrainConfig {
                distillation: Some(teacher),
                lipschitz: 1e-3,
                ..cfg()
            },
            TrainConfig {
                activation_estimator: Some(Estimator {
                    name: "approx_sign".into(),
                    params: vec![],
                }),
                ..cfg()
            },
        ];
        for (i, c) in configs.into_iter().enumerate() {
            let mut t = Trainer::new(&model, c).unwrap();
            let w0 = t.weights();
            let report = t.fit(&train, &test, &mut |_| {}).unwrap();
            assert_ne!(t.weights(), w0, "config {i}: no weight changed");
            let last = report.epochs.last().unwrap();
            assert!(last.train_loss.is_finite(), "config {i}");
            assert!(
                last.test_accuracy > 0.9,
                "config {i}: test accuracy {}",
                last.test_accuracy
            );
        }
    }

    #[test]
    fn a_teacher_with_other_classes_is_refused() {
        let model = tiny_model(TINY);
        let three = TINY
            .replace("f32[2, 8]", "f32[3, 8]")
            .replace("f32[2]", "f32[3]");
        let graph = bnnc_ir::text::parse(&three).unwrap();
        let mut w = model_weights(&model);
        w.insert("fc2.weight", Tensor::f32(vec![3, 8], vec![0.5; 24]));
        for k in ["gamma", "var"] {
            w.insert(format!("bn2.{k}"), Tensor::f32(vec![3], vec![1.0; 3]));
        }
        for k in ["beta", "mean"] {
            w.insert(format!("bn2.{k}"), Tensor::f32(vec![3], vec![0.0; 3]));
        }
        let teacher = Model::from_graph(graph, Some(&w), Path::new("t.ir")).unwrap();
        let c = TrainConfig {
            distillation: Some(Distillation {
                teacher,
                temperature: 2.0,
                alpha: 0.5,
            }),
            ..cfg()
        };
        let mut t = Trainer::new(&model, c).unwrap();
        let e = t.train_epoch(&separable(64, 9), &mut |_| {}).unwrap_err();
        assert!(
            e.to_string()
                .contains("the teacher has 3 logits, the student 2"),
            "{e}"
        );
    }

    /// The weights of `model`, by key.
    fn model_weights(model: &Model) -> Weights {
        let mut w = Weights::new();
        for (node, c) in model.graph.nodes.iter().zip(&model.consts) {
            if let (Op::Weight { key, .. }, Some(t)) = (&node.op, c) {
                w.insert(key.clone(), t.clone());
            }
        }
        w
    }

    #[test]
    fn bop_keeps_latent_magnitudes_and_only_flips_signs() {
        let model = tiny_model(TINY);
        let c = TrainConfig {
            latent_optimizer: LatentOptimizer::Bop {
                threshold: 1e-6,
                gamma: 1e-2,
            },
            ..cfg()
        };
        let mut t = Trainer::new(&model, c).unwrap();
        t.train_epoch(&separable(128, 6), &mut |_| {}).unwrap();
        let before = model
            .constant(
                model
                    .graph
                    .nodes
                    .iter()
                    .position(|n| n.name == "w1")
                    .map(|i| bnnc_ir::ValueId(i as u32))
                    .unwrap(),
            )
            .unwrap()
            .to_f32_vec();
        let after = t.weights().get("fc1.weight").unwrap().to_f32_vec();
        let flips = before.iter().zip(&after).filter(|(a, b)| a != b).count();
        assert!(flips > 0, "Bop flipped nothing");
        for (a, b) in before.iter().zip(&after) {
            assert!(a == b || *a == -*b, "{a} -> {b} is not a flip");
        }
    }

    #[test]
    fn estimator_override_reaches_activation_or_weight_signs_only() {
        let model = tiny_model(TINY);
        let approx = Estimator {
            name: "approx_sign".into(),
            params: vec![],
        };
        let m = with_estimators(&model, Some(&approx), None);
        let names: Vec<(String, String)> = m
            .graph
            .nodes
            .iter()
            .filter_map(|n| match &n.op {
                Op::Sign { estimator } => {
                    Some((n.name.clone(), estimator.as_ref().unwrap().name.clone()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            names,
            [
                ("wb1".into(), "ste".into()),
                ("a1".into(), "approx_sign".into()),
                ("wb2".into(), "ste".into())
            ]
        );
        let m = with_estimators(&model, None, Some(&approx));
        let a1 = m.graph.nodes.iter().find(|n| n.name == "a1").unwrap();
        let wb2 = m.graph.nodes.iter().find(|n| n.name == "wb2").unwrap();
        assert!(matches!(&a1.op, Op::Sign { estimator: Some(e) } if e.name == "ste"));
        assert!(matches!(&wb2.op, Op::Sign { estimator: Some(e) } if e.name == "approx_sign"));
    }

    #[test]
    fn models_that_do_not_fit_the_images_are_refused() {
        let data = separable(8, 7);
        let wrong_input = TINY.replace("input x: f32[N, 16]", "input x: f32[N, 15]");
        let wrong_input = wrong_input.replace("f32[8, 16]", "f32[8, 15]");
        let graph = bnnc_ir::text::parse(&wrong_input).unwrap();
        let model = tiny_model(TINY);
        let mut w = model_weights(&model);
        w.insert("fc1.weight", Tensor::f32(vec![8, 15], vec![0.1; 120]));
        let m = Model::from_graph(graph, Some(&w), Path::new("w.ir")).unwrap();
        let e = check_model_fits(&m, &data).unwrap_err().to_string();
        assert!(
            e.contains("input `x` is f32[N, 15]") && e.contains("multiplying to 16"),
            "{e}"
        );
        assert!(Trainer::new(&m, cfg())
            .unwrap()
            .train_epoch(&data, &mut |_| {})
            .is_err());

        let three = Dataset {
            classes: 3,
            ..data.clone()
        };
        let e = check_model_fits(&model, &three).unwrap_err().to_string();
        assert!(e.contains("C >= 3 classes"), "{e}");
        assert_eq!(
            check_model_fits(&model, &data).unwrap(),
            Fit {
                input_dims: vec![16],
                classes: 2
            }
        );
    }

    #[test]
    fn bad_configurations_are_errors() {
        let model = tiny_model(TINY);
        for c in [
            TrainConfig { epochs: 0, ..cfg() },
            TrainConfig { batch: 0, ..cfg() },
            TrainConfig {
                lr: f32::NAN,
                ..cfg()
            },
            TrainConfig {
                lipschitz: -1.0,
                ..cfg()
            },
            TrainConfig {
                latent_optimizer: LatentOptimizer::Bop {
                    threshold: 0.0,
                    gamma: 2.0,
                },
                ..cfg()
            },
            TrainConfig {
                activation_estimator: Some(Estimator {
                    name: "nope".into(),
                    params: vec![],
                }),
                ..cfg()
            },
        ] {
            assert!(Trainer::new(&model, c.clone()).is_err(), "{c:?}");
        }
        // More epochs than configured.
        let data = separable(64, 8);
        let mut t = Trainer::new(&model, TrainConfig { epochs: 1, ..cfg() }).unwrap();
        t.train_epoch(&data, &mut |_| {}).unwrap();
        assert!(matches!(
            t.train_epoch(&data, &mut |_| {}),
            Err(TrainError::State(_))
        ));
    }
}
