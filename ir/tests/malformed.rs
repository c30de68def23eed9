//! Every malformed model gives one clear diagnostic naming file:line:col, what was
//! found and what was expected. Each case's rendered message is a snapshot.

use std::path::Path;

use bnnc_ir::{ElemType, Model, Tensor, Weights};

/// Loads `src` as `bad.ir` against a small weights file (keys `w`: f32[4, 8],
/// `k`: f32[4, 3, 3, 2], `g`: f32[4], `i`: I8[3] holding 0) and renders the error.
fn error_of(src: &str) -> String {
    let file = Path::new("bad.ir");
    let graph = match Model::parse_checked(src, file) {
        Ok(g) => g,
        Err(e) => return e.to_string(),
    };
    let mut w = Weights::new();
    w.insert("w", Tensor::f32(vec![4, 8], vec![0.5; 32]));
    w.insert("k", Tensor::f32(vec![4, 3, 3, 2], vec![0.5; 72]));
    w.insert("g", Tensor::f32(vec![4], vec![1.0; 4]));
    w.insert("i", Tensor::int(ElemType::SInt(8), vec![3], vec![1, 0, -1]));
    let weights = graph.weights.is_some().then_some(&w);
    match Model::from_graph(graph, weights, file) {
        Ok(_) => panic!("expected an error for:\n{src}"),
        Err(e) => e.to_string(),
    }
}

macro_rules! malformed {
    ($($name:ident: $src:expr;)*) => {
        $(
            #[test]
            fn $name() {
                let msg = error_of($src);
                assert!(msg.starts_with("bad.ir:"), "{msg}");
                insta::assert_snapshot!(stringify!($name), msg);
            }
        )*
    };
}

const HEAD: &str = "model m\nweights \"m.safetensors\"\ninput x: f32[N, 8]\n";

fn with_head(body: &str) -> String {
    format!("{HEAD}{body}")
}

malformed! {
    empty_file: "# nothing here\n";
    missing_model_line: "input x: f32[N, 4]\noutput x\n";
    second_model_line: "model a\nmodel b\n";
    weights_without_path: "model m\nweights m.safetensors\n";
    unknown_op: &with_head("y = relux(x)\noutput y\n");
    unknown_op_no_hint: &with_head("y = frobnicate(x)\noutput y\n");
    wrong_arity: &with_head("y = dense(x)\noutput y\n");
    too_many_operands: &with_head("y = relu(x, x)\noutput y\n");
    unknown_value: &with_head("y = relu(z)\noutput y\n");
    use_before_definition: &with_head("y = relu(z)\nz = relu(x)\noutput y\n");
    self_cycle: &with_head("y = add(y, x)\noutput y\n");
    duplicate_name: &with_head("y = relu(x)\ny = sigmoid(x)\noutput y\n");
    missing_output: &with_head("y = relu(x)\n");
    unknown_attribute: &with_head("y = relu(x, alpha=0.1)\noutput y\n");
    unknown_attribute_lists_valid: "model m\ninput x: f32[N, 8, 8, 2]\ny = maxpool2d(x, kernel=2, strides=2)\noutput y\n";
    missing_required_attribute: &with_head("y = replicate(x)\noutput y\n");
    bad_attribute_value: &with_head("y = replicate(x, times=two)\noutput y\n");
    bad_pad_value: "model m\ninput x: b1[N, 8, 8, 2]\nk = [1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1]: b1[1, 3, 3, 2]\ny = conv2d(x, k, padding=1, pad_value=2)\noutput y\n";
    binary_padding_needs_pad_value: "model m\ninput x: b1[N, 8, 8, 2]\nk = [1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1]: b1[1, 3, 3, 2]\ny = conv2d(x, k, padding=1)\noutput y\n";
    dense_type_mismatch: &with_head("xb = sign(x)\nw = @w: f32[4, 8]\ny = dense(xb, w)\noutput y\n");
    dense_shape_mismatch: "model m\nweights \"m.safetensors\"\ninput x: f32[N, 9]\nw = @w: f32[4, 8]\ny = dense(x, w)\noutput y\n";
    conv_channel_mismatch: "model m\nweights \"m.safetensors\"\ninput x: f32[N, 8, 8, 3]\nk = @k: f32[4, 3, 3, 2]\ny = conv2d(x, k, padding=1)\noutput y\n";
    conv_needs_rank_4: &with_head("k = @k: f32[4, 3, 3, 2]\ny = conv2d(x, k)\noutput y\n");
    kernel_does_not_fit: "model m\nweights \"m.safetensors\"\ninput x: f32[N, 2, 2, 2]\nk = @k: f32[4, 3, 3, 2]\ny = conv2d(x, k)\noutput y\n";
    broadcast_mismatch: &with_head("c = [1, 2, 3]: f32[3]\ny = add(x, c)\noutput y\n");
    batchnorm_param_shape: &with_head("g = @g: f32[4]\ny = batchnorm(x, g, g, g, g)\noutput y\n");
    missing_weight: &with_head("w = @fc.weight: f32[4, 8]\ny = dense(x, w)\noutput y\n");
    weight_wrong_shape: &with_head("w = @w: f32[8, 4]\noutput w\n");
    weight_wrong_dtype: &with_head("w = @w: i8[4, 8]\noutput w\n");
    weight_wrong_values: &with_head("w = @i: b1[3]\ny = add(x, x)\noutput y\n");
    weight_without_file: "model m\ninput x: f32[N, 8]\nw = @w: f32[4, 8]\ny = dense(x, w)\noutput y\n";
    unknown_elem_type: "model m\ninput x: f16[N, 8]\noutput x\n";
    batch_not_first: "model m\ninput x: f32[4, N]\noutput x\n";
    bad_dimension: "model m\ninput x: f32[N, 0]\noutput x\n";
    constant_count_mismatch: &with_head("c = [1, 2, 3]: f32[2]\noutput c\n");
    constant_not_in_type: &with_head("c = [1, 0, -1]: b1[3]\noutput c\n");
    unterminated_string: "model m\nweights \"m.safetensors\n";
    unexpected_character: &with_head("y = relu(x) $\noutput y\n");
    operand_after_attribute: "model m\ninput x: f32[N, 8, 8, 2]\ny = concat(x, axis=1, x)\noutput y\n";
    threshold_count: &with_head("xi = quantize(x, to=i8, scale=0.5)\nt = [0, 1, 2, 3]: i32[1, 4]\ny = threshold(xi, t)\noutput y\n");
    quantize_bad_clip: &with_head("q = quantize(x, to=u4, scale=0.5, clip=[0, 20])\noutput q\n");
    unknown_estimator: &with_head("y = sign(x, estimator=magic)\noutput y\n");
    estimator_param_unknown: &with_head("y = sign(x, estimator=ste, beta=2)\noutput y\n");
    keyword_as_name: &with_head("output = relu(x)\noutput x\n");
    concat_axis_out_of_range: &with_head("y = concat(x, x, axis=3)\noutput y\n");
    reshape_changes_size: &with_head("y = reshape(x, shape=[N, 3, 3])\noutput y\n");
    output_twice: &with_head("y = relu(x)\noutput y, y\n");
    weight_key_two_types: &with_head("w = @w: f32[4, 8]\nv = @w: f32[32]\ny = dense(x, w)\noutput y, v\n");
    missing_equals_rhs: &with_head("y =\noutput x\n");
    table_of_float: &with_head("t = [1, -1, 1]: b1[1, 3]\ny = table(x, t, lo=0)\noutput y\n");
    table_shape: "model m\ninput x: i32[N, 4]\nt = [1, -1, 1]: b1[3, 1]\ny = table(x, t, lo=0)\noutput y\n";
    table_needs_lo: "model m\ninput x: i32[N, 4]\nt = [1, -1, 1]: b1[1, 3]\ny = table(x, t)\noutput y\n";
    fill_value_not_of_type: &with_head("y = fill(x, value=0, to=b1)\noutput y\n");
    fill_needs_to: &with_head("y = fill(x, value=1)\noutput y\n");
    model_named_output: "model output\ninput x: f32[N, 8]\noutput x\n";
    model_named_input: "model input\ninput x: f32[N, 8]\noutput x\n";
    model_named_weights: "model weights\ninput x: f32[N, 8]\noutput x\n";
    control_characters_in_key: &with_head("w = @\"fc\x1b[2J\u{7}\r\": f32[4, 8]\ny = dense(x, w)\noutput y\n");
    control_characters_in_string: "model m\ninput \"x\x1b[31m\": f32[N, 8]\noutput x\n";
    bidi_control_in_key: &with_head("w = @\"fc\u{202e}kcab\": f32[4, 8]\ny = dense(x, w)\noutput y\n");
}

/// The diagnostic of model bytes that are not UTF-8, as `bad.ir` renders it.
fn utf8_error_of(bytes: &[u8]) -> String {
    let diag = bnnc_ir::text::decode(bytes).unwrap_err();
    diag.render("bad.ir")
}

#[test]
fn invalid_utf8_in_a_comment() {
    let msg =
        utf8_error_of(b"model m\ninput x: f32[N, 8]\ny = relu(x) # caf\xe9 au lait\noutput y\n");
    insta::assert_snapshot!("invalid_utf8_in_a_comment", msg);
}

#[test]
fn invalid_utf8_after_multibyte_characters() {
    // Columns count characters: `é` and `✓` before the bad byte are one each.
    let msg = utf8_error_of(
        "model m\n# é✓ \u{0}"
            .as_bytes()
            .iter()
            .chain(b"\xff\xfe")
            .copied()
            .collect::<Vec<u8>>()
            .as_slice(),
    );
    insta::assert_snapshot!("invalid_utf8_after_multibyte_characters", msg);
}

#[test]
fn invalid_utf8_cut_at_the_end() {
    let msg = utf8_error_of(b"model m\n# \xe2\x9c");
    insta::assert_snapshot!("invalid_utf8_cut_at_the_end", msg);
}

#[test]
fn invalid_utf8_in_a_file() {
    let dir = scratch("utf8");
    let p = dir.join("bad.ir");
    std::fs::write(&p, b"model m\ninput x: f\xf332[N, 8]\noutput x\n").unwrap();
    let e = Model::load(&p).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "{}:2:11: error: invalid UTF-8: byte 0xf3 is not UTF-8; model files are UTF-8 text",
            p.display()
        )
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// A fresh folder for one test.
fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("bnnc-malformed-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Loads `m.ir` (`HEAD` and a dense over `@w`) from a folder holding
/// `weights` as `m.safetensors` (none for `None`); the error with the
/// folder written `DIR`.
fn weights_error_of(name: &str, weights: Option<&[u8]>) -> String {
    let dir = scratch(name);
    let p = dir.join("m.ir");
    std::fs::write(
        &p,
        with_head("w = @w: f32[4, 8]\ny = dense(x, w)\noutput y\n"),
    )
    .unwrap();
    if let Some(bytes) = weights {
        std::fs::write(dir.join("m.safetensors"), bytes).unwrap();
    }
    let e = Model::load(&p).unwrap_err().to_string();
    std::fs::remove_dir_all(&dir).ok();
    e.replace(dir.to_str().unwrap(), "DIR")
}

/// A safetensors file of one header and `data` bytes of data.
fn safetensors(header: &str, data: usize) -> Vec<u8> {
    let mut b = (header.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(header.as_bytes());
    b.extend(std::iter::repeat_n(0u8, data));
    b
}

#[test]
fn missing_weights_file() {
    insta::assert_snapshot!("missing_weights_file", weights_error_of("missing", None));
}

#[test]
fn weights_file_not_safetensors() {
    insta::assert_snapshot!(
        "weights_file_not_safetensors",
        weights_error_of("garbage", Some(b"garbage"))
    );
}

#[test]
fn weights_file_truncated_names_the_tensor() {
    let h = r#"{"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"w":{"dtype":"F32","shape":[4,8],"data_offsets":[8,136]}}"#;
    insta::assert_snapshot!(
        "weights_file_truncated_names_the_tensor",
        weights_error_of("truncated", Some(&safetensors(h, 100)))
    );
}

#[test]
fn weights_file_longer_than_its_tensors() {
    let h = r#"{"w":{"dtype":"F32","shape":[4,8],"data_offsets":[0,128]}}"#;
    insta::assert_snapshot!(
        "weights_file_longer_than_its_tensors",
        weights_error_of("long", Some(&safetensors(h, 130)))
    );
}

#[test]
fn weights_file_offsets_do_not_fit_the_shape() {
    let h = r#"{"w":{"dtype":"F32","shape":[4,8],"data_offsets":[0,64]}}"#;
    insta::assert_snapshot!(
        "weights_file_offsets_do_not_fit_the_shape",
        weights_error_of("offsets", Some(&safetensors(h, 64)))
    );
}

#[test]
fn weights_file_unknown_dtype() {
    let h = r#"{"w":{"dtype":"F33","shape":[4,8],"data_offsets":[0,128]}}"#;
    insta::assert_snapshot!(
        "weights_file_unknown_dtype",
        weights_error_of("dtype", Some(&safetensors(h, 128)))
    );
}

#[test]
fn weights_file_gap_between_tensors() {
    let h = r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"w\n\u001b[2J":{"dtype":"F32","shape":[4,8],"data_offsets":[8,136]}}"#;
    insta::assert_snapshot!(
        "weights_file_gap_between_tensors",
        weights_error_of("gap", Some(&safetensors(h, 136)))
    );
}
