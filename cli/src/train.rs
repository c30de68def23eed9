//! `bnnc train`: the command-line glue around the trainer of `bnnc-runtime`
//! ([`bnnc_train::trainer`]).
//!
//! This module parses the options into a [`TrainConfig`], loads the model and an
//! IDX dataset, draws a progress bar (on standard error, only when it is a
//! terminal), prints one line per epoch, and after every epoch writes
//!
//! - the weights (safetensors; by default the weights file the model names, so
//!   `bnnc check/run/compile MODEL.ir` use the trained weights at once; that
//!   path must lie inside the model's folder, see [`crate::output`]),
//! - the per-epoch curve as CSV (`<weights stem>.train.csv`, see [`CSV_HEADER`]),
//! - the curve as an SVG plot (`<weights stem>.train.svg`): training loss (sampled
//!   during each epoch) and test loss per epoch on the left, training and test
//!   accuracy on the right.
//!
//! Writing after every epoch means an interrupted run leaves the last finished
//! epoch on disk. After the last epoch the test set is evaluated once more by the
//! reference interpreter ([`bnnc_runtime::run`]): that accuracy is the accuracy of
//! the model `bnnc compile` builds, and it is the one reported last.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use bnnc_ir::error::escape_path;
use bnnc_ir::op::ESTIMATORS;
use bnnc_ir::{Estimator, Model};
use bnnc_train::autodiff::WeightTransform;
use bnnc_train::data::{load_idx_dir, DataError, Split};
use bnnc_train::trainer::{
    check_model_fits, Distillation, EpochRecord, FloatOptimizer, LatentOptimizer, Progress,
    Schedule, TrainConfig, TrainError, Trainer,
};
use clap::{Args, ValueEnum};

use crate::commands::CliError;

/// The long help of `bnnc train`.
pub const LONG_ABOUT: &str = "\
Train a model on an IDX image dataset (MNIST, Fashion-MNIST: the four files \
train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, \
t10k-labels-idx1-ubyte in --data, each optionally .gz) with bnnc-runtime's \
autodiff over the model's own graph, and write the trained weights.

The model must exist with its weights (`bnnc init MODEL.ir` writes initial ones), \
take one f32 input whose non-batch dims hold one 28x28 image (f32[N, 784], \
f32[N, 28, 28, 1], ...; pixels are given in [0, 1]) and have one f32[N, C] output \
of logits, C >= 10.

Each epoch visits the training images in an order fixed by --seed and the epoch \
number; a step runs the batch forward (batch statistics), takes softmax \
cross-entropy of the logits (plus distillation from --teacher, plus the Lipschitz \
penalty of --lipschitz), and updates every parameter: latent weights (f32 weights \
used only through sign) with Adam and clipping to [-1, 1], or with Bop \
(--optimizer bop: flip a sign when the gradient's moving average exceeds \
--bop-threshold); every other float parameter with --float-optimizer. The learning \
rate follows --schedule over all steps. Sign gradients use the estimator each sign \
op names in the model (estimator=...), unless --estimator (signs of activations) or \
--weight-estimator (signs of weights) replaces them all.

After each epoch the test set is evaluated with running statistics, one line is \
printed, and three files are written, each whole or not at all: the weights (by default \
the weights file the model names, overwritten, which must then lie inside the model's \
folder: a `weights` path that is absolute or leaves it, by `..` or a symbolic link, is \
refused, and -o writes elsewhere), the per-epoch curve as CSV and as an SVG plot (by \
default beside the weights: STEM.train.csv, STEM.train.svg for weights STEM.safetensors). \
After the last epoch the test set runs through the reference interpreter, the exact \
meaning of the model that `bnnc compile` builds; that accuracy is printed last. The \
same options, data and initial weights give bit-identical trained weights.";

/// The examples of `bnnc train --help`.
pub const AFTER_HELP: &str = "\
Examples:
  bnnc init examples/train/mnist_cnn.ir --seed 1
  bnnc train examples/train/mnist_cnn.ir --data data/mnist --epochs 10 --batch 64 --lr 0.002
  bnnc train examples/train/fashion_cnn.ir --data path/to/fashion-mnist \\
      --epochs 1 --estimator dte -o /tmp/fashion_dte.safetensors
  bnnc train model.ir --data data/mnist --epochs 1 --limit 2000 --test-limit 500   # smoke test";

/// Options of `bnnc train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The model file (.ir); its weights file must exist (`bnnc init` writes one).
    pub file: PathBuf,
    /// Folder with the IDX files of the dataset (train-* and t10k-*, optionally .gz).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Passes over the training images.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub epochs: u64,
    /// Images per training step.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub batch: u64,
    /// Peak learning rate (of both optimizers; Bop's own rate is --bop-gamma).
    #[arg(long, default_value_t = 0.001)]
    pub lr: f32,
    /// How the learning rate changes over all steps.
    #[arg(long, value_enum, default_value_t = ScheduleArg::Cosine)]
    pub schedule: ScheduleArg,
    /// The optimizer of latent weights (f32 weights used only through sign).
    #[arg(long, value_enum, default_value_t = LatentOptimizerArg::Adam)]
    pub optimizer: LatentOptimizerArg,
    /// Bop: flip a binary weight when |moving average of its gradient| exceeds this.
    #[arg(long, default_value_t = 1e-6)]
    pub bop_threshold: f32,
    /// Bop: the adaptivity rate of the gradient's moving average.
    #[arg(long, default_value_t = 1e-4)]
    pub bop_gamma: f32,
    /// The optimizer of every other float parameter.
    #[arg(long, value_enum, default_value_t = FloatOptimizerArg::Adam)]
    pub float_optimizer: FloatOptimizerArg,
    /// SGD momentum (with --float-optimizer sgd).
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f32,
    /// Weight decay (AdamW's decoupled; L2 for SGD) of float conv/dense weights
    /// (not of batch-norm parameters, biases or latent weights).
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f32,
    /// Replace the gradient estimator of every sign of an activation:
    /// NAME or NAME:PARAM=VALUE,... (ste, identity, approx_sign, swish_sign,
    /// dte, fda, learned; e.g. ste:clip=1.5).
    #[arg(long, value_name = "NAME[:P=V,..]")]
    pub estimator: Option<String>,
    /// Replace the gradient estimator of every sign of a weight (sign(@w)), in
    /// the same form as --estimator.
    #[arg(long, value_name = "NAME[:P=V,..]")]
    pub weight_estimator: Option<String>,
    /// A trained teacher model (same input and classes) to distil from.
    #[arg(long, value_name = "T.ir")]
    pub teacher: Option<PathBuf>,
    /// Distillation temperature.
    #[arg(long, default_value_t = 4.0, requires = "teacher")]
    pub temperature: f32,
    /// Weight of the distillation term: loss = (1 - alpha) CE + alpha T^2 KL.
    #[arg(long, default_value_t = 0.5, requires = "teacher")]
    pub alpha: f32,
    /// Weight of the Lipschitz (spectral-norm) penalty on binary weights; 0 is off.
    #[arg(long, default_value_t = 0.0)]
    pub lipschitz: f32,
    /// Standardise this latent weight per output channel before its sign,
    /// w' = (w - mean) / sqrt(var + 1e-5) (IR-Net/DIR-Net weight balancing,
    /// AdaBin's weight equalisation). Repeatable; the saved weights are the
    /// standardised ones, so the model computes what training computed.
    #[arg(long, value_name = "KEY")]
    pub standardize: Vec<String>,
    /// Derive the weight ALPHA at every step as XNOR-Net's per-output-channel
    /// scale mean|W| of the weight WEIGHT (not trained itself; its gradient flows
    /// into WEIGHT). Repeatable.
    #[arg(long, value_name = "ALPHA=WEIGHT")]
    pub xnor_scale: Vec<String>,
    /// Seed of the visiting order and of learnable estimator initialisation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Train on the first N training images only (for smoke tests).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Evaluate on the first N test images only (for smoke tests).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub test_limit: Option<u64>,
    /// Write the trained weights here (default: the weights file the model
    /// names, if inside the model's folder).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Write the per-epoch CSV here (default: beside the weights file
    /// STEM.safetensors, STEM.train.csv).
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Write the SVG plot here (default: beside the weights, STEM.train.svg).
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
    /// No progress bar (the per-epoch lines are still printed).
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// Learning-rate schedules (`--schedule`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ScheduleArg {
    /// The same rate throughout.
    Constant,
    /// Cosine decay from --lr to 0 over all steps.
    Cosine,
}

/// Optimizers of latent weights (`--optimizer`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LatentOptimizerArg {
    /// Adam on the latent weights, then clip them to [-1, 1].
    Adam,
    /// Bop (Helwegen et al., 2019): flip signs on a gradient moving average.
    Bop,
}

/// Optimizers of float parameters (`--float-optimizer`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FloatOptimizerArg {
    /// Adam with decoupled weight decay (AdamW).
    Adam,
    /// SGD with momentum (--momentum).
    Sgd,
}

/// Why `bnnc train` failed. Each renders as a complete one-line message.
#[derive(Debug, thiserror::Error)]
pub enum TrainCliError {
    /// The options do not fit each other or the model.
    #[error("{}: error: {message}", bnnc_ir::error::escape_path(file))]
    Usage { file: PathBuf, message: String },
    /// The dataset could not be read.
    #[error(
        "{}: error: cannot read the dataset: {source}",
        bnnc_ir::error::escape_path(dir)
    )]
    Data {
        dir: PathBuf,
        #[source]
        source: DataError,
    },
    /// The trainer failed (a model it cannot train, a numeric failure).
    #[error("{}: error: {source}", bnnc_ir::error::escape_path(file))]
    Train {
        file: PathBuf,
        #[source]
        source: TrainError,
    },
    /// An output file could not be written.
    #[error(
        "{}: error: cannot write: {message}",
        bnnc_ir::error::escape_path(path)
    )]
    Write { path: PathBuf, message: String },
}

/// Columns of the CSV `bnnc train` writes, one row per epoch. Accuracies are
/// fractions in [0, 1]; `test_accuracy_interpreter` (the reference
/// interpreter's accuracy) is filled in the last row only.
pub const CSV_HEADER: &str = "epoch,lr,train_loss,train_accuracy,test_loss,test_accuracy,\
seconds,images_per_second,test_accuracy_interpreter";

/// Parses `NAME` or `NAME:PARAM=VALUE,PARAM=VALUE` into an estimator attribute,
/// checking the name and parameter names against [`ESTIMATORS`] (what the values
/// mean is the trainer's business; it checks them when it builds the model).
pub fn parse_estimator(s: &str) -> Result<Estimator, String> {
    let (name, rest) = match s.split_once(':') {
        Some((n, r)) => (n.trim(), Some(r)),
        None => (s.trim(), None),
    };
    let names: Vec<&str> = ESTIMATORS.iter().map(|(n, _)| *n).collect();
    let Some(&(_, allowed)) = ESTIMATORS.iter().find(|(n, _)| *n == name) else {
        return Err(format!(
            "unknown estimator `{name}`; expected one of {}",
            names.join(", ")
        ));
    };
    let mut params: Vec<(String, f64)> = Vec::new();
    for item in rest.into_iter().flat_map(|r| r.split(',')) {
        let Some((k, v)) = item.split_once('=') else {
            return Err(format!(
                "estimator parameter `{item}` is not PARAM=VALUE (e.g. ste:clip=1.5)"
            ));
        };
        let k = k.trim();
        if !allowed.contains(&k) {
            return Err(format!(
                "estimator `{name}` has no parameter `{k}`; it takes {}",
                if allowed.is_empty() {
                    "none".to_string()
                } else {
                    allowed.join(", ")
                }
            ));
        }
        let v: f64 = v
            .trim()
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
            .ok_or_else(|| format!("estimator parameter `{k}`: `{v}` is not a finite number"))?;
        if params.iter().any(|(p, _)| p == k) {
            return Err(format!("estimator parameter `{k}` given twice"));
        }
        params.push((k.to_string(), v));
    }
    params.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Estimator {
        name: name.to_string(),
        params,
    })
}

/// One row of the CSV (see [`CSV_HEADER`]).
fn csv_row(r: &EpochRecord, interpreter_accuracy: Option<f64>) -> String {
    format!(
        "{},{:.4e},{:.6},{:.6},{:.6},{:.6},{:.3},{:.1},{}",
        r.epoch,
        r.lr,
        r.train_loss,
        r.train_accuracy,
        r.test_loss,
        r.test_accuracy,
        r.seconds,
        r.images_per_second,
        interpreter_accuracy.map_or(String::new(), |a| format!("{a:.6}"))
    )
}

/// The CSV text of a training curve: [`CSV_HEADER`], then one row per record;
/// `interpreter_accuracy` goes into the last row.
pub fn curve_csv(records: &[EpochRecord], interpreter_accuracy: Option<f64>) -> String {
    let mut s = String::from(CSV_HEADER);
    s.push('\n');
    for (i, r) in records.iter().enumerate() {
        let last = i + 1 == records.len();
        s.push_str(&csv_row(r, interpreter_accuracy.filter(|_| last)));
        s.push('\n');
    }
    s
}

/// Training loss sampled during training: `(fractional epoch, mean loss of the
/// steps since the previous sample)`.
pub type LossSamples = Vec<(f64, f64)>;

/// Renders the training curve as an SVG document: loss on the left (the sampled
/// training loss as a line, the test loss per epoch as a line with points), and
/// accuracy in percent on the right (training and test per epoch; the reference
/// interpreter's final accuracy as a point). Text is left to the SVG viewer's
/// fonts (plotters' SVG backend writes `<text>` elements), so no font files are
/// needed.
pub fn curve_svg(
    title: &str,
    records: &[EpochRecord],
    samples: &[(f64, f64)],
    interpreter_accuracy: Option<f64>,
) -> Result<String, String> {
    use plotters::prelude::*;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1000, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let root = root
            .titled(title, ("sans-serif", 20))
            .map_err(|e| e.to_string())?;
        let (left, right) = root.split_horizontally(500);
        let max_epoch = records
            .iter()
            .map(|r| r.epoch as f64)
            .chain(samples.iter().map(|s| s.0))
            .fold(1.0f64, f64::max);
        let losses = samples
            .iter()
            .map(|s| s.1)
            .chain(records.iter().flat_map(|r| [r.train_loss, r.test_loss]))
            .filter(|v| v.is_finite());
        let max_loss = losses.fold(0.0f64, f64::max).max(1e-3) * 1.05;

        let mut chart = ChartBuilder::on(&left)
            .caption("loss", ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .build_cartesian_2d(0.0..max_epoch, 0.0..max_loss)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc("loss")
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(LineSeries::new(samples.iter().copied(), &BLUE))
            .map_err(|e| e.to_string())?
            .label("train (sampled)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLUE));
        chart
            .draw_series(
                LineSeries::new(
                    records.iter().map(|r| (r.epoch as f64, r.test_loss)),
                    RED.stroke_width(2),
                )
                .point_size(3),
            )
            .map_err(|e| e.to_string())?
            .label("test")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], RED));
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;

        let accs = records
            .iter()
            .flat_map(|r| [r.train_accuracy, r.test_accuracy])
            .chain(interpreter_accuracy)
            .map(|a| a * 100.0);
        let min_acc = accs.fold(100.0f64, f64::min);
        let lo = (min_acc - 2.0).clamp(0.0, 99.0).floor();
        let mut chart = ChartBuilder::on(&right)
            .caption("accuracy", ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .build_cartesian_2d(0.0..max_epoch, lo..100.0)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc("%")
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(
                LineSeries::new(
                    records
                        .iter()
                        .map(|r| (r.epoch as f64, r.train_accuracy * 100.0)),
                    &BLUE,
                )
                .point_size(3),
            )
            .map_err(|e| e.to_string())?
            .label("train (during the epoch)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLUE));
        chart
            .draw_series(
                LineSeries::new(
                    records
                        .iter()
                        .map(|r| (r.epoch as f64, r.test_accuracy * 100.0)),
                    RED.stroke_width(2),
                )
                .point_size(3),
            )
            .map_err(|e| e.to_string())?
            .label("test")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], RED));
        if let (Some(a), Some(last)) = (interpreter_accuracy, records.last()) {
            chart
                .draw_series(std::iter::once(Circle::new(
                    (last.epoch as f64, a * 100.0),
                    6,
                    GREEN.stroke_width(2),
                )))
                .map_err(|e| e.to_string())?
                .label("test, reference interpreter")
                .legend(|(x, y)| Circle::new((x + 9, y), 5, GREEN.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// `path` with its extension replaced by `suffix` (e.g. `.train.csv`).
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!("{stem}{suffix}"))
}

/// Writes `bytes` to `path` by [`bnnc_ir::files::write_atomic`], so a reader
/// (or an interrupted run) never sees half a file.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainCliError> {
    bnnc_ir::files::write_atomic(path, bytes).map_err(|e| TrainCliError::Write {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// `12,345`-style grouping for the progress line.
fn grouped(v: f64) -> String {
    crate::stats::thousands(v.max(0.0).round() as u64)
}

/// Runs `bnnc train` (see [`LONG_ABOUT`]); normal output (one line per epoch and
/// a summary) goes to `out`, the progress bar to standard error.
pub fn run(a: &TrainArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let file = &a.file;
    let usage = |message: String| TrainCliError::Usage {
        file: file.clone(),
        message,
    };
    if !(a.lr.is_finite() && a.lr > 0.0) {
        return Err(usage(format!("--lr must be a positive number, found {}", a.lr)).into());
    }
    for (name, v) in [
        ("--weight-decay", a.weight_decay),
        ("--lipschitz", a.lipschitz),
        ("--momentum", a.momentum),
        ("--bop-threshold", a.bop_threshold),
        ("--bop-gamma", a.bop_gamma),
    ] {
        if !(v.is_finite() && v >= 0.0) {
            return Err(usage(format!("{name} must be a number >= 0, found {v}")).into());
        }
    }
    if !(a.temperature.is_finite() && a.temperature > 0.0) {
        return Err(usage(format!(
            "--temperature must be positive, found {}",
            a.temperature
        ))
        .into());
    }
    if !(0.0..=1.0).contains(&a.alpha) {
        return Err(usage(format!("--alpha must be in [0, 1], found {}", a.alpha)).into());
    }
    let mut transforms = Vec::new();
    for key in &a.standardize {
        transforms.push((key.clone(), WeightTransform::Standardize { eps: 1e-5 }));
    }
    for spec in &a.xnor_scale {
        let Some((alpha, of)) = spec
            .split_once('=')
            .filter(|(l, r)| !l.is_empty() && !r.is_empty())
        else {
            return Err(usage(format!(
                "--xnor-scale takes ALPHA=WEIGHT (two weight keys), found `{spec}`"
            ))
            .into());
        };
        transforms.push((
            alpha.to_string(),
            WeightTransform::XnorScale { of: of.to_string() },
        ));
    }
    let activation_estimator = a
        .estimator
        .as_deref()
        .map(parse_estimator)
        .transpose()
        .map_err(|m| usage(format!("--estimator: {m}")))?;
    let weight_estimator = a
        .weight_estimator
        .as_deref()
        .map(parse_estimator)
        .transpose()
        .map_err(|m| usage(format!("--weight-estimator: {m}")))?;

    // The model and its weights.
    let src = Model::read_text(file)?;
    let graph = Model::parse_checked(&src, file)?;
    let weights_path = match Model::weights_path(&graph, file) {
        None => {
            return Err(usage(format!(
                "model `{}` names no weights file (no `weights \"...\"` line); training \
                 needs initial weights",
                graph.name
            ))
            .into())
        }
        Some(p) if !p.exists() => {
            return Err(bnnc_ir::Error::Model {
                file: file.clone(),
                diag: bnnc_ir::Diagnostic::new(
                    graph.weights_loc,
                    format!(
                        "the weights file {} does not exist; write initial weights with \
                         `bnnc init {}` first",
                        escape_path(&p),
                        escape_path(file)
                    ),
                ),
            }
            .into())
        }
        Some(p) => p,
    };
    let model = Model::load(file)?;
    let out_path = match &a.output {
        Some(p) => p.clone(),
        None => {
            crate::output::model_weights_for_writing(file, &graph, "-o")?.unwrap_or(weights_path)
        }
    };
    let csv_path = a
        .csv
        .clone()
        .unwrap_or_else(|| beside(&out_path, ".train.csv"));
    let svg_path = a
        .plot
        .clone()
        .unwrap_or_else(|| beside(&out_path, ".train.svg"));

    // Refuse unwritable destinations now rather than after the first epoch.
    for p in [&out_path, &csv_path, &svg_path] {
        let dir = p.parent().filter(|d| !d.as_os_str().is_empty());
        if dir.is_some_and(|d| !d.is_dir()) {
            return Err(TrainCliError::Write {
                path: p.clone(),
                message: "its folder does not exist".into(),
            }
            .into());
        }
    }
    let teacher = match &a.teacher {
        Some(t) => Some(Distillation {
            teacher: Model::load(t)?,
            temperature: a.temperature,
            alpha: a.alpha,
        }),
        None => None,
    };

    // The data.
    if !a.data.is_dir() {
        return Err(usage(format!(
            "--data {}: not a folder (give the folder holding train-images-idx3-ubyte[.gz] \
             and the other three IDX files)",
            escape_path(&a.data)
        ))
        .into());
    }
    let data_err = |source| TrainCliError::Data {
        dir: a.data.clone(),
        source,
    };
    let mut train = load_idx_dir(&a.data, Split::Train).map_err(data_err)?;
    let mut test = load_idx_dir(&a.data, Split::Test).map_err(data_err)?;
    if let Some(n) = a.limit {
        train = train.subset(n as usize);
    }
    if let Some(n) = a.test_limit {
        test = test.subset(n as usize);
    }
    check_model_fits(&model, &train).map_err(|source| TrainCliError::Train {
        file: file.clone(),
        source,
    })?;
    if let Some(d) = &teacher {
        check_model_fits(&d.teacher, &train).map_err(|source| TrainCliError::Train {
            file: a.teacher.clone().unwrap_or_default(),
            source,
        })?;
    }

    let cfg = TrainConfig {
        epochs: a.epochs as usize,
        batch: a.batch as usize,
        lr: a.lr,
        schedule: match a.schedule {
            ScheduleArg::Constant => Schedule::Constant,
            ScheduleArg::Cosine => Schedule::Cosine,
        },
        float_optimizer: match a.float_optimizer {
            FloatOptimizerArg::Adam => FloatOptimizer::Adam,
            FloatOptimizerArg::Sgd => FloatOptimizer::Sgd {
                momentum: a.momentum,
            },
        },
        latent_optimizer: match a.optimizer {
            LatentOptimizerArg::Adam => LatentOptimizer::Adam { clip: 1.0 },
            LatentOptimizerArg::Bop => LatentOptimizer::Bop {
                threshold: a.bop_threshold,
                gamma: a.bop_gamma,
            },
        },
        weight_decay: a.weight_decay,
        activation_estimator,
        weight_estimator,
        seed: a.seed,
        distillation: teacher,
        lipschitz: a.lipschitz,
        transforms,
        ..TrainConfig::default()
    };
    let train_err = |source| TrainCliError::Train {
        file: file.clone(),
        source,
    };
    let mut trainer = Trainer::new(&model, cfg).map_err(train_err)?;

    let say = |out: &mut dyn Write, line: String| -> Result<(), CliError> {
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .map_err(CliError::Stdout)
    };
    say(
        out,
        format!(
            "training {} on {} ({} training images, {} test images), {} epoch(s) of {} steps, \
             batch {}",
            escape_path(file),
            escape_path(&a.data),
            train.n,
            test.n,
            a.epochs,
            trainer.steps_per_epoch(train.n),
            a.batch
        ),
    )?;

    let started = Instant::now();
    let mut records: Vec<EpochRecord> = Vec::new();
    let mut samples: LossSamples = Vec::new();
    let steps = trainer.steps_per_epoch(train.n);
    // About 20 loss samples per epoch for the plot.
    let sample_every = steps.div_ceil(20).max(1);
    for epoch in 0..a.epochs as usize {
        let bar = progress_bar(a.quiet, steps as u64, epoch, a.epochs as usize);
        let (mut sum, mut count) = (0.0f64, 0usize);
        let stats = trainer
            .train_epoch(&train, &mut |p: &Progress| {
                if let Progress::Step(s) = p {
                    sum += f64::from(s.batch_loss);
                    count += 1;
                    if s.step % sample_every == 0 || s.step == s.steps {
                        samples.push((
                            s.epoch as f64 + s.step as f64 / s.steps as f64,
                            sum / count as f64,
                        ));
                        (sum, count) = (0.0, 0);
                    }
                    bar.set_position(s.step as u64);
                    bar.set_message(format!(
                        "loss {:.4}  acc {:.2}%  {} img/s",
                        s.loss,
                        s.accuracy * 100.0,
                        grouped(s.images_per_second)
                    ));
                }
            })
            .map_err(train_err)?;
        bar.set_message("evaluating on the test set");
        let record = trainer.finish_epoch(stats, &test).map_err(train_err)?;
        bar.finish_and_clear();
        say(
            out,
            format!(
                "epoch {}/{}: lr {:.2e}, train loss {:.4}, train acc {:.2}%, test loss {:.4}, \
                 test acc {:.2}%, {:.1} s ({} img/s)",
                record.epoch,
                a.epochs,
                record.lr,
                record.train_loss,
                record.train_accuracy * 100.0,
                record.test_loss,
                record.test_accuracy * 100.0,
                record.seconds,
                grouped(record.images_per_second)
            ),
        )?;
        records.push(record);
        save_all(
            &trainer,
            &graph.name,
            &out_path,
            &csv_path,
            &svg_path,
            &records,
            &samples,
            None,
        )?;
    }

    let exact_started = Instant::now();
    let exact = trainer.evaluate_interpreter(&test).map_err(train_err)?;
    save_all(
        &trainer,
        &graph.name,
        &out_path,
        &csv_path,
        &svg_path,
        &records,
        &samples,
        Some(exact.accuracy()),
    )?;
    let total = started.elapsed().as_secs_f64();
    say(
        out,
        format!(
            "test accuracy (reference interpreter, trained weights): {:.2}% ({}/{}), \
             evaluated in {:.1} s",
            exact.accuracy() * 100.0,
            exact.correct,
            exact.total,
            exact_started.elapsed().as_secs_f64()
        ),
    )?;
    say(
        out,
        format!(
            "wrote {} (weights), {} (curve), {} (plot); total {:.1} s",
            escape_path(&out_path),
            escape_path(&csv_path),
            escape_path(&svg_path),
            total
        ),
    )
}

/// The progress bar of one epoch, on standard error (hidden when standard error
/// is not a terminal, and with --quiet).
fn progress_bar(quiet: bool, steps: u64, epoch: usize, epochs: usize) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    let target = if quiet {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    };
    let style = ProgressStyle::with_template(
        "{prefix} [{bar:24.cyan/blue}] {pos}/{len} {msg} [{elapsed}<{eta}]",
    )
    .expect("a valid template")
    .progress_chars("=> ");
    ProgressBar::with_draw_target(Some(steps), target)
        .with_style(style)
        .with_prefix(format!("epoch {}/{}", epoch + 1, epochs))
}

/// Writes the weights, the CSV and the SVG plot.
#[allow(clippy::too_many_arguments)]
fn save_all(
    trainer: &Trainer,
    model_name: &str,
    weights_path: &Path,
    csv_path: &Path,
    svg_path: &Path,
    records: &[EpochRecord],
    samples: &[(f64, f64)],
    interpreter_accuracy: Option<f64>,
) -> Result<(), CliError> {
    let bytes = trainer
        .weights()
        .to_bytes()
        .map_err(|e| TrainCliError::Write {
            path: weights_path.to_path_buf(),
            message: e.to_string(),
        })?;
    write_atomic(weights_path, &bytes)?;
    write_atomic(
        csv_path,
        curve_csv(records, interpreter_accuracy).as_bytes(),
    )?;
    let title = format!("bnnc train: {model_name}");
    let svg = curve_svg(&title, records, samples, interpreter_accuracy).map_err(|message| {
        TrainCliError::Write {
            path: svg_path.to_path_buf(),
            message,
        }
    })?;
    write_atomic(svg_path, svg.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(epoch: usize, loss: f64, acc: f64) -> EpochRecord {
        EpochRecord {
            epoch,
            lr: 0.001,
            train_loss: loss,
            train_accuracy: acc,
            test_loss: loss * 1.1,
            test_accuracy: acc - 0.01,
            seconds: 1.5,
            images_per_second: 1000.0,
        }
    }

    #[test]
    fn estimator_names_and_params_are_parsed_and_checked() {
        let e = parse_estimator("ste:clip=1.5").unwrap();
        assert_eq!(e.name, "ste");
        assert_eq!(e.params, vec![("clip".to_string(), 1.5)]);
        let e = parse_estimator("dte:t_max=10,k_min=1").unwrap();
        assert_eq!(
            e.params,
            vec![("k_min".to_string(), 1.0), ("t_max".to_string(), 10.0)]
        );
        assert_eq!(parse_estimator("approx_sign").unwrap().params, vec![]);
        assert!(parse_estimator("sgn")
            .unwrap_err()
            .contains("unknown estimator `sgn`"));
        assert!(parse_estimator("ste:beta=1")
            .unwrap_err()
            .contains("no parameter `beta`"));
        assert!(parse_estimator("ste:clip")
            .unwrap_err()
            .contains("PARAM=VALUE"));
        assert!(parse_estimator("ste:clip=inf")
            .unwrap_err()
            .contains("finite"));
        assert!(parse_estimator("ste:clip=1,clip=2")
            .unwrap_err()
            .contains("twice"));
    }

    #[test]
    fn csv_has_one_row_per_epoch_and_the_exact_accuracy_last() {
        let csv = curve_csv(&[record(1, 0.5, 0.9), record(2, 0.3, 0.95)], Some(0.9412));
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], CSV_HEADER);
        let cols = CSV_HEADER.split(',').count();
        for l in &lines[1..] {
            assert_eq!(l.split(',').count(), cols, "{l}");
        }
        assert!(lines[1].starts_with("1,") && lines[1].ends_with(','));
        assert!(lines[2].starts_with("2,") && lines[2].ends_with(",0.941200"));
        assert!(lines[2].contains(",0.300000,0.950000,"));
    }

    #[test]
    fn svg_plot_has_both_panels_and_every_series() {
        let recs = [record(1, 0.5, 0.9), record(2, 0.3, 0.95)];
        let samples = [(0.5, 0.8), (1.0, 0.5), (1.5, 0.4), (2.0, 0.3)];
        let svg = curve_svg("bnnc train: t", &recs, &samples, Some(0.94)).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        for text in [
            "bnnc train: t",
            "loss",
            "accuracy",
            "train (sampled)",
            "test, reference interpreter",
        ] {
            assert!(svg.contains(text), "missing {text}");
        }
        assert!(svg.matches("<polyline").count() >= 3);
        // A single epoch and a constant zero loss still plot (degenerate ranges).
        let one = [record(1, 0.0, 1.0)];
        assert!(curve_svg("x", &one, &[], None).is_ok());
    }

    #[test]
    fn default_outputs_sit_beside_the_weights() {
        let p = Path::new("examples/train/mnist_cnn.safetensors");
        assert_eq!(
            beside(p, ".train.csv"),
            Path::new("examples/train/mnist_cnn.train.csv")
        );
    }
}
