//! Compiles the shipped MNIST MLP (`../mnist_mlp.ir` and the weights file it
//! names) with bnnc: writes `libbnnc_mnist_mlp.a` and the bindings `mnist_mlp.rs`
//! into OUT_DIR, tells cargo to link the library (and libm), and to rerun when
//! the model or its weights change.
//!
//! No target is named, so the code is for the architecture cargo builds for
//! with the CPU features the Rust code itself is compiled with: by default the
//! baseline (on x86_64, no `popcnt`), so the program runs on any CPU of that
//! architecture. `RUSTFLAGS="-C target-cpu=native"` gives the model the same
//! features as the Rust code; `.target("x86_64+popcnt")` names them explicitly.

fn main() {
    bnnc_build::Config::new()
        .model("../mnist_mlp.ir")
        .compile_or_panic();
}
