//! The forward pass of one node: every op on `f32` buffers, in the
//! interpreter's order (see the module documentation of [`super`]).

use bnnc_ir::{Op, Tensor};

use super::elementwise::{self, Arith, Broadcast};
use super::norm::{self, BnStats};
use super::pool::{self, PoolGeom};
use super::{dot, shape, to_tensor, Cache, GradError, Mode, TrainModel};
use crate::kernels::ConvGeom;

impl TrainModel {
    /// The geometry of conv node `v` on operands of dims `xd` and `wd`.
    pub(super) fn conv_geom(
        &self,
        v: usize,
        attrs: &bnnc_ir::Conv2dAttrs,
        xd: &[usize],
        wd: &[usize],
    ) -> Result<ConvGeom, GradError> {
        let ok_steps = attrs.stride.iter().chain(&attrs.dilation).all(|&s| s >= 1);
        ConvGeom::new(attrs, xd, wd)
            .filter(|_| ok_steps)
            .ok_or_else(|| {
                self.node_err(
                    v,
                    format!("operands {xd:?} and {wd:?} do not fit the attributes {attrs:?}"),
                )
            })
    }

    /// `(n, k, o)` of dense node `v`.
    pub(super) fn dense_dims(
        &self,
        v: usize,
        xd: &[usize],
        wd: &[usize],
    ) -> Result<[usize; 3], GradError> {
        match (xd, wd) {
            (&[n, k], &[o, k2]) if k == k2 => Ok([n, k, o]),
            _ => Err(self.node_err(v, format!("operands {xd:?} and {wd:?} do not fit"))),
        }
    }

    /// Evaluates op node `v` on the values in `cache`; train-mode batchnorm also
    /// returns its batch statistics.
    pub(super) fn eval_node(
        &self,
        cache: &Cache,
        v: usize,
    ) -> Result<(Vec<f32>, Option<BnStats>), GradError> {
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
        // Per-channel operands 1.. of an op over `[.., C]`.
        let per_channel = |count: usize| -> Result<Vec<&[f32]>, GradError> {
            let c = channels(0)?;
            (1..count)
                .map(|i| {
                    let a = arg(i)?;
                    if a.len() == c {
                        Ok(a)
                    } else {
                        Err(err(format!(
                            "operand {i} has {} values for {c} channels",
                            a.len()
                        )))
                    }
                })
                .collect()
        };
        let out = match &node.op {
            Op::Input(_) | Op::Weight { .. } | Op::Const { .. } => {
                return Err(err("a leaf is not evaluated".into()))
            }
            Op::Sign { .. } => elementwise::sign_forward(arg(0)?),
            Op::Conv2d(attrs) => {
                let g = self.conv_geom(v, attrs, dims(0)?, dims(1)?)?;
                dot::conv_forward(&g, arg(0)?, arg(1)?, self.oracle)
            }
            Op::Dense => {
                let [n, k, o] = self.dense_dims(v, dims(0)?, dims(1)?)?;
                dot::dense_forward(n, k, o, arg(0)?, arg(1)?, self.oracle)
            }
            Op::BatchNorm { eps } => {
                let c = channels(0)?;
                let p = per_channel(5)?;
                let x = arg(0)?;
                return Ok(match cache.mode {
                    Mode::Eval => (norm::forward(x, c, p[0], p[1], p[2], p[3], *eps), None),
                    Mode::Train => {
                        let st = norm::batch_stats(x, c);
                        if st.count < 2 {
                            return Err(GradError::BatchTooSmall {
                                node: node.name.clone(),
                                count: st.count,
                            });
                        }
                        let y = norm::forward(x, c, p[0], p[1], &st.mean, &st.var, *eps);
                        (y, Some(st))
                    }
                });
            }
            Op::Add | Op::Sub | Op::Mul => {
                let bc = self.broadcast(v, dims(0)?, dims(1)?)?;
                elementwise::arith_forward(arith(&node.op), &bc, arg(0)?, arg(1)?)
            }
            Op::Relu => elementwise::relu_forward(arg(0)?),
            Op::Prelu => {
                let p = per_channel(2)?;
                elementwise::prelu_forward(arg(0)?, channels(0)?, p[0])
            }
            Op::Rprelu => {
                let p = per_channel(4)?;
                elementwise::rprelu_forward(arg(0)?, channels(0)?, p[0], p[1], p[2])
            }
            Op::Hardtanh => elementwise::clip_forward(arg(0)?, -1.0, 1.0),
            Op::Clip { min, max } => elementwise::clip_forward(arg(0)?, *min, *max),
            Op::Sigmoid => elementwise::sigmoid_forward(arg(0)?),
            Op::MaxPool2d(a) => {
                let g = PoolGeom::new(dims(0)?, a).map_err(err)?;
                pool::maxpool_forward(arg(0)?, &g).map_err(err)?
            }
            Op::AvgPool2d(a) => {
                let g = PoolGeom::new(dims(0)?, a).map_err(err)?;
                pool::avgpool_forward(arg(0)?, &g).map_err(err)?
            }
            Op::GlobalAvgPool => {
                let [n, hw, c] = self.gap_dims(v, dims(0)?)?;
                pool::global_avgpool_forward(arg(0)?, n, hw, c)
            }
            Op::Concat { axis } => {
                let (outer, chunks) = self.concat_split(v, cache, *axis)?;
                let mut parts = Vec::with_capacity(chunks.len());
                for (i, k) in chunks.into_iter().enumerate() {
                    parts.push((arg(i)?, k));
                }
                shape::concat_forward(&parts, outer)
            }
            Op::Replicate { times } => {
                let c = channels(0)?;
                shape::gather_forward(arg(0)?, c, c * times, |j| j % c)
            }
            Op::ChannelShuffle { groups } => {
                let (c, g) = (channels(0)?, *groups);
                if g == 0 || c % g != 0 {
                    return Err(err(format!("{g} groups do not divide {c} channels")));
                }
                let m = c / g;
                shape::gather_forward(arg(0)?, c, c, |j| (j % g) * m + j / g)
            }
            Op::Flatten | Op::Reshape { .. } => arg(0)?.to_vec(),
            Op::Softmax { axis } => {
                let (outer, len, inner) = self.axis_split(v, dims(0)?, *axis)?;
                shape::softmax_forward(arg(0)?, outer, len, inner)
            }
            Op::Quantize { .. }
            | Op::Dequantize { .. }
            | Op::Ternarize { .. }
            | Op::Threshold
            | Op::Table { .. }
            | Op::Fill { .. }
            | Op::Argmax { .. } => self.interpret(cache, v)?,
        };
        Ok((out, None))
    }

    /// Evaluates node `v` with the interpreter's own op function.
    pub(super) fn interpret(&self, cache: &Cache, v: usize) -> Result<Vec<f32>, GradError> {
        let node = &self.model.graph.nodes[v];
        let mut args = Vec::with_capacity(node.inputs.len());
        for &i in &node.inputs {
            let vals = self.value(cache, i)?;
            let elem = self.model.types[i.index()].elem;
            args.push(to_tensor(elem, cache.dims[i.index()].clone(), vals));
        }
        let refs: Vec<&Tensor> = args.iter().collect();
        let t = bnnc_runtime::ops::eval(&node.op, &refs)
            .map_err(|e| self.node_err(v, e.to_string()))?;
        Ok(t.to_f32_vec())
    }

    pub(super) fn broadcast(
        &self,
        v: usize,
        a: &[usize],
        b: &[usize],
    ) -> Result<Broadcast, GradError> {
        Broadcast::new(a, b)
            .ok_or_else(|| self.node_err(v, format!("dims {a:?} and {b:?} do not broadcast")))
    }

    /// `[n, h*w, c]` of a global_avgpool operand.
    pub(super) fn gap_dims(&self, v: usize, d: &[usize]) -> Result<[usize; 3], GradError> {
        match d {
            &[n, h, w, c] => Ok([n, h * w, c]),
            _ => Err(self.node_err(v, format!("x must be [N, H, W, C], got {d:?}"))),
        }
    }

    /// (outer, len, inner) around `axis` of dims `d`.
    pub(super) fn axis_split(
        &self,
        v: usize,
        d: &[usize],
        axis: i64,
    ) -> Result<(usize, usize, usize), GradError> {
        let ax = bnnc_runtime::ops::norm_axis(axis, d.len())
            .map_err(|e| self.node_err(v, e.to_string()))?;
        Ok(shape::split(d, ax))
    }

    /// The outer count and each operand's chunk length of concat node `v`.
    pub(super) fn concat_split(
        &self,
        v: usize,
        cache: &Cache,
        axis: i64,
    ) -> Result<(usize, Vec<usize>), GradError> {
        let inputs = &self.model.graph.nodes[v].inputs;
        let first = inputs
            .first()
            .map(|i| &cache.dims[i.index()])
            .ok_or_else(|| self.node_err(v, "no operands".into()))?;
        let ax = bnnc_runtime::ops::norm_axis(axis, first.len())
            .map_err(|e| self.node_err(v, e.to_string()))?;
        let outer = first[..ax].iter().product();
        let chunks = inputs
            .iter()
            .map(|i| cache.dims[i.index()][ax..].iter().product())
            .collect();
        Ok((outer, chunks))
    }
}

pub(super) fn arith(op: &Op) -> Arith {
    match op {
        Op::Sub => Arith::Sub,
        Op::Mul => Arith::Mul,
        _ => Arith::Add,
    }
}
