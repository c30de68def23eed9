//! The backward pass: reverse sweep over the nodes, one gradient rule per op
//! (see the module documentation of [`super`] for the conventions).

use bnnc_ir::{Op, ValueId};

use super::eval::arith;
use super::{
    add_into, dot, elementwise, leaf_value, norm, pool, shape, transform, Cache, GradError, Leaf,
    Mode, PoolGeom, TrainModel,
};

impl TrainModel {
    pub(super) fn backward_with(
        &mut self,
        cache: &Cache,
        output_grads: &[Option<Vec<f32>>],
        progress: f32,
    ) -> Result<(), GradError> {
        let g = &self.model.graph;
        let n = g.nodes.len();
        if output_grads.len() != g.outputs.len() {
            return Err(GradError::OutputGradCount {
                expected: g.outputs.len(),
                found: output_grads.len(),
            });
        }
        let mut grads: Vec<Option<Vec<f32>>> = vec![None; n];
        for (index, (&o, og)) in g.outputs.iter().zip(output_grads).enumerate() {
            let Some(og) = og else { continue };
            let expected: usize = cache.dims[o.index()].iter().product();
            if og.len() != expected {
                return Err(GradError::OutputGradLen {
                    index,
                    node: g.node(o).name.clone(),
                    expected,
                    found: og.len(),
                });
            }
            if self.needs_grad[o.index()] {
                add_into(&mut grads[o.index()], og.clone());
            }
        }
        self.check_differentiable(&grads)?;

        let mut param_grads: Vec<Option<Vec<f32>>> = vec![None; self.params.len()];
        let mut derived_grads: Vec<Option<Vec<f32>>> = vec![None; self.derived.len()];
        for v in (0..n).rev() {
            let Some(gv) = grads[v].take() else { continue };
            match self.leaves[v] {
                Leaf::Param(p) => add_into(&mut param_grads[p], gv),
                Leaf::Derived(d) => add_into(&mut derived_grads[d], gv),
                Leaf::Input | Leaf::Fixed => {}
                Leaf::Op => {
                    let node = &self.model.graph.nodes[v];
                    if let Op::Sign { .. } = node.op {
                        self.sign_backward(cache, v, &gv, &mut grads, progress)?;
                    } else {
                        for (i, gi) in self.op_backward(cache, v, &gv)? {
                            let inp = self.model.graph.nodes[v].inputs[i];
                            add_into(&mut grads[inp.index()], gi);
                        }
                    }
                }
            }
        }
        for (d, gd) in self.derived.iter().zip(derived_grads) {
            let Some(gd) = gd else { continue };
            let src = &self.params[d.src];
            let w = cache.used[d.src]
                .as_ref()
                .map_or(&src.value[..], |s| &s.value[..]);
            add_into(
                &mut param_grads[d.src],
                transform::xnor_scale_backward(w, &gd),
            );
        }
        for (p, gp) in param_grads.into_iter().enumerate() {
            let Some(gp) = gp else { continue };
            let gw = match &cache.used[p] {
                Some(s) => transform::standardize_backward(s, &gp),
                None => gp,
            };
            for (a, b) in self.params[p].grad.iter_mut().zip(&gw) {
                *a += b;
            }
        }
        Ok(())
    }

    /// Fails if a gradient seeded in `grads` would have to pass through an op
    /// without one to reach a value that needs it.
    pub(super) fn check_differentiable(&self, grads: &[Option<Vec<f32>>]) -> Result<(), GradError> {
        let nodes = &self.model.graph.nodes;
        let mut reached: Vec<bool> = grads.iter().map(|g| g.is_some()).collect();
        for v in (0..nodes.len()).rev() {
            if !reached[v] || self.leaves[v] != Leaf::Op {
                continue;
            }
            let node = &nodes[v];
            let needy: Vec<&ValueId> = node
                .inputs
                .iter()
                .filter(|i| self.needs_grad[i.index()])
                .collect();
            if !differentiable(&node.op) && !needy.is_empty() {
                let operands = needy
                    .iter()
                    .map(|i| format!("`{}`", nodes[i.index()].name))
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(GradError::NotDifferentiable {
                    node: node.name.clone(),
                    op: node.op.name(),
                    operands,
                });
            }
            for i in needy {
                reached[i.index()] = true;
            }
        }
        Ok(())
    }

    /// Backward of sign node `v` through its estimator.
    pub(super) fn sign_backward(
        &mut self,
        cache: &Cache,
        v: usize,
        g: &[f32],
        grads: &mut [Option<Vec<f32>>],
        progress: f32,
    ) -> Result<(), GradError> {
        let Some(&inp) = self.model.graph.nodes[v].inputs.first() else {
            return Err(self.node_err(v, "operand 0 is missing".into()));
        };
        let Some(x) = leaf_value(&self.leaves, &self.params, &self.fixed, cache, inp) else {
            return Err(self.node_err(v, "operand value is not available".into()));
        };
        let Some(est) = self.estimators[v].as_mut() else {
            return Err(GradError::Node {
                node: self.model.graph.nodes[v].name.clone(),
                op: "sign",
                message: "no estimator".into(),
            });
        };
        let mut gi = vec![0.0f32; x.len()];
        est.backward(x, g, &mut gi, progress);
        if self.needs_grad[inp.index()] {
            add_into(&mut grads[inp.index()], gi);
        }
        Ok(())
    }

    /// The gradients of op node `v` (not a sign) with respect to each operand
    /// that needs one, as `(operand position, gradient)`, given `g = dL/dv`.
    pub(super) fn op_backward(
        &self,
        cache: &Cache,
        v: usize,
        g: &[f32],
    ) -> Result<Vec<(usize, Vec<f32>)>, GradError> {
        let node = &self.model.graph.nodes[v];
        let err = |m: String| self.node_err(v, m);
        let input = |i: usize| {
            node.inputs
                .get(i)
                .copied()
                .ok_or_else(|| err(format!("operand {i} is missing")))
        };
        let arg = |i: usize| self.value(cache, input(i)?);
        let dims = |i: usize| input(i).map(|x| &cache.dims[x.index()][..]);
        let channels = |i: usize| dims(i).map(|d| d.last().copied().unwrap_or(1));
        let need = |i: usize| {
            node.inputs
                .get(i)
                .is_some_and(|x| self.needs_grad[x.index()])
        };
        let own = || self.value(cache, ValueId(v as u32));
        let mut out: Vec<(usize, Vec<f32>)> = Vec::new();
        let mut push = |grads: &mut dyn Iterator<Item = Option<Vec<f32>>>| {
            for (i, gi) in grads.enumerate() {
                if let (Some(gi), true) = (gi, need(i)) {
                    out.push((i, gi));
                }
            }
        };
        match &node.op {
            Op::Conv2d(attrs) => {
                let geom = self.conv_geom(v, attrs, dims(0)?, dims(1)?)?;
                let r =
                    dot::conv_backward(&geom, arg(0)?, arg(1)?, g, [need(0), need(1)], self.oracle);
                push(&mut r.into_iter());
            }
            Op::Dense => {
                let [n, k, o] = self.dense_dims(v, dims(0)?, dims(1)?)?;
                let r = dot::dense_backward(
                    n,
                    k,
                    o,
                    arg(0)?,
                    arg(1)?,
                    g,
                    [need(0), need(1)],
                    self.oracle,
                );
                push(&mut r.into_iter());
            }
            Op::BatchNorm { eps } => {
                let (x, c) = (arg(0)?, channels(0)?);
                match (cache.mode, &cache.bn[v]) {
                    (Mode::Train, Some(st)) => {
                        let r = norm::backward_train(
                            x,
                            c,
                            arg(1)?,
                            st,
                            *eps,
                            g,
                            [need(0), need(1), need(2)],
                        );
                        push(&mut r.into_iter());
                    }
                    (Mode::Eval, _) => {
                        let need5 = [need(0), need(1), need(2), need(3), need(4)];
                        let r =
                            norm::backward_eval(x, c, arg(1)?, arg(3)?, arg(4)?, *eps, g, need5);
                        push(&mut r.into_iter());
                    }
                    (Mode::Train, None) => return Err(err("batch statistics are missing".into())),
                }
            }
            Op::Add | Op::Sub | Op::Mul => {
                let bc = self.broadcast(v, dims(0)?, dims(1)?)?;
                let r = elementwise::arith_backward(
                    arith(&node.op),
                    &bc,
                    arg(0)?,
                    arg(1)?,
                    g,
                    [need(0), need(1)],
                );
                push(&mut r.into_iter());
            }
            Op::Relu => out.push((0, elementwise::relu_backward(arg(0)?, g))),
            Op::Prelu => {
                let r = elementwise::prelu_backward(
                    arg(0)?,
                    channels(0)?,
                    arg(1)?,
                    g,
                    [need(0), need(1)],
                );
                push(&mut r.into_iter());
            }
            Op::Rprelu => {
                let need4 = [need(0), need(1), need(2), need(3)];
                let r =
                    elementwise::rprelu_backward(arg(0)?, channels(0)?, arg(1)?, arg(2)?, g, need4);
                push(&mut r.into_iter());
            }
            Op::Hardtanh => out.push((0, elementwise::clip_backward(arg(0)?, -1.0, 1.0, g))),
            Op::Clip { min, max } => {
                out.push((0, elementwise::clip_backward(arg(0)?, *min, *max, g)))
            }
            Op::Sigmoid => out.push((0, elementwise::sigmoid_backward(own()?, g))),
            Op::MaxPool2d(a) => {
                let geom = PoolGeom::new(dims(0)?, a).map_err(err)?;
                out.push((0, pool::maxpool_backward(arg(0)?, &geom, g)));
            }
            Op::AvgPool2d(a) => {
                let geom = PoolGeom::new(dims(0)?, a).map_err(err)?;
                out.push((0, pool::avgpool_backward(&geom, g)));
            }
            Op::GlobalAvgPool => {
                let [n, hw, c] = self.gap_dims(v, dims(0)?)?;
                out.push((0, pool::global_avgpool_backward(g, n, hw, c)));
            }
            Op::Concat { axis } => {
                let (outer, chunks) = self.concat_split(v, cache, *axis)?;
                let parts = shape::concat_backward(g, &chunks, outer);
                push(&mut parts.into_iter().map(Some));
            }
            Op::Replicate { times } => {
                let c = channels(0)?;
                out.push((0, shape::gather_backward(g, c, c * times, |j| j % c)));
            }
            Op::ChannelShuffle { groups } => {
                let (c, gr) = (channels(0)?, (*groups).max(1));
                let m = c / gr;
                out.push((
                    0,
                    shape::gather_backward(g, c, c, |j| (j % gr) * m + j / gr),
                ));
            }
            Op::Flatten | Op::Reshape { .. } => out.push((0, g.to_vec())),
            Op::Softmax { axis } => {
                let (outer, len, inner) = self.axis_split(v, dims(0)?, *axis)?;
                out.push((0, shape::softmax_backward(own()?, g, outer, len, inner)));
            }
            Op::Dequantize { scale, .. } => out.push((0, g.iter().map(|&d| d * scale).collect())),
            // The output does not depend on x's values: x's gradient is zero.
            Op::Fill { .. } => {}
            Op::Sign { .. }
            | Op::Quantize { .. }
            | Op::Ternarize { .. }
            | Op::Threshold
            | Op::Table { .. }
            | Op::Argmax { .. }
            | Op::Input(_)
            | Op::Weight { .. }
            | Op::Const { .. } => {
                return Err(err(
                    "no gradient rule (internal: should have been rejected)".into(),
                ))
            }
        }
        out.retain(|(i, _)| need(*i));
        Ok(out)
    }
}

/// True for ops with a gradient rule (sign through its estimator).
fn differentiable(op: &Op) -> bool {
    !matches!(
        op,
        Op::Quantize { .. }
            | Op::Ternarize { .. }
            | Op::Threshold
            | Op::Table { .. }
            | Op::Argmax { .. }
    )
}
