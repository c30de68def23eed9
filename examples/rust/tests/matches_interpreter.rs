//! The natively compiled model (linked by `build.rs`) computes exactly what
//! the reference interpreter computes on the same model and inputs, and its
//! safe wrapper rejects bad arguments.

use std::path::Path;

use bnnc_example_rust::{classify, mnist_mlp, sample_images};
use bnnc_ir::{Model, Tensor, TensorData};

fn load() -> Model {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../mnist_mlp.ir");
    Model::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// The sample images, then `extra` pseudo-random images with values around
/// the 0.5 threshold (exactly 0.5 included).
fn inputs(extra: usize) -> Vec<f32> {
    let mut pixels = sample_images();
    let mut s = 0x9e37_79b9_7f4a_7c15_u64;
    for _ in 0..extra * mnist_mlp::INPUT_X_LEN {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        pixels.push(((s >> 33) % 9) as f32 / 8.0);
    }
    pixels
}

fn interpreter(model: &Model, pixels: &[f32]) -> Vec<f32> {
    let batch = pixels.len() / mnist_mlp::INPUT_X_LEN;
    let x = Tensor::f32(vec![batch, mnist_mlp::INPUT_X_LEN], pixels.to_vec());
    let out = bnnc_runtime::run(model, &[x]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].dims, [batch, mnist_mlp::OUTPUT_LOGITS_LEN]);
    match &out[0].data {
        TensorData::F32(v) => v.clone(),
        TensorData::Int(_) | TensorData::Bits(_) => panic!("logits are f32"),
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn native_logits_equal_the_interpreter_bit_for_bit() {
    let model = load();
    let pixels = inputs(11);
    let (native, classes) = classify(&pixels).unwrap();
    let reference = interpreter(&model, &pixels);
    assert_eq!(bits(&native), bits(&reference));
    assert_eq!(classes.len(), 16);
    // One sample at a time gives the same rows, through a reused workspace.
    let net = mnist_mlp::Model::new().unwrap();
    let mut ws = vec![0u8; mnist_mlp::workspace_size(1).unwrap()];
    for (k, image) in pixels.chunks(mnist_mlp::INPUT_X_LEN).enumerate() {
        let mut row = [0f32; mnist_mlp::OUTPUT_LOGITS_LEN];
        net.run_with_workspace(image, &mut row, &mut ws, 1).unwrap();
        assert_eq!(
            bits(&row),
            bits(&reference[k * mnist_mlp::OUTPUT_LOGITS_LEN..][..mnist_mlp::OUTPUT_LOGITS_LEN]),
            "sample {k}"
        );
    }
}

#[test]
fn constants_agree_with_the_object() {
    assert_eq!(mnist_mlp::NAME, "mnist_mlp");
    assert_eq!(mnist_mlp::INPUT_X_LEN, 784);
    assert_eq!(mnist_mlp::OUTPUT_LOGITS_LEN, 10);
    assert_eq!(mnist_mlp::INPUT_X_SHAPE, [784]);
    for batch in [0, 1, 5, 64, mnist_mlp::MAX_BATCH] {
        // SAFETY: a pure function of its argument.
        let c = unsafe { mnist_mlp::ffi::mnist_mlp_workspace_size(batch) };
        assert_eq!(Some(c), mnist_mlp::workspace_size(batch), "batch {batch}");
    }
    // SAFETY: as above.
    let over = unsafe { mnist_mlp::ffi::mnist_mlp_workspace_size(mnist_mlp::MAX_BATCH + 1) };
    assert_eq!(over, usize::MAX);
    assert_eq!(mnist_mlp::workspace_size(mnist_mlp::MAX_BATCH + 1), None);
}

#[test]
fn bad_arguments_are_errors_not_crashes() {
    use mnist_mlp::Status;
    let net = mnist_mlp::Model::new().unwrap();
    let x = vec![0.25f32; 2 * 784];
    let mut y = vec![0f32; 20];
    assert_eq!(
        net.run(&x[1..], &mut y, 2),
        Err(Status::InputLength {
            name: "x",
            expected: 1568,
            actual: 1567
        })
    );
    assert_eq!(
        net.run(&x, &mut y[..19], 2),
        Err(Status::OutputLength {
            name: "logits",
            expected: 20,
            actual: 19
        })
    );
    let mut small = vec![0u8; mnist_mlp::workspace_size(2).unwrap() - 1];
    let e = net
        .run_with_workspace(&x, &mut y, &mut small, 2)
        .unwrap_err();
    assert!(matches!(e, Status::WorkspaceTooSmall { .. }), "{e}");
    let e = net.run(&x, &mut y, mnist_mlp::MAX_BATCH + 1).unwrap_err();
    assert!(matches!(e, Status::BatchTooLarge { .. }), "{e}");
    assert!(e.to_string().contains("mnist_mlp"), "{e}");
    // An empty batch is fine and writes nothing.
    net.run(&[], &mut [], 0).unwrap();
    // Errors left the output untouched.
    assert!(y.iter().all(|&v| v == 0.0));
}
