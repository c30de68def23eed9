//! Property tests of the text format: random well-formed graphs print and parse
//! back unchanged, and no input text makes the parser or verifier panic.

use bnnc_ir::text::{parse, print};
use bnnc_ir::verify::verify;
use bnnc_tests::gen::{random_graph, GenOptions};
use proptest::prelude::*;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(400))]

    /// `parse(print(g)) == g`, and printing is stable.
    #[test]
    fn print_parse_round_trip(choices in prop::collection::vec(any::<u32>(), 0..80)) {
        let generated = random_graph(&choices, &GenOptions { max_ops: 12 });
        let g = generated.graph;
        verify(&g).map_err(|e| TestCaseError::fail(format!("generator made an invalid graph: {e}")))?;
        let text = print(&g);
        let back = parse(&text).map_err(|e| TestCaseError::fail(format!("{}\n{text}", e.render("printed.ir"))))?;
        prop_assert_eq!(&back, &g, "{}", text);
        prop_assert_eq!(print(&back), text);
        verify(&back).map_err(|e| TestCaseError::fail(e.render("printed.ir")))?;
    }

    /// Mutating a valid model text (deleting, duplicating or replacing a
    /// character) gives a graph or a located error, never a panic.
    #[test]
    fn mutated_text_never_panics(
        choices in prop::collection::vec(any::<u32>(), 0..40),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, prop::char::any()), 1..6),
    ) {
        let text = print(&random_graph(&choices, &GenOptions::default()).graph);
        let mut chars: Vec<char> = text.chars().collect();
        for (at, kind, c) in edits {
            if chars.is_empty() { break; }
            let i = at.index(chars.len());
            match kind {
                0 => { chars.remove(i); }
                1 => { let d = chars[i]; chars.insert(i, d); }
                _ => chars[i] = c,
            }
        }
        let mutated: String = chars.into_iter().collect();
        match parse(&mutated) {
            Ok(g) => { let _ = verify(&g); let _ = print(&g); }
            Err(e) => prop_assert!(e.loc.line >= 1, "error without a line: {e}"),
        }
    }

    /// Arbitrary text never panics the parser.
    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,200}") {
        if let Ok(g) = parse(&s) { let _ = verify(&g); }
    }
}

#[test]
fn generator_covers_the_op_set() {
    use std::collections::BTreeSet;
    let mut seen = BTreeSet::new();
    let mut rng = bnnc_tests::gen::Rng::new(7);
    for _ in 0..3000 {
        let choices: Vec<u32> = (0..60).map(|_| rng.next_u64() as u32).collect();
        for n in random_graph(&choices, &GenOptions { max_ops: 12 })
            .graph
            .nodes
        {
            seen.insert(n.op.name());
        }
    }
    let all = [
        "input",
        "weight",
        "const",
        "sign",
        "quantize",
        "dequantize",
        "ternarize",
        "threshold",
        "table",
        "fill",
        "conv2d",
        "dense",
        "batchnorm",
        "add",
        "sub",
        "mul",
        "relu",
        "prelu",
        "rprelu",
        "hardtanh",
        "clip",
        "sigmoid",
        "maxpool2d",
        "avgpool2d",
        "global_avgpool",
        "concat",
        "replicate",
        "channel_shuffle",
        "flatten",
        "reshape",
        "softmax",
        "argmax",
    ];
    let missing: Vec<&str> = all.iter().copied().filter(|n| !seen.contains(n)).collect();
    assert!(
        missing.is_empty(),
        "the random graph generator never produced: {missing:?}"
    );
}

/// The generator makes unbatched inputs whose first dimension holds several
/// samples (`f32[3, 70]`, `f32[2, 5, 4, 63]`), and feeds such values to every
/// kernel that loops over samples, so the differential tests compare those
/// loops with the interpreter.
#[test]
fn generator_feeds_unbatched_samples_to_every_sample_loop() {
    use std::collections::BTreeSet;
    let kernels = [
        "conv2d",
        "dense",
        "maxpool2d",
        "avgpool2d",
        "global_avgpool",
    ];
    let mut seen = BTreeSet::new();
    let mut rng = bnnc_tests::gen::Rng::new(11);
    for _ in 0..3000 {
        let choices: Vec<u32> = (0..48).map(|_| rng.next_u64() as u32).collect();
        let g = random_graph(&choices, &GenOptions { max_ops: 8 }).graph;
        let types = verify(&g).unwrap();
        for n in &g.nodes {
            let Some(x) = n.inputs.first() else { continue };
            let t = &types[x.index()];
            let several = t
                .shape
                .first()
                .and_then(|d| d.fixed())
                .is_some_and(|d| d > 1);
            if several && kernels.contains(&n.op.name()) {
                seen.insert(n.op.name());
            }
        }
    }
    let missing: Vec<&str> = kernels
        .iter()
        .copied()
        .filter(|k| !seen.contains(k))
        .collect();
    assert!(
        missing.is_empty(),
        "no generated graph feeds an unbatched value with several samples to {missing:?}"
    );
}
