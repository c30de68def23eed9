//! Tests of the gradient estimators of `sign` (`bnnc_train::estimators`):
//! each surrogate's value and derivative at hand-picked points against its formula
//! (written out again here, in f64), the boundaries (0, ±clip, ±1, schedule
//! endpoints), finite differences of the surrogate against its derivative, finite
//! differences of the learned functions' parameter gradients, the `estimator=`
//! parameter validation, and that `SignEstimator::backward` applies exactly these
//! derivatives.

use bnnc_ir::Estimator;
use bnnc_train::estimators::{
    approx_sign_derivative, approx_sign_value, dte_derivative, dte_value, fda_derivative,
    fda_value, ste_derivative, ste_value, swish_sign_derivative, swish_sign_value, DteSchedule,
    EstimatorError, FdaNoise, LearnedBinarizer, SignEstimator,
};
use std::f64::consts::PI;

fn attr(name: &str, params: &[(&str, f64)]) -> Estimator {
    let mut params: Vec<(String, f64)> = params.iter().map(|&(k, v)| (k.into(), v)).collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    Estimator {
        name: name.into(),
        params,
    }
}

fn build(name: &str, params: &[(&str, f64)]) -> SignEstimator {
    SignEstimator::new(Some(&attr(name, params)), 4, 7).unwrap()
}

/// `|a - b| <= tol * max(1, |b|)`, with a message naming the case.
#[track_caller]
fn close(a: f64, b: f64, tol: f64, what: &str) {
    assert!(
        (a - b).abs() <= tol * b.abs().max(1.0),
        "{what}: got {a}, expected {b} (tol {tol})"
    );
}

/// Runs `backward` on `xs` with a distinct `grad_out` per element and an
/// overwritten-garbage `grad_in`; returns `grad_in`.
fn run_backward(e: &mut SignEstimator, xs: &[f32], progress: f32) -> (Vec<f32>, Vec<f32>) {
    let go: Vec<f32> = (0..xs.len()).map(|i| 0.5 + 0.25 * i as f32).collect();
    let mut gi = vec![f32::NAN; xs.len()];
    e.backward(xs, &go, &mut gi, progress);
    (go, gi)
}

/// Asserts that `backward` gives `grad_out * expected(x)` for every `x`.
#[track_caller]
fn check_backward(
    e: &mut SignEstimator,
    xs: &[f32],
    progress: f32,
    expected: impl Fn(f64) -> f64,
    tol: f64,
) {
    let (go, gi) = run_backward(e, xs, progress);
    for i in 0..xs.len() {
        let want = f64::from(go[i]) * expected(f64::from(xs[i]));
        close(
            f64::from(gi[i]),
            want,
            tol,
            &format!("backward at x = {} (progress {progress})", xs[i]),
        );
    }
}

/// Central finite difference of `f` at `x` with step `h`, in f64 of f32 values.
fn fd(f: impl Fn(f32) -> f32, x: f32, h: f32) -> f64 {
    (f64::from(f(x + h)) - f64::from(f(x - h))) / (2.0 * f64::from(h))
}

const GRID: [f32; 13] = [
    -3.1, -1.7, -0.93, -0.61, -0.35, -0.12, 0.07, 0.29, 0.55, 0.81, 0.97, 1.6, 2.8,
];

// ---------------------------------------------------------------- forward

#[test]
fn forward_is_the_irs_exact_sign() {
    let cases: [(f32, f32); 9] = [
        (-2.5, -1.0),
        (-1e-45, -1.0),
        (f32::NEG_INFINITY, -1.0),
        (-0.0, 1.0),
        (0.0, 1.0),
        (1e-45, 1.0),
        (3.0, 1.0),
        (f32::INFINITY, 1.0),
        (f32::NAN, 1.0),
    ];
    for (x, y) in cases {
        assert_eq!(
            SignEstimator::forward(x).to_bits(),
            y.to_bits(),
            "sign({x})"
        );
    }
}

// ---------------------------------------------------------------- STE

#[test]
fn ste_value_and_derivative_at_hand_picked_points() {
    let clip = 1.0;
    let cases: [(f32, f32, f32); 9] = [
        (-2.0, -1.0, 0.0),
        (-1.0000001, -1.0, 0.0),
        (-1.0, -1.0, 1.0),
        (-0.5, -0.5, 1.0),
        (0.0, 0.0, 1.0),
        (0.5, 0.5, 1.0),
        (1.0, 1.0, 1.0),
        (1.0000001, 1.0, 0.0),
        (2.0, 1.0, 0.0),
    ];
    for (x, v, d) in cases {
        assert_eq!(ste_value(x, clip), v, "ste_value({x})");
        assert_eq!(ste_derivative(x, clip), d, "ste_derivative({x})");
    }
    assert_eq!(ste_derivative(f32::NAN, clip), 0.0);
    assert_eq!(ste_derivative(f32::INFINITY, f32::INFINITY), 1.0);
}

#[test]
fn ste_backward_passes_exactly_where_abs_x_le_clip() {
    let xs = [
        -0.75f32,
        -0.7500001,
        -0.5,
        0.0,
        -0.0,
        0.3,
        0.75,
        0.7500001,
        9.0,
        f32::NAN,
    ];
    let mut e = build("ste", &[("clip", 0.75)]);
    let (go, gi) = run_backward(&mut e, &xs, 0.3);
    let pass = [
        true, false, true, true, true, true, true, false, false, false,
    ];
    for i in 0..xs.len() {
        let want = if pass[i] { go[i] } else { 0.0 };
        assert_eq!(
            gi[i].to_bits(),
            want.to_bits(),
            "ste clip 0.75 at {}",
            xs[i]
        );
    }
}

#[test]
fn no_attribute_is_ste_with_clip_one() {
    let mut e = SignEstimator::new(None, 3, 0).unwrap();
    assert_eq!(e, build("ste", &[]));
    assert_eq!(e, build("ste", &[("clip", 1.0)]));
    let (go, gi) = run_backward(&mut e, &[-1.0, 1.0, 1.0000001, -1.5], 0.0);
    assert_eq!(gi, vec![go[0], go[1], 0.0, 0.0]);
    assert!(e.params().is_empty());
}

#[test]
fn identity_passes_everything() {
    let mut e = build("identity", &[]);
    let xs = [-1e30f32, -1.0, 0.0, 5.0, f32::INFINITY];
    let (go, gi) = run_backward(&mut e, &xs, 0.5);
    assert_eq!(gi, go);
}

// ---------------------------------------------------------------- ApproxSign

#[test]
fn approx_sign_at_hand_picked_points() {
    let cases: [(f32, f32, f32); 11] = [
        (-2.0, -1.0, 0.0),
        (-1.0000001, -1.0, 0.0),
        (-1.0, -1.0, 0.0),
        (-0.5, -0.75, 1.0),
        (-0.0, 0.0, 2.0),
        (0.0, 0.0, 2.0),
        (0.25, 0.4375, 1.5),
        (0.5, 0.75, 1.0),
        (0.99999994, 1.0, 1.1920929e-7),
        (1.0, 1.0, 0.0),
        (3.0, 1.0, 0.0),
    ];
    for (x, v, d) in cases {
        close(
            f64::from(approx_sign_value(x)),
            f64::from(v),
            1e-6,
            &format!("approx_sign_value({x})"),
        );
        close(
            f64::from(approx_sign_derivative(x)),
            f64::from(d),
            1e-6,
            &format!("approx_sign_derivative({x})"),
        );
    }
    assert_eq!(approx_sign_derivative(f32::NAN), 0.0);
    assert_eq!(approx_sign_value(f32::NAN), 1.0);
}

fn approx_sign_formula(x: f64) -> f64 {
    if (-1.0..0.0).contains(&x) {
        2.0 + 2.0 * x
    } else if (0.0..1.0).contains(&x) {
        2.0 - 2.0 * x
    } else {
        0.0
    }
}

#[test]
fn approx_sign_backward_and_finite_differences() {
    let mut e = build("approx_sign", &[]);
    let mut xs = GRID.to_vec();
    xs.extend([-1.0, 0.0, 1.0, f32::NAN]);
    check_backward(&mut e, &xs, 0.5, approx_sign_formula, 1e-6);
    // The surrogate is C^1 (its derivative is continuous at -1, 0 and 1).
    for x in GRID {
        close(
            fd(approx_sign_value, x, 1e-3),
            f64::from(approx_sign_derivative(x)),
            2e-3,
            &format!("d/dx approx_sign at {x}"),
        );
    }
}

// ---------------------------------------------------------------- SwishSign

fn swish_formula(x: f64, beta: f64) -> (f64, f64) {
    let u = beta * x;
    let s = 1.0 / (1.0 + (-u).exp());
    let value = 2.0 * s * (1.0 + u * (1.0 - s)) - 1.0;
    let derivative = beta * (2.0 - u * (u / 2.0).tanh()) / (1.0 + u.cosh());
    (value, derivative)
}

#[test]
fn swish_sign_at_hand_picked_points() {
    for beta in [0.5f32, 5.0, 10.0] {
        assert_eq!(swish_sign_value(0.0, beta), 0.0);
        assert_eq!(swish_sign_derivative(0.0, beta), beta, "peak is beta");
        let mut xs = GRID.to_vec();
        xs.extend([-1.0, 1.0, 2.4 / beta, 30.0, -30.0]);
        for x in xs {
            let (v, d) = swish_formula(f64::from(x), f64::from(beta));
            close(
                f64::from(swish_sign_value(x, beta)),
                v,
                1e-5,
                &format!("swish_sign_value({x}, {beta})"),
            );
            close(
                f64::from(swish_sign_derivative(x, beta)),
                d,
                1e-5,
                &format!("swish_sign_derivative({x}, {beta})"),
            );
            // Odd value, even derivative.
            close(
                f64::from(swish_sign_value(-x, beta)),
                -f64::from(swish_sign_value(x, beta)),
                1e-6,
                "odd",
            );
            assert_eq!(
                swish_sign_derivative(-x, beta),
                swish_sign_derivative(x, beta)
            );
        }
    }
    // Overshoot: negative derivative beyond |beta x| ~ 2.4.
    assert!(swish_sign_derivative(3.0 / 5.0, 5.0) < 0.0);
    assert_eq!(swish_sign_derivative(f32::NAN, 5.0), 0.0);
    assert_eq!(swish_sign_derivative(f32::INFINITY, 5.0), 0.0);
    assert_eq!(swish_sign_value(f32::INFINITY, 5.0), 1.0);
    assert_eq!(swish_sign_value(f32::NEG_INFINITY, 5.0), -1.0);
}

#[test]
fn swish_sign_backward_default_beta_and_finite_differences() {
    let mut e = build("swish_sign", &[]);
    assert_eq!(e, build("swish_sign", &[("beta", 5.0)]));
    check_backward(&mut e, &GRID, 0.0, |x| swish_formula(x, 5.0).1, 1e-5);
    let mut e = build("swish_sign", &[("beta", 2.0)]);
    check_backward(&mut e, &GRID, 1.0, |x| swish_formula(x, 2.0).1, 1e-5);
    for beta in [1.0f32, 5.0] {
        for x in GRID {
            close(
                fd(|v| swish_sign_value(v, beta), x, 1e-3),
                f64::from(swish_sign_derivative(x, beta)),
                2e-3,
                &format!("d/dx swish_sign at {x}, beta {beta}"),
            );
        }
    }
}

// ---------------------------------------------------------------- DTE

#[test]
fn dte_schedule_endpoints_and_midpoint() {
    let s = DteSchedule {
        t_min: 0.1,
        t_max: 10.0,
        k_min: 1.0,
        k_max: 10.0,
    };
    let (k, t) = s.at(0.0);
    assert_eq!((k, t), (10.0, 0.1), "progress 0: t = t_min, k = 1/t_min");
    let (k, t) = s.at(1.0);
    close(f64::from(t), 10.0, 1e-6, "progress 1: t = t_max");
    assert_eq!(k, 1.0, "progress 1: k = max(1/t, 1) = 1");
    let (k, t) = s.at(0.5);
    close(f64::from(t), 1.0, 1e-6, "progress 0.5: t = 1");
    close(f64::from(k), 1.0, 1e-6, "progress 0.5: k = 1");
    let (k, t) = s.at(0.25);
    close(f64::from(t), 10f64.powf(-0.5), 1e-6, "progress 0.25: t");
    close(
        f64::from(k),
        10f64.powf(0.5),
        1e-6,
        "progress 0.25: k = 1/t",
    );
    // Out-of-range progress is clamped; NaN counts as 0.
    assert_eq!(s.at(-3.0), s.at(0.0));
    assert_eq!(s.at(f32::NAN), s.at(0.0));
    assert_eq!(s.at(7.0), s.at(1.0));
    // k is bounded by k_min and k_max.
    let clamped = DteSchedule {
        k_min: 2.0,
        k_max: 5.0,
        ..s
    };
    assert_eq!(clamped.at(0.0).0, 5.0);
    assert_eq!(clamped.at(1.0).0, 2.0);
    // At progress 0.2, t = 10^-0.6 and 1/t = 10^0.6 lies inside [2, 5].
    close(
        f64::from(clamped.at(0.2).0),
        10f64.powf(0.6),
        1e-6,
        "k = 1/t inside",
    );
}

fn dte_formula(x: f64, k: f64, t: f64) -> f64 {
    let th = (t * x).tanh();
    k * t * (1.0 - th * th)
}

#[test]
fn dte_value_and_derivative_at_hand_picked_points() {
    for (k, t) in [(10.0f32, 0.1f32), (1.0, 1.0), (1.0, 10.0), (2.5, 3.0)] {
        assert_eq!(dte_value(0.0, k, t), 0.0);
        close(
            f64::from(dte_derivative(0.0, k, t)),
            f64::from(k * t),
            1e-6,
            "peak k t",
        );
        let mut xs = GRID.to_vec();
        xs.extend([-1.0, 1.0, 50.0]);
        for x in xs {
            let (xd, kd, td) = (f64::from(x), f64::from(k), f64::from(t));
            close(
                f64::from(dte_value(x, k, t)),
                kd * (td * xd).tanh(),
                1e-6,
                &format!("dte_value({x}, {k}, {t})"),
            );
            close(
                f64::from(dte_derivative(x, k, t)),
                dte_formula(xd, kd, td),
                1e-5,
                &format!("dte_derivative({x}, {k}, {t})"),
            );
        }
    }
    assert_eq!(dte_derivative(f32::NAN, 1.0, 1.0), 0.0);
    assert_eq!(dte_derivative(f32::INFINITY, 1.0, 1.0), 0.0);
}

#[test]
fn dte_backward_follows_the_schedule() {
    let mut e = build("dte", &[]);
    assert_eq!(
        e,
        build(
            "dte",
            &[
                ("t_min", 0.1),
                ("t_max", 10.0),
                ("k_min", 1.0),
                ("k_max", 10.0)
            ]
        )
    );
    let xs = [-2.0f32, -1.0, -0.3, 0.0, 0.3, 1.0, 2.0];
    // Progress 0: k = 10, t = 0.1; the gradient at 0 is k t = 1.
    check_backward(&mut e, &xs, 0.0, |x| dte_formula(x, 10.0, 0.1), 1e-5);
    // Progress 1: k = 1, t = 10; the gradient at 0 is 10.
    check_backward(&mut e, &xs, 1.0, |x| dte_formula(x, 1.0, 10.0), 1e-5);
    check_backward(&mut e, &xs, 0.5, |x| dte_formula(x, 1.0, 1.0), 1e-5);
    let mut e = build("dte", &[("t_min", 0.5), ("t_max", 2.0), ("k_max", 1.5)]);
    // Progress 0: t = 0.5, k = min(1/0.5, 1.5) = 1.5.
    check_backward(&mut e, &xs, 0.0, |x| dte_formula(x, 1.5, 0.5), 1e-5);
}

#[test]
fn dte_finite_differences() {
    let s = DteSchedule {
        t_min: 0.1,
        t_max: 10.0,
        k_min: 1.0,
        k_max: 10.0,
    };
    for p in [0.0f32, 0.3, 0.5, 0.8, 1.0] {
        let (k, t) = s.at(p);
        for x in GRID {
            close(
                fd(|v| dte_value(v, k, t), x, 1e-3),
                f64::from(dte_derivative(x, k, t)),
                3e-3,
                &format!("d/dx dte at {x}, progress {p}"),
            );
        }
    }
}

// ---------------------------------------------------------------- FDA

fn fda_formula(x: f64, n: u32, omega: f64) -> (f64, f64) {
    let mut v = 0.0;
    let mut d = 0.0;
    for i in 0..n {
        let m = f64::from(2 * i + 1);
        v += (m * omega * x).sin() / m;
        d += (m * omega * x).cos();
    }
    let d = if x.abs() <= 1.0 {
        d * 4.0 * omega / PI
    } else {
        0.0
    };
    (v * 4.0 / PI, d)
}

#[test]
fn fda_at_hand_picked_points() {
    for (n, omega) in [(1u32, 0.1f32), (10, 0.1), (19, 0.1), (10, 1.0), (25, 2.0)] {
        assert_eq!(fda_value(0.0, n, omega), 0.0);
        close(
            f64::from(fda_derivative(0.0, n, omega)),
            4.0 * f64::from(omega) * f64::from(n) / PI,
            1e-6,
            "peak 4 omega n / pi",
        );
        let mut xs = GRID.to_vec();
        xs.extend([-1.0, 1.0, 1.0000001, -1.0000001]);
        for x in xs {
            let (v, d) = fda_formula(f64::from(x), n, f64::from(omega));
            close(
                f64::from(fda_value(x, n, omega)),
                v,
                1e-5,
                &format!("fda_value({x}, {n}, {omega})"),
            );
            close(
                f64::from(fda_derivative(x, n, omega)),
                d,
                1e-5,
                &format!("fda_derivative({x}, {n}, {omega})"),
            );
        }
    }
    // The series approximates the square wave: sign at a quarter period.
    let quarter = std::f32::consts::FRAC_PI_2;
    close(
        f64::from(fda_value(quarter, 200, 1.0)),
        1.0,
        5e-3,
        "s(pi/2)",
    );
    close(
        f64::from(fda_value(-quarter, 200, 1.0)),
        -1.0,
        5e-3,
        "s(-pi/2)",
    );
    // The window includes |x| = 1 and nothing beyond.
    assert!(fda_derivative(1.0, 10, 0.1) > 0.0);
    assert!(fda_derivative(-1.0, 10, 0.1) > 0.0);
    assert_eq!(fda_derivative(1.0000001, 10, 0.1), 0.0);
    assert_eq!(fda_derivative(f32::NAN, 10, 0.1), 0.0);
}

#[test]
fn fda_backward_defaults_and_finite_differences() {
    let mut e = build("fda", &[]);
    assert_eq!(
        e,
        build("fda", &[("terms", 10.0), ("omega", 0.1), ("noise", 0.0)])
    );
    assert!(e.params().is_empty());
    let mut xs = GRID.to_vec();
    xs.extend([-1.0, 0.0, 1.0, f32::NAN]);
    check_backward(&mut e, &xs, 0.0, |x| fda_formula(x, 10, 0.1).1, 1e-5);
    let mut e = build("fda", &[("terms", 4.0), ("omega", 1.5)]);
    check_backward(&mut e, &xs, 0.7, |x| fda_formula(x, 4, 1.5).1, 1e-5);
    for (n, omega) in [(10u32, 0.1f32), (4, 1.5), (19, 0.3)] {
        for x in GRID.into_iter().filter(|x| x.abs() < 1.0) {
            close(
                fd(|v| fda_value(v, n, omega), x, 1e-3),
                f64::from(fda_derivative(x, n, omega)),
                3e-3,
                &format!("d/dx fda at {x}, n {n}, omega {omega}"),
            );
        }
    }
}

fn alpha_formula(p: f64) -> f64 {
    0.05 * (1.0 + (PI * p).cos())
}

#[test]
fn fda_noise_alpha_schedule() {
    assert_eq!(FdaNoise::alpha(0.0), 0.1);
    assert_eq!(FdaNoise::alpha(1.0), 0.0);
    assert_eq!(FdaNoise::alpha(5.0), 0.0);
    assert_eq!(FdaNoise::alpha(f32::NAN), 0.1);
    for p in [0.1f32, 0.5, 0.9] {
        close(
            f64::from(FdaNoise::alpha(p)),
            alpha_formula(f64::from(p)),
            1e-6,
            "alpha",
        );
    }
}

/// A noise module with biases moved off 0, so kinks are spread out.
fn noise_with_biases(hidden: usize, seed: u64) -> FdaNoise {
    let mut n = FdaNoise::new(hidden, seed);
    for p in n.params() {
        if p.name == "noise.b" {
            for (i, b) in p.value.iter_mut().enumerate() {
                *b = 0.37 * i as f32 - 0.5;
            }
        }
    }
    n
}

/// The ReLU kinks `-b_j / w_j` of a noise module.
fn noise_kinks(n: &mut FdaNoise) -> Vec<f32> {
    let ps = n.params();
    let w = ps.iter().find(|p| p.name == "noise.w").unwrap();
    let b = ps.iter().find(|p| p.name == "noise.b").unwrap();
    w.value
        .iter()
        .zip(b.value.iter())
        .map(|(w, b)| -b / w)
        .collect()
}

#[test]
fn fda_noise_value_and_derivative_match_their_formula() {
    let mut n = noise_with_biases(5, 11);
    let (w, b, v) = {
        let ps = n.params();
        (
            ps[0].value.to_vec(),
            ps[1].value.to_vec(),
            ps[2].value.to_vec(),
        )
    };
    assert_eq!(n.hidden(), 5);
    for x in GRID {
        let xd = f64::from(x);
        let mut e = 0.1 * xd.sin();
        let mut d = 0.1 * xd.cos();
        for j in 0..5 {
            let z = f64::from(w[j]) * xd + f64::from(b[j]);
            if z > 0.0 {
                e += f64::from(v[j]) * z;
                d += f64::from(v[j]) * f64::from(w[j]);
            }
        }
        close(f64::from(n.value(x)), e, 1e-5, &format!("e({x})"));
        close(f64::from(n.derivative(x)), d, 1e-5, &format!("e'({x})"));
    }
    let kinks = noise_kinks(&mut n);
    for x in GRID {
        if kinks.iter().any(|k| (k - x).abs() < 2e-3) {
            continue;
        }
        close(
            fd(|v| n.value(v), x, 1e-3),
            f64::from(n.derivative(x)),
            2e-3,
            &format!("d/dx e at {x}"),
        );
    }
}

#[test]
fn fda_noise_init_is_deterministic_from_the_seed() {
    let a = FdaNoise::new(6, 3);
    assert_eq!(a, FdaNoise::new(6, 3));
    assert_ne!(a, FdaNoise::new(6, 4));
    let mut a = a;
    let ps = a.params();
    let names: Vec<&str> = ps.iter().map(|p| p.name).collect();
    assert_eq!(names, ["noise.w", "noise.b", "noise.v"]);
    assert!(ps[0].value.iter().all(|w| (-1.0..1.0).contains(w)));
    assert!(ps[1].value.iter().all(|&b| b == 0.0));
    let bound = 1.0 / 6f32.sqrt();
    assert!(ps[2].value.iter().all(|v| (-bound..bound).contains(v)));
}

/// `sum_i go_i * alpha * e(x_i)` for the FD check of the noise parameters.
fn noise_objective(n: &FdaNoise, xs: &[f32], go: &[f32], alpha: f64) -> f64 {
    xs.iter()
        .zip(go)
        .map(|(&x, &g)| f64::from(g) * alpha * f64::from(n.value(x)))
        .sum()
}

#[test]
fn fda_with_noise_backward_and_parameter_gradients() {
    let mut e = build("fda", &[("noise", 4.0)]);
    let names: Vec<&str> = e.params().iter().map(|p| p.name).collect();
    assert_eq!(names, ["noise.w", "noise.b", "noise.v"]);
    // Move the biases off 0 through params(), as the optimizer would.
    for p in e.params() {
        if p.name == "noise.b" {
            p.value.copy_from_slice(&[0.3, -0.45, 0.6, -0.2]);
        }
    }
    // The same module, rebuilt from the seed: the estimator uses the op's seed (7).
    let mut n = FdaNoise::new(4, 7);
    for p in n.params() {
        if p.name == "noise.b" {
            p.value.copy_from_slice(&[0.3, -0.45, 0.6, -0.2]);
        }
    }
    let kinks = noise_kinks(&mut n);
    let xs: Vec<f32> = GRID
        .into_iter()
        .filter(|x| kinks.iter().all(|k| (k - x).abs() > 1e-2))
        .collect();
    let progress = 0.3f32;
    let alpha = f64::from(FdaNoise::alpha(progress));
    // grad_in = grad_out * (s'(x) + alpha e'(x)).
    let (go, gi) = run_backward(&mut e, &xs, progress);
    for i in 0..xs.len() {
        let want = f64::from(go[i])
            * (fda_formula(f64::from(xs[i]), 10, 0.1).1 + alpha * f64::from(n.derivative(xs[i])));
        close(
            f64::from(gi[i]),
            want,
            1e-5,
            &format!("fda+noise at {}", xs[i]),
        );
        assert_eq!(gi[i], go[i] * e.derivative(xs[i], progress));
    }
    // Parameter gradients: finite differences of sum go * alpha * e(x; θ).
    let analytic: Vec<Vec<f32>> = e.params().iter().map(|p| p.grad.to_vec()).collect();
    let h = 1e-3f32;
    for (pi, grads) in analytic.iter().enumerate() {
        for (j, &g) in grads.iter().enumerate() {
            let orig = n.params()[pi].value[j];
            n.params()[pi].value[j] = orig + h;
            let up = noise_objective(&n, &xs, &go, alpha);
            n.params()[pi].value[j] = orig - h;
            let down = noise_objective(&n, &xs, &go, alpha);
            n.params()[pi].value[j] = orig;
            close(
                f64::from(g),
                (up - down) / (2.0 * f64::from(h)),
                2e-3,
                &format!("d/d{}[{j}]", ["noise.w", "noise.b", "noise.v"][pi]),
            );
        }
    }
    assert!(analytic.iter().flatten().any(|&g| g != 0.0));
    // Gradients accumulate over calls and zero_grad clears them.
    run_backward(&mut e, &xs, progress);
    for (p, first) in e.params().iter().zip(&analytic) {
        for (g, f) in p.grad.iter().zip(first) {
            close(f64::from(*g), 2.0 * f64::from(*f), 1e-5, "accumulated");
        }
    }
    e.zero_grad();
    assert!(e.params().iter().all(|p| p.grad.iter().all(|&g| g == 0.0)));
    // At progress 1, alpha = 0: plain FDA, and no parameter gradient.
    check_backward(&mut e, &xs, 1.0, |x| fda_formula(x, 10, 0.1).1, 1e-5);
    assert!(e.params().iter().all(|p| p.grad.iter().all(|&g| g == 0.0)));
    // A non-finite x takes only the FDA gradient (0) and gives none to θ.
    let (_, gi) = run_backward(&mut e, &[f32::NAN, f32::INFINITY], 0.2);
    assert_eq!(gi, vec![0.0, 0.0]);
    assert!(e.params().iter().all(|p| p.grad.iter().all(|&g| g == 0.0)));
}

// ---------------------------------------------------------------- learned

#[test]
fn learned_linear_is_identity_at_init_and_learns_w() {
    let mut e = build("learned", &[]);
    assert_eq!(e, build("learned", &[("hidden", 0.0)]));
    let xs = [-2.0f32, -0.5, 0.0, 0.25, 3.0];
    let (go, gi) = run_backward(&mut e, &xs, 0.4);
    assert_eq!(gi, go, "w = 1 at init: identity straight-through");
    let want: f64 = xs.iter().zip(&go).map(|(&x, &g)| f64::from(x * g)).sum();
    {
        let ps = e.params();
        assert_eq!(ps.len(), 1);
        assert_eq!(ps[0].name, "w");
        close(f64::from(ps[0].grad[0]), want, 1e-6, "dL/dw = sum go x");
        ps.into_iter().next().unwrap().value[0] = 0.5;
    }
    e.zero_grad();
    let (go, gi) = run_backward(&mut e, &xs, 0.4);
    for i in 0..xs.len() {
        assert_eq!(gi[i], 0.5 * go[i]);
    }
    // Non-finite x: no gradient either way.
    e.zero_grad();
    let (_, gi) = run_backward(&mut e, &[f32::INFINITY, f32::NAN], 0.0);
    assert_eq!(gi, vec![0.0, 0.0]);
    assert_eq!(e.params()[0].grad[0], 0.0);
}

/// `(w, b, v)` of a learned MLP.
fn mlp_params(l: &mut LearnedBinarizer) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let ps = l.params();
    (
        ps[0].value.to_vec(),
        ps[1].value.to_vec(),
        ps[2].value.to_vec(),
    )
}

#[test]
fn learned_mlp_value_derivative_and_init() {
    let mut l = LearnedBinarizer::new(3, 21);
    assert_eq!(l.hidden(), 3);
    assert_eq!(l, LearnedBinarizer::new(3, 21));
    assert_ne!(l, LearnedBinarizer::new(3, 22));
    let (w, b, v) = mlp_params(&mut l);
    assert!(w.iter().all(|w| (0.5..1.5).contains(w)));
    assert!(b.iter().all(|b| (-1.0..1.0).contains(b)));
    assert!(v.iter().all(|&v| v == 1.0 / 3.0));
    for x in GRID.into_iter().chain([-1.0, 0.0, 1.0]) {
        let xd = f64::from(x);
        let mut g = 0.0;
        let mut d = 0.0;
        for j in 0..3 {
            let th = (f64::from(w[j]) * xd + f64::from(b[j])).tanh();
            g += f64::from(v[j]) * th;
            d += f64::from(v[j]) * f64::from(w[j]) * (1.0 - th * th);
        }
        close(f64::from(l.value(x)), g, 1e-5, &format!("g({x})"));
        close(f64::from(l.derivative(x)), d, 1e-5, &format!("g'({x})"));
        assert!(l.derivative(x) > 0.0, "g' > 0 at init");
        close(
            fd(|y| l.value(y), x, 1e-3),
            d,
            2e-3,
            &format!("d/dx g at {x}"),
        );
    }
    assert_eq!(l.derivative(f32::NAN), 0.0);
}

/// `sum_i go_i * g(x_i; θ)` for the FD check of the learned parameters.
fn learned_objective(l: &LearnedBinarizer, xs: &[f32], go: &[f32]) -> f64 {
    xs.iter()
        .zip(go)
        .map(|(&x, &g)| f64::from(g) * f64::from(l.value(x)))
        .sum()
}

#[test]
fn learned_mlp_backward_and_parameter_gradients() {
    for hidden in [1usize, 4] {
        let mut e = build("learned", &[("hidden", hidden as f64)]);
        let mut l = LearnedBinarizer::new(hidden, 7);
        // Move every parameter off its init (through params(), in both copies).
        let tweak = |ps: Vec<bnnc_train::estimators::ParamRef<'_>>| {
            for (k, p) in ps.into_iter().enumerate() {
                for (j, x) in p.value.iter_mut().enumerate() {
                    *x += 0.1 * (k as f32 + 1.0) * if j % 2 == 0 { 1.0 } else { -1.0 };
                }
            }
        };
        tweak(e.params());
        tweak(l.params());
        let names: Vec<&str> = e.params().iter().map(|p| p.name).collect();
        assert_eq!(names, ["w", "b", "v"]);
        let xs: Vec<f32> = GRID.to_vec();
        let (go, gi) = run_backward(&mut e, &xs, 0.9);
        for i in 0..xs.len() {
            close(
                f64::from(gi[i]),
                f64::from(go[i]) * f64::from(l.derivative(xs[i])),
                1e-5,
                &format!("learned backward at {}", xs[i]),
            );
            assert_eq!(gi[i], go[i] * e.derivative(xs[i], 0.9));
        }
        let analytic: Vec<Vec<f32>> = e.params().iter().map(|p| p.grad.to_vec()).collect();
        let h = 1e-3f32;
        for (pi, grads) in analytic.iter().enumerate() {
            for (j, &g) in grads.iter().enumerate() {
                let orig = l.params()[pi].value[j];
                l.params()[pi].value[j] = orig + h;
                let up = learned_objective(&l, &xs, &go);
                l.params()[pi].value[j] = orig - h;
                let down = learned_objective(&l, &xs, &go);
                l.params()[pi].value[j] = orig;
                close(
                    f64::from(g),
                    (up - down) / (2.0 * f64::from(h)),
                    2e-3,
                    &format!("hidden {hidden}: d/d{}[{j}]", names[pi]),
                );
            }
        }
        // Accumulation and zero_grad.
        run_backward(&mut e, &xs, 0.9);
        for (p, first) in e.params().iter().zip(&analytic) {
            for (g, f) in p.grad.iter().zip(first) {
                close(f64::from(*g), 2.0 * f64::from(*f), 1e-5, "accumulated");
            }
        }
        e.zero_grad();
        assert!(e.params().iter().all(|p| p.grad.iter().all(|&g| g == 0.0)));
        // Non-finite x: no gradient either way.
        let (_, gi) = run_backward(&mut e, &[f32::NAN, f32::NEG_INFINITY], 0.0);
        assert_eq!(gi, vec![0.0, 0.0]);
        assert!(e.params().iter().all(|p| p.grad.iter().all(|&g| g == 0.0)));
    }
}

// ---------------------------------------------------------------- building

/// An estimator attribute: its name and parameters.
type Spec<'a> = (&'a str, &'a [(&'a str, f64)]);

#[test]
fn bad_parameters_are_rejected() {
    // Each case names the parameter the error must blame.
    let bad: &[(Spec, &str)] = &[
        (("ste", &[("clip", 0.0)]), "clip"),
        (("ste", &[("clip", -1.0)]), "clip"),
        (("ste", &[("clip", f64::NAN)]), "clip"),
        (("ste", &[("beta", 1.0)]), "beta"),
        (("identity", &[("clip", 1.0)]), "clip"),
        (("approx_sign", &[("beta", 1.0)]), "beta"),
        (("swish_sign", &[("beta", 0.0)]), "beta"),
        (("swish_sign", &[("beta", -5.0)]), "beta"),
        (("swish_sign", &[("beta", f64::INFINITY)]), "beta"),
        (("swish_sign", &[("beta", 1e300)]), "beta"),
        (("swish_sign", &[("beta", f64::NAN)]), "beta"),
        (("dte", &[("t_min", 0.0)]), "t_min"),
        (("dte", &[("t_max", -1.0)]), "t_max"),
        (("dte", &[("t_min", 2.0), ("t_max", 1.0)]), "t_max"),
        (("dte", &[("k_min", 0.0)]), "k_min"),
        (("dte", &[("k_min", 3.0), ("k_max", 2.0)]), "k_max"),
        (("dte", &[("k_max", f64::NAN)]), "k_max"),
        (("dte", &[("clip", 1.0)]), "clip"),
        (("fda", &[("terms", 0.0)]), "terms"),
        (("fda", &[("terms", 2.5)]), "terms"),
        (("fda", &[("terms", -3.0)]), "terms"),
        (("fda", &[("terms", 1e6)]), "terms"),
        (("fda", &[("omega", 0.0)]), "omega"),
        (("fda", &[("omega", f64::NAN)]), "omega"),
        (("fda", &[("noise", -1.0)]), "noise"),
        (("fda", &[("noise", 0.5)]), "noise"),
        (("learned", &[("hidden", -1.0)]), "hidden"),
        (("learned", &[("hidden", 1.5)]), "hidden"),
        (("learned", &[("hidden", 1e9)]), "hidden"),
        (("learned", &[("hidden", f64::NAN)]), "hidden"),
    ];
    for &((name, params), which) in bad {
        match SignEstimator::new(Some(&attr(name, params)), 8, 0) {
            Err(EstimatorError::BadParam { name: n, param, .. }) => {
                assert_eq!(
                    (n.as_str(), param.as_str()),
                    (name, which),
                    "{name} {params:?}"
                );
            }
            other => panic!("{name} {params:?}: expected BadParam, got {other:?}"),
        }
    }
    assert_eq!(
        SignEstimator::new(Some(&attr("tanh", &[])), 8, 0),
        Err(EstimatorError::Unknown("tanh".into()))
    );
    // Boundary values that are valid.
    for (name, params) in [
        ("ste", &[("clip", f64::INFINITY)][..]),
        (
            "dte",
            &[
                ("t_min", 1.0),
                ("t_max", 1.0),
                ("k_min", 1.0),
                ("k_max", 1.0),
            ][..],
        ),
        ("fda", &[("terms", 1.0), ("noise", 1.0)][..]),
        ("fda", &[("terms", 1000.0)][..]),
        ("learned", &[("hidden", 4096.0)][..]),
    ] {
        assert!(
            SignEstimator::new(Some(&attr(name, params)), 8, 0).is_ok(),
            "{name} {params:?}"
        );
    }
}

#[test]
fn every_estimator_backward_equals_grad_out_times_derivative() {
    let specs: &[Spec] = &[
        ("ste", &[]),
        ("identity", &[]),
        ("approx_sign", &[]),
        ("swish_sign", &[("beta", 3.0)]),
        ("dte", &[]),
        ("fda", &[]),
        ("fda", &[("noise", 3.0)]),
        ("learned", &[]),
        ("learned", &[("hidden", 5.0)]),
    ];
    let mut xs = GRID.to_vec();
    xs.extend([
        -1.0,
        0.0,
        -0.0,
        1.0,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
    ]);
    for &(name, params) in specs {
        for p in [0.0f32, 0.35, 1.0] {
            let mut e = build(name, params);
            let (go, gi) = run_backward(&mut e, &xs, p);
            for i in 0..xs.len() {
                let want = go[i] * e.derivative(xs[i], p);
                assert_eq!(
                    gi[i].to_bits(),
                    want.to_bits(),
                    "{name} {params:?} at x = {}, progress {p}",
                    xs[i]
                );
            }
        }
    }
}

#[test]
#[should_panic(expected = "sign backward")]
fn backward_rejects_mismatched_lengths() {
    let mut e = build("approx_sign", &[]);
    let mut gi = vec![0.0; 2];
    e.backward(&[0.0, 1.0, 2.0], &[1.0, 1.0, 1.0], &mut gi, 0.0);
}

/// 1000 inputs in [-3, 3] (several blocks of the blocked kernel and a ragged
/// tail), with non-finite values scattered in, and their output gradients.
fn long_inputs() -> (Vec<f32>, Vec<f32>) {
    let xs: Vec<f32> = (0..1000)
        .map(|i| match i {
            17 | 256 | 511 => f32::NAN,
            300 => f32::INFINITY,
            999 => f32::NEG_INFINITY,
            _ => ((i * 7919) % 6007) as f32 / 1001.0 - 3.0,
        })
        .collect();
    let go: Vec<f32> = (0..1000)
        .map(|i| ((i * 31) % 17) as f32 / 8.0 - 1.0)
        .collect();
    (xs, go)
}

/// `sum_i go_i * dg(x_i)/dθ` in f64 over finite `x_i`, for
/// `g = sum_j v_j act(w_j x + b_j)`, in the order (w, b, v).
fn hidden_layer_grads(
    (w, b, v): (&[f32], &[f32], &[f32]),
    xs: &[f32],
    go: &[f32],
    scale: f64,
    act: impl Fn(f64) -> (f64, f64),
) -> [Vec<f64>; 3] {
    let h = w.len();
    let mut out = [vec![0.0; h], vec![0.0; h], vec![0.0; h]];
    for (&x, &g) in xs.iter().zip(go) {
        if !x.is_finite() {
            continue;
        }
        let (x, g) = (f64::from(x), f64::from(g) * scale);
        for j in 0..h {
            let (a, da) = act(f64::from(w[j]) * x + f64::from(b[j]));
            out[0][j] += g * f64::from(v[j]) * da * x;
            out[1][j] += g * f64::from(v[j]) * da;
            out[2][j] += g * a;
        }
    }
    out
}

#[test]
fn learned_functions_over_many_blocks() {
    let (xs, go) = long_inputs();
    let progress = 0.25f32;
    // The learned MLP, and FDA's noise module with its biases off 0.
    let specs: [Spec; 2] = [("learned", &[("hidden", 6.0)]), ("fda", &[("noise", 5.0)])];
    for (name, params) in specs {
        let mut e = build(name, params);
        if name == "fda" {
            for p in e.params() {
                if p.name == "noise.b" {
                    for (i, b) in p.value.iter_mut().enumerate() {
                        *b = 0.4 * i as f32 - 0.9;
                    }
                }
            }
        }
        let mut gi = vec![f32::NAN; xs.len()];
        e.backward(&xs, &go, &mut gi, progress);
        for i in 0..xs.len() {
            let want = go[i] * e.derivative(xs[i], progress);
            assert_eq!(gi[i].to_bits(), want.to_bits(), "{name} at {i}");
        }
        let ps = e.params();
        let theta = (&*ps[0].value, &*ps[1].value, &*ps[2].value);
        let want = if name == "learned" {
            hidden_layer_grads(theta, &xs, &go, 1.0, |z| {
                let t = z.tanh();
                (t, 1.0 - t * t)
            })
        } else {
            let alpha = f64::from(FdaNoise::alpha(progress));
            hidden_layer_grads(theta, &xs, &go, alpha, |z| {
                if z > 0.0 {
                    (z, 1.0)
                } else {
                    (0.0, 0.0)
                }
            })
        };
        for (p, want) in ps.iter().zip(&want) {
            for (j, (&g, &w)) in p.grad.iter().zip(want).enumerate() {
                close(f64::from(g), w, 1e-5, &format!("{name} d/d{}[{j}]", p.name));
            }
        }
    }
}
