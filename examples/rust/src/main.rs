//! Classifies a few deterministic images with the MNIST MLP that `build.rs`
//! compiled to native code, and prints each sample's class.

use bnnc_example_rust::{classify, mnist_mlp, sample_images, SAMPLE_NAMES};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (logits, classes) = classify(&sample_images())?;
    println!(
        "model {} ({}), batch {}: argmax class per sample",
        mnist_mlp::NAME,
        mnist_mlp::TARGET,
        SAMPLE_NAMES.len()
    );
    for (k, (name, class)) in SAMPLE_NAMES.iter().zip(&classes).enumerate() {
        let row = &logits[k * mnist_mlp::OUTPUT_LOGITS_LEN..][..mnist_mlp::OUTPUT_LOGITS_LEN];
        println!(
            "sample {k} ({name}): class {class} (logit {:.3})",
            row[*class]
        );
    }
    Ok(())
}
