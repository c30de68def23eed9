//! Optimisers and schedules against hand-computed steps.

use bnnc_train::optim::{
    clip_latent, Adam, AdamState, Bop, BopState, LrSchedule, OptimError, Sgd, SgdState,
};

fn close(a: f32, b: f32, tol: f32) -> bool {
    (a - b).abs() <= tol
}

#[test]
fn adam_first_two_steps_by_hand() {
    let adam = Adam::default();
    let mut s = AdamState::default();
    let mut w = [1.0f32];
    // t = 1, g = 0.5: m = 0.05, v = 2.5e-4; m^ = 0.5, v^ = 0.25 -> step 0.5 / 0.5.
    adam.step(&mut s, &mut w, &[0.5], 0.1).unwrap();
    assert_eq!(s.t, 1);
    // (beta1, beta2 are f32: 1 - beta1 is 0.1 only to about 2e-7 relative.)
    assert!(close(s.m[0], 0.05, 1e-7) && close(s.v[0], 2.5e-4, 1e-8));
    assert!(close(w[0], 0.9, 1e-6), "{}", w[0]);
    // t = 2, g = -0.5: m = -0.005, v = 4.9975e-4; m^ = -0.005 / 0.19,
    // v^ = 4.9975e-4 / 0.001999 = 0.25 -> w = 0.9 + 0.1 * (0.005 / 0.19) / 0.5.
    adam.step(&mut s, &mut w, &[-0.5], 0.1).unwrap();
    assert!(close(s.m[0], -0.005, 1e-7));
    assert!(
        close(w[0], 0.9 + 0.1 * (0.005 / 0.19) / 0.5, 1e-6),
        "{}",
        w[0]
    );
}

#[test]
fn adamw_decay_is_decoupled_from_the_moments() {
    // Zero gradient: the moments stay 0, so the only change is the decay
    // w -= lr * wd * w (coupled L2 would instead feed 0.02 into m and move w by
    // about lr = 0.1).
    let adam = Adam {
        weight_decay: 0.01,
        ..Adam::default()
    };
    let mut s = AdamState::default();
    let mut w = [2.0f32, -4.0];
    adam.step(&mut s, &mut w, &[0.0, 0.0], 0.1).unwrap();
    assert!(close(w[0], 2.0 - 0.1 * 0.01 * 2.0, 1e-7), "{w:?}");
    assert!(close(w[1], -4.0 + 0.1 * 0.01 * 4.0, 1e-7), "{w:?}");
    assert_eq!(s.m, vec![0.0, 0.0]);
    // With a gradient, decay uses the weight before the step.
    let mut s = AdamState::default();
    let mut w = [1.0f32];
    adam.step(&mut s, &mut w, &[0.5], 0.1).unwrap();
    assert!(close(w[0], 1.0 - 0.1 * (1.0 + 0.01), 1e-6), "{}", w[0]);
}

#[test]
fn adam_minimises_a_quadratic() {
    // f(x) = sum_i a_i (x_i - c_i)^2, gradient 2 a_i (x_i - c_i).
    let a = [1.0f32, 10.0, 0.1, 3.0];
    let c = [1.0f32, -2.0, 0.5, 3.0];
    let mut x = [0.0f32; 4];
    let mut s = AdamState::default();
    let adam = Adam::default();
    let schedule = LrSchedule::Cosine {
        total_steps: 3000,
        warmup_steps: 10,
        min_lr: 0.0,
    };
    for step in 0..3000 {
        let g: Vec<f32> = (0..4).map(|i| 2.0 * a[i] * (x[i] - c[i])).collect();
        adam.step(&mut s, &mut x, &g, schedule.lr_at(step, 0.05))
            .unwrap();
    }
    for i in 0..4 {
        assert!(close(x[i], c[i], 1e-3), "{x:?}");
    }
}

#[test]
fn sgd_momentum_by_hand() {
    let sgd = Sgd {
        momentum: 0.9,
        ..Sgd::default()
    };
    let mut s = SgdState::default();
    let mut w = [1.0f32];
    sgd.step(&mut s, &mut w, &[1.0], 0.1).unwrap();
    assert!(close(w[0], 0.9, 1e-7));
    // b = 0.9 * 1 + 0.5 = 1.4
    sgd.step(&mut s, &mut w, &[0.5], 0.1).unwrap();
    assert!(close(s.velocity[0], 1.4, 1e-7));
    assert!(close(w[0], 0.9 - 0.14, 1e-6), "{}", w[0]);

    // Nesterov with L2 decay: d = 1 + 0.1 * 2 = 1.2, b = 1.2, step d + 0.9 b = 2.28.
    let nag = Sgd {
        momentum: 0.9,
        weight_decay: 0.1,
        nesterov: true,
    };
    let mut s = SgdState::default();
    let mut w = [2.0f32];
    nag.step(&mut s, &mut w, &[1.0], 0.1).unwrap();
    assert!(close(w[0], 2.0 - 0.228, 1e-6), "{}", w[0]);
}

#[test]
fn bop_flips_exactly_when_momentum_agrees_and_passes_the_threshold() {
    // gamma = 1: m is the gradient itself.
    let bop = Bop {
        gamma: 1.0,
        tau: 0.5,
    };
    let above = f32::from_bits(0.5f32.to_bits() + 1);
    let mut w = [0.7f32, -0.7, 0.7, -0.7, 0.7, -0.7, 0.3, -0.3];
    let g = [0.6f32, -0.6, -0.6, 0.6, 0.5, -0.5, above, -above];
    let mut s = BopState::default();
    let flips = bop.step(&mut s, &mut w, &g).unwrap();
    assert_eq!(
        w,
        [-0.7, 0.7, 0.7, -0.7, 0.7, -0.7, -0.3, 0.3],
        "agreeing signs above tau flip (magnitude kept); opposite signs and |m| = tau do not"
    );
    assert_eq!(flips, 4);
    assert_eq!(s.m, g.to_vec());
}

#[test]
fn bop_moving_average_reaches_the_threshold_over_steps() {
    // gamma = 0.1, g = 1 every step: m = 0.1, 0.19, 0.271, ... crosses tau = 0.25
    // at the third step; after the flip w < 0 disagrees with m > 0: no more flips.
    let bop = Bop {
        gamma: 0.1,
        tau: 0.25,
    };
    let mut s = BopState::default();
    let mut w = [0.5f32];
    let mut history = Vec::new();
    for _ in 0..6 {
        history.push(bop.step(&mut s, &mut w, &[1.0]).unwrap());
    }
    assert_eq!(history, [0, 0, 1, 0, 0, 0]);
    assert_eq!(w, [-0.5]);
    assert!(close(s.m[0], 1.0 - 0.9f32.powi(6), 1e-6));
}

#[test]
fn bop_zero_latent_reads_plus_one_and_flips_to_negative() {
    let bop = Bop {
        gamma: 1.0,
        tau: 0.0,
    };
    for zero in [0.0f32, -0.0] {
        let mut w = [zero];
        let mut s = BopState::default();
        assert_eq!(bop.step(&mut s, &mut w, &[1.0]).unwrap(), 1);
        assert!(w[0] < 0.0, "{zero} -> {}", w[0]);
        // A negative gradient never flips a weight reading +1.
        let mut w = [zero];
        let mut s = BopState::default();
        assert_eq!(bop.step(&mut s, &mut w, &[-1.0]).unwrap(), 0);
    }
    let mut w = [f32::NAN];
    assert_eq!(
        bop.step(&mut BopState::default(), &mut w, &[1.0]).unwrap(),
        0
    );
}

#[test]
fn cosine_schedule_endpoints_and_warmup() {
    let s = LrSchedule::Cosine {
        total_steps: 110,
        warmup_steps: 10,
        min_lr: 0.1,
    };
    s.validate().unwrap();
    assert!(close(s.lr_at(0, 1.0), 0.1, 1e-7));
    assert!(close(s.lr_at(4, 1.0), 0.5, 1e-7));
    assert!(close(s.lr_at(9, 1.0), 1.0, 1e-7));
    assert!(close(s.lr_at(10, 1.0), 1.0, 1e-7));
    assert!(close(s.lr_at(60, 1.0), 0.55, 1e-6));
    assert!(close(s.lr_at(110, 1.0), 0.1, 1e-7));
    assert!(close(s.lr_at(10_000, 1.0), 0.1, 1e-7));
    // Monotone after warm-up.
    let lrs: Vec<f32> = (10..=110).map(|k| s.lr_at(k, 1.0)).collect();
    assert!(lrs.windows(2).all(|p| p[1] <= p[0]));
    let no_warmup = LrSchedule::Cosine {
        total_steps: 4,
        warmup_steps: 0,
        min_lr: 0.0,
    };
    assert!(close(no_warmup.lr_at(0, 2.0), 2.0, 1e-7));
    assert!(close(no_warmup.lr_at(2, 2.0), 1.0, 1e-6));
    assert!(close(no_warmup.lr_at(4, 2.0), 0.0, 1e-7));
}

#[test]
fn step_and_constant_schedules() {
    let s = LrSchedule::Step {
        every: 10,
        gamma: 0.5,
    };
    assert_eq!(s.lr_at(0, 0.8), 0.8);
    assert_eq!(s.lr_at(9, 0.8), 0.8);
    assert_eq!(s.lr_at(10, 0.8), 0.4);
    assert_eq!(s.lr_at(25, 0.8), 0.2);
    assert_eq!(LrSchedule::Constant.lr_at(12345, 0.3), 0.3);
    // Degenerate parameters never panic, and validate() names them.
    let bad = LrSchedule::Step {
        every: 0,
        gamma: 0.5,
    };
    assert_eq!(bad.lr_at(100, 0.8), 0.8);
    assert!(matches!(
        bad.validate(),
        Err(OptimError::Param { param: "every", .. })
    ));
    let bad = LrSchedule::Cosine {
        total_steps: 5,
        warmup_steps: 10,
        min_lr: 0.0,
    };
    assert!(bad.lr_at(20, 1.0).is_finite());
    assert!(matches!(
        bad.validate(),
        Err(OptimError::Param {
            param: "warmup_steps",
            ..
        })
    ));
}

#[test]
fn clip_latent_clamps_to_the_limit() {
    let mut v = [-3.0f32, -1.0, 0.2, 1.5, f32::NAN];
    assert_eq!(clip_latent(&mut v, 1.0).unwrap(), 2);
    assert_eq!(v[..4], [-1.0, -1.0, 0.2, 1.0]);
    assert!(v[4].is_nan());
    assert_eq!(clip_latent(&mut v, f32::INFINITY).unwrap(), 0);
    assert!(matches!(
        clip_latent(&mut v, -1.0),
        Err(OptimError::Param { param: "limit", .. })
    ));
    assert!(clip_latent(&mut v, f32::NAN).is_err());
}

#[test]
fn mismatched_lengths_and_bad_parameters_are_errors_and_change_nothing() {
    let adam = Adam::default();
    let mut s = AdamState::default();
    let mut w = [1.0f32, 2.0];
    assert!(matches!(
        adam.step(&mut s, &mut w, &[1.0], 0.1),
        Err(OptimError::Length {
            what: "gradient",
            ..
        })
    ));
    let mut s = AdamState {
        m: vec![0.0; 3],
        v: vec![],
        t: 0,
    };
    assert!(matches!(
        adam.step(&mut s, &mut w, &[1.0, 1.0], 0.1),
        Err(OptimError::Length {
            what: "state m",
            ..
        })
    ));
    assert!(s.v.is_empty() && s.t == 0);
    assert!(matches!(
        adam.step(&mut AdamState::default(), &mut w, &[1.0, 1.0], f32::NAN),
        Err(OptimError::Param { param: "lr", .. })
    ));
    let bad = Adam {
        beta1: 1.0,
        ..Adam::default()
    };
    assert!(matches!(
        bad.step(&mut AdamState::default(), &mut w, &[1.0, 1.0], 0.1),
        Err(OptimError::Param { param: "beta1", .. })
    ));
    assert_eq!(w, [1.0, 2.0]);

    let mut s = SgdState {
        velocity: vec![0.0],
    };
    assert!(Sgd::default()
        .step(&mut s, &mut w, &[1.0, 1.0], 0.1)
        .is_err());
    let bad = Sgd {
        momentum: -0.1,
        ..Sgd::default()
    };
    assert!(bad.validate().is_err());

    let bop = Bop {
        gamma: 0.0,
        tau: 0.1,
    };
    assert!(matches!(
        bop.step(&mut BopState::default(), &mut w, &[1.0, 1.0]),
        Err(OptimError::Param { param: "gamma", .. })
    ));
    assert!(Bop::default()
        .step(&mut BopState::default(), &mut w, &[1.0])
        .is_err());
    assert_eq!(w, [1.0, 2.0]);
}
