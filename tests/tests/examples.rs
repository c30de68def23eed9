//! Every model in `examples/` loads, prints and reparses to the same graph,
//! ships the weights `bnnc init --seed 1` writes, and runs in the reference
//! interpreter at batch 1 and 7 with outputs of the types the verifier
//! inferred; the corpus (`tests/corpus/`) ships the weights `bnnc init
//! --seed 1 --random-stats` writes.

use std::path::{Path, PathBuf};

use bnnc_ir::{Model, Tensor, TensorData};
use bnnc_runtime::inputs::random_inputs;
use bnnc_tests::runner::{model_files, repo_root};
use bnnc_train::init::{init_weights, InitOptions};

/// The `.ir` files in `examples/`, sorted.
fn example_models() -> Vec<PathBuf> {
    model_files("examples")
}

fn load(path: &Path) -> Model {
    Model::load(path).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn the_documented_examples_exist() {
    let names: Vec<String> = example_models()
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    for want in ["bireal_cnn", "mnist_mlp", "repconv_block", "xnor_layer"] {
        assert!(
            names.iter().any(|n| n == want),
            "examples/{want}.ir missing"
        );
    }
}

#[test]
fn every_example_starts_with_a_comment_header() {
    for path in example_models() {
        let src = std::fs::read_to_string(&path).unwrap();
        assert!(
            src.starts_with("# "),
            "{}: should open with a comment explaining the model",
            path.display()
        );
    }
}

#[test]
fn every_example_loads_and_reparses_to_the_same_graph() {
    for path in example_models() {
        let model = load(&path);
        let printed = bnnc_ir::text::print(&model.graph);
        let back = bnnc_ir::text::parse(&printed)
            .unwrap_or_else(|d| panic!("{}: reparse: {}", path.display(), d.render("<print>")));
        assert_eq!(back, model.graph, "{}", path.display());
        assert_eq!(bnnc_ir::text::print(&back), printed);
    }
}

#[test]
fn shipped_weights_are_what_init_seed_1_writes() {
    for path in example_models() {
        let model = load(&path);
        let weights = init_weights(
            &model.graph,
            &model.types,
            InitOptions {
                seed: 1,
                random_stats: false,
            },
        )
        .unwrap();
        let file = Model::weights_path(&model.graph, &path).expect("examples name weights");
        let shipped = std::fs::read(&file).unwrap();
        assert!(
            weights.to_bytes().unwrap() == shipped,
            "{} differs from `bnnc init {} --seed 1`; regenerate it",
            file.display(),
            path.display()
        );
    }
}

fn all_finite(t: &Tensor) -> bool {
    match &t.data {
        TensorData::F32(v) => v.iter().all(|x| x.is_finite()),
        TensorData::Int(_) | TensorData::Bits(_) => true,
    }
}

#[test]
fn every_example_runs_at_batch_1_and_7() {
    for path in example_models() {
        let model = load(&path);
        for batch in [1, 7] {
            let inputs = random_inputs(&model.graph, batch, 42).unwrap();
            let outputs = bnnc_runtime::run(&model, &inputs)
                .unwrap_or_else(|e| panic!("{} at batch {batch}: {e}", path.display()));
            assert_eq!(outputs.len(), model.graph.outputs.len());
            for (&v, t) in model.graph.outputs.iter().zip(&outputs) {
                let ty = model.ty(v);
                let what = format!("{} output `{}`", path.display(), model.graph.node(v).name);
                assert_eq!(t.elem, ty.elem, "{what}");
                assert_eq!(t.dims, ty.dims(batch), "{what} at batch {batch}");
                assert_eq!(t.numel(), ty.numel(batch), "{what}");
                assert!(t.check_values().is_none(), "{what}: value outside its type");
                assert!(all_finite(t), "{what}: non-finite values");
            }
        }
    }
}

/// Row 3 of a batch of 7 equals that row run alone: examples mix nothing across
/// the batch.
#[test]
fn batch_rows_are_independent() {
    for path in example_models() {
        let model = load(&path);
        let batched = |vs: &[bnnc_ir::ValueId]| vs.iter().all(|&v| model.ty(v).is_batched());
        if !batched(&model.graph.inputs()) || !batched(&model.graph.outputs) {
            continue;
        }
        let inputs = random_inputs(&model.graph, 7, 5).unwrap();
        let full = bnnc_runtime::run(&model, &inputs).unwrap();
        let row = |t: &Tensor, r: usize| -> Tensor {
            let per = t.numel() / t.dims[0];
            let mut dims = t.dims.clone();
            dims[0] = 1;
            let data = match &t.data {
                TensorData::F32(v) => TensorData::F32(v[r * per..(r + 1) * per].to_vec()),
                TensorData::Int(_) | TensorData::Bits(_) => {
                    TensorData::Int(t.as_int().unwrap()[r * per..(r + 1) * per].to_vec())
                }
            };
            Tensor {
                elem: t.elem,
                dims,
                data,
            }
        };
        let one: Vec<Tensor> = inputs.iter().map(|t| row(t, 3)).collect();
        let alone = bnnc_runtime::run(&model, &one).unwrap();
        for (a, f) in alone.iter().zip(&full) {
            assert_eq!(a, &row(f, 3), "{}", path.display());
        }
    }
}

/// The model in README.md's tour parses, verifies, initialises and runs.
#[test]
fn the_readme_model_works() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let blocks: Vec<&str> = readme
        .split("```text\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .filter(|b| b.lines().any(|l| l.starts_with("model ")))
        .collect();
    assert!(!blocks.is_empty(), "README.md shows a model");
    for src in blocks {
        let graph = bnnc_ir::text::parse(src).unwrap_or_else(|d| panic!("{}", d.render("README")));
        let types =
            bnnc_ir::verify::verify(&graph).unwrap_or_else(|d| panic!("{}", d.render("README")));
        let weights = init_weights(&graph, &types, InitOptions::default()).unwrap();
        let model = Model::from_graph(graph, Some(&weights), Path::new("README.md")).unwrap();
        let inputs = random_inputs(&model.graph, 2, 0).unwrap();
        bnnc_runtime::run(&model, &inputs).unwrap();
    }
}

/// The corpus ships the weights `bnnc init MODEL --seed 1 --random-stats`
/// writes, so other tests can load it with `Model::load`; each file opens
/// with a comment saying what it covers.
#[test]
fn corpus_weights_are_init_seed_1_with_random_stats() {
    let files = model_files("tests/corpus");
    assert!(files.len() >= 12, "the corpus has {} models", files.len());
    for p in files {
        let src = std::fs::read_to_string(&p).unwrap();
        assert!(
            src.starts_with("# "),
            "{}: should open with a comment saying what it covers",
            p.display()
        );
        let model = load(&p);
        let fresh = init_weights(
            &model.graph,
            &model.types,
            InitOptions {
                seed: 1,
                random_stats: true,
            },
        )
        .unwrap();
        let regenerated = Model::from_graph(model.graph.clone(), Some(&fresh), &p).unwrap();
        assert_eq!(
            regenerated.consts,
            model.consts,
            "{}: the shipped weights are not `bnnc init {} --seed 1 --random-stats`",
            p.display(),
            p.display()
        );
    }
}
